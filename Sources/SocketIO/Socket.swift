import EngineIO
import Logging
import NIOCore

// Threading and lifetime: the rule for this target is in README.md, next to this file. In short, a socket lives
// on its Engine.IO session's event loop and every method of it runs there; other threads reach it through
// `NIOLoopBound` (as `LocalSockets` does), and it holds its connection `weak`.

/// Answers a client's acknowledgement request, once.
public struct Ack {
    let id: Int
    let socket: Socket

    public func callAsFunction(_ arguments: PacketValue...) { send(arguments) }

    public func send(_ arguments: [PacketValue]) {
        socket.sendPacket(SocketIOPacket(type: .ack, nsp: socket.namespace.name, id: id, data: .array(arguments)))
    }
}

/// A Socket.IO socket: one client connected to one namespace. Lives on its Engine.IO session's event loop;
/// every method must be called there (see the threading rule above).
public final class Socket {
    public let id: SocketID
    public let namespace: Namespace
    /// The loop of the socket's session; stays valid after the session is gone.
    public let eventLoop: any EventLoop
    /// The `token` query parameter of the Engine.IO handshake, if any.
    public let handshakeToken: String?
    /// The client's address as the engine resolved it (the TCP peer, or what a trusted proxy said).
    public let clientAddress: String?
    /// The events this client may still send: shared by every socket of the Engine.IO session, so a
    /// disconnect and reconnect of a namespace (`41`, `40`) does not refill it.
    public let budget: EventBudget
    /// Made when something is logged: metadata stored per socket would cost memory on every idle one.
    public var logger: Logger {
        var logger = namespace.logger
        logger[metadataKey: "socket.id"] = "\(id)"
        return logger
    }
    /// The namespace's handler with the application's state for this socket; set when the socket is accepted.
    var binding: (any SocketHandlerBinding)?
    public private(set) var isConnected = true
    /// True for a socket restored from a suspended one (connection state recovery): same id, rooms and state.
    public internal(set) var recovered = false
    /// Its offsets and last events, when the namespace recovers connection state on this node only.
    var recovery: RecoveryLog?
    /// Its record, when the namespace's adapter keeps a ``RecoveryLedger`` (recovery across nodes).
    var record: RecoveryRecord?
    /// Set while a restored socket's missed events are read back: what arrives meanwhile waits here.
    private var replayBuffer: [[EngineFrame]]?
    private var recordSaveScheduled = false

    /// Nil once the session is gone: the network decides the connection's lifetime, not the socket.
    private(set) weak var connection: SocketIOConnection?
    private var acks: [Int: PendingAck] = [:]
    private var nextAckID = 0

    private struct PendingAck {
        let callback: ([PacketValue]) -> Void
        let timeout: Scheduled<Void>?
    }

    init(id: SocketID, namespace: Namespace, connection: SocketIOConnection, recovered: Bool = false) {
        self.recovered = recovered
        self.id = id
        self.namespace = namespace
        self.connection = connection
        self.eventLoop = connection.eventLoop
        self.handshakeToken = connection.handshakeToken
        self.clientAddress = connection.clientAddress
        self.budget = connection.budget
    }

    public var adapter: any Adapter { namespace.adapter }

    /// Sends an event to this client only; `ack` is called with the client's answer, or never when the client
    /// does not answer within the connection's ack timeout, is gone, or has too many unanswered requests.
    public func emit(_ event: String, _ arguments: [PacketValue], ack: (([PacketValue]) -> Void)? = nil) {
        guard isConnected else { return }
        var packet = SocketIOPacket(type: .event, nsp: namespace.name, data: .array([.string(event)] + arguments))
        namespace.metrics.eventDelivered(event, count: 1)
        if let ack, let limits = connection?.limits {
            guard acks.count < limits.maxPendingAcks else {
                // A client that never answers cannot make the server hold an unbounded number of callbacks.
                namespace.metrics.ackDropped()
                return
            }
            let id = nextAckID
            nextAckID &+= 1
            packet.id = id
            let timeout = eventLoop.assumeIsolated().scheduleTask(in: limits.ackTimeout) { [weak self] in
                guard let self, self.acks.removeValue(forKey: id) != nil else { return }
                self.namespace.metrics.ackDropped()
            }
            acks[id] = PendingAck(callback: ack, timeout: timeout)
            return sendPacket(packet)
        }
        // Like the reference, an event that asks for an ack carries no offset (its last argument is the app's).
        sendFrames(packet.engineFrames())
    }

    func sendPacket(_ packet: SocketIOPacket) {
        guard isConnected, let connection else { return }
        connection.send(packet.engineFrames())
    }

    /// Sends an EVENT's frames, stamped with the next offset when the socket is recoverable.
    func sendFrames(_ frames: [EngineFrame]) {
        guard isConnected, let connection else { return }
        if recovery != nil, let configuration = namespace.recovery {
            connection.send(
                recovery!.stamp(frames, historyEvents: configuration.historyEvents, historyBytes: configuration.historyBytes)
            )
        } else {
            connection.send(frames)
        }
    }

    /// Sends a log entry's frames (stamped with its offset already); held back while missed events are replayed.
    func sendLogged(_ frames: [EngineFrame]) {
        guard isConnected, let connection else { return }
        if replayBuffer != nil {
            replayBuffer!.append(frames)
        } else {
            connection.send(frames)
        }
    }

    /// Holds what the log delivers until ``finishReplay(_:)``.
    func startReplay() { replayBuffer = [] }

    /// Sends the replayed events, then what arrived meanwhile.
    func finishReplay(_ replayed: [[EngineFrame]]) {
        guard let connection else { return }
        let held = replayBuffer ?? []
        replayBuffer = nil
        for frames in replayed { connection.send(frames) }
        for frames in held { connection.send(frames) }
    }

    /// Joins `room`; does nothing once the socket is disconnected (work finishing after a disconnect must not
    /// put a gone socket back in a room: nothing would take it out again).
    public func join(_ room: Room) {
        guard isConnected else { return }
        if record != nil {
            if let mark = adapter.joinMarked(id, rooms: [room]) { record?.rooms[room] = mark }
            recoveryStateChanged()
        } else {
            adapter.join(id, rooms: [room])
        }
    }

    public func leave(_ room: Room) {
        adapter.leave(id, room: room)
        if record?.rooms.removeValue(forKey: room) != nil { recoveryStateChanged() }
    }

    /// The application's recovery state changed (``NamespaceHandler/recoveryState(_:state:)``): with a ledger,
    /// the socket's record is written again (once per loop tick, however many changes).
    public func recoveryStateChanged() {
        guard record != nil, isConnected, !recordSaveScheduled else { return }
        recordSaveScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            recordSaveScheduled = false
            saveRecord()
        }
    }

    /// Writes the socket's record to the ledger, with the application's state now.
    func saveRecord() {
        guard isConnected, var record, let ledger = adapter.ledger, let state = binding?.recoveryState(self) else { return }
        record.state = state
        self.record = record
        ledger.save(record, suspended: false)
    }
    public var rooms: Set<Room> { adapter.rooms(of: id) }

    /// Emits to everyone in `rooms` except this socket (`socket.to(room).emit`); everyone else when `rooms` is empty
    /// (`socket.broadcast.emit`).
    public func broadcast(_ event: String, _ arguments: [PacketValue], to rooms: [Room]) {
        namespace.emit(event, arguments, to: rooms, except: [id])
    }

    /// Disconnects from the namespace (sends DISCONNECT to the client).
    public func disconnect() {
        guard isConnected else { return }
        sendPacket(SocketIOPacket(type: .disconnect, nsp: namespace.name))
        connection?.socketDidDisconnect(self)
        closed(reason: "server namespace disconnect")
    }

    /// Closes the client's whole Engine.IO session (every namespace), if it is still there.
    public func closeSession() {
        guard isConnected else { return }
        connection?.closeSession()
    }

    func receivedAck(id: Int, arguments: [PacketValue]) {
        guard let pending = acks.removeValue(forKey: id) else { return }
        pending.timeout?.cancel()
        pending.callback(arguments)
    }

    func received(event: String, arguments: [PacketValue], ackID: Int?) {
        namespace.metrics.eventReceived(event)
        binding?.received(self, event: event, arguments: arguments, ack: ackID.map { Ack(id: $0, socket: self) })
    }

    /// The socket is gone from its connection. With `recoverable` (a transport drop) and recovery on, it is
    /// suspended instead of ended when the handler gives a state to save and the store has room.
    func closed(reason: String, recoverable: Bool = false) {
        guard isConnected else { return }
        isConnected = false
        for pending in acks.values { pending.timeout?.cancel() }
        acks.removeAll()
        if let pid = recovery?.pid ?? record?.pid { namespace.localSockets.disconnected(pid: pid) }
        if let record, let ledger = adapter.ledger {
            return closedWithLedger(record, ledger: ledger, reason: reason, recoverable: recoverable)
        }
        if recoverable, suspend() { return }
        binding?.disconnected(self, reason: reason)
        adapter.leaveAll(id)
        namespace.localSockets.remove(id)
    }

    /// With a ledger: the socket leaves this node's rooms at once (the log keeps its events). A transport drop
    /// suspends it (its record expires a window later, and this node ends it then unless another node or a new
    /// connection here took it); any other end releases the record first, and the goodbyes go out only if it
    /// was still ours: a socket another node took over lives on there, and ends here without a word.
    private func closedWithLedger(_ record: RecoveryRecord, ledger: any RecoveryLedger, reason: String, recoverable: Bool) {
        adapter.leaveAll(id)
        namespace.localSockets.remove(id, ifSocket: self)
        guard let binding else { return }
        if recoverable, let state = binding.recoveryState(self) {
            var record = record
            record.state = state
            binding.suspended(self)
            namespace.suspendWithLedger(record, on: eventLoop)
            return
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let saved = binding.recoveryState(self)
        ledger.release(socket: id).hop(to: eventLoop).whenComplete { result in
            let socket = bound.value
            if case .success(.takenOver) = result {
                socket.binding?.suspended(socket)
                socket.namespace.takenOver(socket.id, saved: saved ?? .null, on: socket.eventLoop)
            } else {
                socket.binding?.disconnected(socket, reason: reason)
            }
        }
    }

    /// The client answered a ping: the events stamped before its previous answer are surely delivered.
    func pongReceived() {
        recovery?.pongReceived()
    }

        /// Suspends the socket: it stays in its rooms, and its events are kept by the recovery store until its
    /// client comes back or the window closes.
    private func suspend() -> Bool {
        guard let log = recovery, let configuration = namespace.recovery, let binding,
            let state = binding.recoveryState(self)
        else { return false }
        let deadline = eventLoop.now + configuration.window
        let session = SuspendedSession(
            socket: id,
            nsp: namespace.name,
            rooms: Array(adapter.rooms(of: id)),
            state: state,
            log: log,
            continuity: adapter.continuity,
            eventLoop: eventLoop,
            deadline: deadline,
            bytes: log.historyBytes
        )
        let namespace = self.namespace
        guard namespace.localSockets.suspend(self, session: session) else { return false }
        namespace.metrics.recovery(.suspended)
        binding.suspended(self)
        let pid = log.pid
        let eventLoop = self.eventLoop
        eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            guard let session = namespace.recoveryStore?.expire(pid: pid, deadline: deadline) else { return }
            namespace.endSuspended(session, on: eventLoop)
        }
        return true
    }
}

@available(*, unavailable)
extension Socket: Sendable {}

/// Events per second with bursts for one Engine.IO session (all its sockets), and, when the server has one, for
/// the client's address as well. Lives on the session's loop.
public final class EventBudget {
    private var bucket: TokenBucket
    private let address: (limiter: any AddressBudget, key: String)?

    init(rate: Double, burst: Double, address: (limiter: any AddressBudget, key: String)? = nil) {
        self.bucket = TokenBucket(rate: rate, capacity: burst)
        self.address = address
    }

    /// Takes one event's token; false when the session (or its address) has spent its budget.
    public func take() -> Bool {
        guard bucket.take() else { return false }
        if let address, !address.limiter.take(address.key) { return false }
        return true
    }
}

@available(*, unavailable)
extension EventBudget: Sendable {}

/// A budget shared by every session of one client address (any thread).
public protocol AddressBudget: Sendable {
    func take(_ address: String) -> Bool
}

extension AddressRateLimiter: AddressBudget {
    public func take(_ address: String) -> Bool { allow(address) }
}
