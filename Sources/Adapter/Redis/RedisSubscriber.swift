import Logging
import NIOCore
import SocketIO
import Synchronization

/// The dedicated pub/sub connection: (P|S)SUBSCRIBE, messages to a callback, and subscriptions that survive
/// reconnects.
///
/// Built like ``RedisConnection`` (NIO socket, hiredis codec, all state on one event loop). Redis takes a
/// subscribed connection out of normal command mode, so pub/sub gets a connection of its own.
///
/// The adapter says what it wants with ``subscribe(channels:)`` and friends, which are reference-counted: the first
/// subscribe of a name sends SUBSCRIBE, the last unsubscribe sends UNSUBSCRIBE. When the connection drops, the
/// subscriber waits for the old connection to be fully closed, reconnects with backoff, and subscribes again to
/// everything wanted, so a message is never delivered by two connections. ``isReady`` tells whether Redis has
/// acknowledged every wanted subscription on the current connection (`/readyz`). The rules live in
/// ``RedisSubscriptionStateMachine``, a plain value; this class performs its actions.
public final class RedisSubscriber: Sendable {
    /// Receives a message: the channel it was published on, the pattern that matched (for PSUBSCRIBE), and the
    /// payload. Called on ``eventLoop``.
    public typealias MessageHandler = @Sendable (_ channel: String, _ pattern: String?, _ payload: ByteBuffer) -> Void

    /// The loop that owns this subscriber's state, its connections and its callbacks.
    public let eventLoop: any EventLoop
    public let configuration: RedisConfiguration
    let logger: Logger
    private let onMessage: MessageHandler
    private let onEvent: (@Sendable (RedisConnectionEvent) -> Void)?
    private let onServerUnsubscribe: (@Sendable (String) -> Void)?
    let driver: RedisReconnectDriver<RedisSubscriptionStateMachine<any Channel>>
    private let readyFlag = Atomic<Bool>(false)
    private let connectedFlag = Atomic<Bool>(false)
    private let reconnects = Atomic<Int>(0)

    /// Makes a subscriber; nothing happens until ``start()``.
    /// - Parameters:
    ///   - onEvent: called on ``eventLoop`` when the connection comes, goes or fails to come, and when
    ///     ``isReady`` changes.
    ///   - onServerUnsubscribe: called on ``eventLoop`` when Redis drops a wanted subscription on its own (a shard
    ///     channel whose slot moved), with its name; the subscriber subscribes again on the same connection.
    ///   - onMessage: called on ``eventLoop`` for each message of a wanted subscription.
    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger = Logger(label: "Adapter.Redis"),
        onEvent: (@Sendable (RedisConnectionEvent) -> Void)? = nil,
        onServerUnsubscribe: (@Sendable (String) -> Void)? = nil,
        onMessage: @escaping MessageHandler
    ) {
        self.eventLoop = eventLoopGroup.next()
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "redis.server"] =
            configuration.sentinel.map { "sentinel:\($0.masterName)" } ?? "\(configuration.host):\(configuration.port)"
        logger[metadataKey: "redis.role"] = "subscriber"
        self.logger = logger
        self.onEvent = onEvent
        self.onServerUnsubscribe = onServerUnsubscribe
        self.onMessage = onMessage
        self.driver = RedisReconnectDriver(
            machine: RedisSubscriptionStateMachine(),
            backoff: configuration.backoff,
            eventLoop: self.eventLoop
        )
    }

    /// Starts connecting in the background (and reconnecting whenever the connection is lost).
    public func start() {
        self.startReconnecting()
    }

    /// Closes the connection and stops reconnecting.
    public func close() -> EventLoopFuture<Void> {
        self.closeReconnecting()
    }

    /// Connected, and every wanted subscription acknowledged by Redis on this connection. Safe from any thread.
    public var isReady: Bool { self.readyFlag.load(ordering: .relaxed) }
    /// Whether a connection is established right now. Safe from any thread.
    public var isConnected: Bool { self.connectedFlag.load(ordering: .relaxed) }
    /// Connections established after the first one. Safe from any thread.
    public var reconnectCount: Int { self.reconnects.load(ordering: .relaxed) }

    // MARK: Subscriptions (reference-counted per name)

    /// SUBSCRIBE to channels (each name once more).
    public func subscribe(channels: [String]) {
        self.update { $0.subscribe(.channel, channels) }
    }

    /// UNSUBSCRIBE from channels (each name once less).
    public func unsubscribe(channels: [String]) {
        self.update { $0.unsubscribe(.channel, channels) }
    }

    /// PSUBSCRIBE to glob patterns (`socket.io#/#*`).
    public func psubscribe(patterns: [String]) {
        self.update { $0.subscribe(.pattern, patterns) }
    }

    /// PUNSUBSCRIBE from glob patterns.
    public func punsubscribe(patterns: [String]) {
        self.update { $0.unsubscribe(.pattern, patterns) }
    }

    /// SSUBSCRIBE to shard channels (sharded pub/sub, Redis ≥ 7).
    public func ssubscribe(shardChannels: [String]) {
        self.update { $0.subscribe(.shardChannel, shardChannels) }
    }

    /// SUNSUBSCRIBE from shard channels.
    public func sunsubscribe(shardChannels: [String]) {
        self.update { $0.unsubscribe(.shardChannel, shardChannels) }
    }

    // MARK: On the loop

    typealias Machine = RedisSubscriptionStateMachine<any Channel>

    private func update(_ change: @escaping @Sendable (inout Machine) -> Machine.SubscriptionAction) {
        self.driver.onLoop {
            switch change(&self.driver.machine) {
            case .send(let channel, let commands):
                self.write(commands, on: channel)
            case .doNothing:
                break
            }
            self.updateReadiness()
        }
    }

    private func write(_ commands: [RedisSubscriptionCommand], on channel: any Channel) {
        guard !commands.isEmpty else { return }
        for command in commands {
            self.logger.debug(
                "\(command.command)",
                metadata: ["redis.channel": "\(command.names.joined(separator: " "))"]
            )
            channel.write(RedisCommandHandler.Request(command: command.command, replyPromise: nil), promise: nil)
        }
        channel.flush()
    }

    private func updateReadiness() {
        let isReady = self.driver.machine.isReady
        if self.readyFlag.exchange(isReady, ordering: .relaxed) != isReady {
            self.logger.debug("Redis subscriptions \(isReady ? "ready" : "not ready")")
            self.onEvent?(.readinessChanged(isReady: isReady))
        }
    }

    private func pushReceived(_ push: RedisPush) {
        switch self.driver.machine.pushReceived(push) {
        case .deliver(let channel, let pattern, let payload):
            self.onMessage(channel, pattern, payload)
            return
        case .resubscribe(let command):
            self.logger.info(
                "Redis dropped a subscription, subscribing again", metadata: ["redis.channel": "\(command.names)"])
            if let channel = self.driver.machine.connection {
                self.write([command], on: channel)
            }
            for name in command.names { self.onServerUnsubscribe?(name) }
        case .doNothing:
            break
        }
        self.updateReadiness()
    }

}

extension RedisSubscriber: RedisReconnectClient {
    func openConnection() -> EventLoopFuture<any Channel> {
        self.logger.debug("connecting to Redis")
        let logger = self.logger
        return self.configuration.connect(
            on: self.eventLoop,
            onPush: { push in self.pushReceived(push) },
            onUnmatchedErrorReply: { message in
                // A refused (P|S)SUBSCRIBE: it stays unacknowledged, so isReady stays false and /readyz shows it.
                logger.error("Redis refused a subscription command", metadata: ["error": "\(message)"])
            }
        )
    }

    func connectionOpened(_ channel: any Channel) {
        switch self.driver.machine.connectSucceeded(channel) {
        case .subscribe(let channel, let commands, let isReconnect):
            self.connectedFlag.store(true, ordering: .relaxed)
            if isReconnect {
                self.reconnects.add(1, ordering: .relaxed)
            }
            self.logger.debug(
                "connected to Redis",
                metadata: ["redis.reconnect": "\(isReconnect)", "redis.subscriptions": "\(commands.count)"]
            )
            self.write(commands, on: channel)
            self.onEvent?(.connected(reconnect: isReconnect))
        case .closeConnection(let channel):
            channel.close(promise: nil)
        }
    }

    func connectAttemptFailed(_ error: any Error, failures: Int, retryIn delay: TimeAmount) -> Bool {
        self.logger.debug(
            "cannot connect to Redis, retrying",
            metadata: ["error": "\(error)", "redis.failures": "\(failures)", "redis.retry_in": "\(delay)"]
        )
        self.onEvent?(.connectFailed(failures: failures, retryIn: delay))
        return true
    }

    func connectionLost(retryIn delay: TimeAmount) {
        self.connectedFlag.store(false, ordering: .relaxed)
        self.logger.debug("lost the Redis connection, reconnecting", metadata: ["redis.retry_in": "\(delay)"])
        self.onEvent?(.disconnected)
        self.updateReadiness()
    }

    func shutdownFinished() {
        self.stopFollowingSentinel()
        self.connectedFlag.store(false, ordering: .relaxed)
        self.updateReadiness()
        self.logger.debug("Redis subscriber closed")
        self.onEvent?(.closed)
    }
}
