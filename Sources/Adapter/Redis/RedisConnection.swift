import Logging
import NIOCore
import SocketIO
import Synchronization

/// A Redis command connection: pipelined commands over one TCP connection that reconnects by itself.
///
/// ## Why it is built this way
/// NIO owns the socket: a `ClientBootstrap` makes a non-blocking connect (its resolver keeps `getaddrinfo` off the
/// event loop) and the channel pipeline does the I/O. hiredis is only the RESP codec: a ``HiredisReader`` inside a
/// `ByteToMessageDecoder` parses replies, and `redisFormatCommandArgv` formats commands. hiredis' own connection
/// (`redisAsyncContext`) would need the socket's readiness events, which NIO does not expose for a foreign fd, or a
/// side thread with a hop per message and a blocking resolver.
///
/// All state lives on one event loop, picked from the group at creation; every connection the client makes is on
/// that loop, so reply callbacks and state changes need no locks. The only cross-thread reads are the atomic
/// ``isConnected``, ``reconnectCount`` and ``droppedWhileDisconnected``.
///
/// Commands are pipelined: each is written as soon as it is sent, and replies are matched in order. When the
/// connection drops, commands in flight fail with ``RedisError/connectionClosed``; while it is down, new commands
/// fail at once with ``RedisError/notConnected`` (and are counted) instead of being buffered, and reconnect
/// attempts follow ``RedisConfiguration/backoff``.
public final class RedisConnection: Sendable {
    /// The loop that owns this client's state and its connections.
    public let eventLoop: any EventLoop
    public let configuration: RedisConfiguration
    let logger: Logger
    private let onEvent: (@Sendable (RedisConnectionEvent) -> Void)?
    let driver: RedisReconnectDriver<RedisConnectionStateMachine<any Channel>>
    private let state: NIOLoopBoundBox<LoopState>
    private let connectedFlag = Atomic<Bool>(false)
    private let reconnects = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)

    private struct LoopState {
        /// Set by ``RedisConnection/connect(configuration:eventLoopGroup:logger:onEvent:)``: the first attempt
        /// decides that future, and its failure closes the client instead of retrying.
        var firstConnectPromise: EventLoopPromise<Void>?
        var flushScheduled = false
    }

    /// Makes a client; nothing happens until ``start()``.
    /// - Parameter onEvent: called on ``eventLoop`` when the connection comes, goes or fails to come.
    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger = Logger(label: "Adapter.Redis"),
        onEvent: (@Sendable (RedisConnectionEvent) -> Void)? = nil
    ) {
        self.eventLoop = eventLoopGroup.next()
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "redis.server"] =
            configuration.sentinel.map { "sentinel:\($0.masterName)" } ?? "\(configuration.host):\(configuration.port)"
        self.logger = logger
        self.onEvent = onEvent
        self.state = .makeBoxSendingValue(LoopState(), eventLoop: self.eventLoop)
        self.driver = RedisReconnectDriver(
            machine: RedisConnectionStateMachine(),
            backoff: configuration.backoff,
            eventLoop: self.eventLoop
        )
    }

    /// Makes a client and connects it. The future fails (and the client is closed) if this first connection
    /// fails; after it succeeds, lost connections are re-established in the background.
    public static func connect(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger = Logger(label: "Adapter.Redis"),
        onEvent: (@Sendable (RedisConnectionEvent) -> Void)? = nil
    ) -> EventLoopFuture<RedisConnection> {
        let connection = RedisConnection(
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            onEvent: onEvent
        )
        return connection.eventLoop.flatSubmit {
            let promise = connection.eventLoop.makePromise(of: Void.self)
            connection.state.value.firstConnectPromise = promise
            connection.followSentinel()
            connection.driver.start(connection)
            return promise.futureResult.map { connection }
        }
    }

    /// Starts connecting in the background (and reconnecting whenever the connection is lost).
    public func start() {
        self.startReconnecting()
    }

    /// Closes the connection (commands in flight fail with ``RedisError/connectionClosed``) and stops
    /// reconnecting. Later commands fail with ``RedisError/clientClosed``.
    public func close() -> EventLoopFuture<Void> {
        self.closeReconnecting()
    }

    /// Whether a connection is established right now. Safe from any thread.
    public var isConnected: Bool { self.connectedFlag.load(ordering: .relaxed) }
    /// Connections established after the first one. Safe from any thread.
    public var reconnectCount: Int { self.reconnects.load(ordering: .relaxed) }
    /// Commands refused with ``RedisError/notConnected`` because no connection was up. Safe from any thread.
    public var droppedWhileDisconnected: Int { self.dropped.load(ordering: .relaxed) }

    // MARK: Commands

    /// Sends a command (`["SET", "key", .buffer(value)]`) and returns its reply. Error replies fail the future
    /// with ``RedisError/errorReply(_:)``. Callable from any thread; commands sent from one thread are pipelined in
    /// that order.
    public func send(_ arguments: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        self.send(RedisCommand(arguments))
    }

    /// Sends a command and returns its reply; see the `[RESPArgument]` variant.
    public func send(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        if self.eventLoop.inEventLoop {
            return self.sendOnLoop(command)
        }
        return self.eventLoop.flatSubmit { self.sendOnLoop(command) }
    }

    /// `PUBLISH channel message`: the number of subscribers (on this Redis node) that received it.
    public func publish(_ channel: String, message: ByteBuffer) -> EventLoopFuture<Int> {
        self.send(["PUBLISH", .string(channel), .buffer(message)]).flatMapThrowing(Self.integerReply)
    }

    /// `SPUBLISH shardChannel message` (sharded pub/sub, Redis ≥ 7): the number of subscribers that received it.
    public func spublish(_ shardChannel: String, message: ByteBuffer) -> EventLoopFuture<Int> {
        self.send(["SPUBLISH", .string(shardChannel), .buffer(message)]).flatMapThrowing(Self.integerReply)
    }

    /// `PUBSUB NUMSUB channel`: how many connections are subscribed to the channel (patterns not counted).
    public func pubsubNumsub(_ channel: String) -> EventLoopFuture<Int> {
        self.send(["PUBSUB", "NUMSUB", .string(channel)]).flatMapThrowing(Self.countOfOnlyPair)
    }

    /// `PUBSUB SHARDNUMSUB shardChannel` (Redis ≥ 7): how many connections are subscribed to the shard channel.
    public func pubsubShardNumsub(_ shardChannel: String) -> EventLoopFuture<Int> {
        self.send(["PUBSUB", "SHARDNUMSUB", .string(shardChannel)]).flatMapThrowing(Self.countOfOnlyPair)
    }

    private static func integerReply(_ value: RESPValue) throws -> Int {
        guard let integer = value.integer else { throw RedisError.unexpectedReply(value) }
        return Int(integer)
    }

    /// `[name, count]`, the reply of NUMSUB/SHARDNUMSUB for one name.
    private static func countOfOnlyPair(_ value: RESPValue) throws -> Int {
        guard let pair = value.array, pair.count == 2, let count = pair[1].integer else {
            throw RedisError.unexpectedReply(value)
        }
        return Int(count)
    }

    // MARK: On the loop

    private func sendOnLoop(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        guard let channel = self.driver.machine.connection else {
            if self.driver.machine.isClosed || self.driver.isClosing {
                return self.eventLoop.makeFailedFuture(RedisError.clientClosed)
            }
            self.dropped.add(1, ordering: .relaxed)
            return self.eventLoop.makeFailedFuture(RedisError.notConnected)
        }
        let reply = self.eventLoop.makePromise(of: RESPValue.self)
        channel.write(RedisCommandHandler.Request(command: command, replyPromise: reply), promise: nil)
        self.scheduleFlush()
        return reply.futureResult
    }

    /// One flush for all the commands written in this event loop tick.
    private func scheduleFlush() {
        guard !self.state.value.flushScheduled else { return }
        self.state.value.flushScheduled = true
        self.eventLoop.execute {
            self.state.value.flushScheduled = false
            self.driver.machine.connection?.flush()
        }
    }

}

extension RedisConnection: RedisReconnectClient {
    func openConnection() -> EventLoopFuture<any Channel> {
        self.logger.debug("connecting to Redis")
        return self.configuration.connect(on: self.eventLoop)
    }

    func connectionOpened(_ channel: any Channel) {
        switch self.driver.machine.connectSucceeded(channel) {
        case .useConnection(_, let isReconnect):
            self.connectedFlag.store(true, ordering: .relaxed)
            if isReconnect {
                self.reconnects.add(1, ordering: .relaxed)
            }
            self.logger.debug("connected to Redis", metadata: ["redis.reconnect": "\(isReconnect)"])
            if let promise = self.state.value.firstConnectPromise {
                self.state.value.firstConnectPromise = nil
                promise.succeed()
            }
            self.onEvent?(.connected(reconnect: isReconnect))
        case .closeConnection(let channel):
            channel.close(promise: nil)
        }
    }

    func connectAttemptFailed(_ error: any Error, failures: Int, retryIn delay: TimeAmount) -> Bool {
        if let promise = self.state.value.firstConnectPromise {
            self.state.value.firstConnectPromise = nil
            self.logger.warning("cannot connect to Redis", metadata: ["error": "\(error)"])
            promise.fail(error)
            return false
        }
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
    }

    func shutdownFinished() {
        self.stopFollowingSentinel()
        self.connectedFlag.store(false, ordering: .relaxed)
        if let promise = self.state.value.firstConnectPromise {
            self.state.value.firstConnectPromise = nil
            promise.fail(RedisError.clientClosed)
        }
        self.logger.debug("Redis client closed")
        self.onEvent?(.closed)
    }
}
