import Synchronization



/// Which local socket is in which room, in both directions. A plain value: the owner serializes access.
public struct RoomRegistry: Sendable {
    private var members: [Room: Set<SocketID>] = [:]
    private var roomsOfSocket: [SocketID: Set<Room>] = [:]
    /// With a ``RecoveryLedger``: the id of the last log entry whose recipients were taken from this registry.
    /// A join notes it (its mark) under the same lock, so entries up to it went out without the socket.
    public var logPosition = StreamOffset(milliseconds: 0, sequence: 0)

    public init() {}

    /// What changed for the room, so a cluster adapter can subscribe on the first member and unsubscribe
    /// after the last one.
    public enum Change: Sendable, Hashable {
        case roomCreated(Room)
        case roomDeleted(Room)
    }

    @discardableResult
    public mutating func join(_ socket: SocketID, room: Room) -> Change? {
        roomsOfSocket[socket, default: []].insert(room)
        let (inserted, _) = members[room, default: []].insert(socket)
        if inserted, members[room]?.count == 1 { return .roomCreated(room) }
        return nil
    }

    @discardableResult
    public mutating func leave(_ socket: SocketID, room: Room) -> Change? {
        roomsOfSocket[socket]?.remove(room)
        if roomsOfSocket[socket]?.isEmpty == true { roomsOfSocket[socket] = nil }
        guard members[room]?.remove(socket) != nil else { return nil }
        if members[room]?.isEmpty == true {
            members[room] = nil
            return .roomDeleted(room)
        }
        return nil
    }

    public mutating func leaveAll(_ socket: SocketID) -> [Change] {
        guard let rooms = roomsOfSocket.removeValue(forKey: socket) else { return [] }
        var changes: [Change] = []
        for room in rooms {
            members[room]?.remove(socket)
            if members[room]?.isEmpty == true {
                members[room] = nil
                changes.append(.roomDeleted(room))
            }
        }
        return changes
    }

    public func rooms(of socket: SocketID) -> Set<Room> { roomsOfSocket[socket] ?? [] }

    public func members(of room: Room) -> Set<SocketID> { members[room] ?? [] }

    public func hasRoom(_ room: Room) -> Bool { members[room] != nil }

    public var allRooms: Dictionary<Room, Set<SocketID>>.Keys { members.keys }

    public var socketCount: Int { roomsOfSocket.count }

    /// Every local socket (each is in its own id's room at least).
    public var socketIDs: Dictionary<SocketID, Set<Room>>.Keys { roomsOfSocket.keys }

    /// The local sockets that a broadcast with these options reaches, each once, in no particular order.
    public func recipients(of options: BroadcastOptions) -> [SocketID] {
        var excluded: Set<SocketID> = []
        for room in options.except {
            if let sockets = members[room] { excluded.formUnion(sockets) }
        }
        if options.rooms.isEmpty {
            return roomsOfSocket.keys.filter { !excluded.contains($0) }
        }
        if options.rooms.count == 1 {
            guard let sockets = members[options.rooms[0]] else { return [] }
            return excluded.isEmpty ? Array(sockets) : sockets.filter { !excluded.contains($0) }
        }
        var seen: Set<SocketID> = []
        var result: [SocketID] = []
        for room in options.rooms {
            for socket in members[room] ?? [] where !excluded.contains(socket) && seen.insert(socket).inserted {
                result.append(socket)
            }
        }
        return result
    }

    public func localSockets(in rooms: Set<Room>) -> Set<SocketID> {
        if rooms.isEmpty { return Set(roomsOfSocket.keys) }
        var result: Set<SocketID> = []
        for room in rooms { result.formUnion(members[room] ?? []) }
        return result
    }
}

/// A node's room memberships behind a mutex that guards only the registry (nothing is delivered while it is
/// held). Shared by every adapter, which reads recipients from it and hears of rooms created and removed.
public final class LockedRoomRegistry: Sendable {
    private let registry = Mutex(RoomRegistry())

    public init() {}

    /// Runs `body` with the registry locked: compute under the lock, act (deliver, publish) after it.
    public func withLock<Result>(_ body: (inout RoomRegistry) throws -> Result) rethrows -> Result {
        try registry.withLock { try body(&$0) }
    }
}

/// An adapter whose local membership is a ``LockedRoomRegistry``: the membership half of ``Adapter`` comes from
/// here, and the adapter is told of each room that got its first local member or lost its last one (a cluster
/// adapter subscribes to or unsubscribes from the room's channel then).
public protocol RoomRegistryAdapter: Adapter {
    var registry: LockedRoomRegistry { get }
    /// Called after the registry is unlocked, with the rooms created and removed by one membership change.
    func roomsChanged(_ changes: [RoomRegistry.Change])
}

extension RoomRegistryAdapter {
    public func join(_ socket: SocketID, rooms: [Room]) {
        let changes = registry.withLock { registry in rooms.compactMap { registry.join(socket, room: $0) } }
        if !changes.isEmpty { roomsChanged(changes) }
    }

    public func leave(_ socket: SocketID, room: Room) {
        if let change = registry.withLock({ $0.leave(socket, room: room) }) { roomsChanged([change]) }
    }

    public func leaveAll(_ socket: SocketID) {
        let changes = registry.withLock { $0.leaveAll(socket) }
        if !changes.isEmpty { roomsChanged(changes) }
    }

    public func rooms(of socket: SocketID) -> Set<Room> {
        registry.withLock { $0.rooms(of: socket) }
    }

    public func localSockets(in rooms: Set<Room>) -> Set<SocketID> {
        registry.withLock { $0.localSockets(in: rooms) }
    }

    public var localRoomCount: Int { registry.withLock { $0.allRooms.count } }
}
