import SocketIO

/// The shard channel names of one namespace in the sharded Redis adapter protocol (`createShardedAdapter` of
/// `@socket.io/redis-adapter` 8.3.0, `subscriptionMode: "dynamic"`), for a prefix (default `socket.io`):
///
/// | purpose | shard channel (prefix `socket.io`, namespace `/`) |
/// |---|---|
/// | the namespace: broadcasts to no room, several rooms, one socket id, with acks; requests | `socket.io#/#` |
/// | broadcasts to exactly one (public) room `R`, without acks | `socket.io#/#R#` |
/// | responses to the node with uid `U` | `socket.io#/#U#` |
///
/// In dynamic mode a room whose name is 20 UTF-16 code units long is taken for a socket id (a private room) and
/// has no channel of its own: broadcasts to it go to the namespace channel. Node tests `room.length === 20`, a
/// JavaScript length, hence UTF-16. See `Tests/AdapterTests/Fixtures/sharded/`.
///
/// In `dynamic-private` mode (`privateRoomChannels`) every room has its own channel, socket ids too: a signal to
/// one socket then goes to that socket's channel, on the master that owns its slot, and reaches only the node
/// that holds the socket, where in dynamic mode it goes to the namespace channel, which is on one master and read
/// by every node. The cost is one SSUBSCRIBE per connecting socket. Every node of a cluster must use the same mode.
public struct ShardedChannels: Sendable, Hashable {
    public let prefix: String
    public let nsp: String
    /// `<prefix>#<nsp>#`.
    public let namespaceChannel: String
    /// `dynamic-private` mode: socket ids have channels of their own too.
    public let privateRoomChannels: Bool

    public init(prefix: String = ClusterChannels.defaultPrefix, nsp: String = "/", privateRoomChannels: Bool = false) {
        self.prefix = prefix
        self.nsp = nsp
        self.privateRoomChannels = privateRoomChannels
        self.namespaceChannel = "\(prefix)#\(nsp)#"
    }

    /// `<prefix>#<nsp>#<room>#`.
    public func roomChannel(_ room: Room) -> String {
        "\(namespaceChannel)\(room)#"
    }

    /// `<prefix>#<nsp>#<uid>#`: where responses to the node `uid` go.
    public func responseChannel(uid: String) -> String {
        "\(namespaceChannel)\(uid)#"
    }

    /// Whether `room` has a channel of its own (dynamic mode: every room that does not look like a socket id;
    /// dynamic-private: every room). A node subscribes to it while the room has local members.
    public func hasOwnChannel(_ room: Room) -> Bool {
        privateRoomChannels || !Self.looksLikeSocketID(room)
    }

    /// Node's test for a private room: 20 UTF-16 code units.
    public static func looksLikeSocketID(_ room: Room) -> Bool {
        room.utf16.count == 20
    }

    /// Where a broadcast without acks goes: the room's channel for exactly one room with a channel of its own,
    /// else the namespace channel.
    public func publishChannel(for options: BroadcastOptions) -> String {
        if options.rooms.count == 1, hasOwnChannel(options.rooms[0]) {
            return roomChannel(options.rooms[0])
        }
        return namespaceChannel
    }
}
