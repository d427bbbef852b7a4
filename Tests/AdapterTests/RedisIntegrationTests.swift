import Adapter
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Against a real `redis-server` (one per test, on its own port, so the tests run in parallel).
@Suite("Redis client against redis-server")
struct RedisIntegrationTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// What a subscriber received and which connection events it reported, readable from the test.
    final class Inbox: Sendable {
        struct Message: Equatable {
            var channel: String
            var pattern: String?
            var payload: String
        }

        private let messages = Mutex<[Message]>([])
        private let events = Mutex<[RedisConnectionEvent]>([])

        var received: [Message] { self.messages.withLock { $0 } }
        var receivedEvents: [RedisConnectionEvent] { self.events.withLock { $0 } }

        func count(of payload: String) -> Int {
            self.messages.withLock { $0.filter { $0.payload == payload }.count }
        }

        func record(channel: String, pattern: String?, payload: ByteBuffer) {
            let message = Message(channel: channel, pattern: pattern, payload: String(buffer: payload))
            self.messages.withLock { $0.append(message) }
        }

        func record(_ event: RedisConnectionEvent) {
            self.events.withLock { $0.append(event) }
        }
    }

    func makeSubscriber(
        _ server: RedisTestServer,
        _ inbox: Inbox,
        configuration: RedisConfiguration? = nil
    ) -> RedisSubscriber {
        let subscriber = RedisSubscriber(
            configuration: configuration ?? server.configuration(),
            eventLoopGroup: self.group,
            onEvent: { inbox.record($0) },
            onMessage: { inbox.record(channel: $0, pattern: $1, payload: $2) }
        )
        subscriber.start()
        return subscriber
    }

    func makePublisher(_ server: RedisTestServer, onEvent: (@Sendable (RedisConnectionEvent) -> Void)? = nil)
        async throws -> RedisConnection
    {
        try await value(
            of: RedisConnection.connect(
                configuration: server.configuration(), eventLoopGroup: self.group, onEvent: onEvent)
        )
    }

    @Test func publishedMessagesReachTheSubscriberInOrder() async throws {
        try await RedisTestServer.withServer { server in
            let inbox = Inbox()
            let subscriber = self.makeSubscriber(server, inbox)
            subscriber.subscribe(channels: ["news"])
            try await eventually("subscribed") { subscriber.isReady }
            let publisher = try await self.makePublisher(server)

            var binary = ByteBuffer(string: "bin:")
            binary.writeBytes([0x00, 0x0D, 0x0A, 0xFF])
            #expect(try await value(of: publisher.publish("news", message: ByteBuffer(string: "one"))) == 1)
            #expect(try await value(of: publisher.publish("news", message: binary)) == 1)
            #expect(try await value(of: publisher.publish("news", message: ByteBuffer(string: "three"))) == 1)
            #expect(try await value(of: publisher.publish("elsewhere", message: ByteBuffer(string: "x"))) == 0)

            try await eventually("three messages") { inbox.received.count == 3 }
            #expect(inbox.received.map(\.payload) == ["one", String(buffer: binary), "three"])
            #expect(inbox.received.allSatisfy { $0.channel == "news" && $0.pattern == nil })
            #expect(try await value(of: publisher.pubsubNumsub("news")) == 1)

            try await value(of: subscriber.close())
            try await value(of: publisher.close())
            #expect(inbox.receivedEvents.first == .connected(reconnect: false))
            #expect(inbox.receivedEvents.last == .closed)
        }
    }

    @Test func patternSubscriptionsReportTheMatchingPattern() async throws {
        try await RedisTestServer.withServer { server in
            let inbox = Inbox()
            let subscriber = self.makeSubscriber(server, inbox)
            subscriber.psubscribe(patterns: ["socket.io#/#*"])
            try await eventually("psubscribed") { subscriber.isReady }
            let publisher = try await self.makePublisher(server)

            _ = try await value(of: publisher.publish("socket.io#/#room1#", message: ByteBuffer(string: "a")))
            _ = try await value(of: publisher.publish("other#/#", message: ByteBuffer(string: "b")))
            _ = try await value(of: publisher.publish("socket.io#/#", message: ByteBuffer(string: "c")))

            try await eventually("two messages") { inbox.received.count == 2 }
            #expect(
                inbox.received == [
                    Inbox.Message(channel: "socket.io#/#room1#", pattern: "socket.io#/#*", payload: "a"),
                    Inbox.Message(channel: "socket.io#/#", pattern: "socket.io#/#*", payload: "c"),
                ]
            )
            try await value(of: subscriber.close())
            try await value(of: publisher.close())
        }
    }

    @Test func shardedPubSubRoundTrip() async throws {
        try await RedisTestServer.withServer { server in
            let inbox = Inbox()
            let subscriber = self.makeSubscriber(server, inbox)
            subscriber.ssubscribe(shardChannels: ["socket.io#/#", "socket.io#/#0123456789abcdef#"])
            try await eventually("ssubscribed") { subscriber.isReady }
            let publisher = try await self.makePublisher(server)

            #expect(try await value(of: publisher.spublish("socket.io#/#", message: ByteBuffer(string: "main"))) == 1)
            #expect(
                try await value(
                    of: publisher.spublish("socket.io#/#0123456789abcdef#", message: ByteBuffer(string: "own")))
                    == 1
            )
            try await eventually("two messages") { inbox.received.count == 2 }
            #expect(inbox.received.map(\.channel) == ["socket.io#/#", "socket.io#/#0123456789abcdef#"])
            #expect(try await value(of: publisher.pubsubShardNumsub("socket.io#/#")) == 1)

            subscriber.sunsubscribe(shardChannels: ["socket.io#/#"])
            try await eventually("sunsubscribed") { await numsub(publisher, shard: "socket.io#/#") == 0 }
            try await value(of: subscriber.close())
            try await value(of: publisher.close())
        }
    }

    @Test func subscriptionsAreReferenceCounted() async throws {
        try await RedisTestServer.withServer { server in
            let inbox = Inbox()
            let subscriber = self.makeSubscriber(server, inbox)
            let publisher = try await self.makePublisher(server)
            subscriber.subscribe(channels: ["room", "fence"])
            subscriber.subscribe(channels: ["room"])
            try await eventually("subscribed") { await numsub(publisher, channel: "fence") == 1 && subscriber.isReady }

            subscriber.unsubscribe(channels: ["room"])
            _ = try await value(of: publisher.publish("room", message: ByteBuffer(string: "still")))
            try await eventually("delivered while one reference remains") { inbox.count(of: "still") == 1 }

            subscriber.unsubscribe(channels: ["room"])
            try await eventually("unsubscribed on the server") { await numsub(publisher, channel: "room") == 0 }
            #expect(try await value(of: publisher.publish("room", message: ByteBuffer(string: "gone"))) == 0)
            // Fence: a message we do receive, published after the one we must not.
            _ = try await value(of: publisher.publish("fence", message: ByteBuffer(string: "fence")))
            try await eventually("fence") { inbox.count(of: "fence") == 1 }
            #expect(inbox.count(of: "gone") == 0)
            try await value(of: subscriber.close())
            try await value(of: publisher.close())
        }
    }

    @Test func pipelinedCommandsAreAnsweredInOrder() async throws {
        try await RedisTestServer.withServer { server in
            let connection = try await self.makePublisher(server)
            let futures = (1...500).map { index -> EventLoopFuture<RESPValue> in
                index == 250 ? connection.send(["NOSUCHCOMMAND"]) : connection.send(["INCR", "counter"])
            }
            var expected: Int64 = 0
            for (offset, future) in futures.enumerated() {
                if offset + 1 == 250 {
                    await #expect {
                        try await value(of: future)
                    } throws: { error in
                        guard case .errorReply(let message) = error as? RedisError else { return false }
                        return message.hasPrefix("ERR unknown command")
                    }
                } else {
                    expected += 1
                    #expect(try await value(of: future) == .integer(expected))
                }
            }
            #expect(expected == 499)

            let payload = ByteBuffer(bytes: (0..<200_000).map { UInt8(truncatingIfNeeded: $0) })
            _ = try await value(of: connection.send(["SET", "big", .buffer(payload)]))
            #expect(try await value(of: connection.send(["GET", "big"])) == .bulkString(payload))
            #expect(try await value(of: connection.send(["GET", "missing"])) == .bulkString(nil))
            try await value(of: connection.close())
            await #expect(throws: RedisError.clientClosed) { try await value(of: connection.send(["PING"])) }
        }
    }

    @Test func commandsInFlightFailWhenTheConnectionDrops() async throws {
        try await RedisTestServer.withServer { server in
            let connection = try await self.makePublisher(server)
            let blocked = connection.send(["BLPOP", "empty-list", "30"])
            // Make sure the BLPOP reached the server before it goes away.
            try await eventually("BLPOP is blocking") {
                await info(server, field: "blocked_clients") == "1"
            }
            try await server.stop()
            await #expect(throws: RedisError.connectionClosed) { try await value(of: blocked) }
            try await value(of: connection.close())
        }
    }

    @Test func publishingWhileDisconnectedFailsFastAndIsCounted() async throws {
        try await RedisTestServer.withServer { server in
            let connection = try await self.makePublisher(server)
            try await server.stop()
            try await eventually("disconnected") { !connection.isConnected }

            await #expect(throws: RedisError.notConnected) {
                try await value(of: connection.publish("news", message: ByteBuffer(string: "lost")))
            }
            await #expect(throws: RedisError.notConnected) {
                try await value(of: connection.spublish("news", message: ByteBuffer(string: "lost")))
            }
            #expect(connection.droppedWhileDisconnected == 2)

            try await server.start()
            try await eventually("reconnected") { connection.isConnected }
            #expect(try await value(of: connection.publish("news", message: ByteBuffer(string: "ok"))) == 0)
            #expect(connection.reconnectCount == 1)
            #expect(connection.droppedWhileDisconnected == 2)
            try await value(of: connection.close())
        }
    }

    @Test func subscriberResubscribesAfterARestartAndReceivesExactlyOnce() async throws {
        try await RedisTestServer.withServer { server in
            let inbox = Inbox()
            let subscriber = self.makeSubscriber(server, inbox)
            subscriber.subscribe(channels: ["news", "fence"])
            subscriber.psubscribe(patterns: ["socket.io#/#*"])
            subscriber.ssubscribe(shardChannels: ["shard"])
            try await eventually("subscribed") { subscriber.isReady }
            let publisher = try await self.makePublisher(server)
            _ = try await value(of: publisher.publish("news", message: ByteBuffer(string: "before")))
            try await eventually("first message") { inbox.count(of: "before") == 1 }

            // Readiness may already have flickered while the first subscriptions raced the first connect.
            let eventsBeforeRestart = inbox.receivedEvents.count
            try await server.stop()
            try await eventually("not ready while redis-server is down") { !subscriber.isReady }
            // Wanted while disconnected: must be part of the replay.
            subscriber.subscribe(channels: ["late"])
            try await server.start()
            try await eventually("ready again") { subscriber.isReady }
            try await eventually("publisher back") { publisher.isConnected }

            #expect(try await value(of: publisher.publish("news", message: ByteBuffer(string: "after"))) == 1)
            #expect(try await value(of: publisher.publish("late", message: ByteBuffer(string: "late"))) == 1)
            #expect(
                try await value(of: publisher.publish("socket.io#/#r#", message: ByteBuffer(string: "pattern"))) == 1)
            #expect(try await value(of: publisher.spublish("shard", message: ByteBuffer(string: "sharded"))) == 1)
            #expect(try await value(of: publisher.publish("fence", message: ByteBuffer(string: "fence"))) == 1)
            try await eventually("fence") { inbox.count(of: "fence") == 1 }

            #expect(inbox.count(of: "before") == 1)
            #expect(inbox.count(of: "after") == 1)
            #expect(inbox.count(of: "late") == 1)
            #expect(inbox.count(of: "pattern") == 1)
            #expect(inbox.count(of: "sharded") == 1)
            #expect(try await value(of: publisher.pubsubNumsub("news")) == 1)
            #expect(subscriber.reconnectCount == 1)

            let events = inbox.receivedEvents.dropFirst(eventsBeforeRestart)
            #expect(events.first == .disconnected)
            #expect(events.contains(.connected(reconnect: true)))
            let readiness = events.compactMap { event -> Bool? in
                if case .readinessChanged(let isReady) = event { return isReady }
                return nil
            }
            #expect(readiness == [false, true], "events: \(events)")

            try await value(of: subscriber.close())
            try await value(of: publisher.close())
        }
    }

    @Test func aFrozenServerIsDetectedAndTheSubscriberRecoversWhenItThaws() async throws {
        try await RedisTestServer.withServer { server in
            let inbox = Inbox()
            let fastCheck = server.configuration(healthCheckInterval: .milliseconds(100))
            let subscriber = self.makeSubscriber(server, inbox, configuration: fastCheck)
            subscriber.subscribe(channels: ["news", "fence"])
            try await eventually("subscribed") { subscriber.isReady }
            let eventsBeforeFreeze = inbox.receivedEvents.count

            server.pause()
            // TCP stays up: only the health check can tell.
            try await eventually("not ready while redis-server is frozen") { !subscriber.isReady }
            #expect(inbox.receivedEvents.dropFirst(eventsBeforeFreeze).first == .disconnected)
            server.resume()
            try await eventually("ready after the thaw") { subscriber.isReady }

            let publisher = try await self.makePublisher(server)
            // The connections given up on while frozen are gone once Redis has caught up.
            try await eventually("one subscriber connection") { await numsub(publisher, channel: "news") == 1 }
            #expect(try await value(of: publisher.publish("news", message: ByteBuffer(string: "thawed"))) == 1)
            _ = try await value(of: publisher.publish("fence", message: ByteBuffer(string: "fence")))
            try await eventually("fence") { inbox.count(of: "fence") == 1 }
            #expect(inbox.count(of: "thawed") == 1)
            try await value(of: subscriber.close())
            try await value(of: publisher.close())
        }
    }

    @Test func authAndSelectAreSentOnEveryConnection() async throws {
        try await RedisTestServer.withServer(arguments: ["--requirepass", "s3cret"], password: "s3cret") { server in
            let url = "redis://:s3cret@127.0.0.1:\(server.port)/2"
            let configuration = try RedisConfiguration(url: url, defaults: server.configuration())
            let inDatabase2 = try await value(
                of: RedisConnection.connect(configuration: configuration, eventLoopGroup: self.group))
            _ = try await value(of: inDatabase2.send(["SET", "where", "two"]))

            var database0 = configuration
            database0.database = nil
            let inDatabase0 = try await value(
                of: RedisConnection.connect(configuration: database0, eventLoopGroup: self.group))
            #expect(try await value(of: inDatabase0.send(["GET", "where"])) == .bulkString(nil))
            _ = try await value(of: inDatabase0.send(["SELECT", "2"]))
            #expect(try await value(of: inDatabase0.send(["GET", "where"])) == .bulkString(ByteBuffer(string: "two")))

            var wrong = configuration
            wrong.password = "wrong"
            await #expect {
                try await value(of: RedisConnection.connect(configuration: wrong, eventLoopGroup: self.group))
            } throws: { error in
                guard case .errorReply(let message) = error as? RedisError else { return false }
                return message.contains("WRONGPASS") || message.contains("invalid")
            }

            // A subscriber authenticates too.
            let inbox = Inbox()
            let subscriber = RedisSubscriber(
                configuration: configuration,
                eventLoopGroup: self.group,
                onMessage: { inbox.record(channel: $0, pattern: $1, payload: $2) }
            )
            subscriber.start()
            subscriber.subscribe(channels: ["secure"])
            try await eventually("subscribed with AUTH") { subscriber.isReady }
            #expect(try await value(of: inDatabase0.publish("secure", message: ByteBuffer(string: "m"))) == 1)
            try await eventually("message") { inbox.count(of: "m") == 1 }

            try await value(of: subscriber.close())
            try await value(of: inDatabase2.close())
            try await value(of: inDatabase0.close())
        }
    }

    @Test func connectFailsWhenNothingListens() async throws {
        let port = try await RedisTestServer.freePort()
        let configuration = RedisConfiguration(host: "127.0.0.1", port: port, connectTimeout: .seconds(2))
        await #expect(throws: (any Error).self) {
            try await value(of: RedisConnection.connect(configuration: configuration, eventLoopGroup: self.group))
        }
    }
}

/// `PUBSUB NUMSUB` / `SHARDNUMSUB` of one name, or `nil` on failure (for `eventually`, which polls).
private func numsub(_ connection: RedisConnection, channel: String? = nil, shard: String? = nil) async -> Int? {
    let future = shard.map { connection.pubsubShardNumsub($0) } ?? connection.pubsubNumsub(channel!)
    return try? await value(of: future, timeout: .seconds(2))
}

/// One field of `INFO clients`, read on a separate short-lived connection, or `nil` on failure.
private func info(_ server: RedisTestServer, field: String) async -> String? {
    guard
        let connection = try? await value(
            of: RedisConnection.connect(
                configuration: server.configuration(),
                eventLoopGroup: MultiThreadedEventLoopGroup.singleton
            )
        )
    else { return nil }
    let reply = try? await value(of: connection.send(["INFO", "clients"]), timeout: .seconds(2))
    _ = try? await value(of: connection.close())
    guard let info = reply?.string else { return nil }
    for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(field + ":") {
        return String(line.dropFirst(field.count + 1))
    }
    return nil
}
