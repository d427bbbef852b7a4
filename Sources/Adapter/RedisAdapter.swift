import Logging
import NIOCore
import SocketIO
import Synchronization

/// Settings of the Redis cluster adapter.
public struct RedisAdapterConfiguration: Sendable {
    /// How a node learns of the broadcasts meant for it.
    public enum SubscriptionMode: String, Sendable, CaseIterable {
        /// `PSUBSCRIBE <prefix>#<nsp>#*`: every broadcast of the namespace reaches every node, which drops those
        /// for rooms it does not host. What Node.js nodes of `@socket.io/redis-adapter` do; use it in a cluster
        /// shared with them.
        case pattern
        /// `SUBSCRIBE` the namespace channel plus one channel per room with local members (socket-id rooms
        /// included): a node receives only the traffic of its own rooms, and a signal to one socket reaches only
        /// that socket's node. Node.js nodes still receive these publishes (they use the pattern).
        case perRoom = "per-room"
    }

    public var redis: RedisConfiguration
    /// The channel prefix (`key` in the Node adapter).
    public var prefix: String
    public var mode: SubscriptionMode
    /// Connection state recovery across nodes: broadcasts go through a log in Redis (see ``RecoveryLedger``).
    public var ledger: RedisLedgerConfiguration?

    public init(
        redis: RedisConfiguration,
        prefix: String = ClusterChannels.defaultPrefix,
        mode: SubscriptionMode = .pattern,
        ledger: RedisLedgerConfiguration? = nil
    ) {
        self.redis = redis
        self.prefix = prefix
        self.mode = mode
        self.ledger = ledger
    }
}

/// Counters of the Redis adapter, readable from any thread (metrics, tests, the closing log).
public struct RedisAdapterStatistics: Sendable, Hashable {
    /// Broadcasts published on Redis.
    public var published: Int
    /// Broadcasts that could not be published (Redis down): cross-node deliveries lost, counted and logged.
    public var droppedPublishes: Int
    /// Broadcast messages received from Redis (own echoes included).
    public var received: Int
    /// Received broadcasts dropped unread: own echoes, other namespaces, rooms without local members.
    public var ignored: Int
    /// Requests received on the request channel.
    public var requests: Int
    /// Messages that could not be decoded.
    public var malformed: Int
    /// Reconnects of the subscriber and publisher connections.
    public var reconnects: Int
}

/// The cluster adapter on Redis pub/sub, wire-compatible with Node's `@socket.io/redis-adapter` 8 (classic
/// `createAdapter`) and `@socket.io/redis-emitter` 5: a broadcast is the MessagePack `[uid, packet, opts]` published
/// on `<prefix>#<nsp>#` (or `<prefix>#<nsp>#<room>#` for exactly one room), and requests come on
/// `<prefix>-request#<nsp>#`.
///
/// Local members are in a `RoomRegistry` behind a mutex that guards only the registry: a broadcast delivers to
/// local sockets first, then publishes once; a message from Redis is decoded once, its local recipients computed
/// under the lock, and handed to the namespace, which encodes it once for all of them. Redis I/O runs on the
/// connections' own event loops (see `RedisConnection` and `RedisSubscriber`): nothing here blocks.
///
/// When Redis is unreachable, local rooms keep working; publishes fail fast and are counted in
/// ``RedisAdapterStatistics/droppedPublishes`` and logged; the subscriber reconnects with backoff and subscribes
/// again to every channel it needs, and ``isReady`` is false until it has.
public final class RedisAdapter: ClusterRequestAnswering {
    public let nsp: String
    public let uid: String
    public let configuration: RedisAdapterConfiguration
    public let channels: ClusterChannels
    public let registry = LockedRoomRegistry()
    let delivery: any LocalDelivery
    /// One publisher connection per event loop of the group (issue 14): a broadcast is published from the loop it
    /// is made on, which is the sending socket's, without a hop to a publisher's loop. One socket's broadcasts all
    /// leave through its loop's connection, in order. Replies to requests leave through the subscriber loop's.
    private let publishers: [RedisConnection]
    private let subscriber: RedisSubscriber
    /// With ``RedisAdapterConfiguration/ledger``: the log every broadcast goes through, and the records.
    private let redisLedger: RedisLedger?
    private let logger: Logger
    private let metrics: RedisAdapterMetrics

    public init(
        nsp: String = "/",
        delivery: any LocalDelivery,
        configuration: RedisAdapterConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        metrics: RedisAdapterMetrics = RedisAdapterMetrics()
    ) {
        self.nsp = nsp
        self.metrics = metrics
        self.uid = ClusterUID.random()
        self.configuration = configuration
        self.channels = ClusterChannels(prefix: configuration.prefix, nsp: nsp)
        self.delivery = delivery
        var adapterLogger = logger
        adapterLogger[metadataKey: "adapter.uid"] = "\(uid)"
        self.logger = adapterLogger
        let logger = adapterLogger
        // A group that does not list its loops gets one publisher, on the loop it picks.
        let loops: [any EventLoopGroup] = Array(eventLoopGroup.makeIterator())
        self.publishers = (loops.isEmpty ? [eventLoopGroup] : loops).map { loop in
            RedisConnection(
                configuration: configuration.redis,
                eventLoopGroup: loop,
                logger: logger,
                onEvent: { event in Self.observe(event, role: "publisher", logger: logger, metrics: metrics) }
            )
        }
        // The message handler needs `self`; it reaches it through a box filled right below.
        let handlerBox = WeakReference<RedisAdapter>()
        self.subscriber = RedisSubscriber(
            configuration: configuration.redis,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            onEvent: { event in Self.observe(event, role: "subscriber", logger: logger, metrics: metrics) },
            onMessage: { channel, _, payload in handlerBox.object?.received(channel: channel, payload: payload) }
        )
        let publishers = self.publishers
        self.redisLedger = configuration.ledger.map { ledger in
            RedisLedger(
                configuration: ledger,
                prefix: configuration.prefix,
                nsp: nsp,
                redis: configuration.redis,
                eventLoopGroup: eventLoopGroup,
                writer: { Self.publisher(of: publishers) },
                logger: logger,
                localSockets: { handlerBox.object?.registry.withLock { Array($0.socketIDs) } ?? [] },
                onEntries: { entries in handlerBox.object?.read(entries) }
            )
        }
        handlerBox.set(self)
    }

    /// Logs a connection's event and counts its reconnects.
    private static func observe(_ event: RedisConnectionEvent, role: String, logger: Logger, metrics: RedisAdapterMetrics) {
        switch event {
        case .connected(let reconnect):
            if reconnect { metrics.reconnects.increment() }
            logger.info(reconnect ? "redis reconnected" : "redis connected", metadata: ["redis.role": "\(role)"])
        case .disconnected:
            metrics.connectionLosses.add(1, ordering: .relaxed)
            logger.warning("redis connection lost", metadata: ["redis.role": "\(role)"])
        case .connectFailed(let failures, let retryIn):
            // Retries come every 50-100 ms while Redis is down: the first failure, then one line in a hundred.
            if failures == 1 || failures % 100 == 0 {
                logger.warning(
                    "redis connect failed",
                    metadata: ["redis.role": "\(role)", "failures": "\(failures)", "retry.ms": "\(retryIn.nanoseconds / 1_000_000)"]
                )
            }
        case .readinessChanged(let ready):
            logger.info(ready ? "redis subscriptions ready" : "redis subscriptions not ready", metadata: ["redis.role": "\(role)"])
        case .closed:
            logger.debug("redis connection closed", metadata: ["redis.role": "\(role)"])
        }
    }

    // MARK: lifecycle

    public func start() async throws {
        switch configuration.mode {
        case .pattern:
            subscriber.psubscribe(patterns: [channels.broadcastPattern])
        case .perRoom:
            subscriber.subscribe(channels: [channels.broadcastChannel])
        }
        // Subscribing to the request channel makes this node count in `PUBSUB NUMSUB`, so it answers requests.
        subscriber.subscribe(channels: [channels.requestChannel])
        for publisher in publishers { publisher.start() }
        subscriber.start()
        redisLedger?.start()
    }

    public func shutdown() async {
        if let redisLedger { _ = try? await redisLedger.close().get() }
        _ = try? await subscriber.close().get()
        for publisher in publishers { _ = try? await publisher.close().get() }
    }

    public var isReady: Bool {
        subscriber.isReady && publishers.allSatisfy(\.isConnected) && (redisLedger?.isReading ?? true)
    }

    public var readinessDetails: [String] {
        let connected = publishers.filter(\.isConnected).count
        return [
            "redis \(configuration.redis.sentinel.map { "sentinel:\($0.masterName)" } ?? "\(configuration.redis.host):\(configuration.redis.port)"): "
                + "subscriber \(subscriber.isReady ? "ready" : subscriber.isConnected ? "subscribing" : "disconnected"), "
                + "publishers \(connected)/\(publishers.count) connected"
                + (redisLedger.map {
                    ", recovery log \($0.isReading ? "reading" : "not reading")"
                        + ", places lost \($0.gaps.load(ordering: .relaxed))"
                } ?? "")
        ]
    }

    /// The publisher of the loop this runs on (the first one off the group's loops).
    private var publisher: RedisConnection { Self.publisher(of: publishers) }

    private static func publisher(of publishers: [RedisConnection]) -> RedisConnection {
        for publisher in publishers where publisher.eventLoop.inEventLoop { return publisher }
        return publishers[0]
    }

    public var ledger: (any RecoveryLedger)? { redisLedger }

    public func joinMarked(_ socket: SocketID, rooms: [Room]) -> StreamOffset? {
        let (changes, mark) = registry.withLock { registry in
            (rooms.compactMap { registry.join(socket, room: $0) }, registry.logPosition)
        }
        if !changes.isEmpty { roomsChanged(changes) }
        return redisLedger == nil ? nil : mark
    }

    /// Counts the subscriber's and publisher's lost connections: traffic may have been missed at each.
    public var continuity: UInt64 { metrics.connectionLosses.load(ordering: .relaxed) }


    public var statistics: RedisAdapterStatistics {
        RedisAdapterStatistics(
            published: metrics.published.value,
            droppedPublishes: metrics.dropped.value,
            received: metrics.received.value,
            ignored: metrics.ignored.value,
            requests: metrics.requests.value,
            malformed: metrics.malformed.value,
            reconnects: subscriber.reconnectCount + publishers.reduce(0) { $0 + $1.reconnectCount }
        )
    }

    // MARK: membership

    /// In per-room mode, subscribes to a room's channel when its first local member joins and unsubscribes after
    /// the last one leaves (the subscriber reference-counts, so join/leave races net out).
    public func roomsChanged(_ changes: [RoomRegistry.Change]) {
        guard configuration.mode == .perRoom, !changes.isEmpty else { return }
        var subscribe: [String] = []
        var unsubscribe: [String] = []
        for change in changes {
            switch change {
            case .roomCreated(let room): subscribe.append(channels.roomChannel(room))
            case .roomDeleted(let room): unsubscribe.append(channels.roomChannel(room))
            }
        }
        if !subscribe.isEmpty { subscriber.subscribe(channels: subscribe) }
        if !unsubscribe.isEmpty { subscriber.unsubscribe(channels: unsubscribe) }
    }

    // MARK: broadcast

    public func broadcast(_ packet: BroadcastPacket, options: BroadcastOptions) {
        if let redisLedger, !options.flags.local {
            // Through the log: every node, this one included, delivers it when it reads it, in the log's order.
            var message = ByteBuffer()
            message.reserveCapacity(128)
            ClusterBroadcast.encode(uid: uid, packet: packet, options: options, into: &message)
            let metrics = self.metrics
            let logger = self.logger
            let key = redisLedger.streamKey
            redisLedger.append(message).whenComplete { result in
                metrics.countPublish(result, channel: key, command: "xadd", logger: logger)
            }
            return
        }
        let (recipients, targetIsLocalSocket) = registry.withLock { registry in
            let recipients = registry.recipients(of: options)
            // A signal to one socket of this node needs no other node.
            let room = options.rooms.count == 1 ? options.rooms[0] : nil
            let local = room.map { registry.rooms(of: $0).contains($0) } ?? false
            return (recipients, local)
        }
        if !recipients.isEmpty { delivery.deliver(packet, to: recipients) }
        guard !options.flags.local, !targetIsLocalSocket else { return }
        publish(packet, options: options)
    }

    private func publish(_ packet: BroadcastPacket, options: BroadcastOptions) {
        var message = ByteBuffer()
        message.reserveCapacity(128)
        ClusterBroadcast.encode(uid: uid, packet: packet, options: options, into: &message)
        let channel = channels.publishChannel(for: options)
        let metrics = self.metrics
        let logger = self.logger
        publisher.publish(channel, message: message).whenComplete { result in
            metrics.countPublish(result, channel: channel, command: "publish", logger: logger)
        }
    }

    // MARK: receiving

    /// Entries read from the log (on the ledger reader's loop), in order.
    private func read(_ entries: [(StreamOffset, ByteBuffer)]) {
        for (id, bytes) in entries {
            guard bytes.readableBytes > 0 else {
                registry.withLock { $0.logPosition = id }
                continue
            }
            metrics.received.increment()
            let message: ClusterBroadcast
            do {
                message = try ClusterBroadcast(decoding: bytes)
            } catch {
                registry.withLock { $0.logPosition = id }
                metrics.malformed.increment()
                logger.warning("malformed entry in the recovery log", metadata: ["entry": "\(id)", "error": "\(error)"])
                continue
            }
            let recipients = registry.withLock { registry in
                registry.logPosition = id
                return message.packet.nsp == nsp ? registry.recipients(of: message.options) : []
            }
            if !recipients.isEmpty { delivery.deliver(message.packet, to: recipients, offset: id) }
        }
    }

    /// A message from the subscriber connection (on its event loop).
    func received(channel: String, payload: ByteBuffer) {
        if channel == channels.requestChannel {
            metrics.requests.increment()
            return handleRequest(payload)
        }
        metrics.received.increment()
        guard let (channelNsp, room) = ClusterChannels.parse(channel, prefix: configuration.prefix), channelNsp == nsp else {
            metrics.ignored.increment()
            return
        }
        if let room, !registry.withLock({ $0.hasRoom(room) }) {
            metrics.ignored.increment()
            return
        }
        // Our own echo: dropped before it is decoded.
        if ClusterBroadcast.hasUID(uid, payload) {
            metrics.ignored.increment()
            return
        }
        let message: ClusterBroadcast
        do {
            message = try ClusterBroadcast(decoding: payload)
        } catch {
            metrics.malformed.increment()
            logger.warning("malformed broadcast from redis", metadata: ["redis.channel": "\(channel)", "error": "\(error)"])
            return
        }
        guard message.uid != uid, message.packet.nsp == nsp else {
            metrics.ignored.increment()
            return
        }
        let recipients = registry.withLock { $0.recipients(of: message.options) }
        if !recipients.isEmpty { delivery.deliver(message.packet, to: recipients) }
    }

    private func handleRequest(_ payload: ByteBuffer) {
        let request: ClusterRequest
        do {
            request = try ClusterRequest(decoding: payload)
        } catch {
            metrics.malformed.increment()
            logger.debug("unreadable request from redis", metadata: ["error": "\(error)"])
            return
        }
        answer(request)
    }

    /// Responses go to the one response channel of the namespace; the requester picks its own by requestId.
    func respond(_ response: ClusterResponse, to requester: String?) {
        let message = response.encoded()
        let channel = channels.responseChannel
        let logger = self.logger
        publisher.publish(channel, message: message).whenFailure { error in
            logger.warning("could not answer a cluster request", metadata: ["error": "\(error)"])
        }
    }
}
