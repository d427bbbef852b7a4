import SocketIO

/// One socket in one room, with the name it joined under: what `user_joined`, `user_left` and the join roster say
/// about a peer.
public struct PresenceEntry: Sendable, Hashable {
    public var room: Room
    public var socket: SocketID
    public var personName: String

    public init(room: Room, socket: SocketID, personName: String) {
        self.room = room
        self.socket = socket
        self.personName = personName
    }
}

/// The local part of presence: the entries of this node's own sockets. A plain value; the owner serializes access.
public struct LocalPresence: Sendable {
    private var rooms: [Room: [SocketID: String]] = [:]

    public init() {}

    /// Adds an entry; false when the socket was already in the room.
    public mutating func join(_ entry: PresenceEntry) -> Bool {
        if rooms[entry.room]?[entry.socket] != nil { return false }
        rooms[entry.room, default: [:]][entry.socket] = entry.personName
        return true
    }

    /// Removes an entry and returns it; nil when the socket was not in the room.
    public mutating func leave(room: Room, socket: SocketID) -> PresenceEntry? {
        guard let name = rooms[room]?.removeValue(forKey: socket) else { return nil }
        if rooms[room]?.isEmpty == true { rooms[room] = nil }
        return PresenceEntry(room: room, socket: socket, personName: name)
    }

    public func members(of room: Room) -> [PresenceEntry] {
        (rooms[room] ?? [:]).map { PresenceEntry(room: room, socket: $0.key, personName: $0.value) }
    }

    public func contains(room: Room, socket: SocketID) -> Bool { rooms[room]?[socket] != nil }

    public func count(of room: Room) -> Int { rooms[room]?.count ?? 0 }

    public var all: [PresenceEntry] {
        rooms.flatMap { room, members in members.map { PresenceEntry(room: room, socket: $0.key, personName: $0.value) } }
    }
}
