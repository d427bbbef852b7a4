import SocketIO

/// The Redis channel names of one namespace in the classic Redis adapter protocol (`createAdapter` of
/// `@socket.io/redis-adapter` 8, and `@socket.io/redis-emitter` 5), for a key prefix (default `socket.io`).
///
/// | purpose | channel (prefix `socket.io`, namespace `/`) |
/// |---|---|
/// | broadcast to no room or to several rooms | `socket.io#/#` |
/// | broadcast to exactly one room `R` | `socket.io#/#R#` |
/// | requests (`PUBSUB NUMSUB` of it counts the nodes) | `socket.io-request#/#` |
/// | responses | `socket.io-response#/#` |
/// | responses to one node | `socket.io-response#/#<uid>#` |
///
/// Every node PSUBSCRIBEs ``broadcastPattern`` and SUBSCRIBEs the request, response and own-uid response channels.
public struct ClusterChannels: Sendable, Hashable {
    public static let defaultPrefix = "socket.io"

    public let prefix: String
    public let nsp: String
    /// `<prefix>#<nsp>#`: broadcasts to everyone or to several rooms.
    public let broadcastChannel: String
    /// `<prefix>-request#<nsp>#`.
    public let requestChannel: String
    /// `<prefix>-response#<nsp>#`.
    public let responseChannel: String

    public init(prefix: String = ClusterChannels.defaultPrefix, nsp: String = "/") {
        self.prefix = prefix
        self.nsp = nsp
        self.broadcastChannel = "\(prefix)#\(nsp)#"
        self.requestChannel = "\(prefix)-request#\(nsp)#"
        self.responseChannel = "\(prefix)-response#\(nsp)#"
    }

    /// `<prefix>#<nsp>#*`: the PSUBSCRIBE pattern that receives every broadcast of the namespace.
    public var broadcastPattern: String { broadcastChannel + "*" }

    /// `<prefix>#<nsp>#<room>#`: broadcasts to exactly this one room (a socket id is a room too).
    public func roomChannel(_ room: Room) -> String {
        "\(broadcastChannel)\(room)#"
    }

    /// `<prefix>-response#<nsp>#<uid>#`: responses meant for one node only.
    public func responseChannel(uid: String) -> String {
        "\(responseChannel)\(uid)#"
    }

    /// Where a broadcast is published: the room's channel when `options` name exactly one room (receivers without
    /// that room drop it unread), the namespace's channel otherwise.
    public func publishChannel(for options: BroadcastOptions) -> String {
        options.rooms.count == 1 ? roomChannel(options.rooms[0]) : broadcastChannel
    }

    /// Splits a broadcast channel `<prefix>#<nsp>#` or `<prefix>#<nsp>#<room>#` into its namespace and room.
    /// nil when `channel` is not a broadcast channel of `prefix` (request and response channels are not).
    ///
    /// The namespace ends at the first `#` after the prefix; the room is everything between it and the final `#`,
    /// so a room name may itself contain `#` (and `<prefix>#<nsp>##` is the channel of the room named "").
    public static func parse(
        _ channel: String,
        prefix: String = ClusterChannels.defaultPrefix
    ) -> (nsp: String, room: Room?)? {
        let utf8 = channel.utf8
        let hash = UInt8(ascii: "#")
        guard utf8.count > prefix.utf8.count, utf8.starts(with: prefix.utf8) else { return nil }
        var index = utf8.index(utf8.startIndex, offsetBy: prefix.utf8.count)
        guard utf8[index] == hash else { return nil }
        index = utf8.index(after: index)
        guard let nspEnd = utf8[index...].firstIndex(of: hash) else { return nil }
        let nsp = String(Substring(utf8[index..<nspEnd]))
        guard !nsp.isEmpty else { return nil }
        let rest = utf8[utf8.index(after: nspEnd)...]
        if rest.isEmpty {
            return (nsp, nil)
        }
        guard rest.last == hash else { return nil }
        let room = String(Substring(rest.dropLast()))
        return (nsp, room)
    }
}
