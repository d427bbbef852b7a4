import NIOCore

/// Where a Redis server is and how to talk to it.
///
/// Read one from a URL with ``init(url:)``: `redis://[[username]:password@]host[:port][/db]`.
public struct RedisConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    /// With a password, every new connection starts with `AUTH [username] password`.
    public var username: String?
    public var password: String?
    /// With a database, every new connection sends `SELECT database` (pub/sub ignores databases).
    public var database: Int?
    /// How long a TCP connect may take before it counts as a failed attempt.
    public var connectTimeout: TimeAmount
    /// The delays between reconnect attempts.
    public var backoff: RedisBackoff
    /// After this long without any reply a connection sends a PING, and after twice this long it counts as dead and
    /// is replaced. `nil` turns the check off (then a frozen server goes unnoticed until TCP gives up).
    public var healthCheckInterval: TimeAmount?
    /// Commands that may wait for replies on one connection; more fail at once with
    /// ``RedisError/tooManyPendingCommands(limit:)`` rather than queueing without bound.
    public var maximumPendingCommands: Int
    /// Find the primary through Redis Sentinel instead of at ``host``:``port`` (which are then not used).
    public var sentinel: RedisSentinelConfiguration?

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int? = nil,
        connectTimeout: TimeAmount = .seconds(5),
        backoff: RedisBackoff = RedisBackoff(),
        healthCheckInterval: TimeAmount? = .seconds(5),
        maximumPendingCommands: Int = 65_536,
        sentinel: RedisSentinelConfiguration? = nil
    ) {
        precondition(maximumPendingCommands > 0, "maximumPendingCommands must be positive")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.backoff = backoff
        self.healthCheckInterval = healthCheckInterval
        self.maximumPendingCommands = maximumPendingCommands
        self.sentinel = sentinel
    }

    /// The commands that open every connection: AUTH and SELECT when configured, then PING, so that a connection
    /// counts as up only once the server answers (a frozen server still completes TCP handshakes).
    var handshake: [RedisCommand] {
        var commands: [RedisCommand] = []
        if let password = self.password {
            if let username = self.username {
                commands.append(RedisCommand(["AUTH", .string(username), .string(password)]))
            } else {
                commands.append(RedisCommand(["AUTH", .string(password)]))
            }
        }
        if let database = self.database {
            commands.append(RedisCommand(["SELECT", .integer(database)]))
        }
        commands.append(RedisCommand(["PING"]))
        return commands
    }
}

extension RedisConfiguration: CustomStringConvertible {
    /// The server address and database, never the password.
    public var description: String {
        if let sentinel = self.sentinel {
            let sentinels = sentinel.sentinels.map(\.description).joined(separator: ",")
            let auth = self.password == nil ? "" : " (with a password)"
            return "primary '\(sentinel.masterName)'\(auth)" + (self.database.map { " db \($0)" } ?? "")
                + " via sentinels \(sentinels)"
        }
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        let auth = self.password == nil ? "" : "\(self.username ?? ""):***@"
        return "redis://\(auth)\(host):\(self.port)" + (self.database.map { "/\($0)" } ?? "")
    }
}
