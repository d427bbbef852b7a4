import NIOCore
import Testing

@testable import Adapter

@Suite("Redis subscriber state machine")
struct RedisSubscriptionStateMachineTests {
    typealias Machine = RedisSubscriptionStateMachine<String>

    static func subscribe(_ kind: RedisSubscriptionKind, _ names: String...) -> RedisSubscriptionCommand {
        RedisSubscriptionCommand(verb: .subscribe, kind: kind, names: names)
    }

    static func unsubscribe(_ kind: RedisSubscriptionKind, _ names: String...) -> RedisSubscriptionCommand {
        RedisSubscriptionCommand(verb: .unsubscribe, kind: kind, names: names)
    }

    static func ack(_ kind: RedisSubscriptionKind, _ name: String) -> RedisPush {
        .subscribed(RedisSubscription(kind, name), count: 1)
    }

    static func unack(_ kind: RedisSubscriptionKind, _ name: String) -> RedisPush {
        .unsubscribed(kind, name: name, count: 0)
    }

    static func message(_ channel: String, _ payload: String) -> RedisPush {
        .message(
            subscription: RedisSubscription(.channel, channel), channel: channel, payload: ByteBuffer(string: payload))
    }

    /// A machine connected on `connection` with no subscriptions.
    static func connected(_ connection: String = "c1") -> Machine {
        var machine = Machine()
        #expect(machine.start() == .connect)
        #expect(machine.connectSucceeded(connection) == .subscribe(connection, [], isReconnect: false))
        return machine
    }

    // MARK: Reference counting

    @Test func firstSubscribeSendsTheCommandAndLaterOnesOnlyCount() {
        var machine = Self.connected()
        #expect(machine.subscribe(.channel, ["room"]) == .send("c1", [Self.subscribe(.channel, "room")]))
        #expect(machine.subscribe(.channel, ["room"]) == .doNothing)
        #expect(machine.subscribe(.channel, ["room", "other"]) == .send("c1", [Self.subscribe(.channel, "other")]))
    }

    @Test func onlyTheLastUnsubscribeSendsUnsubscribe() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["room"])
        _ = machine.subscribe(.channel, ["room"])
        #expect(machine.unsubscribe(.channel, ["room"]) == .doNothing)
        #expect(machine.unsubscribe(.channel, ["room"]) == .send("c1", [Self.unsubscribe(.channel, "room")]))
        #expect(machine.wantedSubscriptions.isEmpty)
    }

    @Test func unsubscribingSomethingNeverWantedIsIgnored() {
        var machine = Self.connected()
        #expect(machine.unsubscribe(.channel, ["nope"]) == .doNothing)
        #expect(machine.isReady)
    }

    @Test func shardChannelsGoOnePerCommand() {
        var machine = Self.connected()
        #expect(
            machine.subscribe(.shardChannel, ["a", "b"])
                == .send("c1", [Self.subscribe(.shardChannel, "a"), Self.subscribe(.shardChannel, "b")])
        )
        #expect(
            machine.unsubscribe(.shardChannel, ["a", "b"])
                == .send("c1", [Self.unsubscribe(.shardChannel, "a"), Self.unsubscribe(.shardChannel, "b")])
        )
    }

    @Test func kindsAreCountedSeparately() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["x"])
        #expect(machine.subscribe(.pattern, ["x"]) == .send("c1", [Self.subscribe(.pattern, "x")]))
        #expect(machine.subscribe(.shardChannel, ["x"]) == .send("c1", [Self.subscribe(.shardChannel, "x")]))
    }

    // MARK: Readiness

    @Test func isReadyOnlyWhenEveryWantedSubscriptionIsAcknowledged() {
        var machine = Self.connected()
        #expect(machine.isReady)
        _ = machine.subscribe(.channel, ["a", "b"])
        _ = machine.psubscribe("p*")
        #expect(!machine.isReady)
        #expect(machine.pushReceived(Self.ack(.channel, "a")) == .doNothing)
        #expect(machine.pushReceived(Self.ack(.channel, "b")) == .doNothing)
        #expect(!machine.isReady)
        #expect(machine.pushReceived(Self.ack(.pattern, "p*")) == .doNothing)
        #expect(machine.isReady)
        #expect(machine.acknowledgedSubscriptions.count == 3)
    }

    @Test func isNotReadyWhileDisconnectedEvenWithNothingWanted() {
        var machine = Machine()
        #expect(!machine.isReady)
        _ = machine.start()
        #expect(!machine.isReady)
    }

    @Test func removingAnUnacknowledgedSubscriptionRestoresReadiness() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["a"])
        #expect(!machine.isReady)
        _ = machine.unsubscribe(.channel, ["a"])
        #expect(machine.isReady)
        // The late acknowledgements change nothing.
        _ = machine.pushReceived(Self.ack(.channel, "a"))
        _ = machine.pushReceived(Self.unack(.channel, "a"))
        #expect(machine.isReady)
        #expect(machine.acknowledgedSubscriptions.isEmpty)
    }

    // MARK: Reconnects

    @Test func subscriptionsMadeWhileDisconnectedAreReplayedOnConnect() {
        var machine = Machine()
        #expect(machine.subscribe(.channel, ["b", "a"]) == .doNothing)
        #expect(machine.subscribe(.shardChannel, ["s2", "s1"]) == .doNothing)
        #expect(machine.subscribe(.pattern, ["p*"]) == .doNothing)
        #expect(machine.start() == .connect)
        #expect(
            machine.connectSucceeded("c1")
                == .subscribe(
                    "c1",
                    [
                        Self.subscribe(.channel, "a", "b"),
                        Self.subscribe(.pattern, "p*"),
                        Self.subscribe(.shardChannel, "s1"),
                        Self.subscribe(.shardChannel, "s2"),
                    ],
                    isReconnect: false
                )
        )
    }

    @Test func aLostConnectionResetsAcknowledgedAndReplaysTheWantedSetAfterBackoff() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["a"])
        _ = machine.pushReceived(Self.ack(.channel, "a"))
        #expect(machine.isReady)

        #expect(machine.connectionClosed() == .scheduleReconnect(failures: 1))
        #expect(!machine.isReady)
        #expect(!machine.isConnected)
        #expect(machine.acknowledgedSubscriptions.isEmpty)
        // Changes while disconnected only count.
        #expect(machine.subscribe(.channel, ["b"]) == .doNothing)
        #expect(machine.unsubscribe(.channel, ["a"]) == .doNothing)

        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.connectFailed() == .scheduleReconnect(failures: 2))
        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.connectFailed() == .scheduleReconnect(failures: 3))
        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.connectSucceeded("c2") == .subscribe("c2", [Self.subscribe(.channel, "b")], isReconnect: true))
        #expect(machine.reconnectCount == 1)
        #expect(!machine.isReady)
        _ = machine.pushReceived(Self.ack(.channel, "b"))
        #expect(machine.isReady)

        // The failure count starts again after a success.
        #expect(machine.connectionClosed() == .scheduleReconnect(failures: 1))
    }

    @Test func theFirstConnectFailureIsRetriedToo() {
        var machine = Machine()
        #expect(machine.start() == .connect)
        #expect(machine.connectFailed() == .scheduleReconnect(failures: 1))
        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.connectSucceeded("c1") == .subscribe("c1", [], isReconnect: false))
        #expect(machine.reconnectCount == 0)
    }

    @Test func startTwiceAndStrayTimersDoNothing() {
        var machine = Self.connected()
        #expect(machine.start() == .doNothing)
        #expect(machine.reconnectTimerFired() == .doNothing)
    }

    // MARK: Messages

    @Test func messagesOfWantedChannelsAreDelivered() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["news"])
        _ = machine.pushReceived(Self.ack(.channel, "news"))
        #expect(
            machine.pushReceived(Self.message("news", "hi"))
                == .deliver(channel: "news", pattern: nil, payload: ByteBuffer(string: "hi"))
        )
    }

    @Test func patternMessagesCarryThePattern() {
        var machine = Self.connected()
        _ = machine.psubscribe("socket.io#/#*")
        let push = RedisPush.message(
            subscription: RedisSubscription(.pattern, "socket.io#/#*"),
            channel: "socket.io#/#room#",
            payload: ByteBuffer(string: "x")
        )
        #expect(
            machine.pushReceived(push)
                == .deliver(channel: "socket.io#/#room#", pattern: "socket.io#/#*", payload: ByteBuffer(string: "x"))
        )
    }

    @Test func messagesOfAChannelBeingUnsubscribedAreDropped() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["news"])
        _ = machine.pushReceived(Self.ack(.channel, "news"))
        _ = machine.unsubscribe(.channel, ["news"])
        #expect(machine.pushReceived(Self.message("news", "late")) == .doNothing)
        #expect(machine.pushReceived(Self.message("never-subscribed", "x")) == .doNothing)
    }

    // MARK: Unsubscribe acknowledgements

    @Test func resubscribingBeforeTheUnsubscribeIsAcknowledgedEndsSubscribed() {
        var machine = Self.connected()
        _ = machine.subscribe(.channel, ["a"])
        _ = machine.pushReceived(Self.ack(.channel, "a"))
        #expect(machine.unsubscribe(.channel, ["a"]) == .send("c1", [Self.unsubscribe(.channel, "a")]))
        #expect(machine.subscribe(.channel, ["a"]) == .send("c1", [Self.subscribe(.channel, "a")]))
        // Redis answers in order: our own unsubscribe, then the new subscribe.
        #expect(machine.pushReceived(Self.unack(.channel, "a")) == .doNothing)
        #expect(!machine.isReady)
        #expect(machine.pushReceived(Self.ack(.channel, "a")) == .doNothing)
        #expect(machine.isReady)
        #expect(machine.pushReceived(Self.message("a", "m")) != .doNothing)
    }

    @Test func anUnsubscribeWeDidNotAskForIsAnsweredWithASubscribe() {
        var machine = Self.connected()
        _ = machine.subscribe(.shardChannel, ["s"])
        _ = machine.pushReceived(Self.ack(.shardChannel, "s"))
        // Redis drops a shard channel on its own (its slot moved).
        #expect(
            machine.pushReceived(Self.unack(.shardChannel, "s")) == .resubscribe(Self.subscribe(.shardChannel, "s")))
        #expect(!machine.isReady)
        _ = machine.pushReceived(Self.ack(.shardChannel, "s"))
        #expect(machine.isReady)
    }

    @Test func anArgumentlessUnsubscribeAcknowledgementIsIgnored() {
        var machine = Self.connected()
        #expect(machine.pushReceived(.unsubscribed(.channel, name: nil, count: 0)) == .doNothing)
    }

    // MARK: Shutdown

    @Test func shutdownWhileConnectedClosesAndFinishesWhenClosed() {
        var machine = Self.connected()
        #expect(machine.shutdown() == .closeConnection("c1"))
        #expect(machine.shutdown() == .waitForShutdown)
        #expect(machine.connectionClosed() == .finishShutdown)
        #expect(machine.reconnectTimerFired() == .doNothing)
        #expect(!machine.isReady)
    }

    @Test func shutdownWhileConnectingClosesTheConnectionThatArrives() {
        var machine = Machine()
        _ = machine.start()
        #expect(machine.shutdown() == .waitForShutdown)
        #expect(machine.connectSucceeded("late") == .closeConnection("late"))
        #expect(machine.connectionClosed() == .finishShutdown)
    }

    @Test func shutdownWhileConnectingFinishesWhenTheAttemptFails() {
        var machine = Machine()
        _ = machine.start()
        #expect(machine.shutdown() == .waitForShutdown)
        #expect(machine.connectFailed() == .finishShutdown)
    }

    @Test func shutdownWhileWaitingCancelsTheTimer() {
        var machine = Self.connected()
        _ = machine.connectionClosed()
        #expect(machine.shutdown() == .cancelReconnectTimerAndFinish)
        #expect(machine.reconnectTimerFired() == .doNothing)
    }

    @Test func shutdownBeforeStartFinishesAtOnce() {
        var machine = Machine()
        #expect(machine.shutdown() == .finishShutdown)
        #expect(machine.start() == .doNothing)
    }

    // MARK: Pushes

    static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    @Test func readsPushesFromRESPArrays() {
        #expect(
            RedisPush(.array([Self.bulk("message"), Self.bulk("ch"), Self.bulk("p")]))
                == .message(
                    subscription: RedisSubscription(.channel, "ch"), channel: "ch", payload: ByteBuffer(string: "p"))
        )
        #expect(
            RedisPush(.array([Self.bulk("smessage"), Self.bulk("ch"), Self.bulk("p")]))
                == .message(
                    subscription: RedisSubscription(.shardChannel, "ch"),
                    channel: "ch",
                    payload: ByteBuffer(string: "p")
                )
        )
        #expect(
            RedisPush(.array([Self.bulk("pmessage"), Self.bulk("c*"), Self.bulk("ch"), Self.bulk("p")]))
                == .message(
                    subscription: RedisSubscription(.pattern, "c*"), channel: "ch", payload: ByteBuffer(string: "p"))
        )
        #expect(
            RedisPush(.array([Self.bulk("subscribe"), Self.bulk("ch"), .integer(1)]))
                == .subscribed(RedisSubscription(.channel, "ch"), count: 1)
        )
        #expect(
            RedisPush(.array([Self.bulk("psubscribe"), Self.bulk("c*"), .integer(2)]))
                == .subscribed(RedisSubscription(.pattern, "c*"), count: 2)
        )
        #expect(
            RedisPush(.array([Self.bulk("ssubscribe"), Self.bulk("s"), .integer(1)]))
                == .subscribed(RedisSubscription(.shardChannel, "s"), count: 1)
        )
        #expect(
            RedisPush(.array([Self.bulk("unsubscribe"), Self.bulk("ch"), .integer(0)]))
                == .unsubscribed(.channel, name: "ch", count: 0)
        )
        #expect(
            RedisPush(.array([Self.bulk("punsubscribe"), Self.bulk("c*"), .integer(0)]))
                == .unsubscribed(.pattern, name: "c*", count: 0)
        )
        #expect(
            RedisPush(.array([Self.bulk("sunsubscribe"), Self.bulk("s"), .integer(0)]))
                == .unsubscribed(.shardChannel, name: "s", count: 0)
        )
        #expect(
            RedisPush(.array([Self.bulk("unsubscribe"), .bulkString(nil), .integer(0)]))
                == .unsubscribed(.channel, name: nil, count: 0)
        )
    }

    @Test(arguments: [
        RESPValue.simpleString("OK"),
        .integer(1),
        .array([]),
        .array([.bulkString(ByteBuffer(string: "message")), .bulkString(ByteBuffer(string: "only-two"))]),
        .array([.bulkString(ByteBuffer(string: "lrange")), .bulkString(ByteBuffer(string: "a")), .integer(1)]),
        .array([.bulkString(ByteBuffer(string: "subscribe")), .bulkString(ByteBuffer(string: "c")), .bulkString(nil)]),
    ])
    func ordinaryRepliesAreNotPushes(_ value: RESPValue) {
        #expect(RedisPush(value) == nil)
    }
}

extension RedisSubscriptionStateMachine {
    fileprivate mutating func psubscribe(_ pattern: String) -> SubscriptionAction {
        self.subscribe(.pattern, [pattern])
    }
}
