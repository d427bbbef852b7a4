import EngineIO
import NIOCore
import Synchronization

/// A socket whose transport dropped, kept for its client: what it needs to be restored on a new connection.
public struct SuspendedSession: Sendable {
    public let socket: SocketID
    public let nsp: String
    /// The rooms it was in (its own id's room included).
    public let rooms: [Room]
    /// The application's state, as its handler saved it (``NamespaceHandler/recoveryState(_:state:)``).
    public let state: PacketValue
    /// Its offsets and last events sent.
    public let log: RecoveryLog
    /// The adapter's ``Adapter/continuity`` when the socket was suspended.
    public let continuity: UInt64
    /// The loop the socket lived on: its end (window closed, or a cluster's `disconnectSockets`) runs there.
    public let eventLoop: any EventLoop
    /// When the window closes: an expiry timer compares it, so a timer of an earlier suspension of the same
    /// socket (restored since) does not end a later one.
    public let deadline: NIODeadline
    /// Events that came for it while it was suspended, in order; `packet` is kept for the filtered events, whose
    /// recipient is asked again when they are replayed.
    public internal(set) var missed: [MissedEvent] = []
    public internal(set) var bytes: Int
    /// Set when `missed` passed a bound: the session can no longer be restored whole, so it is not restored.
    public internal(set) var lost = false
}

/// One event kept for a suspended socket, as encoded for everyone (not stamped yet).
public struct MissedEvent: Sendable {
    public let packet: BroadcastPacket?
    public let frames: [EngineFrame]
}

/// Where suspended sockets and their missed events are kept. Methods may be called from any thread;
/// `LocalSockets` calls them under its own lock (lock order: `LocalSockets`, then the store), which is what makes
/// "deliver to a suspended socket" and "restore it" atomic with respect to each other. So the methods are
/// synchronous and must not block: the in-memory store is this node's memory. (A store shared by the cluster in
/// Redis must keep that atomicity with a stream and its offsets instead of a lock: see the README's failover
/// section.)
public protocol RecoveryStore: AnyObject, Sendable {
    /// Keeps `session`; false when the store is full (the socket then ends as usual).
    func suspend(_ session: SuspendedSession) -> Bool
    /// Keeps an event for `socket` if it is suspended; false when it is not.
    func append(_ event: MissedEvent, to socket: SocketID) -> Bool
    /// The socket id and saved state of `pid`, left in place.
    func peek(pid: String) -> SuspendedSession?
    /// Removes and returns the session of `pid`.
    func take(pid: String) -> SuspendedSession?
    /// Removes and returns the session of a suspended socket, by its id.
    func take(socket: SocketID) -> SuspendedSession?
    /// Removes the session of `pid` if its window is the one that closed at `deadline`.
    func expire(pid: String, deadline: NIODeadline) -> SuspendedSession?
    /// Suspended sockets now.
    var count: Int { get }
    /// Bytes of the events kept for them.
    var bytes: Int { get }
}

/// The store of one node: suspended sockets live in this process's memory, so they are restored only on this
/// node (a transport drop, a client reconnecting to the same node).
public final class InMemoryRecoveryStore: RecoveryStore {
    private struct State {
        var sessions: [String: SuspendedSession] = [:]
        var pidOfSocket: [SocketID: String] = [:]
        /// Bytes of every session's history and missed events.
        var bytes = 0

        mutating func remove(_ pid: String) -> SuspendedSession? {
            guard let session = sessions.removeValue(forKey: pid) else { return nil }
            pidOfSocket[session.socket] = nil
            bytes -= session.bytes
            return session
        }
    }
    private let state = Mutex(State())
    let configuration: RecoveryConfiguration

    public init(configuration: RecoveryConfiguration) {
        self.configuration = configuration
    }

    public func suspend(_ session: SuspendedSession) -> Bool {
        state.withLock { state in
            guard state.sessions.count < configuration.maxSessions else { return false }
            guard state.bytes + session.bytes <= configuration.maxTotalBytes else { return false }
            state.sessions[session.log.pid] = session
            state.pidOfSocket[session.socket] = session.log.pid
            state.bytes += session.bytes
            return true
        }
    }

    public func append(_ event: MissedEvent, to socket: SocketID) -> Bool {
        state.withLock { state in
            guard let pid = state.pidOfSocket[socket] else { return false }
            guard var session = state.sessions.removeValue(forKey: pid) else { return false }
            defer { state.sessions[pid] = session }
            guard !session.lost else { return true }
            let bytes = RecoveryLog.size(of: event.frames)
            if session.missed.count + session.log.history.count >= configuration.maxEvents
                || session.bytes + bytes > configuration.maxBytes || state.bytes + bytes > configuration.maxTotalBytes
            {
                // Past a bound: what is kept can no longer be the whole story, so keep none of it.
                session.lost = true
                session.missed = []
                state.bytes -= session.bytes
                session.bytes = 0
                return true
            }
            session.missed.append(event)
            session.bytes += bytes
            state.bytes += bytes
            return true
        }
    }

    public func peek(pid: String) -> SuspendedSession? {
        state.withLock { $0.sessions[pid] }
    }

    public func take(pid: String) -> SuspendedSession? {
        state.withLock { $0.remove(pid) }
    }

    public func take(socket: SocketID) -> SuspendedSession? {
        state.withLock { state in
            guard let pid = state.pidOfSocket[socket] else { return nil }
            return state.remove(pid)
        }
    }

    public func expire(pid: String, deadline: NIODeadline) -> SuspendedSession? {
        state.withLock { state in
            guard state.sessions[pid]?.deadline == deadline else { return nil }
            return state.remove(pid)
        }
    }

    public var count: Int { state.withLock { $0.sessions.count } }

    /// Bytes kept for all suspended sockets (their events' encoded frames).
    public var bytes: Int { state.withLock { $0.bytes } }
}
