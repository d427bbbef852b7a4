import NIOCore

/// The subscriber connection's state: its lifecycle, the subscriptions the adapter *wants* and those Redis has
/// *acknowledged* on the current connection.
///
/// - Wanted subscriptions are reference-counted: the first `subscribe` of a name sends the command, the last
///   `unsubscribe` sends the UNSUBSCRIBE, the calls in between only count. While disconnected only the counts
///   change; `connectSucceeded` replays the whole wanted set.
/// - Acknowledged follows Redis's own acknowledgements and is emptied when the connection closes, so
///   ``isReady`` (connected and acknowledged ⊇ wanted) is false from the moment a connection is lost until the
///   replay is confirmed.
/// - Messages are delivered only for wanted subscriptions (not for one being unsubscribed). A new connection is
///   only made after the old one has closed, so no message is delivered twice.
/// - An UNSUBSCRIBE acknowledgement that we did not ask for (Redis dropping a shard channel whose slot moved) is
///   answered with a new SUBSCRIBE when the subscription is still wanted.
///
/// A plain value, tested without a channel; `Connection` is the channel in ``RedisSubscriber``.
struct RedisSubscriptionStateMachine<Connection> {
    private var lifecycle = RedisConnectionStateMachine<Connection>()
    /// Wanted subscriptions and how many times each was asked for (always ≥ 1).
    private var wanted: [RedisSubscription: Int] = [:]
    private var acknowledged: Set<RedisSubscription> = []
    /// UNSUBSCRIBEs sent and not yet acknowledged, per subscription.
    private var unsubscribesInFlight: [RedisSubscription: Int] = [:]
    /// How many wanted subscriptions are not acknowledged: kept up to date so readiness is O(1).
    private var unacknowledgedWantedCount = 0

    /// The established connection, if any.
    var connection: Connection? { self.lifecycle.connection }
    var isConnected: Bool { self.lifecycle.connection != nil }
    /// Connected, and every wanted subscription acknowledged on this connection.
    var isReady: Bool { self.isConnected && self.unacknowledgedWantedCount == 0 }
    var reconnectCount: Int { self.lifecycle.reconnectCount }
    var wantedSubscriptions: Set<RedisSubscription> { Set(self.wanted.keys) }
    var acknowledgedSubscriptions: Set<RedisSubscription> { self.acknowledged }

    // MARK: Lifecycle

    typealias ConnectAction = RedisConnectionStateMachine<Connection>.ConnectAction
    typealias RetryAction = RedisConnectionStateMachine<Connection>.RetryAction
    typealias ShutdownAction = RedisConnectionStateMachine<Connection>.ShutdownAction

    mutating func start() -> ConnectAction {
        self.lifecycle.start()
    }

    mutating func reconnectTimerFired() -> ConnectAction {
        self.lifecycle.reconnectTimerFired()
    }

    enum ConnectSucceededAction {
        /// Write these commands (the replay of the wanted set; maybe none) on the new connection.
        case subscribe(Connection, [RedisSubscriptionCommand], isReconnect: Bool)
        case closeConnection(Connection)
    }

    mutating func connectSucceeded(_ connection: Connection) -> ConnectSucceededAction {
        switch self.lifecycle.connectSucceeded(connection) {
        case .useConnection(let connection, let isReconnect):
            self.resetAcknowledged()
            return .subscribe(connection, self.replayCommands(), isReconnect: isReconnect)
        case .closeConnection(let connection):
            return .closeConnection(connection)
        }
    }

    mutating func connectFailed() -> RetryAction {
        self.lifecycle.connectFailed()
    }

    mutating func connectionClosed() -> RetryAction {
        self.resetAcknowledged()
        return self.lifecycle.connectionClosed()
    }

    mutating func shutdown() -> ShutdownAction {
        self.lifecycle.shutdown()
    }

    // MARK: Subscriptions

    enum SubscriptionAction {
        case send(Connection, [RedisSubscriptionCommand])
        case doNothing
    }

    /// The adapter wants these (once more each).
    mutating func subscribe(_ kind: RedisSubscriptionKind, _ names: [String]) -> SubscriptionAction {
        var added: [String] = []
        for name in names {
            let subscription = RedisSubscription(kind, name)
            let count = self.wanted[subscription, default: 0]
            self.wanted[subscription] = count + 1
            if count == 0 {
                if !self.acknowledged.contains(subscription) {
                    self.unacknowledgedWantedCount += 1
                }
                added.append(name)
            }
        }
        return self.send(.subscribe, kind, added)
    }

    /// The adapter no longer needs these (once less each). Names it did not want are ignored.
    mutating func unsubscribe(_ kind: RedisSubscriptionKind, _ names: [String]) -> SubscriptionAction {
        var removed: [String] = []
        for name in names {
            let subscription = RedisSubscription(kind, name)
            guard let count = self.wanted[subscription] else { continue }
            if count > 1 {
                self.wanted[subscription] = count - 1
                continue
            }
            self.wanted[subscription] = nil
            if !self.acknowledged.contains(subscription) {
                self.unacknowledgedWantedCount -= 1
            }
            removed.append(name)
        }
        if self.isConnected {
            for name in removed {
                self.unsubscribesInFlight[RedisSubscription(kind, name), default: 0] += 1
            }
        }
        return self.send(.unsubscribe, kind, removed)
    }

    enum PushAction: Equatable {
        /// Hand the message to the adapter.
        case deliver(channel: String, pattern: String?, payload: ByteBuffer)
        /// Subscribe again to something Redis dropped on its own.
        case resubscribe(RedisSubscriptionCommand)
        case doNothing
    }

    mutating func pushReceived(_ push: RedisPush) -> PushAction {
        switch push {
        case .message(let subscription, let channel, let payload):
            guard self.wanted[subscription] != nil else { return .doNothing }
            let pattern = subscription.kind == .pattern ? subscription.name : nil
            return .deliver(channel: channel, pattern: pattern, payload: payload)

        case .subscribed(let subscription, _):
            if self.acknowledged.insert(subscription).inserted, self.wanted[subscription] != nil {
                self.unacknowledgedWantedCount -= 1
            }
            return .doNothing

        case .unsubscribed(_, name: .none, _):
            return .doNothing

        case .unsubscribed(let kind, name: .some(let name), _):
            let subscription = RedisSubscription(kind, name)
            if self.acknowledged.remove(subscription) != nil, self.wanted[subscription] != nil {
                self.unacknowledgedWantedCount += 1
            }
            if let inFlight = self.unsubscribesInFlight[subscription] {
                self.unsubscribesInFlight[subscription] = inFlight > 1 ? inFlight - 1 : nil
                return .doNothing
            }
            guard self.wanted[subscription] != nil, self.isConnected else { return .doNothing }
            return .resubscribe(RedisSubscriptionCommand(verb: .subscribe, kind: kind, names: [name]))
        }
    }

    // MARK: Helpers

    private func send(
        _ verb: RedisSubscriptionCommand.Verb,
        _ kind: RedisSubscriptionKind,
        _ names: [String]
    ) -> SubscriptionAction {
        guard !names.isEmpty, let connection = self.lifecycle.connection else { return .doNothing }
        return .send(connection, Self.commands(verb, kind, names))
    }

    /// Sharded (un)subscribes go one name per command: Redis Cluster refuses names from different hash slots in
    /// one SSUBSCRIBE.
    private static func commands(
        _ verb: RedisSubscriptionCommand.Verb,
        _ kind: RedisSubscriptionKind,
        _ names: [String]
    ) -> [RedisSubscriptionCommand] {
        switch kind {
        case .channel, .pattern:
            return [RedisSubscriptionCommand(verb: verb, kind: kind, names: names)]
        case .shardChannel:
            return names.map { RedisSubscriptionCommand(verb: verb, kind: kind, names: [$0]) }
        }
    }

    private func replayCommands() -> [RedisSubscriptionCommand] {
        RedisSubscriptionKind.allCases.flatMap { kind -> [RedisSubscriptionCommand] in
            let names = self.wanted.keys.filter { $0.kind == kind }.map(\.name).sorted()
            return names.isEmpty ? [] : Self.commands(.subscribe, kind, names)
        }
    }

    private mutating func resetAcknowledged() {
        self.acknowledged.removeAll()
        self.unsubscribesInFlight.removeAll()
        self.unacknowledgedWantedCount = self.wanted.count
    }
}

extension RedisSubscriptionStateMachine.ConnectSucceededAction: Equatable where Connection: Equatable {}
extension RedisSubscriptionStateMachine.SubscriptionAction: Equatable where Connection: Equatable {}
