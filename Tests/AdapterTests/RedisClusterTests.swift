import Foundation
import NIOCore
import SocketIO
import Testing

@testable import Adapter

/// The fixtures of `Fixtures/sharded/` (see the README there): what Node.js 8.3.0's sharded adapter sent.
enum ShardedFixtures {
    struct Command {
        var step: String
        var command: String
        var channel: String
        var slot: Int
        var file: String?
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/sharded")

    static func index() throws -> PacketValue {
        try PacketValue.parseJSON(Array(try Data(contentsOf: directory.appendingPathComponent("index.json"))))
    }

    static func commands() throws -> [Command] {
        try #require(try index()["commands"]?.arrayValue).map { entry in
            Command(
                step: try #require(entry["step"]?.stringValue),
                command: try #require(entry["command"]?.stringValue),
                channel: try #require(entry["channel"]?.stringValue),
                slot: Int(try #require(entry["slot"]?.numberValue)),
                file: entry["file"]?.stringValue
            )
        }
    }

    static func publishes() throws -> [(command: Command, bytes: ByteBuffer)] {
        try commands().filter { $0.command == "SPUBLISH" }.map { command in
            let file = try #require(command.file)
            return (command, ByteBuffer(bytes: try Data(contentsOf: directory.appendingPathComponent(file))))
        }
    }
}

@Suite("Redis Cluster: hash slots, slot map, redirections")
struct RedisClusterSlotTests {
    @Test func crc16IsXModem() {
        #expect(RedisClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisClusterSlot.crc16([UInt8]()) == 0)
    }

    /// Every channel of the capture, against the slot Redis itself computed (`CLUSTER KEYSLOT`).
    @Test func slotsMatchRedisForTheCapturedChannels() throws {
        let commands = try ShardedFixtures.commands()
        #expect(commands.count >= 20)
        for command in commands {
            #expect(RedisClusterSlot.of(command.channel) == command.slot, "\(command.channel)")
        }
    }

    @Test func hashTags() {
        let slot: (String) -> Int = { RedisClusterSlot.of($0) }
        #expect(slot("{user1000}.following") == slot("{user1000}.followers"))
        #expect(slot("{user1000}.following") == slot("user1000"))
        #expect(slot("foo{}{bar}") != slot("bar"))  // empty tag: the whole key
        #expect(slot("foo{{bar}}zap") == slot("{bar"))  // from the first { to the first } after it
        #expect(slot("foo{bar}{zap}") == slot("bar"))  // only the first tag
        #expect(slot("foo{bar") != slot("bar"))  // no closing brace: the whole key
        #expect((0..<RedisClusterSlot.count).contains(slot("é☃")))
    }

    @Test func readsClusterSlots() throws {
        func node(_ host: String, _ port: Int64, _ id: String) -> RESPValue {
            .array([.bulkString(ByteBuffer(string: host)), .integer(port), .bulkString(ByteBuffer(string: id))])
        }
        let reply = RESPValue.array([
            .array([.integer(0), .integer(5460), node("127.0.0.1", 7000, "a"), node("127.0.0.1", 7003, "d")]),
            .array([.integer(5461), .integer(10922), node("", 7001, "b")]),
            .array([.integer(10923), .integer(16000), node("10.0.0.3", 7002, "c")]),
            .array([.integer(16001), .integer(16383), node("127.0.0.1", 7000, "a")]),
        ])
        let map = try RedisClusterSlotMap(clusterSlots: reply, defaultHost: "seed.local")
        #expect(map.isComplete)
        #expect(map.masters == [
            RedisClusterNode(host: "127.0.0.1", port: 7000), RedisClusterNode(host: "seed.local", port: 7001),
            RedisClusterNode(host: "10.0.0.3", port: 7002),
        ])
        #expect(map.master(ofSlot: 0)?.port == 7000)
        #expect(map.master(ofSlot: 5461)?.port == 7001)
        #expect(map.master(ofSlot: 16383)?.port == 7000)
        #expect(map.master(of: "socket.io#/#")?.port == 7002)  // slot 13868
        #expect(map.slotCounts[RedisClusterNode(host: "127.0.0.1", port: 7000)] == 5461 + 383)

        let partial = try RedisClusterSlotMap(clusterSlots: .array([reply.array![0]]), defaultHost: "x")
        #expect(!partial.isComplete)
        #expect(partial.master(ofSlot: 6000) == nil)
        #expect(try RedisClusterSlotMap(clusterSlots: .array([]), defaultHost: "x").masters.isEmpty)

        #expect(throws: RedisError.self) { try RedisClusterSlotMap(clusterSlots: .integer(1), defaultHost: "x") }
        #expect(throws: RedisError.self) {
            try RedisClusterSlotMap(clusterSlots: .array([.array([.integer(5), .integer(2), node("h", 1, "i")])]), defaultHost: "x")
        }
        #expect(throws: RedisError.self) {
            try RedisClusterSlotMap(clusterSlots: .array([.array([.integer(0), .integer(16384), node("h", 1, "i")])]), defaultHost: "x")
        }
    }

    @Test func readsRedirections() {
        #expect(RedisClusterRedirection(errorMessage: "MOVED 3999 127.0.0.1:6381", defaultHost: "h")
            == .moved(slot: 3999, to: RedisClusterNode(host: "127.0.0.1", port: 6381)))
        #expect(RedisClusterRedirection(errorMessage: "ASK 3999 10.1.2.3:7002", defaultHost: "h")
            == .ask(slot: 3999, to: RedisClusterNode(host: "10.1.2.3", port: 7002)))
        #expect(RedisClusterRedirection(errorMessage: "MOVED 12 :7005", defaultHost: "seed")
            == .moved(slot: 12, to: RedisClusterNode(host: "seed", port: 7005)))
        #expect(RedisClusterRedirection(errorMessage: "MOVED 12 ::1:7005", defaultHost: "seed")
            == .moved(slot: 12, to: RedisClusterNode(host: "::1", port: 7005)))
        #expect(RedisClusterRedirection(RedisError.errorReply("ASK 1 h:1"), defaultHost: "x")?.target
            == RedisClusterNode(host: "h", port: 1))
        for bad in ["ERR unknown", "MOVED", "MOVED x h:1", "MOVED 16384 h:1", "MOVED 1 h", "MOVED 1 h:0", "TRYAGAIN 1 h:1",
                    "CROSSSLOT Keys in request don't hash to the same slot"] {
            #expect(RedisClusterRedirection(errorMessage: bad, defaultHost: "x") == nil, "\(bad)")
        }
        #expect(RedisClusterRedirection(RedisError.connectionClosed, defaultHost: "x") == nil)
    }
}

@Suite("Sharded adapter: channels and messages against the Node.js 8.3.0 capture")
struct ShardedMessageTests {
    @Test func channelNames() {
        let channels = ShardedChannels()
        #expect(channels.namespaceChannel == "socket.io#/#")
        #expect(channels.roomChannel("room-1") == "socket.io#/#room-1#")
        #expect(channels.responseChannel(uid: "0123456789abcdef") == "socket.io#/#0123456789abcdef#")
        #expect(ShardedChannels(prefix: "p", nsp: "/admin").roomChannel("r") == "p#/admin#r#")
        // 20 UTF-16 units: taken for a socket id (no channel of its own), as Node's `room.length === 20`.
        #expect(!channels.hasOwnChannel("tq4D5Jp85FmUUOV7AAAB"))
        #expect(channels.hasOwnChannel("tq4D5Jp85FmUUOV7AAA"))
        #expect(!channels.hasOwnChannel(String(repeating: "é", count: 20)))
        #expect(channels.hasOwnChannel(String(repeating: "😀", count: 20)))  // 40 UTF-16 units
        #expect(channels.publishChannel(for: BroadcastOptions(rooms: ["tq4D5Jp85FmUUOV7AAAB"])) == "socket.io#/#")
        // dynamic-private: a socket id has its own channel, and a broadcast to it goes there.
        let privateChannels = ShardedChannels(privateRoomChannels: true)
        #expect(privateChannels.hasOwnChannel("tq4D5Jp85FmUUOV7AAAB"))
        #expect(privateChannels.publishChannel(for: BroadcastOptions(rooms: ["tq4D5Jp85FmUUOV7AAAB"])) == "socket.io#/#tq4D5Jp85FmUUOV7AAAB#")
        #expect(privateChannels.publishChannel(for: BroadcastOptions(rooms: ["a", "b"])) == "socket.io#/#")
        #expect(channels.publishChannel(for: BroadcastOptions(rooms: ["a", "b"])) == "socket.io#/#")
        #expect(channels.publishChannel(for: BroadcastOptions()) == "socket.io#/#")
    }

    /// Each captured payload decodes, is routed to the channel Node used, and encodes back to the same bytes.
    @Test func fixturesRoundTripByteForByte() throws {
        let publishes = try ShardedFixtures.publishes()
        #expect(publishes.count == 11)
        let channels = ShardedChannels()
        for (command, bytes) in publishes {
            let message = try ShardedMessage(decoding: bytes)
            #expect(message.kind == .broadcast)
            #expect(message.nsp == "/")
            #expect(message.uid.utf8.count == 16)
            let (packet, options, requestId) = try message.broadcast()
            #expect(requestId == nil)
            #expect(packet.nsp == "/")
            #expect(channels.publishChannel(for: options) == command.channel, "\(command.step)")
            #expect(message.encoded() == bytes, "\(command.step)")
            let rebuilt = ShardedMessage.broadcast(uid: message.uid, packet: packet, options: options)
            #expect(rebuilt.encoded() == bytes, "\(command.step)")
        }
    }

    @Test func seedEventsGoWhereNodePutsThem() throws {
        let publishes = try ShardedFixtures.publishes()
        let byStep = Dictionary(publishes.map { ($0.command.step, $0) }, uniquingKeysWith: { a, _ in a })
        let offer = try ShardedMessage(decoding: try #require(byStep["offer"]).bytes).broadcast()
        #expect(offer.packet.eventName == "offer")
        #expect(offer.options.rooms.count == 1 && offer.options.except.count == 1)
        #expect(try #require(byStep["offer"]).command.channel == "socket.io#/#")
        let left = try ShardedMessage(decoding: try #require(byStep["leave-bob"]).bytes).broadcast()
        #expect(left.packet.eventName == "user_left")
        #expect(left.options.rooms == ["room-1"] && left.options.except.count == 1)
        let unicode = try ShardedMessage(decoding: try #require(byStep["unicode-room"]).bytes).broadcast()
        #expect(unicode.options.rooms == ["salle-été-☃"])
        #expect(unicode.packet.data[1]["personName"] == .string("Zoë \"Z\""))
        // socket.broadcast: no room, the sender excepted, on the namespace channel.
        let broadcast = try ShardedMessage(decoding: try #require(byStep["send-offer"]).bytes).broadcast()
        #expect(broadcast.options.rooms.isEmpty && broadcast.options.except.count == 1)
    }

    @Test func binaryDataSwitchesToMessagePackAndBack() throws {
        let packet = BroadcastPacket(event: "blob", .binary(ByteBuffer(bytes: [1, 2, 3])))
        let message = ShardedMessage.broadcast(uid: "0123456789abcdef", packet: packet, options: BroadcastOptions(rooms: ["r"]))
        let bytes = message.encoded()
        #expect(bytes.readableBytesView.first != UInt8(ascii: "{"))
        let decoded = try ShardedMessage(decoding: bytes)
        #expect(decoded == message)
        #expect(try decoded.broadcast().packet == packet)
        // Binary in a type that never carries it (a join) stays JSON, as Node's encoder does.
        let join = ShardedMessage(type: 4, data: .object([(key: "rooms", value: ["x"])]), uid: "u", nsp: "/")
        #expect(String(buffer: join.encoded()) == #"{"type":4,"data":{"rooms":["x"]},"uid":"u","nsp":"/"}"#)
    }

    @Test func volatileFlagAndRequestId() throws {
        let message = ShardedMessage.broadcast(
            uid: "u", packet: BroadcastPacket(event: "e"),
            options: BroadcastOptions(rooms: ["r"], flags: BroadcastFlags(volatile: true)), requestId: "42")
        #expect(String(buffer: message.encoded())
            == #"{"type":3,"data":{"packet":{"type":2,"data":["e"]},"opts":{"rooms":["r"],"except":[],"flags":{"volatile":true}},"requestId":"42"},"uid":"u","nsp":"/"}"#)
        let decoded = try ShardedMessage(decoding: message.encoded()).broadcast()
        #expect(decoded.options.flags.volatile)
        #expect(decoded.requestId == "42")
    }

    @Test func refusesWhatIsNotAMessage() {
        for text in ["{}", #"{"type":3,"data":{},"uid":"u"}"#, #"{"type":"3","uid":"u","nsp":"/"}"#, "{not json", "[1]",
                     #"{"type":3,"uid":5,"nsp":"/"}"#] {
            #expect(throws: ClusterMessageError.self, "\(text)") { try ShardedMessage(decoding: ByteBuffer(string: text)) }
        }
        #expect(throws: ClusterMessageError.self) { try ShardedMessage(decoding: ByteBuffer(bytes: [0xC1])) }
        // A broadcast without opts decodes as a message but not as a broadcast.
        #expect(throws: ClusterMessageError.self) {
            try ShardedMessage(decoding: ByteBuffer(string: #"{"type":3,"data":{"packet":{"type":2,"data":["e"]}},"uid":"u","nsp":"/"}"#)).broadcast()
        }
    }
}

@Suite("Redis Cluster: where each shard channel is subscribed")
struct RedisClusterSubscriptionsTests {
    let a = RedisClusterNode(host: "127.0.0.1", port: 7000)
    let b = RedisClusterNode(host: "127.0.0.1", port: 7001)

    func map(_ owners: [(ClosedRange<Int>, RedisClusterNode)]) -> RedisClusterSlotMap {
        var map = RedisClusterSlotMap()
        for (range, node) in owners { map.assign(range, to: node) }
        return map
    }

    @Test func waitsForAMapThenPlacesEachChannelOnItsOwner() {
        var subscriptions = RedisClusterSubscriptions()
        #expect(subscriptions.subscribe(["socket.io#/#", "socket.io#/#room-1#"]).isEmpty)
        #expect(subscriptions.unplacedCount == 2)
        let actions = subscriptions.mapChanged(map([(0...8191, a), (8192...16383, b)]))
        // socket.io#/# is slot 13868, socket.io#/#room-1# slot 665.
        #expect(Set(actions) == [.subscribe("socket.io#/#", on: b), .subscribe("socket.io#/#room-1#", on: a)])
        #expect(subscriptions.unplacedCount == 0)
        #expect(subscriptions.accepts("socket.io#/#", from: b))
        #expect(!subscriptions.accepts("socket.io#/#", from: a))
        #expect(!subscriptions.accepts("socket.io#/#other#", from: a))
    }

    @Test func countsReferences() {
        var subscriptions = RedisClusterSubscriptions()
        _ = subscriptions.mapChanged(map([(0...16383, a)]))
        #expect(subscriptions.subscribe(["r"]) == [.subscribe("r", on: a)])
        #expect(subscriptions.subscribe(["r"]).isEmpty)
        #expect(subscriptions.unsubscribe(["r"]).isEmpty)
        #expect(subscriptions.unsubscribe(["r"]) == [.unsubscribe("r", on: a)])
        #expect(subscriptions.unsubscribe(["r"]).isEmpty)
        #expect(subscriptions.wantedChannels.isEmpty)
        #expect(!subscriptions.accepts("r", from: a))
    }

    /// A slot that moves (migration or failover): one SUNSUBSCRIBE on the old owner, one SSUBSCRIBE on the new,
    /// and from then on only the new owner's messages are delivered.
    @Test func movesChannelsWhoseSlotChangedOwner() {
        var subscriptions = RedisClusterSubscriptions()
        _ = subscriptions.mapChanged(map([(0...8191, a), (8192...16383, b)]))
        _ = subscriptions.subscribe(["socket.io#/#", "socket.io#/#room-1#"])
        #expect(subscriptions.mapChanged(map([(0...8191, a), (8192...16383, b)])).isEmpty)
        let moved = subscriptions.mapChanged(map([(0...16383, a)]))
        #expect(moved == [.unsubscribe("socket.io#/#", on: b), .subscribe("socket.io#/#", on: a)])
        #expect(subscriptions.accepts("socket.io#/#", from: a))
        #expect(!subscriptions.accepts("socket.io#/#", from: b))
        #expect(subscriptions.mastersInUse == [a])
    }

    @Test func aSlotWithoutOwnerUnplacesUntilOneComes() {
        var subscriptions = RedisClusterSubscriptions()
        _ = subscriptions.mapChanged(map([(0...16383, a)]))
        _ = subscriptions.subscribe(["socket.io#/#"])
        #expect(subscriptions.mapChanged(map([(0...8191, a)])) == [.unsubscribe("socket.io#/#", on: a)])
        #expect(subscriptions.unplacedCount == 1)
        #expect(!subscriptions.accepts("socket.io#/#", from: a))
        #expect(subscriptions.mapChanged(map([(0...8191, a), (8192...16383, b)])) == [.subscribe("socket.io#/#", on: b)])
        // Unsubscribing an unplaced channel sends nothing.
        _ = subscriptions.mapChanged(RedisClusterSlotMap())
        #expect(subscriptions.unsubscribe(["socket.io#/#"]).isEmpty)
    }
}

@Suite("Redis Cluster configuration")
struct RedisClusterConfigurationTests {
    @Test func readsSeeds() throws {
        let cluster = try RedisClusterConfiguration(urls: "redis://10.0.0.1:7000, redis://:pw@10.0.0.2:7001 ,redis://[::1]")
        #expect(cluster.seeds.map(\.host) == ["10.0.0.1", "10.0.0.2", "::1"])
        #expect(cluster.seeds.map(\.port) == [7000, 7001, 6379])
        #expect(cluster.description == "10.0.0.1:7000,10.0.0.2:7001,::1:6379")
        // Nodes found in the map get the first seed's settings at their own address.
        let node = cluster.configuration(for: RedisClusterNode(host: "10.0.0.9", port: 7005))
        #expect(node.host == "10.0.0.9" && node.port == 7005 && node.password == nil && node.database == nil)
        let withPassword = try RedisClusterConfiguration(urls: "redis://:secret@h:1,redis://h2:2")
        #expect(withPassword.configuration(for: RedisClusterNode(host: "x", port: 3)).password == "secret")
    }

    @Test func refusesWhatCannotWork() {
        for bad in ["", ",", "redis://h:1,,redis://h:2", "redis://h:1/2", "http://h:1", "redis://h:99999"] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisClusterConfiguration(urls: bad) }
        }
        #expect(throws: Never.self) { try RedisClusterConfiguration(urls: "redis://h:1/0") }
    }
}
