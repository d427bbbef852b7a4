import NIOCore

/// A Socket.IO socket id: 20 characters of URL-safe base64, distinct from the Engine.IO session id.
public typealias SocketID = String

/// A room name. Every socket is also in the room named after its own id.
public typealias Room = String

/// Flags that travel with a broadcast (the same names as Socket.IO's).
public struct BroadcastFlags: Sendable, Hashable {
    /// Deliver only to this node's sockets (`io.local`): never published to the cluster.
    public var local: Bool
    /// The message may be dropped when a recipient is not ready for it.
    public var volatile: Bool

    public init(local: Bool = false, volatile: Bool = false) {
        self.local = local
        self.volatile = volatile
    }
}

/// Who a broadcast goes to: the sockets in any of `rooms` (all sockets when empty), minus the sockets in any of
/// `except`.
public struct BroadcastOptions: Sendable, Hashable {
    public var rooms: [Room]
    public var except: [Room]
    public var flags: BroadcastFlags

    public init(rooms: [Room] = [], except: [Room] = [], flags: BroadcastFlags = BroadcastFlags()) {
        self.rooms = rooms
        self.except = except
        self.flags = flags
    }
}

/// The Socket.IO packet an adapter fans out: an EVENT with its data (event name first), in a namespace.
public struct BroadcastPacket: Sendable, Hashable {
    public var nsp: String
    /// The event name followed by its arguments.
    public var data: [PacketValue]

    public init(nsp: String = "/", data: [PacketValue]) {
        self.nsp = nsp
        self.data = data
    }

    public init(nsp: String = "/", event: String, _ arguments: PacketValue...) {
        self.init(nsp: nsp, data: [.string(event)] + arguments)
    }

    public var eventName: String? { data.first?.stringValue }
}

/// Where an adapter hands the packets meant for sockets of this node. The namespace implements it: it encodes
/// the packet once and writes the same bytes to each listed socket.
public protocol LocalDelivery: AnyObject, Sendable {
    func deliver(_ packet: BroadcastPacket, to sockets: [SocketID])
    /// Disconnects local sockets (a cluster's `disconnectSockets`); with `close`, their whole connection.
    func disconnect(_ sockets: [SocketID], close: Bool)
    /// Sends `packet` to each listed socket asking for an acknowledgement; `onAck` gets each client's answer
    /// (a cluster's broadcast with acks, e.g. `io.timeout(…).emit(…, cb)` on a Node.js node).
    func deliverWithAck(_ packet: BroadcastPacket, to sockets: [SocketID], onAck: @escaping @Sendable ([PacketValue]) -> Void)
    /// Delivers an entry read from the namespace's ``RecoveryLedger``: `offset`, its id in the log, is the
    /// offset every recipient gets with it.
    func deliver(_ packet: BroadcastPacket, to sockets: [SocketID], offset: StreamOffset)
}

extension LocalDelivery {
    public func deliver(_ packet: BroadcastPacket, to sockets: [SocketID], offset: StreamOffset) {
        deliver(packet, to: sockets)
    }
}

/// Room membership and fan-out for one namespace, the way socket.io-adapter defines it.
///
/// The server talks to rooms only through this protocol, so a cluster adapter (Redis) replaces the in-memory
/// one without changes to the server. Methods may be called from any thread.
public protocol Adapter: AnyObject, Sendable {
    /// The namespace this adapter serves.
    var nsp: String { get }

    /// Starts background work (connections, subscriptions). The in-memory adapter has none.
    func start() async throws
    /// Stops background work.
    func shutdown() async

    /// Adds a local socket to rooms (a socket joins the room of its own id first).
    func join(_ socket: SocketID, rooms: [Room])
    /// Removes a local socket from one room.
    func leave(_ socket: SocketID, room: Room)
    /// Removes a local socket from every room (on disconnect).
    func leaveAll(_ socket: SocketID)
    /// The rooms a local socket is in.
    func rooms(of socket: SocketID) -> Set<Room>
    /// The local sockets in any of `rooms` (all local sockets when empty).
    func localSockets(in rooms: Set<Room>) -> Set<SocketID>

    /// Sends `packet` to the matching sockets of the whole cluster, each once.
    func broadcast(_ packet: BroadcastPacket, options: BroadcastOptions)

    /// True when the adapter is ready to serve cluster traffic (for `/readyz`).
    var isReady: Bool { get }

    /// One line per part the adapter depends on and its state, for the body of `/readyz` (a Redis connection, each
    /// shard of a Redis Cluster). Safe from any thread.
    var readinessDetails: [String] { get }

    /// Rooms with local members (socket-id rooms included).
    var localRoomCount: Int { get }

    /// Changes whenever this node may have missed cluster traffic (a Redis connection dropped). Connection state
    /// recovery restores a socket only when it has not changed during the socket's suspension: a replay with a
    /// hole in it is not presented as complete.
    var continuity: UInt64 { get }

    /// The log and records that make connection state recovery work across nodes, when the adapter keeps them
    /// (see ``RecoveryLedger``). With a ledger, broadcasts reach local sockets through the log, in its order.
    var ledger: (any RecoveryLedger)? { get }
    /// Joins a local socket to rooms and returns the position in the log at that moment, atomically with
    /// respect to the deliveries of log entries (nil without a ledger).
    func joinMarked(_ socket: SocketID, rooms: [Room]) -> StreamOffset?
}

extension Adapter {
    public var readinessDetails: [String] { [] }
    public func start() async throws {}
    public func shutdown() async {}
    public var isReady: Bool { true }
    public var continuity: UInt64 { 0 }
    public var ledger: (any RecoveryLedger)? { nil }
    public func joinMarked(_ socket: SocketID, rooms: [Room]) -> StreamOffset? {
        join(socket, rooms: rooms)
        return nil
    }
}
