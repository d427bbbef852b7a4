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
}

extension NamespaceHandler {
    public func socketConnected(_ socket: Socket, state: SocketState) {}
    public func socketDisconnected(_ socket: Socket, state: SocketState, reason: String) {}
    public var filteredEvents: Set<String> { [] }
    public func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket, state: SocketState) -> Bool { true }
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
    }
}

/// The sockets of one namespace on this node, reachable from any thread. It is the adapter's delivery sink:
/// a broadcast is encoded once and the same frames go to every recipient, one hop per event loop.
public final class LocalSockets: LocalDelivery {
    private let sockets = Mutex<[SocketID: NIOLoopBound<Socket>]>([:])
    let metrics: SocketIOMetrics
    let filteredEvents: Set<String>

    init(metrics: SocketIOMetrics, filteredEvents: Set<String>) {
        self.metrics = metrics
        self.filteredEvents = filteredEvents
    }

    func add(_ socket: Socket) {
        let bound = NIOLoopBound(socket, eventLoop: socket.eventLoop)
        sockets.withLock { $0[socket.id] = bound }
    }

    func remove(_ id: SocketID) {
        sockets.withLock { _ = $0.removeValue(forKey: id) }
    }

    public var count: Int { sockets.withLock { $0.count } }

    public func deliver(_ packet: BroadcastPacket, to ids: [SocketID]) {
        let frames = SocketIOPacket(type: .event, nsp: packet.nsp, data: .array(packet.data)).engineFrames()
        metrics.eventDelivered(packet.eventName, count: ids.count)
        if let name = packet.eventName, filteredEvents.contains(name) {
            forEach(ids) { socket in
                if socket.binding?.shouldDeliver(packet, to: socket) ?? true { socket.sendFrames(frames) }
            }
        } else {
            deliver(frames, to: ids)
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
        forEach(ids) { socket in
            if close {
                socket.closeSession()
            } else {
                socket.disconnect()
            }
        }
    }

    func deliver(_ frames: [EngineFrame], to ids: [SocketID]) {
        forEach(ids) { $0.sendFrames(frames) }
    }

    /// Runs `body` for each listed local socket on its own event loop: one task per loop, however many
    /// recipients it has, inline for the loop we are on.
    private func forEach(_ ids: [SocketID], _ body: @escaping @Sendable (Socket) -> Void) {
        var groups: [(any EventLoop, [NIOLoopBound<Socket>])] = []
        sockets.withLock { sockets in
            for id in ids {
                guard let bound = sockets[id] else { continue }
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
    let logger: Logger
    public let metrics: SocketIOMetrics

    public init<Handler: NamespaceHandler>(
        name: String,
        handler: Handler,
        logger: Logger,
        metrics: SocketIOMetrics,
        makeAdapter: (String, any LocalDelivery) -> any Adapter
    ) {
        self.name = name
        let shared = SharedHandler(handler)
        self.bind = { socket, auth throws(ConnectRefusal) in try shared.bind(socket, auth: auth) }
        self.logger = logger
        self.metrics = metrics
        let localSockets = LocalSockets(metrics: metrics, filteredEvents: handler.filteredEvents)
        self.localSockets = localSockets
        self.adapter = makeAdapter(name, localSockets)
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
