import Logging
import NIOCore
import Synchronization

/// A client of a Redis Cluster: commands and shard channels routed to the master that owns their hash slot.
///
/// It reads the slot map (`CLUSTER SLOTS`) from a connected master or a seed, and keeps one command connection
/// (``RedisConnection``) per master, plus one subscriber connection (``RedisSubscriber``) per master when it has
/// a message handler. Each of those reconnects by itself (``RedisReconnectDriver``); this class only decides where
/// things go:
///
/// - a command goes to the owner of its key's slot (the key is the first argument, or the `routingKey` given);
///   `-MOVED` refreshes the map and sends the command once more to the node named; `-ASK` sends `ASKING` and the
///   command to the node named, once, without touching the map;
/// - a shard channel is SSUBSCRIBEd on the owner of its slot; the placement rules (one master per channel,
///   moves when the owner changes) are ``RedisClusterSubscriptions``; messages are delivered only from the master
///   a channel is placed on, so two subscriptions never deliver the same message;
/// - the map is refreshed at once on MOVED and when a master's connection drops or cannot be made; every
///   ``RedisClusterConfiguration/unhealthyRefreshInterval`` while something is not well (a master unreachable, a
///   subscription not acknowledged: Redis pushed a SUNSUBSCRIBE because its slot moved, or refused it with MOVED);
///   and every ``RedisClusterConfiguration/healthyRefreshInterval`` otherwise. Masters that leave the map are
///   closed.
///
/// All state lives on ``eventLoop``; the shard connections are made on that loop too, so their callbacks need no
/// hop and no lock. Nothing blocks: every Redis call returns a future.
public final class RedisClusterClient: Sendable {
    /// Receives a shard channel's message, on ``eventLoop``.
    public typealias MessageHandler = @Sendable (_ channel: String, _ payload: ByteBuffer) -> Void

    public let eventLoop: any EventLoop
    public let configuration: RedisClusterConfiguration
    private let logger: Logger
    private let onMessage: MessageHandler?
    private let onEvent: (@Sendable (RedisConnectionEvent) -> Void)?
    private let state: NIOLoopBoundBox<State>
    private let readyFlag = Atomic<Bool>(false)
    /// The masters and their connections as last seen on the loop, for ``shardStates`` (any thread).
    private let shardSnapshot = Mutex<(mapLoaded: Bool, complete: Bool, shards: [RedisClusterShardState])>((false, false, []))
    private let connectedFlag = Atomic<Bool>(false)
    private let tallies: Tallies

    /// Through swift-metrics, named with the adapter metrics' prefix: `<prefix>_redis_cluster_map_refreshes_total`,
    /// `…_map_changes_total`, `…_moved_total`, `…_ask_total`; reconnects count in the adapter's
    /// `<prefix>_redis_reconnects_total`.
    private final class Tallies: Sendable {
        let refreshes: RedisAdapterMetrics.Tally
        let moved: RedisAdapterMetrics.Tally
        let ask: RedisAdapterMetrics.Tally
        let reconnects: RedisAdapterMetrics.Tally
        let mapChanges: RedisAdapterMetrics.Tally
        /// The adapter's metrics, whose `connectionLosses` a lost master connection counts.
        let adapter: RedisAdapterMetrics

        init(_ metrics: RedisAdapterMetrics) {
            adapter = metrics
            let prefix = metrics.labelPrefix
            refreshes = .init("\(prefix)_redis_cluster_map_refreshes_total")
            mapChanges = .init("\(prefix)_redis_cluster_map_changes_total")
            moved = .init("\(prefix)_redis_cluster_moved_total")
            ask = .init("\(prefix)_redis_cluster_ask_total")
            reconnects = metrics.reconnects
        }
    }

    private struct Shard {
        let connection: RedisConnection
        let subscriber: RedisSubscriber?
    }

    private struct State {
        var map = RedisClusterSlotMap()
        var mapLoaded = false
        var shards: [RedisClusterNode: Shard] = [:]
        var subscriptions = RedisClusterSubscriptions()
        var started = false
        var closed = false
        var refreshInFlight = false
        var refreshAgain = false
        var lastRefresh = NIODeadline.uptimeNanoseconds(0)
        var refreshTimer: RefreshTimer?
        var wasConnected = false
        var everConnected = false
        /// Map reads that failed in a row (logged on the first, then one in fifty).
        var failedReads = 0
    }

    /// Makes a client; nothing happens until ``start()``.
    /// - Parameters:
    ///   - onEvent: `.connected` when every master of the map has a command connection (again), `.disconnected`
    ///     when one is lost, `.readinessChanged`, `.closed`; on ``eventLoop``.
    ///   - onMessage: when given, the client keeps a subscriber connection per master and hands it the messages of
    ///     the shard channels asked for with ``ssubscribe(_:)``.
    public init(
        configuration: RedisClusterConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger = Logger(label: "Adapter.Redis"),
        onEvent: (@Sendable (RedisConnectionEvent) -> Void)? = nil,
        onMessage: MessageHandler? = nil,
        metrics: RedisAdapterMetrics = RedisAdapterMetrics()
    ) {
        self.tallies = Tallies(metrics)
        self.eventLoop = eventLoopGroup.next()
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "redis.cluster"] = "\(configuration)"
        self.logger = logger
        self.onEvent = onEvent
        self.onMessage = onMessage
        self.state = .makeBoxSendingValue(State(), eventLoop: self.eventLoop)
    }

    // MARK: Lifecycle

    /// Reads the slot map and connects to the masters, in the background (the map is read again until it works).
    public func start() {
        onLoop {
            guard !self.state.value.started, !self.state.value.closed else { return }
            self.state.value.started = true
            self.refresh(reason: "start")
        }
    }

    /// Closes every connection and stops refreshing.
    public func close() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit {
            self.state.value.closed = true
            self.state.value.refreshTimer?.task.cancel()
            self.state.value.refreshTimer = nil
            let shards = Array(self.state.value.shards.values)
            self.state.value.shards = [:]
            self.readyFlag.store(false, ordering: .relaxed)
            self.connectedFlag.store(false, ordering: .relaxed)
            let closing = shards.flatMap { shard in
                [shard.connection.close()] + (shard.subscriber.map { [$0.close()] } ?? [])
            }
            return EventLoopFuture.andAllComplete(closing, on: self.eventLoop).map { self.onEvent?(.closed) }
        }
    }

    /// The map is read and complete, every master has a command connection, and (with a message handler) every
    /// wanted shard channel is placed and acknowledged. Safe from any thread.
    public var isReady: Bool { readyFlag.load(ordering: .relaxed) }
    /// The map is read and every master of it has a command connection. Safe from any thread.
    public var isConnected: Bool { connectedFlag.load(ordering: .relaxed) }

    /// Counters for metrics and logs. Safe from any thread.
    public var statistics: (refreshes: Int, mapChanges: Int, moved: Int, ask: Int, reconnects: Int) {
        (
            tallies.refreshes.value, tallies.mapChanges.value, tallies.moved.value, tallies.ask.value,
            tallies.reconnects.value
        )
    }

    /// The slot map as last seen (read yet, every slot covered) and each master's connections, for `/readyz`. Safe
    /// from any thread; updated on the loop at every connection event and map change.
    public var shardStates: (mapLoaded: Bool, complete: Bool, shards: [RedisClusterShardState]) {
        shardSnapshot.withLock { $0 }
    }

    /// The masters of the current map and whether each has a command connection (for logs and /readyz).
    public func shardStatus() -> EventLoopFuture<[(node: RedisClusterNode, connected: Bool, slots: Int)]> {
        eventLoop.submit {
            let counts = self.state.value.map.slotCounts
            return self.state.value.map.masters.map { node in
                (node, self.state.value.shards[node]?.connection.isConnected ?? false, counts[node] ?? 0)
            }
        }
    }

    // MARK: Commands

    /// Sends a command to the master that owns `routingKey`'s slot (by default the first argument's: the key of
    /// every single-key command). Callable from any thread.
    public func send(_ command: RedisCommand, routingKey: String? = nil) -> EventLoopFuture<RESPValue> {
        let key = routingKey ?? Self.firstKey(of: command)
        if eventLoop.inEventLoop {
            return sendOnLoop(command, key: key, redirects: 0)
        }
        return eventLoop.flatSubmit { self.sendOnLoop(command, key: key, redirects: 0) }
    }

    /// Sends a command given as its arguments; see ``send(_:routingKey:)``.
    public func send(_ arguments: [RESPArgument], routingKey: String? = nil) -> EventLoopFuture<RESPValue> {
        send(RedisCommand(arguments), routingKey: routingKey)
    }

    /// `SPUBLISH shardChannel message` on the channel's master: the number of subscribers that received it.
    public func spublish(_ shardChannel: String, message: ByteBuffer) -> EventLoopFuture<Int> {
        send(["SPUBLISH", .string(shardChannel), .buffer(message)], routingKey: shardChannel).flatMapThrowing { reply in
            guard let count = reply.integer else { throw RedisError.unexpectedReply(reply) }
            return Int(count)
        }
    }

    /// The second argument of a command, as text: the key of the single-key commands and SPUBLISH.
    static func firstKey(of command: RedisCommand) -> String? {
        guard command.arguments.count >= 2 else { return nil }
        return command.arguments[1].text
    }

    private func sendOnLoop(_ command: RedisCommand, key: String?, redirects: Int) -> EventLoopFuture<RESPValue> {
        guard !state.value.closed else { return eventLoop.makeFailedFuture(RedisError.clientClosed) }
        let node: RedisClusterNode?
        if let key {
            node = state.value.map.master(of: key)
        } else {
            node = state.value.map.masters.first
        }
        guard let node, let shard = state.value.shards[node] else {
            refresh(reason: "no master for a command")
            return eventLoop.makeFailedFuture(RedisError.notConnected)
        }
        return send(command, on: shard.connection, redirects: redirects, key: key, asking: false)
    }

    private func send(
        _ command: RedisCommand,
        on connection: RedisConnection,
        redirects: Int,
        key: String?,
        asking: Bool
    ) -> EventLoopFuture<RESPValue> {
        if asking {
            _ = connection.send(["ASKING"])
        }
        let defaultHost = connection.configuration.host
        return connection.send(command).flatMapError { error in
            guard let redirection = RedisClusterRedirection(error, defaultHost: defaultHost), redirects < 3 else {
                if case RedisError.notConnected = error { self.refresh(reason: "a master is not connected") }
                return self.eventLoop.makeFailedFuture(error)
            }
            guard !self.state.value.closed else { return self.eventLoop.makeFailedFuture(RedisError.clientClosed) }
            switch redirection {
            case .moved(_, let target):
                self.tallies.moved.increment()
                self.logger.debug("MOVED", metadata: ["redis.target": "\(target)"])
                self.refresh(reason: "MOVED")
                return self.send(command, on: self.shard(for: target).connection, redirects: redirects + 1, key: key, asking: false)
            case .ask(_, let target):
                self.tallies.ask.increment()
                return self.send(command, on: self.shard(for: target).connection, redirects: redirects + 1, key: key, asking: true)
            }
        }
    }

    // MARK: Shard channels

    /// SSUBSCRIBE to shard channels (reference-counted per name), each on the master that owns its slot.
    public func ssubscribe(_ channels: [String]) {
        onLoop {
            guard !self.state.value.closed else { return }
            let actions = self.state.value.subscriptions.subscribe(channels)
            self.perform(actions)
        }
    }

    /// SUNSUBSCRIBE from shard channels (each name once less).
    public func sunsubscribe(_ channels: [String]) {
        onLoop {
            guard !self.state.value.closed else { return }
            let actions = self.state.value.subscriptions.unsubscribe(channels)
            self.perform(actions)
        }
    }

    private func perform(_ actions: [RedisClusterSubscriptions.Action]) {
        for action in actions {
            switch action {
            case .subscribe(let channel, let node):
                shard(for: node).subscriber?.ssubscribe(shardChannels: [channel])
            case .unsubscribe(let channel, let node):
                state.value.shards[node]?.subscriber?.sunsubscribe(shardChannels: [channel])
            }
        }
        closeUnusedShards()
        updateReadiness()
    }

    private func received(_ channel: String, payload: ByteBuffer, from node: RedisClusterNode) {
        guard state.value.subscriptions.accepts(channel, from: node) else { return }
        onMessage?(channel, payload)
    }

    // MARK: Shards

    /// The connections to `node`, made (and started) on first use.
    private func shard(for node: RedisClusterNode) -> Shard {
        if let shard = state.value.shards[node] { return shard }
        var logger = self.logger
        logger[metadataKey: "redis.shard"] = "\(node)"
        let nodeConfiguration = configuration.configuration(for: node)
        let connection = RedisConnection(
            configuration: nodeConfiguration,
            eventLoopGroup: eventLoop,
            logger: logger,
            onEvent: { event in self.shardEvent(event, node: node, role: "command") }
        )
        var subscriber: RedisSubscriber?
        if onMessage != nil {
            subscriber = RedisSubscriber(
                configuration: nodeConfiguration,
                eventLoopGroup: eventLoop,
                logger: logger,
                onEvent: { event in self.shardEvent(event, node: node, role: "subscriber") },
                onServerUnsubscribe: { channel in
                    // Its slot moved: find the new owner now rather than at the next timer.
                    self.logger.info("redis cluster: a master dropped a shard subscription", metadata: [
                        "redis.shard": "\(node)", "redis.channel": "\(channel)",
                    ])
                    self.refresh(reason: "SUNSUBSCRIBE pushed")
                },
                onMessage: { channel, _, payload in self.received(channel, payload: payload, from: node) }
            )
        }
        let shard = Shard(connection: connection, subscriber: subscriber)
        state.value.shards[node] = shard
        logger.info("redis cluster: connecting to a master")
        connection.start()
        subscriber?.start()
        return shard
    }

    private func shardEvent(_ event: RedisConnectionEvent, node: RedisClusterNode, role: String) {
        guard !state.value.closed else { return }
        switch event {
        case .connected(let reconnect):
            if reconnect { tallies.reconnects.increment() }
            logger.info(
                reconnect ? "redis cluster: master reconnected" : "redis cluster: master connected",
                metadata: ["redis.shard": "\(node)", "redis.role": "\(role)"])
        case .disconnected:
            tallies.adapter.connectionLosses.add(1, ordering: .relaxed)
            logger.warning("redis cluster: master connection lost", metadata: ["redis.shard": "\(node)", "redis.role": "\(role)"])
            refresh(reason: "lost a master")
        case .connectFailed(let failures, _):
            if failures == 1 || failures % 100 == 0 {
                logger.warning(
                    "redis cluster: cannot connect to a master",
                    metadata: ["redis.shard": "\(node)", "redis.role": "\(role)", "failures": "\(failures)"])
            }
            refresh(reason: "cannot reach a master")
        case .readinessChanged:
            // Not ready: a new subscription waiting for its acknowledgement (milliseconds), or one that Redis
            // dropped (its slot moved) or refused (MOVED). updateReadiness() below sets the refresh timer to the
            // unhealthy interval; if all is well again by then, the timer does not read the map.
            break
        case .closed:
            break
        }
        updateReadiness()
    }

    /// Closes the connections to masters that are neither in the map nor holding a subscription.
    private func closeUnusedShards() {
        let inMap = Set(state.value.map.masters)
        let inUse = state.value.subscriptions.mastersInUse
        for (node, shard) in state.value.shards where !inMap.contains(node) && !inUse.contains(node) {
            state.value.shards[node] = nil
            logger.info("redis cluster: leaving a node that is no longer a master", metadata: ["redis.shard": "\(node)"])
            _ = shard.connection.close()
            _ = shard.subscriber?.close()
        }
    }

    private func updateReadiness() {
        let value = state.value
        let connected = value.mapLoaded && !value.map.masters.isEmpty
            && value.map.masters.allSatisfy { value.shards[$0]?.connection.isConnected ?? false }
        let subscribed = value.subscriptions.unplacedCount == 0
            && value.subscriptions.mastersInUse.allSatisfy { value.shards[$0]?.subscriber?.isReady ?? false }
        let ready = connected && subscribed && value.map.isComplete
        let counts = value.map.slotCounts
        let inUse = value.subscriptions.mastersInUse
        let shards = value.map.masters.map { node in
            let shard = value.shards[node]
            let subscriber: RedisClusterShardState.Subscriber
            if let connection = shard?.subscriber, inUse.contains(node) {
                subscriber = connection.isReady ? .ready : connection.isConnected ? .subscribing : .disconnected
            } else {
                subscriber = .unused
            }
            return RedisClusterShardState(
                node: node,
                slots: counts[node] ?? 0,
                commandConnected: shard?.connection.isConnected ?? false,
                subscriber: subscriber
            )
        }
        shardSnapshot.withLock { $0 = (value.mapLoaded, value.map.isComplete, shards) }
        if readyFlag.exchange(ready, ordering: .relaxed) != ready {
            logger.info(ready ? "redis cluster ready" : "redis cluster not ready")
            onEvent?(.readinessChanged(isReady: ready))
        }
        connectedFlag.store(connected, ordering: .relaxed)
        if connected != state.value.wasConnected {
            state.value.wasConnected = connected
            if connected {
                onEvent?(.connected(reconnect: state.value.everConnected))
                state.value.everConnected = true
            } else {
                onEvent?(.disconnected)
            }
        }
        scheduleRefresh(in: ready ? configuration.healthyRefreshInterval : configuration.unhealthyRefreshInterval)
    }

    // MARK: The slot map

    /// Reads the map again now, or as soon as the minimum interval allows; one read at a time.
    private func refresh(reason: String) {
        guard state.value.started, !state.value.closed else { return }
        if state.value.refreshInFlight {
            state.value.refreshAgain = true
            return
        }
        let earliest = state.value.lastRefresh + configuration.minimumRefreshInterval
        if earliest > .now() {
            scheduleRefresh(at: earliest)
            return
        }
        state.value.refreshInFlight = true
        state.value.lastRefresh = .now()
        tallies.refreshes.increment()
        logger.debug("redis cluster: reading the slot map", metadata: ["reason": "\(reason)"])
        // Connected masters first (no new connection needed), then the seeds, each through a short-lived connection.
        let connected = state.value.map.masters.compactMap { state.value.shards[$0]?.connection }.filter(\.isConnected)
        readMap(from: connected, seeds: configuration.seeds).whenComplete { result in
            self.state.value.refreshInFlight = false
            switch result {
            case .success(let map):
                self.state.value.failedReads = 0
                self.apply(map)
            case .failure(let error):
                self.state.value.failedReads += 1
                let failures = self.state.value.failedReads
                if failures == 1 || failures % 50 == 0 {
                    self.logger.warning(
                        "redis cluster: cannot read the slot map",
                        metadata: ["error": "\(error)", "failures": "\(failures)"])
                }
            }
            if self.state.value.refreshAgain {
                self.state.value.refreshAgain = false
                self.refresh(reason: "asked again meanwhile")
            } else {
                self.updateReadiness()
            }
        }
    }

    private func scheduleRefresh(in delay: TimeAmount) {
        scheduleRefresh(at: .now() + delay)
    }

    /// Keeps one timer, at the earliest time asked for.
    private func scheduleRefresh(at deadline: NIODeadline) {
        guard state.value.started, !state.value.closed else { return }
        if let timer = state.value.refreshTimer {
            // Replace a later timer only.
            if timer.deadline <= deadline { return }
            timer.task.cancel()
        }
        let task = eventLoop.scheduleTask(deadline: deadline) {
            self.state.value.refreshTimer = nil
            let healthyDeadline = self.state.value.lastRefresh + self.configuration.healthyRefreshInterval
            if self.isReady, healthyDeadline > .now() {
                // Set while something was pending that has settled since: back to the healthy pace.
                self.scheduleRefresh(at: healthyDeadline)
                return
            }
            self.refresh(reason: "timer")
        }
        state.value.refreshTimer = RefreshTimer(task: task, deadline: deadline)
    }

    private struct RefreshTimer {
        let task: Scheduled<Void>
        let deadline: NIODeadline
    }

    private func readMap(from connections: [RedisConnection], seeds: [RedisConfiguration]) -> EventLoopFuture<RedisClusterSlotMap> {
        if let connection = connections.first {
            let host = connection.configuration.host
            return connection.send(["CLUSTER", "SLOTS"])
                .flatMapThrowing { try RedisClusterSlotMap(clusterSlots: $0, defaultHost: host) }
                .flatMapError { _ in self.readMap(from: Array(connections.dropFirst()), seeds: seeds) }
        }
        guard let seed = seeds.first else {
            return eventLoop.makeFailedFuture(RedisError.notConnected)
        }
        // A seed that refuses is retried every refresh: its failures are summed up by the caller, not logged here.
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .error)
        return RedisConnection.connect(configuration: seed, eventLoopGroup: eventLoop, logger: quiet).flatMap { connection in
            connection.send(["CLUSTER", "SLOTS"])
                .flatMapThrowing { try RedisClusterSlotMap(clusterSlots: $0, defaultHost: seed.host) }
                .always { _ in _ = connection.close() }
        }.flatMapError { _ in self.readMap(from: [], seeds: Array(seeds.dropFirst())) }
    }

    private func apply(_ map: RedisClusterSlotMap) {
        guard !state.value.closed else { return }
        let changed = !state.value.mapLoaded || map != state.value.map
        state.value.mapLoaded = true
        guard changed else { return }
        tallies.mapChanges.increment()
        let counts = map.slotCounts
        logger.info(
            "redis cluster: slot map",
            metadata: ["masters": "\(map.masters.map { "\($0) (\(counts[$0] ?? 0) slots)" }.joined(separator: ", "))"])
        state.value.map = map
        for node in map.masters { _ = shard(for: node) }
        let actions = state.value.subscriptions.mapChanged(map)
        perform(actions)
        updateReadiness()
    }

    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop {
            body()
        } else {
            eventLoop.execute(body)
        }
    }
}

/// One master of a Redis Cluster's slot map, as `/readyz` describes it.
public struct RedisClusterShardState: Sendable, Hashable, CustomStringConvertible {
    public enum Subscriber: String, Sendable {
        /// Every shard channel placed on this master is acknowledged.
        case ready
        /// Connected, some subscription not acknowledged yet.
        case subscribing
        case disconnected
        /// No shard channel of this node lives on this master.
        case unused
    }

    public var node: RedisClusterNode
    public var slots: Int
    public var commandConnected: Bool
    public var subscriber: Subscriber

    public var description: String {
        "redis shard \(node): \(slots) slots, commands \(commandConnected ? "connected" : "disconnected"), "
            + "subscriptions \(subscriber.rawValue)"
    }
}

extension RESPArgument {
    /// The argument as text (keys and channels are hashed as their bytes; ours are UTF-8).
    var text: String {
        switch self {
        case .string(let string): return string
        case .bytes(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .buffer(let buffer): return String(buffer: buffer)
        }
    }
}
