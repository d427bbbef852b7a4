import CoreMetrics
import EngineIO
import Logging
import NIOCore
import Synchronization

/// What a namespace's application does with its sockets.
///
/// The application keeps what it knows of each socket in its ``SocketState``: made by ``socketWillConnect(_:auth:)``,
/// kept by the socket, and handed back, with its type, to every later call about that socket. (A class, when
/// the state changes as events come: the value is passed, not shared.)
public protocol NamespaceHandler: Sendable {
    /// The application's own state for one socket.
    associatedtype SocketState = Void

    /// A socket asks to connect with its `auth` payload: return its state to accept it, or throw the refusal,
    /// whose message goes to the client in CONNECT_ERROR.
    func socketWillConnect(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) -> SocketState
    /// The socket is connected (it is in the room of its own id).
    func socketConnected(_ socket: Socket, state: SocketState)
    /// An event from the client. `ack` is set when the client asked for an acknowledgement.
    func socket(_ socket: Socket, state: SocketState, event: String, arguments: [PacketValue], ack: Ack?)
    /// The socket is gone; `reason` is Socket.IO's (e.g. "transport close", "client namespace disconnect").
    func socketDisconnected(_ socket: Socket, state: SocketState, reason: String)

    /// Events whose deliveries ask ``shouldDeliver(_:to:state:)`` first (all others go straight out).
    var filteredEvents: Set<String> { get }
    /// Whether a broadcast of one of ``filteredEvents`` goes to this socket. Called on the socket's loop.
    func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket, state: SocketState) -> Bool

    // Connection state recovery (see ``RecoveryConfiguration``); the defaults make a handler not recoverable.

    /// The state to keep for a socket whose transport dropped, so that it can be restored; nil ends it as usual
    /// (``socketDisconnected(_:state:reason:)``).
    func recoveryState(_ socket: Socket, state: SocketState) -> PacketValue?
    /// The socket's transport dropped and it is suspended, its state saved: this socket object is done (timers
    /// may stop), but for everyone else it is still there, in its rooms; peers must hear nothing of it.
    func socketSuspended(_ socket: Socket, state: SocketState)
    /// A client asks to restore a suspended socket: check `auth` as for a connect, and return the socket's state
    /// rebuilt from `saved`, or throw the refusal. `socket.recovered` is true.
    func socketWillRecover(_ socket: Socket, auth: PacketValue?, saved: PacketValue) throws(ConnectRefusal) -> SocketState
    /// A suspended socket's window closed, or its client came back but it could not be restored: it is gone for
    /// good, and the handler does what it does on a disconnect. Called once per suspension, on `eventLoop`.
    func suspendedSocketEnded(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop)
    /// With a ledger: another node (or a new connection) restored this node's socket; it lives on there, and
    /// this node forgets what it kept of it without telling anyone. Called on `eventLoop`.
    func socketTakenOver(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop)
}

extension NamespaceHandler {
    public func socketConnected(_ socket: Socket, state: SocketState) {}
    public func socketDisconnected(_ socket: Socket, state: SocketState, reason: String) {}
    public var filteredEvents: Set<String> { [] }
    public func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket, state: SocketState) -> Bool { true }
    public func recoveryState(_ socket: Socket, state: SocketState) -> PacketValue? { nil }
    public func socketSuspended(_ socket: Socket, state: SocketState) {}
    public func socketWillRecover(_ socket: Socket, auth: PacketValue?, saved: PacketValue) throws(ConnectRefusal) -> SocketState {
        try socketWillConnect(socket, auth: auth)
    }
    public func suspendedSocketEnded(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop) {}
    public func socketTakenOver(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop) {}
}

extension NamespaceHandler where SocketState == Void {
    public func socketWillConnect(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) {}
}

/// A refused CONNECT: `message` goes to the client in CONNECT_ERROR.
public struct ConnectRefusal: Error, Sendable, Hashable {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }
}

/// How a socket reaches its namespace's handler: the handler, and the socket's state with the type the handler
/// declared. Made when the socket connects; the socket keeps it, so no call about the socket looks the state up
/// or casts it.
protocol SocketHandlerBinding: AnyObject {
    func connected(_ socket: Socket)
    func received(_ socket: Socket, event: String, arguments: [PacketValue], ack: Ack?)
    func disconnected(_ socket: Socket, reason: String)
    func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket) -> Bool
    func recoveryState(_ socket: Socket) -> PacketValue?
    func suspended(_ socket: Socket)
}

/// The handler of a namespace, shared by the bindings of all its sockets (one reference each, not a copy).
final class SharedHandler<Handler: NamespaceHandler>: Sendable {
    let handler: Handler

    init(_ handler: Handler) {
        self.handler = handler
    }

    /// Asks the handler to accept `socket`; on success the socket is bound to it with its state.
    func bind(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) {
        let state = try handler.socketWillConnect(socket, auth: auth)
        socket.binding = Binding(shared: self, state: state)
    }

    /// Asks the handler to restore `socket` from its saved state; on success the socket is bound to it.
    func bindRecovered(_ socket: Socket, auth: PacketValue?, saved: PacketValue) throws(ConnectRefusal) {
        let state = try handler.socketWillRecover(socket, auth: auth, saved: saved)
        socket.binding = Binding(shared: self, state: state)
    }

    final class Binding: SocketHandlerBinding {
        let shared: SharedHandler<Handler>
        let state: Handler.SocketState

        init(shared: SharedHandler<Handler>, state: Handler.SocketState) {
            self.shared = shared
            self.state = state
        }

        func connected(_ socket: Socket) { shared.handler.socketConnected(socket, state: state) }

        func received(_ socket: Socket, event: String, arguments: [PacketValue], ack: Ack?) {
            shared.handler.socket(socket, state: state, event: event, arguments: arguments, ack: ack)
        }

        func disconnected(_ socket: Socket, reason: String) {
            shared.handler.socketDisconnected(socket, state: state, reason: reason)
        }

        func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket) -> Bool {
            shared.handler.shouldDeliver(packet, to: socket, state: state)
        }

        func recoveryState(_ socket: Socket) -> PacketValue? { shared.handler.recoveryState(socket, state: state) }

        func suspended(_ socket: Socket) { shared.handler.socketSuspended(socket, state: state) }
    }
}

/// The sockets of one namespace on this node, reachable from any thread. It is the adapter's delivery sink:
/// a broadcast is encoded once and the same frames go to every recipient, one hop per event loop.
public final class LocalSockets: LocalDelivery {
    private let sockets = Mutex<[SocketID: NIOLoopBound<Socket>]>([:])
    let metrics: SocketIOMetrics
    let filteredEvents: Set<String>
    /// Suspended sockets, when the namespace recovers connection state. Called under `sockets`' lock.
    let store: (any RecoveryStore)?
    /// Ends a suspended socket (the namespace's `endSuspended`), set once by the namespace.
    let endSuspended = Mutex<(@Sendable (SuspendedSession) -> Void)?>(nil)

    init(metrics: SocketIOMetrics, filteredEvents: Set<String>, store: (any RecoveryStore)? = nil) {
        self.metrics = metrics
        self.filteredEvents = filteredEvents
        self.store = store
    }

    /// Takes `socket` out and keeps `session` for it in the store, in one step with respect to deliveries:
    /// from now on its events go to the store. False when the store is full (nothing changed).
    func suspend(_ socket: Socket, session: SuspendedSession) -> Bool {
        guard let store else { return false }
        return sockets.withLock { sockets in
            guard store.suspend(session) else { return false }
            sockets[socket.id] = nil
            return true
        }
    }

    enum Restore {
        /// Restored: `socket` receives from now on; send it `history` (stamped already) then `session.missed`.
        case restored(SuspendedSession, history: [[EngineFrame]])
        /// Taken from the store, but not restorable (lost events, an unknown offset): it has ended.
        case ended(SuspendedSession)
        /// No such session (unknown pid, expired, restored already).
        case unknown
    }

    /// Takes the suspended session `pid` and puts `socket` (same id) in its place, in one step with respect to
    /// deliveries: an event is either among the session's missed events or delivered to `socket`, once.
    func restore(pid: String, offset: String?, socket: Socket, continuity: () -> UInt64) -> Restore {
        guard let store else { return .unknown }
        return sockets.withLock { sockets in
            guard let session = store.take(pid: pid) else { return .unknown }
            // Not restorable: its events passed a bound, the adapter may have missed cluster traffic meanwhile
            // (Redis restarted), or the client's offset is not one we can continue from.
            guard session.socket == socket.id, !session.lost, session.continuity == continuity(),
                let history = session.log.events(after: offset)
            else {
                return .ended(session)
            }
            sockets[socket.id] = NIOLoopBound(socket, eventLoop: socket.eventLoop)
            livePids.withLock { $0[pid] = socket.id }
            return .restored(session, history: history)
        }
    }

    func add(_ socket: Socket) {
        let bound = NIOLoopBound(socket, eventLoop: socket.eventLoop)
        sockets.withLock { $0[socket.id] = bound }
    }

    func remove(_ id: SocketID) {
        sockets.withLock { _ = $0.removeValue(forKey: id) }
    }

    /// Removes `socket` unless another socket with its id (a restored one) took its place.
    func remove(_ id: SocketID, ifSocket socket: Socket) {
        sockets.withLock { sockets in
            guard let bound = sockets[id], bound.eventLoop === socket.eventLoop, bound.value === socket else { return }
            sockets[id] = nil
        }
    }

    /// With a ledger: this node's suspended sockets, each with the number of its suspension (so that the end of
    /// a window closes the suspension it was set for and not a later one) and its record.
    private let ledgerSuspensions = Mutex<(next: UInt64, sockets: [SocketID: (number: UInt64, record: RecoveryRecord)])>((1, [:]))

    func suspendedWithLedger(_ record: RecoveryRecord) -> UInt64 {
        ledgerSuspensions.withLock { state in
            let number = state.next
            state.next += 1
            state.sockets[record.socket] = (number, record)
            return number
        }
    }

    /// Ends the suspension `number` of `id` (any, when nil): its record when it was still on (not restored here
    /// since).
    func endSuspension(_ id: SocketID, number: UInt64? = nil, pid: String? = nil) -> RecoveryRecord? {
        ledgerSuspensions.withLock { state in
            guard let current = state.sockets[id], number == nil || current.number == number,
                pid == nil || current.record.pid == pid
            else { return nil }
            state.sockets[id] = nil
            return current.record
        }
    }

    public var ledgerSuspendedCount: Int { ledgerSuspensions.withLock { $0.sockets.count } }

    /// The pids of connected recoverable sockets: a client that comes back with the pid of a socket whose drop
    /// this node has not noticed yet takes it over (see `SocketIOConnection.restore`).
    private let livePids = Mutex<[String: SocketID]>([:])

    func connected(pid: String, socket: SocketID) { livePids.withLock { $0[pid] = socket } }

    func disconnected(pid: String) { livePids.withLock { _ = $0.removeValue(forKey: pid) } }

    /// The connected socket of `pid`, if it is on this node.
    func liveSocket(pid: String) -> NIOLoopBound<Socket>? {
        guard let id = livePids.withLock({ $0[pid] }) else { return nil }
        return sockets.withLock { $0[id] }
    }

    public var count: Int { sockets.withLock { $0.count } }

    public func deliver(_ packet: BroadcastPacket, to ids: [SocketID]) {
        let frames = SocketIOPacket(type: .event, nsp: packet.nsp, data: .array(packet.data)).engineFrames()
        metrics.eventDelivered(packet.eventName, count: ids.count)
        if let name = packet.eventName, filteredEvents.contains(name) {
            forEach(ids, missed: MissedEvent(packet: packet, frames: frames)) { socket in
                if socket.binding?.shouldDeliver(packet, to: socket) ?? true { socket.sendFrames(frames) }
            }
        } else {
            forEach(ids, missed: MissedEvent(packet: nil, frames: frames)) { $0.sendFrames(frames) }
        }
    }

    public func deliver(_ packet: BroadcastPacket, to ids: [SocketID], offset: StreamOffset) {
        let frames = RecoveryLog.appendingOffset(
            offset.description,
            to: SocketIOPacket(type: .event, nsp: packet.nsp, data: .array(packet.data)).engineFrames()
        )
        metrics.eventDelivered(packet.eventName, count: ids.count)
        if let name = packet.eventName, filteredEvents.contains(name) {
            forEach(ids) { socket in
                if socket.binding?.shouldDeliver(packet, to: socket) ?? true { socket.sendLogged(frames) }
            }
        } else {
            forEach(ids) { $0.sendLogged(frames) }
        }
    }

    public func deliverWithAck(
        _ packet: BroadcastPacket,
        to ids: [SocketID],
        onAck: @escaping @Sendable ([PacketValue]) -> Void
    ) {
        guard let event = packet.eventName else { return }
        let arguments = Array(packet.data.dropFirst())
        metrics.eventDelivered(event, count: ids.count)
        forEach(ids) { socket in socket.emit(event, arguments, ack: onAck) }
    }

    public func disconnect(_ ids: [SocketID], close: Bool) {
        // A suspended socket ends too: its client must not come back to it after being disconnected.
        if let store {
            let ended = sockets.withLock { sockets in ids.filter { sockets[$0] == nil }.compactMap { store.take(socket: $0) } }
            if !ended.isEmpty, let end = endSuspended.withLock({ $0 }) {
                for session in ended { session.eventLoop.execute { end(session) } }
            }
        }
        forEach(ids) { socket in
            if close {
                socket.closeSession()
            } else {
                socket.disconnect()
            }
        }
    }

    /// Runs `body` for each listed local socket on its own event loop: one task per loop, however many
    /// recipients it has, inline for the loop we are on. `missed` is kept for the listed sockets that are
    /// suspended.
    private func forEach(_ ids: [SocketID], missed: MissedEvent? = nil, _ body: @escaping @Sendable (Socket) -> Void) {
        var groups: [(any EventLoop, [NIOLoopBound<Socket>])] = []
        sockets.withLock { sockets in
            for id in ids {
                guard let bound = sockets[id] else {
                    if let missed, let store { _ = store.append(missed, to: id) }
                    continue
                }
                if let index = groups.firstIndex(where: { $0.0 === bound.eventLoop }) {
                    groups[index].1.append(bound)
                } else {
                    groups.append((bound.eventLoop, [bound]))
                }
            }
        }
        for (loop, recipients) in groups {
            if loop.inEventLoop {
                for recipient in recipients { body(recipient.value) }
            } else {
                loop.execute {
                    for recipient in recipients { body(recipient.value) }
                }
            }
        }
    }
}

/// A Socket.IO namespace: its sockets on this node, its adapter (rooms, cluster fan-out) and its handler.
public final class Namespace: Sendable {
    public let name: String
    public let adapter: any Adapter
    public let localSockets: LocalSockets
    /// Asks the handler to accept a socket and binds the socket to it (see ``SocketHandlerBinding``).
    let bind: @Sendable (Socket, PacketValue?) throws(ConnectRefusal) -> Void
    /// Asks the handler to restore a socket from its saved state and binds the socket to it.
    let bindRecovered: @Sendable (Socket, PacketValue?, PacketValue) throws(ConnectRefusal) -> Void
    /// Tells the handler a suspended socket has ended.
    let endHandler: @Sendable (SocketID, PacketValue, Namespace, any EventLoop) -> Void
    /// Tells the handler another node (or connection) took one of this node's sockets over.
    let takenHandler: @Sendable (SocketID, PacketValue, Namespace, any EventLoop) -> Void
    /// Connection state recovery, when on.
    public let recovery: RecoveryConfiguration?
    /// Where suspended sockets are kept, when recovery is on.
    public var recoveryStore: (any RecoveryStore)? { localSockets.store }
    let logger: Logger
    public let metrics: SocketIOMetrics

    public init<Handler: NamespaceHandler>(
        name: String,
        handler: Handler,
        logger: Logger,
        metrics: SocketIOMetrics,
        recovery: RecoveryConfiguration? = nil,
        makeAdapter: (String, any LocalDelivery) -> any Adapter
    ) {
        self.name = name
        let shared = SharedHandler(handler)
        self.bind = { socket, auth throws(ConnectRefusal) in try shared.bind(socket, auth: auth) }
        self.bindRecovered = { socket, auth, saved throws(ConnectRefusal) in
            try shared.bindRecovered(socket, auth: auth, saved: saved)
        }
        self.logger = logger
        self.metrics = metrics
        let recovery = recovery.flatMap { $0.window > .zero ? $0 : nil }
        self.recovery = recovery
        let localSockets = LocalSockets(
            metrics: metrics,
            filteredEvents: handler.filteredEvents,
            store: recovery.map { InMemoryRecoveryStore(configuration: $0) }
        )
        self.localSockets = localSockets
        self.adapter = makeAdapter(name, localSockets)
        self.endHandler = { socket, saved, namespace, eventLoop in
            shared.handler.suspendedSocketEnded(socket, saved: saved, namespace: namespace, eventLoop: eventLoop)
        }
        self.takenHandler = { socket, saved, namespace, eventLoop in
            shared.handler.socketTakenOver(socket, saved: saved, namespace: namespace, eventLoop: eventLoop)
        }
        localSockets.endSuspended.withLock { end in
            end = { [weak self] session in self?.endSuspended(session, on: session.eventLoop) }
        }
    }

    /// A suspended socket's session ended (its window closed, or it could not be restored): it leaves its
    /// rooms, and the handler is told.
    func endSuspended(_ session: SuspendedSession, on eventLoop: any EventLoop) {
        adapter.leaveAll(session.socket)
        metrics.recovery(.ended)
        endHandler(session.socket, session.state, self, eventLoop)
    }

    // MARK: recovery with a ledger (across nodes)

    /// Keeps `record` as a suspended socket of this node: its record expires one window from now, and this
    /// node ends the socket then (the usual goodbyes) unless it was restored meanwhile, here or elsewhere.
    func suspendWithLedger(_ record: RecoveryRecord, on eventLoop: any EventLoop) {
        guard let ledger = adapter.ledger, let recovery else { return }
        ledger.save(record, suspended: true)
        metrics.recovery(.suspended)
        let number = localSockets.suspendedWithLedger(record)
        eventLoop.scheduleTask(in: recovery.window) { [weak self] in
            guard let self, self.localSockets.endSuspension(record.socket, number: number) != nil else { return }
            self.releaseSuspended(record, on: eventLoop)
        }
    }

    /// Ends a suspended socket of this node if its record is still ours (or gone: Redis lost it); one taken by
    /// another node is forgotten here.
    func releaseSuspended(_ record: RecoveryRecord, on eventLoop: any EventLoop) {
        guard let ledger = adapter.ledger else { return }
        ledger.release(socket: record.socket).hop(to: eventLoop).whenComplete { [weak self] result in
            guard let self else { return }
            if case .success(.takenOver) = result {
                self.takenOver(record.socket, saved: record.state, on: eventLoop)
            } else {
                self.metrics.recovery(.ended)
                self.endHandler(record.socket, record.state, self, eventLoop)
            }
        }
    }

    func takenOver(_ socket: SocketID, saved: PacketValue, on eventLoop: any EventLoop) {
        takenHandler(socket, saved, self, eventLoop)
    }

    /// Emits to every socket in `rooms` (everyone when empty) except those in `except`, cluster-wide.
    public func emit(_ event: String, _ arguments: [PacketValue], to rooms: [Room] = [], except: [Room] = []) {
        metrics.broadcasts.increment()
        adapter.broadcast(
            BroadcastPacket(nsp: name, data: [.string(event)] + arguments),
            options: BroadcastOptions(rooms: rooms, except: except)
        )
    }
}
