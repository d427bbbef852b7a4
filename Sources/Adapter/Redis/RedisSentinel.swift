import Logging
import NIOCore
import Synchronization

/// Where to find the Redis primary through Redis Sentinel: the sentinels' addresses and the name they monitor the
/// primary under.
///
/// Set as ``RedisConfiguration/sentinel``: every connection attempt (the first one and each reconnect) then asks
/// the sentinels for the primary (`SENTINEL get-master-addr-by-name`), in order, starting with the last one that
/// answered, and connects to the address of the first answer; after the handshake it sends `ROLE` and gives the
/// connection up (and retries) unless the server says `master`. The configuration's own host and port are not
/// used; its password and database are the primary's.
///
/// The clients that use it also listen for `+switch-master` on every sentinel (``RedisSentinelMonitor``): a
/// connection that is not to the new primary is closed, and its reconnect asks the sentinels again.
public struct RedisSentinelConfiguration: Sendable, Hashable {
    /// The sentinels: address, and AUTH if they need it (no database: sentinels have none).
    public let sentinels: [RedisConfiguration]
    /// The primary's name in the sentinels' configuration (`sentinel monitor <name> …`).
    public let masterName: String
    /// Shared by every copy of this configuration: the `+switch-master` subscriptions and the sentinel that
    /// answered last.
    public let monitor: RedisSentinelMonitor

    public init(sentinels: [RedisConfiguration], masterName: String) {
        precondition(!sentinels.isEmpty, "at least one sentinel")
        self.sentinels = sentinels.map { sentinel in
            var sentinel = sentinel
            sentinel.sentinel = nil
            sentinel.database = nil
            return sentinel
        }
        self.masterName = masterName
        self.monitor = RedisSentinelMonitor(sentinels: self.sentinels, masterName: masterName)
    }

    /// Reads a comma-separated list of `redis://[[user]:password@]host[:port]` (one per sentinel); every other
    /// setting comes from `defaults`.
    public init(urls: String, masterName: String, defaults: RedisConfiguration = RedisConfiguration()) throws(RedisError) {
        let parts = urls.split(separator: ",", omittingEmptySubsequences: false).map(Self.trimmed)
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else {
            throw .invalidURL(urls.contains("@") ? "(redacted)" : urls, reason: "expected redis://host:port[,redis://host:port…]")
        }
        var sentinels: [RedisConfiguration] = []
        for part in parts {
            var base = defaults
            base.sentinel = nil
            let sentinel = try RedisConfiguration(url: part, defaults: base)
            if sentinel.database != nil {
                throw .invalidURL(sentinel.description, reason: "a sentinel has no database")
            }
            sentinels.append(sentinel)
        }
        guard !masterName.isEmpty, !masterName.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) else {
            throw .invalidURL("sentinel master name '\(masterName)'", reason: "it must be non-empty, without spaces")
        }
        self.init(sentinels: sentinels, masterName: masterName)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.sentinels == rhs.sentinels && lhs.masterName == rhs.masterName
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.sentinels)
        hasher.combine(self.masterName)
    }
}

extension RedisSentinelConfiguration {
    fileprivate static func trimmed(_ text: Substring) -> String {
        var text = text
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return String(text)
    }
}

/// A host and port of a Redis server.
public struct RedisAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The sentinel side of ``RedisSentinelConfiguration``, one per configuration (its copies share it).
///
/// - ``primaryAddress(on:)`` asks the sentinels for the primary, each on a short-lived connection of its own, in
///   order from the one that answered last.
/// - While at least one client is registered, one ``RedisSubscriber`` per sentinel listens to `+switch-master`;
///   for our master name, the announcing sentinel becomes the first to ask, and every registered client is told
///   the new address (it closes a connection that is not to it, and reconnects at once).
///
/// Nothing here blocks: the state is behind a mutex that is never held across I/O or a callback.
public final class RedisSentinelMonitor: Sendable {
    public static let switchMasterChannel = "+switch-master"

    let sentinels: [RedisConfiguration]
    let masterName: String
    private let preferred = Atomic<Int>(0)
    private let switches = Atomic<Int>(0)
    private let state = Mutex(State())

    private struct State {
        var clients: [ObjectIdentifier: @Sendable (RedisAddress) -> Void] = [:]
        var watchers: [RedisSubscriber] = []
    }

    init(sentinels: [RedisConfiguration], masterName: String) {
        self.sentinels = sentinels
        self.masterName = masterName
    }

    /// `+switch-master` announcements for our master seen so far (any sentinel; one failover is usually announced
    /// by each of them). Safe from any thread.
    public var switchCount: Int { switches.load(ordering: .relaxed) }

    // MARK: Asking for the primary

    /// The primary's address, from the first sentinel that knows it; fails with ``RedisError/noPrimary(_:reason:)``
    /// when none does.
    func primaryAddress(on eventLoop: any EventLoop) -> EventLoopFuture<RedisAddress> {
        let start = self.preferred.load(ordering: .relaxed) % self.sentinels.count
        let order = (0..<self.sentinels.count).map { (start + $0) % self.sentinels.count }
        return self.ask(order[...], errors: [], on: eventLoop)
    }

    private func ask(_ order: ArraySlice<Int>, errors: [String], on eventLoop: any EventLoop) -> EventLoopFuture<RedisAddress> {
        guard let index = order.first else {
            return eventLoop.makeFailedFuture(RedisError.noPrimary(self.masterName, reason: errors.joined(separator: "; ")))
        }
        let sentinel = self.sentinels[index]
        let command = RedisCommand(["SENTINEL", "get-master-addr-by-name", .string(self.masterName)])
        return sentinel.request(command, on: eventLoop)
            .flatMapThrowing { reply -> RedisAddress in
                guard let address = Self.primaryAddress(fromReply: reply) else {
                    throw RedisError.unexpectedReply(reply)
                }
                self.preferred.store(index, ordering: .relaxed)
                return address
            }
            .flatMapError { error in
                self.ask(order.dropFirst(), errors: errors + ["\(sentinel.host):\(sentinel.port): \(error)"], on: eventLoop)
            }
    }

    /// The reply of `SENTINEL get-master-addr-by-name`: `[ip, port]`, or a nil array for an unknown name.
    static func primaryAddress(fromReply reply: RESPValue) -> RedisAddress? {
        guard let parts = reply.array, parts.count == 2, let host = parts[0].string, !host.isEmpty,
            let port = parts[1].string.flatMap(Int.init), (1...65_535).contains(port)
        else { return nil }
        return RedisAddress(host: host, port: port)
    }

    /// The role in a `ROLE` reply (`["master", offset, replicas]`, `["slave", …]`, `["sentinel", …]`).
    static func role(fromReply reply: RESPValue) -> String? {
        reply.array?.first?.string
    }

    /// The new primary in a `+switch-master` message (`<name> <old ip> <old port> <new ip> <new port>`) when it
    /// is about `masterName`.
    static func switchedPrimary(fromMessage message: String, masterName: String) -> RedisAddress? {
        let fields = message.split(separator: " ")
        guard fields.count == 5, fields[0] == masterName, let port = Int(fields[4]), (1...65_535).contains(port) else {
            return nil
        }
        return RedisAddress(host: String(fields[3]), port: port)
    }

    // MARK: Following +switch-master

    /// Tells `client` about switches from now on (on any thread: the client hops to its loop). The first
    /// registration starts the `+switch-master` subscriptions.
    func register(
        _ client: ObjectIdentifier,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        onSwitch: @escaping @Sendable (RedisAddress) -> Void
    ) {
        let watchers: [RedisSubscriber]? = self.state.withLock { state in
            state.clients[client] = onSwitch
            guard state.watchers.isEmpty else { return nil }
            state.watchers = self.sentinels.enumerated().map { index, sentinel in
                var logger = logger
                logger[metadataKey: "redis.sentinel"] = "\(sentinel.host):\(sentinel.port)"
                let monitorLogger = logger
                return RedisSubscriber(
                    configuration: sentinel,
                    eventLoopGroup: eventLoopGroup,
                    logger: logger,
                    onMessage: { [weak self] _, _, payload in
                        self?.switchAnnounced(String(buffer: payload), by: index, logger: monitorLogger)
                    }
                )
            }
            return state.watchers
        }
        for watcher in watchers ?? [] {
            watcher.subscribe(channels: [Self.switchMasterChannel])
            watcher.start()
        }
    }

    /// Stops telling `client`; the last one out closes the `+switch-master` subscriptions.
    func unregister(_ client: ObjectIdentifier, on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let watchers: [RedisSubscriber] = self.state.withLock { state in
            guard state.clients.removeValue(forKey: client) != nil, state.clients.isEmpty else { return [] }
            defer { state.watchers = [] }
            return state.watchers
        }
        guard !watchers.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        return EventLoopFuture.andAllComplete(watchers.map { $0.close() }, on: eventLoop)
    }

    private func switchAnnounced(_ message: String, by index: Int, logger: Logger) {
        guard let primary = Self.switchedPrimary(fromMessage: message, masterName: self.masterName) else { return }
        // This sentinel knows the new primary; the others may learn it a little later.
        self.preferred.store(index, ordering: .relaxed)
        self.switches.add(1, ordering: .relaxed)
        logger.info("redis sentinel: primary switched", metadata: ["redis.primary": "\(primary)", "redis.master": "\(self.masterName)"])
        let clients = self.state.withLock { Array($0.clients.values) }
        for onSwitch in clients {
            onSwitch(primary)
        }
    }
}

extension RedisConfiguration {
    /// One command on a connection of its own, closed after the reply (or after ``connectTimeout``).
    func request(_ command: RedisCommand, on eventLoop: any EventLoop) -> EventLoopFuture<RESPValue> {
        let timeout = self.connectTimeout
        return self.connect(on: eventLoop).flatMap { channel in
            let reply = channel.eventLoop.makePromise(of: RESPValue.self)
            channel.writeAndFlush(RedisCommandHandler.Request(command: command, replyPromise: reply), promise: nil)
            let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
            return reply.futureResult.always { _ in
                timer.cancel()
                channel.close(promise: nil)
            }
        }
    }
}
