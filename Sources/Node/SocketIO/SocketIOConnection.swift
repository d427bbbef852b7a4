import Adapter
import Logging
import NIOCore

/// The Socket.IO side of one Engine.IO session: decodes packets, reassembles binary packets, and keeps the
/// session's sockets, one per connected namespace. Lives on the session's event loop.
final class SocketIOConnection: EngineSessionDelegate {
    unowned let session: EngineSession
    let namespaces: [String: Namespace]
    private let baseLogger: Logger
    /// Made when something is logged: metadata stored per connection would cost memory on every idle one.
    var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "engine.sid"] = "\(session.sid)"
        return logger
    }
    private var sockets = SocketsByNamespace()
    private var pendingBinary: (packet: SocketIOPacket, attachments: [ByteBuffer])?
    private var connectTimeout: Scheduled<Void>?
    /// Refused CONNECTs so far: at ``maxRefusedConnects`` the session is closed, so one session cannot try
    /// tokens without end.
    private var refusedConnects = 0
    static let maxRefusedConnects = 3

    init(session: EngineSession, namespaces: [String: Namespace], connectTimeout: TimeAmount, logger: Logger) {
        self.session = session
        self.namespaces = namespaces
        self.baseLogger = logger
        // Like the reference: an Engine.IO connection that joins no namespace in time is closed.
        self.connectTimeout = session.eventLoop.scheduleTask(in: connectTimeout) { [weak session] in
            guard let session else { return }
            session.close(reason: .forcedClose)
        }
    }

    func engineSession(_ session: EngineSession, didReceiveText payload: ByteBuffer) {
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
            pendingBinary = (packet, [])
        } else {
            handle(packet)
        }
    }

    func engineSession(_ session: EngineSession, didReceiveBinary payload: ByteBuffer) {
        guard var pending = pendingBinary else {
            return protocolError("unexpected binary attachment")
        }
        pending.attachments.append(payload)
        if pending.attachments.count < pending.packet.attachmentCount {
            pendingBinary = pending
            return
        }
        pendingBinary = nil
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

    func engineSession(_ session: EngineSession, didCloseWithReason reason: EngineSession.CloseReason) {
        connectTimeout?.cancel()
        let sockets = self.sockets
        self.sockets.removeAll()
        for socket in sockets.all { socket.closed(reason: reason.rawValue) }
    }

    private func protocolError(_ reason: String) {
        logger.debug("closing session on a protocol error", metadata: ["error": "\(reason)"])
        session.close(reason: .parseError)
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
            let error = SocketIOPacket(
                type: .connectError,
                nsp: packet.nsp,
                data: .object([("message", "Invalid namespace")])
            )
            session.send(error.engineFrames())
            return
        }
        guard sockets[packet.nsp] == nil else { return }
        let socket = Socket(id: IDGenerator.next(), namespace: namespace, connection: self)
        if let message = namespace.handler.socketWillConnect(socket, auth: packet.data) {
            let error = SocketIOPacket(type: .connectError, nsp: packet.nsp, data: .object([("message", .string(message))]))
            session.send(error.engineFrames())
            refusedConnects += 1
            if refusedConnects >= Self.maxRefusedConnects {
                logger.debug("closing session after \(refusedConnects) refused CONNECTs")
                session.close(reason: .forcedClose)
            }
            return
        }
        connectTimeout?.cancel()
        connectTimeout = nil
        sockets[packet.nsp] = socket
        namespace.localSockets.add(socket)
        namespace.adapter.join(socket.id, rooms: [socket.id])
        session.send(
            SocketIOPacket(type: .connect, nsp: packet.nsp, data: .object([("sid", .string(socket.id))])).engineFrames()
        )
        namespace.handler.socketConnected(socket)
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
