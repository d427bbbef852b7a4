import CoreMetrics
import EngineIO
import Logging
import NIOCore
import Synchronization

/// What a namespace's application does with its sockets.
public protocol NamespaceHandler: Sendable {
    /// A socket asks to connect with its `auth` payload. Return nil to accept, or the CONNECT_ERROR message.
    func socketWillConnect(_ socket: Socket, auth: PacketValue?) -> String?
    /// The socket is connected (it is in the room of its own id).
    func socketConnected(_ socket: Socket)
    /// An event from the client. `ack` is set when the client asked for an acknowledgement.
    func socket(_ socket: Socket, event: String, arguments: [PacketValue], ack: Ack?)
    /// The socket is gone; `reason` is Socket.IO's (e.g. "transport close", "client namespace disconnect").
    func socketDisconnected(_ socket: Socket, reason: String)

    /// Events whose deliveries ask ``shouldDeliver(_:to:)`` first (all others go straight out).
    var filteredEvents: Set<String> { get }
    /// Whether a broadcast of one of ``filteredEvents`` goes to this socket. Called on the socket's loop.
    func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket) -> Bool
}

extension NamespaceHandler {
    public func socketWillConnect(_ socket: Socket, auth: PacketValue?) -> String? { nil }
    public func socketConnected(_ socket: Socket) {}
    public func socketDisconnected(_ socket: Socket, reason: String) {}
    public var filteredEvents: Set<String> { [] }
    public func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket) -> Bool { true }
}

/// The sockets of one namespace on this node, reachable from any thread. It is the adapter's delivery sink:
/// a broadcast is encoded once and the same frames go to every recipient, one hop per event loop.
public final class LocalSockets: LocalDelivery {
    private let sockets = Mutex<[SocketID: NIOLoopBound<Socket>]>([:])
    let metrics: SocketIOMetrics
    let handler: any NamespaceHandler
    let filteredEvents: Set<String>

    init(metrics: SocketIOMetrics, handler: any NamespaceHandler) {
        self.metrics = metrics
        self.handler = handler
        self.filteredEvents = handler.filteredEvents
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
            let handler = self.handler
            forEach(ids) { socket in
                if handler.shouldDeliver(packet, to: socket) { socket.sendFrames(frames) }
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
    let handler: any NamespaceHandler
    let logger: Logger
    public let metrics: SocketIOMetrics

    public init(
        name: String,
        handler: any NamespaceHandler,
        logger: Logger,
        metrics: SocketIOMetrics,
        makeAdapter: (String, any LocalDelivery) -> any Adapter
    ) {
        self.name = name
        self.handler = handler
        self.logger = logger
        self.metrics = metrics
        let localSockets = LocalSockets(metrics: metrics, handler: handler)
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
