import NIOCore
import SocketIO

/// Who is in which room, cluster-wide: what the signaling application needs beyond fan-out (the join roster,
/// `user_left` for sockets that vanish, the check that two sockets share a room before a signal passes).
///
/// Every method answers with a future on the `eventLoop` the caller names (its socket's loop), so the caller
/// continues where it was without a hop of its own. The in-memory store answers at once.
public protocol PresenceStore: Sendable {
    /// Starts background work. `nodeLost` is called with the entries of a node that died (its heartbeats stopped),
    /// once cluster-wide, so the caller can announce `user_left` for each.
    func start(nodeLost: @escaping @Sendable ([PresenceEntry]) -> Void) async throws
    func shutdown() async
    /// Whether presence answers for the whole cluster (for `/readyz`).
    var isReady: Bool { get }

    /// Adds the entry and answers the room's members afterwards (the entry included). `isNew` is false when the
    /// socket was already in the room (nothing changed).
    func join(_ entry: PresenceEntry, on eventLoop: any EventLoop) -> EventLoopFuture<(isNew: Bool, members: [PresenceEntry])>
    /// Removes the socket from the room and answers the removed entry, nil when it was not there.
    func leave(room: Room, socket: SocketID, on eventLoop: any EventLoop) -> EventLoopFuture<PresenceEntry?>
    /// How many members a room has, on any node.
    func count(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<Int>
    /// The members of a room, on any node.
    func members(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<[PresenceEntry]>
    /// Whether `socket` is in any of `rooms`, on any node.
    func isMember(_ socket: SocketID, ofAnyOf rooms: [Room], on eventLoop: any EventLoop) -> EventLoopFuture<Bool>

    /// Connection state recovery across nodes: this node takes over an entry another node made (a socket
    /// restored here), without an announcement; from now on it is this node's, as if it had joined here.
    func adopt(_ entry: PresenceEntry)
    /// The opposite: a socket of this node was restored elsewhere; this node forgets the entry without removing
    /// it from the room (the other node has it now).
    func forget(room: Room, socket: SocketID)
}

extension PresenceStore {
    public func start(nodeLost: @escaping @Sendable ([PresenceEntry]) -> Void) async throws {}
    public func shutdown() async {}
    public var isReady: Bool { true }
    public func adopt(_ entry: PresenceEntry) {}
    public func forget(room: Room, socket: SocketID) {}
}
