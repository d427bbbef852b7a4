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
///   order from the one that answered last. The clients of one configuration share a lookup: one in flight at a
///   time, and its answer reused for ``lookupReuse`` (a `+switch-master` ends that at once), so a node's
///   reconnect attempts during an outage cost the sentinels at most one question per 100 ms, however many
///   connections the node has.
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

    /// How long an answer of the sentinels is reused by the next connect attempts.
    static let lookupReuse: TimeAmount = .milliseconds(100)

    private struct State {
        var clients: [ObjectIdentifier: @Sendable (RedisAddress) -> Void] = [:]
        var watchers: [RedisSubscriber] = []
        /// Set while the last client's leaving closes the watchers.
        var watchersClosing: EventLoopFuture<Void>?
        var lookup = RedisSentinelLookup<EventLoopFuture<RedisAddress>>(reuse: RedisSentinelMonitor.lookupReuse)
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
        let now = NIODeadline.now()
        let promise = eventLoop.makePromise(of: RedisAddress.self)
        let (reused, generation): (EventLoopFuture<RedisAddress>?, Int) = self.state.withLock { state in
            if let answer = state.lookup.answer(now: now) {
                return (answer, 0)
            }
            return (nil, state.lookup.start(promise.futureResult, now: now))
        }
        if let reused {
            promise.completeWith(reused)
            return promise.futureResult
        }
        let start = self.preferred.load(ordering: .relaxed) % self.sentinels.count
        let order = (0..<self.sentinels.count).map { (start + $0) % self.sentinels.count }
        self.ask(order[...], errors: [], on: eventLoop).whenComplete { result in
            self.state.withLock { $0.lookup.finished(generation, now: .now()) }
            promise.completeWith(result)
        }
        return promise.futureResult
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
            state.watchersClosing = nil
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
    /// The future completes once the watchers are closed when `client` was the last one (or already gone after
    /// being the last one).
    func unregister(_ client: ObjectIdentifier, on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let (watchers, closing): ([RedisSubscriber], EventLoopFuture<Void>?) = self.state.withLock { state in
            let wasRegistered = state.clients.removeValue(forKey: client) != nil
            guard wasRegistered, state.clients.isEmpty, !state.watchers.isEmpty else {
                return ([], state.clients.isEmpty ? state.watchersClosing : nil)
            }
            defer { state.watchers = [] }
            state.watchersClosing = promise.futureResult
            return (state.watchers, nil)
        }
        guard !watchers.isEmpty else {
            promise.succeed()
            return closing.map { $0.hop(to: eventLoop) } ?? eventLoop.makeSucceededVoidFuture()
        }
        promise.completeWith(EventLoopFuture.andAllComplete(watchers.map { $0.close() }, on: eventLoop))
        return promise.futureResult
    }

    private func switchAnnounced(_ message: String, by index: Int, logger: Logger) {
        guard let primary = Self.switchedPrimary(fromMessage: message, masterName: self.masterName) else { return }
        // This sentinel knows the new primary; the others may learn it a little later.
        self.preferred.store(index, ordering: .relaxed)
        self.switches.add(1, ordering: .relaxed)
        self.state.withLock { $0.lookup.invalidate() }
        logger.info("redis sentinel: primary switched", metadata: ["redis.primary": "\(primary)", "redis.master": "\(self.masterName)"])
        let clients = self.state.withLock { Array($0.clients.values) }
        for onSwitch in clients {
            onSwitch(primary)
        }
    }
}

/// When a connect attempt may reuse the sentinels' last answer instead of asking again: while the lookup is in
/// flight, and for `reuse` after it finished, unless a `+switch-master` came since. A plain value: `Answer` is
/// the lookup's future in ``RedisSentinelMonitor``, anything in tests.
struct RedisSentinelLookup<Answer> {
    let reuse: TimeAmount
    private var current: (answer: Answer, generation: Int, finishedAt: NIODeadline?)?
    private var generation = 0

    init(reuse: TimeAmount) {
        self.reuse = reuse
    }

    /// The answer to reuse now, if any.
    func answer(now: NIODeadline) -> Answer? {
        guard let current = self.current else { return nil }
        guard let finishedAt = current.finishedAt else { return current.answer }
        return now - finishedAt < self.reuse ? current.answer : nil
    }

    /// A new lookup started; returns its generation for ``finished(_:now:)``.
    mutating func start(_ answer: Answer, now: NIODeadline) -> Int {
        self.generation += 1
        self.current = (answer, self.generation, nil)
        return self.generation
    }

    /// The lookup of `generation` has its answer (ignored if a newer one started, or it was invalidated).
    mutating func finished(_ generation: Int, now: NIODeadline) {
        guard let current = self.current, current.generation == generation else { return }
        self.current?.finishedAt = now
    }

    /// The primary moved: the next attempt asks again.
    mutating func invalidate() {
        self.current = nil
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
