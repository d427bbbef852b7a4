import Adapter
import Logging
import NIOCore

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
/// every method must be called there.
public final class Socket {
    public let id: SocketID
    public let namespace: Namespace
    /// Made when something is logged: metadata stored per socket would cost memory on every idle one.
    public var logger: Logger {
        var logger = namespace.logger
        logger[metadataKey: "socket.id"] = "\(id)"
        return logger
    }
    /// The application's own state for this socket.
    public var attachment: AnyObject?
    public private(set) var isConnected = true

    unowned let connection: SocketIOConnection
    private var acks: [Int: ([PacketValue]) -> Void] = [:]
    private var nextAckID = 0

    init(id: SocketID, namespace: Namespace, connection: SocketIOConnection) {
        self.id = id
        self.namespace = namespace
        self.connection = connection
    }

    public var eventLoop: any EventLoop { connection.session.eventLoop }
    /// The `token` query parameter of the Engine.IO handshake, if any.
    public var handshakeToken: String? { connection.session.handshakeToken }
    public var adapter: any Adapter { namespace.adapter }

    /// Sends an event to this client only; `ack` is called with the client's answer.
    public func emit(_ event: String, _ arguments: [PacketValue], ack: (([PacketValue]) -> Void)? = nil) {
        var packet = SocketIOPacket(type: .event, nsp: namespace.name, data: .array([.string(event)] + arguments))
        namespace.metrics.eventDelivered(event, count: 1)
        if let ack {
            packet.id = nextAckID
            acks[nextAckID] = ack
            nextAckID += 1
        }
        sendPacket(packet)
    }

    func sendPacket(_ packet: SocketIOPacket) {
        guard isConnected else { return }
        connection.session.send(packet.engineFrames())
    }

    func sendFrames(_ frames: [EngineFrame]) {
        guard isConnected else { return }
        connection.session.send(frames)
    }

    public func join(_ room: Room) { adapter.join(id, rooms: [room]) }
    public func leave(_ room: Room) { adapter.leave(id, room: room) }
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
        connection.socketDidDisconnect(self)
        closed(reason: "server namespace disconnect")
    }

    func receivedAck(id: Int, arguments: [PacketValue]) {
        guard let callback = acks.removeValue(forKey: id) else { return }
        callback(arguments)
    }

    func received(event: String, arguments: [PacketValue], ackID: Int?) {
        namespace.metrics.eventReceived(event)
        namespace.handler.socket(self, event: event, arguments: arguments, ack: ackID.map { Ack(id: $0, socket: self) })
    }

    func closed(reason: String) {
        guard isConnected else { return }
        isConnected = false
        acks.removeAll()
        namespace.handler.socketDisconnected(self, reason: reason)
        adapter.leaveAll(id)
        namespace.localSockets.remove(id)
    }
}

@available(*, unavailable)
extension Socket: Sendable {}
