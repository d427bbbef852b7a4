/// A master of a Redis Cluster, as the cluster names it.
public struct RedisClusterNode: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Reads `host:port` (the form of MOVED/ASK replies; an IPv6 host has colons, so the port is after the last
    /// one). An empty host means "the node you asked", given as `defaultHost`.
    public init?(endpoint: Substring, defaultHost: String) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host.isEmpty || host == "?" ? defaultHost : host, port: port)
    }
}

/// Which master owns each of the 16384 hash slots, read from `CLUSTER SLOTS`.
///
/// `CLUSTER SLOTS` answers one entry per contiguous range: `[start, end, [host, port, id, …], replica…]`; the
/// first node is the master. A host of `""` or `"?"` means the node we asked (Redis does not know its own address
/// as others see it), given as `defaultHost`. Slots that no entry covers have no owner (a cluster being set up, or
/// a failed master with no replica): commands for them cannot be sent, and ``isComplete`` is false.
public struct RedisClusterSlotMap: Sendable, Hashable {
    /// The masters, in order of first appearance.
    public private(set) var masters: [RedisClusterNode] = []
    /// For each slot, an index into ``masters``, or -1.
    private var owners: [Int16] = Array(repeating: -1, count: RedisClusterSlot.count)

    public init() {}

    /// Reads a `CLUSTER SLOTS` reply.
    public init(clusterSlots reply: RESPValue, defaultHost: String) throws(RedisError) {
        guard let ranges = reply.array else { throw RedisError.unexpectedReply(reply) }
        for range in ranges {
            guard let fields = range.array, fields.count >= 3,
                let start = fields[0].integer, let end = fields[1].integer,
                start >= 0, end >= start, end < RedisClusterSlot.count,
                let master = fields[2].array, master.count >= 2,
                let host = master[0].string, let port = master[1].integer, (1...65535).contains(port)
            else { throw RedisError.unexpectedReply(range) }
            let node = RedisClusterNode(host: host.isEmpty || host == "?" ? defaultHost : host, port: Int(port))
            self.assign(Int(start)...Int(end), to: node)
        }
    }

    /// Gives `slots` to `node` (tests, and ranges read from a reply).
    public mutating func assign(_ slots: ClosedRange<Int>, to node: RedisClusterNode) {
        let index: Int
        if let known = masters.firstIndex(of: node) {
            index = known
        } else {
            index = masters.count
            masters.append(node)
        }
        for slot in slots { owners[slot] = Int16(index) }
    }

    /// The master that owns `slot`, if any.
    public func master(ofSlot slot: Int) -> RedisClusterNode? {
        guard slot >= 0, slot < owners.count else { return nil }
        let index = owners[slot]
        return index < 0 ? nil : masters[Int(index)]
    }

    /// The master that owns the slot of `key` (or of a shard channel).
    public func master(of key: String) -> RedisClusterNode? {
        master(ofSlot: RedisClusterSlot.of(key))
    }

    /// Every slot has an owner.
    public var isComplete: Bool { !owners.contains(-1) }

    /// How many slots each master owns (logs, metrics).
    public var slotCounts: [RedisClusterNode: Int] {
        var counts: [RedisClusterNode: Int] = [:]
        for index in owners where index >= 0 { counts[masters[Int(index)], default: 0] += 1 }
        return counts
    }
}

/// A `-MOVED` or `-ASK` error reply: the slot lives (for good, or during a migration for this one command)
/// on another node.
public enum RedisClusterRedirection: Sendable, Hashable {
    /// `MOVED <slot> <host:port>`: the slot has a new owner; the map is out of date.
    case moved(slot: Int, to: RedisClusterNode)
    /// `ASK <slot> <host:port>`: during a migration, this key is already on the importing node: send `ASKING`
    /// and then the command there, once; the map stays as it is.
    case ask(slot: Int, to: RedisClusterNode)

    /// Reads the text of an error reply (without the leading `-`); nil for any other error. An empty host (Redis
    /// 7 may answer `:port` when it does not know its address) means `defaultHost`.
    public init?(errorMessage message: String, defaultHost: String) {
        let parts = message.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, let slot = Int(parts[1]), slot >= 0, slot < RedisClusterSlot.count,
            let node = RedisClusterNode(endpoint: parts[2], defaultHost: defaultHost)
        else { return nil }
        switch parts[0] {
        case "MOVED": self = .moved(slot: slot, to: node)
        case "ASK": self = .ask(slot: slot, to: node)
        default: return nil
        }
    }

    /// Reads a failed command's error, if it is a redirection.
    public init?(_ error: any Error, defaultHost: String) {
        guard case RedisError.errorReply(let message)? = error as? RedisError else { return nil }
        self.init(errorMessage: message, defaultHost: defaultHost)
    }

    public var target: RedisClusterNode {
        switch self {
        case .moved(_, let node), .ask(_, let node): return node
        }
    }
}
