import EngineIO
import Logging
import NIOCore

/// Limits of the Socket.IO layer, per Engine.IO session.
public struct SocketIOLimits: Sendable {
    /// Attachments one binary packet may announce.
    public var maxAttachments = 10
    /// Bytes the attachments of one binary packet may hold together (the engine's max payload by default).
    public var maxAttachmentBytes = 1_000_000
    /// Time allowed for the attachments of a binary packet to arrive after its header.
    public var binaryTimeout: TimeAmount = .seconds(10)
    /// How long the server waits for a client's answer to an event it sent with an ack.
    public var ackTimeout: TimeAmount = .seconds(10)
    /// Unanswered acks one socket may have; beyond it, new ones are not asked for.
    public var maxPendingAcks = 32
    /// CONNECTs refused on one session (bad token, unknown namespace, rate) before the session is closed.
    public var maxFailedConnects = 3
    /// Events (CONNECT included) per second per session, and the burst: the session's `EventBudget`.
    public var eventsPerSecond = 50.0
    public var eventBurst = 100.0
    /// Events (CONNECT included) per second of all the sessions of one client address, and the burst; 0 = no
    /// per-address budget. Sized for a NAT with many users, it stops one address that opens many sessions.
    public var addressEventsPerSecond = 2_000.0
    public var addressEventBurst = 4_000.0

    public init() {}
}

/// The Socket.IO side of one Engine.IO session: decodes packets, reassembles binary packets, and keeps the
/// session's sockets, one per connected namespace. Lives on the session's event loop (see Socket.swift for the
/// threading and lifetime rule).
package final class SocketIOConnection: EngineSessionDelegate {
    /// Nil once the session is gone (the session holds this connection, not the reverse).
    private(set) weak var session: EngineSession?
    let eventLoop: any EventLoop
    let handshakeToken: String?
    let clientAddress: String?
    let budget: EventBudget
    let limits: SocketIOLimits
    let namespaces: [String: Namespace]
    private let baseLogger: Logger
    private let sid: String
    /// Made when something is logged: metadata stored per connection would cost memory on every idle one.
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "engine.sid"] = "\(sid)"
        return logger
    }
    private var sockets = SocketsByNamespace()
    private var pendingBinary: PendingBinary?
    private var connectTimeout: Scheduled<Void>?
    private var failedConnects = 0

    private struct PendingBinary {
        var packet: SocketIOPacket
        var attachments: [ByteBuffer] = []
        var bytes = 0
        let timeout: Scheduled<Void>
    }

    package init(
        session: EngineSession,
        namespaces: [String: Namespace],
        connectTimeout: TimeAmount,
        limits: SocketIOLimits = SocketIOLimits(),
        addressBudget: (any AddressBudget)? = nil,
        logger: Logger
    ) {
        self.session = session
        self.sid = session.sid
        self.eventLoop = session.eventLoop
        self.handshakeToken = session.handshakeToken
        self.clientAddress = session.clientAddress
        self.limits = limits
        self.budget = EventBudget(
            rate: limits.eventsPerSecond,
            burst: limits.eventBurst,
            address: addressBudget.flatMap { limiter in session.clientKey.map { (limiter, $0) } }
        )
        self.namespaces = namespaces
        self.baseLogger = logger
        // Like the reference: an Engine.IO connection that joins no namespace in time is closed.
        self.connectTimeout = session.eventLoop.assumeIsolated().scheduleTask(in: connectTimeout) { [weak session] in
            guard let session else { return }
            session.close(reason: .forcedClose)
        }
    }

    func send(_ frames: [EngineFrame]) {
        session?.send(frames)
    }

    func closeSession() {
        session?.close(reason: .forcedClose)
    }

    /// Closes the session as a lost transport would (its sockets are suspended when recoverable): their client
    /// came back on another session.
    func dropTransport() {
        session?.close(reason: .transportClose)
    }

    package func engineSession(_ session: EngineSession, didReceiveText payload: ByteBuffer) {
        if pendingBinary != nil {
            return protocolError("text packet while reconstructing a binary packet")
        }
        let packet: SocketIOPacket
        do {
            packet = try SocketIOPacket.decode(payload)
        } catch {
            return protocolError(error.description)
        }
        if (packet.type == .binaryEvent || packet.type == .binaryAck) && packet.attachmentCount > 0 {
            guard packet.attachmentCount <= limits.maxAttachments else {
                return protocolError("\(packet.attachmentCount) attachments announced, at most \(limits.maxAttachments)")
            }
            let timeout = eventLoop.assumeIsolated().scheduleTask(in: limits.binaryTimeout) { [weak self] in
                guard let self, self.pendingBinary != nil else { return }
                self.protocolError("the attachments of a binary packet did not arrive in time")
            }
            pendingBinary = PendingBinary(packet: packet, timeout: timeout)
        } else {
            handle(packet)
        }
    }

    package func engineSession(_ session: EngineSession, didReceiveBinary payload: ByteBuffer) {
        guard var pending = pendingBinary else {
            return protocolError("unexpected binary attachment")
        }
        pendingBinary = nil  // one reference: appending does not copy the array
        pending.bytes += payload.readableBytes
        guard pending.bytes <= limits.maxAttachmentBytes else {
            pending.timeout.cancel()
            return protocolError("the attachments of a binary packet exceed \(limits.maxAttachmentBytes) bytes")
        }
        pending.attachments.append(payload)
        if pending.attachments.count < pending.packet.attachmentCount {
            pendingBinary = pending
            return
        }
        pending.timeout.cancel()
        var packet = pending.packet
        do {
            packet.data = try packet.data.map { value throws(SocketIOPacket.DecodeError) in
                try SocketIOPacket.insertAttachments(value, pending.attachments)
            }
        } catch {
            return protocolError(error.description)
        }
        handle(packet)
    }

    package func engineSession(_ session: EngineSession, didCloseWithReason reason: EngineSession.CloseReason) {
        connectTimeout?.cancel()
        connectTimeout = nil
        pendingBinary?.timeout.cancel()
        pendingBinary = nil
        let sockets = self.sockets
        self.sockets.removeAll()
        // Only a transport drop is one the client did not choose and may come back from (connection state
        // recovery); a shutdown is not, as this node's suspended sockets would go with it, unless they are in
        // the cluster's ledger.
        let recoverable = reason == .transportClose || reason == .transportError || reason == .pingTimeout
        for socket in sockets.all {
            // With a ledger, a node that shuts down (a drain) leaves its sockets to be restored elsewhere.
            let shutdown = reason == .serverShutdown && socket.record != nil
            socket.closed(reason: reason.rawValue, recoverable: recoverable || shutdown)
        }
    }

    package func engineSessionDidReceivePong(_ session: EngineSession) {
        for socket in sockets.all { socket.pongReceived() }
    }

        private func protocolError(_ reason: String) {
        logger.debug("closing session on a protocol error", metadata: ["error": "\(reason)"])
        session?.close(reason: .parseError)
    }

    private func handle(_ packet: SocketIOPacket) {
        switch packet.type {
        case .connect:
            connect(packet)
        case .disconnect:
            if let socket = sockets.removeValue(forKey: packet.nsp) {
                socket.closed(reason: "client namespace disconnect")
            }
        case .event, .binaryEvent:
            guard let socket = sockets[packet.nsp] else {
                return protocolError("event for a namespace that is not connected")
            }
            guard case .array(var arguments)? = packet.data else { return }
            let name: String
            switch arguments.removeFirst() {
            case .string(let s): name = s
            case .number(let n): name = PacketValue.number(n).jsonString
            default: return
            }
            // Reserved names are a protocol error, as for the reference parser.
            guard !Self.reservedEvents.contains(name) else { return protocolError("reserved event name \(name)") }
            socket.received(event: name, arguments: arguments, ackID: packet.id)
        case .ack, .binaryAck:
            guard let socket = sockets[packet.nsp], let id = packet.id, case .array(let arguments)? = packet.data
            else { return }
            socket.receivedAck(id: id, arguments: arguments)
        case .connectError:
            protocolError("CONNECT_ERROR from a client")
        }
    }

    private func connect(_ packet: SocketIOPacket) {
        guard let namespace = namespaces[packet.nsp] else {
            return refuseConnect(packet.nsp, "Invalid namespace")
        }
        guard sockets[packet.nsp] == nil else { return }
        // A CONNECT costs an event: `40`/`41` in a loop cannot make sockets (and application work) for free.
        guard budget.take() else {
            namespace.metrics.error("rate_limited")
            return refuseConnect(packet.nsp, "Too many connection attempts")
        }
        if namespace.recovery != nil, let pid = packet.data?["pid"]?.stringValue {
            // An offset that is there but not a string is nobody's: "" never parses, so it is unknown.
            let offset = packet.data?["offset"].flatMap { $0 == .null ? nil : ($0.stringValue ?? "") }
            switch restore(namespace, pid: pid, offset: offset, auth: packet.data) {
            case .restored, .refused, .waiting: return
            case .newSession: break
            }
        }
        connectNew(namespace, nsp: packet.nsp, auth: packet.data)
    }

    /// Accepts a CONNECT as a new socket (a new id).
    private func connectNew(_ namespace: Namespace, nsp: String, auth: PacketValue?) {
        let socket = Socket(id: IDGenerator.next(), namespace: namespace, connection: self)
        do throws(ConnectRefusal) {
            try namespace.bind(socket, auth)
        } catch {
            return refuseConnect(nsp, error.message)
        }
        connectTimeout?.cancel()
        connectTimeout = nil
        sockets[nsp] = socket
        namespace.localSockets.add(socket)
        var answer: [(key: String, value: PacketValue)] = [("sid", .string(socket.id))]
        if namespace.recovery != nil, namespace.adapter.ledger != nil,
            let mark = namespace.adapter.joinMarked(socket.id, rooms: [socket.id])
        {
            let pid = RecoveryRecord.makePid(socket: socket.id)
            socket.record = RecoveryRecord(socket: socket.id, pid: pid, rooms: [socket.id: mark], since: mark, state: .null)
            namespace.localSockets.connected(pid: pid, socket: socket.id)
            answer.append(("pid", .string(pid)))
            send(SocketIOPacket(type: .connect, nsp: nsp, data: .object(answer)).engineFrames())
            socket.binding?.connected(socket)
            socket.saveRecord()
            return
        }
        namespace.adapter.join(socket.id, rooms: [socket.id])
        if namespace.recovery != nil {
            let log = RecoveryLog.make()
            socket.recovery = log
            namespace.localSockets.connected(pid: log.pid, socket: socket.id)
            answer.append(("pid", .string(log.pid)))
        }
        send(SocketIOPacket(type: .connect, nsp: nsp, data: .object(answer)).engineFrames())
        socket.binding?.connected(socket)
    }

    private enum RestoreOutcome {
        case restored, refused, newSession
        /// The pid's socket is still connected here (its drop not noticed yet): its session is being closed as a
        /// lost transport, and the CONNECT is handled again once it is suspended.
        case waiting
    }

    /// A CONNECT with `{pid, offset}`: restores the suspended socket when it can be restored whole, answers the
    /// handler's refusal (e.g. a token no longer valid; the session stays suspended), or falls back to a new
    /// session (unknown or expired pid, lost events, an offset not ours: never a partial replay).
    private func restore(
        _ namespace: Namespace,
        pid: String,
        offset: String?,
        auth: PacketValue?,
        takeOver: Bool = true
    ) -> RestoreOutcome {
        if takeOver, let live = namespace.localSockets.liveSocket(pid: pid) {
            // The client is back before this node saw its old transport go (a silent network loss, a polling GET
            // that just stopped): end the old transport as lost, then restore from the suspended socket.
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            let ourLoop = eventLoop
            live.eventLoop.execute {
                let old = live.value
                if old.connection !== bound.value { old.connection?.dropTransport() }
                ourLoop.execute {
                    let connection = bound.value
                    guard connection.session != nil, connection.sockets[namespace.name] == nil else { return }
                    switch connection.restore(namespace, pid: pid, offset: offset, auth: auth, takeOver: false) {
                    case .restored, .refused, .waiting: return
                    case .newSession: connection.connectNew(namespace, nsp: namespace.name, auth: auth)
                    }
                }
            }
            return .waiting
        }
        if let ledger = namespace.adapter.ledger {
            return restoreWithLedger(namespace, ledger: ledger, pid: pid, offset: offset, auth: auth)
        }
        guard let store = namespace.recoveryStore, let saved = store.peek(pid: pid), saved.nsp == namespace.name else {
            namespace.metrics.recovery(.refused)
            return .newSession
        }
        let socket = Socket(id: saved.socket, namespace: namespace, connection: self, recovered: true)
        do throws(ConnectRefusal) {
            try namespace.bindRecovered(socket, auth, saved.state)
        } catch {
            refuseConnect(namespace.name, error.message)
            return .refused
        }
        let adapter = namespace.adapter
        switch namespace.localSockets.restore(pid: pid, offset: offset, socket: socket, continuity: { adapter.continuity }) {
        case .unknown:
            namespace.metrics.recovery(.refused)
            return .newSession
        case .ended(let session):
            namespace.metrics.recovery(.refused)
            namespace.endSuspended(session, on: eventLoop)
            return .newSession
        case .restored(let session, let history):
            namespace.metrics.recovery(.restored)
            connectTimeout?.cancel()
            connectTimeout = nil
            socket.recovery = session.log
            sockets[namespace.name] = socket
            namespace.adapter.join(socket.id, rooms: [socket.id] + session.rooms)
            let answer = PacketValue.object([("sid", .string(socket.id)), ("pid", .string(pid))])
            send(SocketIOPacket(type: .connect, nsp: namespace.name, data: answer).engineFrames())
            // What the client missed, in order, before anything new: the events it may not have received
            // before the drop (stamped already), then those kept while it was away.
            for frames in history { send(frames) }
            for event in session.missed {
                if let packet = event.packet, !(socket.binding?.shouldDeliver(packet, to: socket) ?? true) { continue }
                socket.sendFrames(event.frames)
            }
            socket.binding?.connected(socket)
            return .restored
        }
    }

    /// A CONNECT with `{pid, offset}` in a namespace with a ledger: claims the socket's record (from whichever
    /// node had it), joins its rooms here noting the log's position, reads what the log has between the
    /// client's offset and that position, and sends the CONNECT answer, the missed events the socket would
    /// have received, then what arrived meanwhile. Falls back to a new session when there is no record, or
    /// the client's place is no longer in the log (then the old socket ends, with its goodbyes).
    private func restoreWithLedger(
        _ namespace: Namespace,
        ledger: any RecoveryLedger,
        pid: String,
        offset: String?,
        auth: PacketValue?
    ) -> RestoreOutcome {
        guard let socketID = RecoveryRecord.socket(inPid: pid), let recovery = namespace.recovery else {
            namespace.metrics.recovery(.refused)
            return .newSession
        }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let eventLoop = self.eventLoop
        ledger.claim(socket: socketID, pid: pid).hop(to: eventLoop).whenComplete { result in
            let connection = bound.value
            guard case .success(let claimed?) = result else {
                namespace.metrics.recovery(.refused)
                // Suspended here but its record is gone (Redis restarted and lost it): it cannot be restored, and
                // it ends now rather than at the end of its window.
                if case .success = result, let suspended = namespace.localSockets.endSuspension(socketID, pid: pid) {
                    namespace.releaseSuspended(suspended, on: eventLoop)
                }
                connection.connectNewIfStillWanted(namespace, auth: auth)
                return
            }
            // Restored here from now on: a suspension of this socket on this node is over.
            _ = namespace.localSockets.endSuspension(socketID, pid: pid)
            guard connection.session != nil, connection.sockets[namespace.name] == nil else {
                // The client went away meanwhile: the socket is this node's now, suspended.
                namespace.suspendWithLedger(claimed, on: eventLoop)
                return
            }
            connection.restore(namespace, ledger: ledger, record: claimed, offset: offset, auth: auth, recovery: recovery)
        }
        return .waiting
    }

    private func connectNewIfStillWanted(_ namespace: Namespace, auth: PacketValue?) {
        guard session != nil, sockets[namespace.name] == nil else { return }
        connectNew(namespace, nsp: namespace.name, auth: auth)
    }

    private func restore(
        _ namespace: Namespace,
        ledger: any RecoveryLedger,
        record: RecoveryRecord,
        offset: String?,
        auth: PacketValue?,
        recovery: RecoveryConfiguration
    ) {
        let socket = Socket(id: record.socket, namespace: namespace, connection: self, recovered: true)
        do throws(ConnectRefusal) {
            try namespace.bindRecovered(socket, auth, record.state)
        } catch {
            // A refusal (a token no longer valid) leaves the socket suspended, now on this node.
            namespace.suspendWithLedger(record, on: eventLoop)
            refuseConnect(namespace.name, error.message)
            return
        }
        // The client's place: its offset, or where the socket started when it saw no event yet.
        let from: StreamOffset? = offset.map { StreamOffset($0) } ?? record.since
        guard let from else {
            namespace.metrics.recovery(.refused)
            namespace.releaseSuspended(record, on: eventLoop)
            connectNew(namespace, nsp: namespace.name, auth: auth)
            return
        }
        connectTimeout?.cancel()
        connectTimeout = nil
        // The rooms the record names, each with the mark it joined with (a replay starts after it); from now on
        // the log delivers to this socket here, held back until the replay is out.
        socket.startReplay()
        sockets[namespace.name] = socket
        namespace.localSockets.add(socket)
        namespace.localSockets.connected(pid: record.pid, socket: socket.id)
        let rooms = Array(record.rooms.keys)
        let through = namespace.adapter.joinMarked(socket.id, rooms: rooms) ?? from
        socket.record = record
        let bound = NIOLoopBound((self, socket), eventLoop: eventLoop)
        let eventLoop = self.eventLoop
        let wanted: @Sendable (LedgerEntry) -> Bool = { [record] entry in record.receives(entry.id, options: entry.options) }
        ledger.entries(after: from, through: through, limit: recovery.maxEvents, where: wanted).hop(to: eventLoop)
            .whenComplete { result in
                let (connection, socket) = bound.value
                connection.finishRestore(namespace, socket: socket, ledger: ledger, record: record, auth: auth, missed: result)
            }
    }

    /// The log was read for a restored socket: sends the CONNECT answer, the missed events and what arrived
    /// meanwhile; or, when the client's place is not in the log, ends the socket and starts a new session.
    private func finishRestore(
        _ namespace: Namespace,
        socket: Socket,
        ledger: any RecoveryLedger,
        record: RecoveryRecord,
        auth: PacketValue?,
        missed: Result<[LedgerEntry]?, any Error>
    ) {
        // Gone again while the log was read: it was suspended (or ended) by the close already.
        guard socket.isConnected else { return }
        guard case .success(let entries?) = missed else {
            logger.debug("recovery: the client's place is not in the log", metadata: ["result": "\(missed)"])
            // Not restorable whole: the socket ends (leaves its rooms here, goodbyes), the client starts anew.
            namespace.metrics.recovery(.refused)
            socket.record = nil
            if sockets[namespace.name] === socket { sockets[namespace.name] = nil }
            socket.closed(reason: "recovery failed")
            _ = ledger.release(socket: socket.id)
            connectNewIfStillWanted(namespace, auth: auth)
            return
        }
        namespace.metrics.recovery(.restored)
        let answer = PacketValue.object([("sid", .string(socket.id)), ("pid", .string(record.pid))])
        send(SocketIOPacket(type: .connect, nsp: namespace.name, data: answer).engineFrames())
        var replayed: [[EngineFrame]] = []
        for entry in entries {
            if let name = entry.packet.eventName, namespace.localSockets.filteredEvents.contains(name),
                !(socket.binding?.shouldDeliver(entry.packet, to: socket) ?? true)
            {
                continue
            }
            replayed.append(
                RecoveryLog.appendingOffset(
                    entry.id.description,
                    to: SocketIOPacket(type: .event, nsp: namespace.name, data: .array(entry.packet.data)).engineFrames()
                )
            )
        }
        socket.finishReplay(replayed)
        socket.binding?.connected(socket)
        socket.saveRecord()
    }

    /// Answers a CONNECT with CONNECT_ERROR; a session that keeps failing is closed.
    private func refuseConnect(_ nsp: String, _ message: String) {
        send(SocketIOPacket(type: .connectError, nsp: nsp, data: .object([("message", .string(message))])).engineFrames())
        failedConnects += 1
        if failedConnects >= limits.maxFailedConnects {
            logger.debug("closing session after failed CONNECTs", metadata: ["count": "\(failedConnects)"])
            session?.close(reason: .forcedClose)
        }
    }

    static let reservedEvents: Set<String> = [
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    ]

    func socketDidDisconnect(_ socket: Socket) {
        if sockets[socket.namespace.name] === socket { sockets[socket.namespace.name] = nil }
    }
}

@available(*, unavailable)
extension SocketIOConnection: Sendable {}

/// A connection's sockets by namespace. Nearly every connection has one socket, on `/`: it gets a stored
/// property, so an idle connection allocates no dictionary.
struct SocketsByNamespace {
    private var main: Socket?
    private var others: [String: Socket] = [:]

    subscript(nsp: String) -> Socket? {
        get { nsp == "/" ? main : others[nsp] }
        set {
            if nsp == "/" { main = newValue } else { others[nsp] = newValue }
        }
    }

    mutating func removeValue(forKey nsp: String) -> Socket? {
        defer { self[nsp] = nil }
        return self[nsp]
    }

    mutating func removeAll() {
        main = nil
        others.removeAll()
    }

    var all: [Socket] { (main.map { [$0] } ?? []) + Array(others.values) }
}
