import NIOCore

/// Where a Redis Cluster is, and how to talk to its nodes.
public struct RedisClusterConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Nodes to ask for the slot map, in order, when no connected master can answer (at start, after losing all).
    public var seeds: [RedisConfiguration]
    /// The slot map is refreshed at most this often (MOVED replies, pushed SUNSUBSCRIBEs and lost connections all
    /// ask for a refresh).
    public var minimumRefreshInterval: TimeAmount = .milliseconds(100)
    /// While a master is unreachable or a subscription is not acknowledged, the map is refreshed this often (a
    /// failover becomes visible in `CLUSTER SLOTS` only once the replica is promoted).
    public var unhealthyRefreshInterval: TimeAmount = .milliseconds(200)
    /// When everything is fine, the map is still refreshed this often (new masters, resharding).
    public var healthyRefreshInterval: TimeAmount = .seconds(10)

    public init(seeds: [RedisConfiguration]) {
        self.seeds = seeds
    }

    /// Reads a comma-separated list of `redis://[[user]:password@]host[:port]` seeds; every other setting (and the
    /// credentials of the nodes found in the map) comes from the first seed and `defaults`.
    public init(urls: String, defaults: RedisConfiguration = RedisConfiguration()) throws(RedisError) {
        let parts = urls.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
        }.map { part -> Substring in
            var part = part
            while let last = part.last, last == " " || last == "\t" { part = part.dropLast() }
            return part
        }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else {
            throw .invalidURL(urls.contains("@") ? "(redacted)" : urls, reason: "expected redis://host:port[,redis://host:port…]")
        }
        var seeds: [RedisConfiguration] = []
        for part in parts {
            var base = defaults
            base.sentinel = nil
            let seed = try RedisConfiguration(url: String(part), defaults: base)
            if let database = seed.database, database != 0 {
                throw .invalidURL(seed.description, reason: "a Redis Cluster has only database 0")
            }
            seeds.append(seed)
        }
        self.init(seeds: seeds)
    }

    /// The settings for a connection to `node`: those of the first seed, at the node's address.
    func configuration(for node: RedisClusterNode) -> RedisConfiguration {
        var configuration = seeds.first ?? RedisConfiguration()
        configuration.host = node.host
        configuration.port = node.port
        configuration.database = nil
        configuration.sentinel = nil
        return configuration
    }

    public var description: String {
        seeds.map { "\($0.host):\($0.port)" }.joined(separator: ",")
    }
}
