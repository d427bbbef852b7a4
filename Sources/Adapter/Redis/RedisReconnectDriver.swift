import Logging
import NIOCore
import Synchronization

/// The lifecycle a reconnecting Redis client's state machine answers: ``RedisConnectionStateMachine`` itself, and
/// ``RedisSubscriptionStateMachine``, which wraps one.
protocol RedisLifecycleMachine: SendableMetatype {
    associatedtype Connection
    typealias Lifecycle = RedisConnectionStateMachine<Connection>
    var connection: Connection? { get }
    mutating func start() -> Lifecycle.ConnectAction
    mutating func reconnectTimerFired() -> Lifecycle.ConnectAction
    mutating func connectFailed() -> Lifecycle.RetryAction
    mutating func connectionClosed() -> Lifecycle.RetryAction
    mutating func shutdown() -> Lifecycle.ShutdownAction
}

extension RedisConnectionStateMachine: RedisLifecycleMachine {}
extension RedisSubscriptionStateMachine: RedisLifecycleMachine {}

/// What a client does at each step of its connection's life; called on the driver's loop.
protocol RedisReconnectClient: AnyObject, Sendable {
    associatedtype Machine: RedisLifecycleMachine where Machine.Connection == any Channel
    var driver: RedisReconnectDriver<Machine> { get }
    var configuration: RedisConfiguration { get }
    var eventLoop: any EventLoop { get }
    var logger: Logger { get }
    /// Opens a connection (TCP, handshake, the client's pipeline).
    func openConnection() -> EventLoopFuture<any Channel>
    /// A connection is open: feed it to the machine (`driver.machine.connectSucceeded`) and act on the answer. The
    /// driver watches the channel's close afterwards.
    func connectionOpened(_ channel: any Channel)
    /// An attempt failed and the machine asks for a retry after `retryIn`. Return false to give up instead (the
    /// client closes).
    func connectAttemptFailed(_ error: any Error, failures: Int, retryIn: TimeAmount) -> Bool
    /// The established connection was lost; a reconnect follows after `retryIn`.
    func connectionLost(retryIn: TimeAmount)
    /// The client is closed for good.
    func shutdownFinished()
}

extension RedisReconnectClient {
    /// Starts connecting in the background (and reconnecting whenever the connection is lost), following the
    /// sentinels first when the configuration names them. From any thread.
    func startReconnecting() {
        self.followSentinel()
        self.driver.onLoop { self.driver.start(self) }
    }

    /// With a sentinel configuration: hear of `+switch-master` and leave a primary that is no longer one.
    func followSentinel() {
        guard let sentinel = self.configuration.sentinel else { return }
        let driver = self.driver
        let logger = self.logger
        sentinel.monitor.register(ObjectIdentifier(self), eventLoopGroup: self.eventLoop, logger: logger) { primary in
            driver.dropConnection(unlessConnectedTo: primary, logger: logger)
        }
    }

    /// Stops listening to the sentinels (when the client is closed for good).
    func stopFollowingSentinel() {
        guard let sentinel = self.configuration.sentinel else { return }
        _ = sentinel.monitor.unregister(ObjectIdentifier(self), on: self.eventLoop)
    }

    /// Closes the connection, stops reconnecting and stops listening to the sentinels. From any thread.
    func closeReconnecting() -> EventLoopFuture<Void> {
        let closed = self.eventLoop.flatSubmit { self.driver.close(self) }
        guard let sentinel = self.configuration.sentinel else { return closed }
        return closed.flatMap { sentinel.monitor.unregister(ObjectIdentifier(self), on: self.eventLoop) }
    }
}

/// The reconnect and shutdown plumbing of a Redis client, shared by ``RedisConnection`` and ``RedisSubscriber``:
/// one connection at a time, a backoff between attempts, a shutdown that waits for the connection to close. The
/// rules are the machine's (a plain value, tested on its own); the driver performs its actions and keeps the
/// machine, the reconnect timer and the close promise on one event loop.
final class RedisReconnectDriver<Machine: RedisLifecycleMachine>: Sendable where Machine.Connection == any Channel {
    let eventLoop: any EventLoop
    private let backoff: RedisBackoff
    private let box: NIOLoopBoundBox<State>

    private struct State {
        var machine: Machine
        var reconnectTimer: Scheduled<Void>?
        var closePromise: EventLoopPromise<Void>?
        /// The connect in progress, by number; abandoned (its outcome ignored, a channel it still makes closed)
        /// when the primary moves while it waits.
        var attempt: UInt64 = 0
        var attemptPending = false
        /// Fails the pending attempt (set while one is pending).
        var abandon: (() -> Void)?
        /// The primary the last `+switch-master` named, and the one known when the pending attempt started: an
        /// attempt that began after the switch asked the sentinels since, and is not abandoned when the other
        /// sentinels announce the same switch.
        var announcedPrimary: RedisAddress?
        var attemptKnewPrimary: RedisAddress?
    }

    init(machine: sending Machine, backoff: RedisBackoff, eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.backoff = backoff
        self.box = .makeBoxSendingValue(State(machine: machine), eventLoop: eventLoop)
    }

    /// The machine, on the loop.
    var machine: Machine {
        get { box.value.machine }
        _modify { yield &box.value.machine }
    }

    /// Whether `close` was asked (on the loop).
    var isClosing: Bool { box.value.closePromise != nil }

    /// Runs `body` on the loop: at once when already there.
    func onLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop {
            body()
        } else {
            eventLoop.execute(body)
        }
    }

    /// Starts connecting (and reconnecting whenever the connection is lost). On the loop.
    func start<Client: RedisReconnectClient>(_ client: Client) where Client.Machine == Machine {
        switch box.value.machine.start() {
        case .connect: connect(client)
        case .doNothing: break
        }
    }

    /// Closes the connection and stops reconnecting. On the loop.
    func close<Client: RedisReconnectClient>(_ client: Client) -> EventLoopFuture<Void> where Client.Machine == Machine {
        if let promise = box.value.closePromise {
            return promise.futureResult
        }
        let promise = eventLoop.makePromise(of: Void.self)
        box.value.closePromise = promise
        switch box.value.machine.shutdown() {
        case .closeConnection(let channel):
            channel.close(promise: nil)
        case .cancelReconnectTimerAndFinish:
            box.value.reconnectTimer?.cancel()
            box.value.reconnectTimer = nil
            finish(client)
        case .finishShutdown:
            finish(client)
        case .waitForShutdown:
            break
        }
        return promise.futureResult
    }

    /// Closes the established connection unless it is to `primary` (a sentinel announced a new primary); the
    /// reconnect that follows asks the sentinels again. A connect in progress is abandoned too: it may be waiting
    /// on the dead primary's address, which on a real network does not refuse but stays silent until the
    /// connect timeout (seconds); the retry asks the sentinels, who now name the new primary. From any thread.
    func dropConnection(unlessConnectedTo primary: RedisAddress, logger: Logger) {
        self.onLoop {
            self.box.value.announcedPrimary = primary
            if self.box.value.attemptPending {
                guard self.box.value.attemptKnewPrimary != primary else { return }
                logger.info("the Redis primary moved, abandoning a connect in progress", metadata: ["redis.primary": "\(primary)"])
                self.abandonAttempt()
                return
            }
            guard let channel = self.box.value.machine.connection else { return }
            if let remote = channel.remoteAddress, remote.ipAddress == primary.host, remote.port == primary.port {
                return
            }
            logger.info(
                "the Redis primary moved, reconnecting",
                metadata: ["redis.primary": "\(primary)", "redis.was": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"]
            )
            channel.close(promise: nil)
        }
    }

    private func abandonAttempt() {
        guard box.value.attemptPending, let fail = box.value.abandon else { return }
        fail()
    }

    private func connect<Client: RedisReconnectClient>(_ client: Client) where Client.Machine == Machine {
        box.value.attempt &+= 1
        let attempt = box.value.attempt
        box.value.attemptPending = true
        box.value.attemptKnewPrimary = box.value.announcedPrimary
        // Settled once: by the connect's own outcome, or by an abandon (then a channel that comes later closes).
        let settle: @Sendable (Result<any Channel, any Error>) -> Void = { result in
            guard self.box.value.attemptPending, self.box.value.attempt == attempt else {
                if case .success(let late) = result { late.close(promise: nil) }
                return
            }
            self.box.value.attemptPending = false
            self.box.value.abandon = nil
            self.attemptFinished(client, result)
        }
        box.value.abandon = { settle(.failure(RedisError.primaryMoved)) }
        client.openConnection().whenComplete { result in settle(result) }
    }

    private func attemptFinished<Client: RedisReconnectClient>(
        _ client: Client,
        _ result: Result<any Channel, any Error>
    ) where Client.Machine == Machine {
        switch result {
        case .success(let channel):
            client.connectionOpened(channel)
            // Watched after the machine knows the channel: an already closed channel calls back at once.
            channel.closeFuture.whenComplete { _ in self.connectionClosed(client) }
        case .failure(let error):
            connectFailed(client, error)
        }
    }

    private func connectFailed<Client: RedisReconnectClient>(_ client: Client, _ error: any Error) where Client.Machine == Machine {
        switch box.value.machine.connectFailed() {
        case .scheduleReconnect(let failures):
            let delay = backoff.delay(forAttempt: failures)
            if client.connectAttemptFailed(error, failures: failures, retryIn: delay) {
                scheduleReconnect(client, after: delay)
            } else {
                _ = close(client)
            }
        case .finishShutdown:
            finish(client)
        }
    }

    private func connectionClosed<Client: RedisReconnectClient>(_ client: Client) where Client.Machine == Machine {
        switch box.value.machine.connectionClosed() {
        case .scheduleReconnect(let failures):
            let delay = backoff.delay(forAttempt: failures)
            scheduleReconnect(client, after: delay)
            client.connectionLost(retryIn: delay)
        case .finishShutdown:
            finish(client)
        }
    }

    private func scheduleReconnect<Client: RedisReconnectClient>(_ client: Client, after delay: TimeAmount) where Client.Machine == Machine {
        box.value.reconnectTimer = eventLoop.scheduleTask(in: delay) {
            self.box.value.reconnectTimer = nil
            switch self.box.value.machine.reconnectTimerFired() {
            case .connect: self.connect(client)
            case .doNothing: break
            }
        }
    }

    private func finish<Client: RedisReconnectClient>(_ client: Client) where Client.Machine == Machine {
        client.shutdownFinished()
        box.value.closePromise?.succeed()
    }
}
