import NIOCore
import SocketIO
import Testing

@testable import Adapter

// MARK: - Channels and uids

@Suite("Cluster channels")
struct ClusterChannelsTests {
    @Test func namesChannelsLikeTheNodeAdapter() {
        let root = ClusterChannels()
        #expect(root.broadcastChannel == "socket.io#/#")
        #expect(root.broadcastPattern == "socket.io#/#*")
        #expect(root.roomChannel("room-1") == "socket.io#/#room-1#")
        #expect(root.requestChannel == "socket.io-request#/#")
        #expect(root.responseChannel == "socket.io-response#/#")
        #expect(root.responseChannel(uid: "Gem_sd") == "socket.io-response#/#Gem_sd#")

        let admin = ClusterChannels(prefix: "app", nsp: "/admin")
        #expect(admin.broadcastChannel == "app#/admin#")
        #expect(admin.roomChannel("room-a") == "app#/admin#room-a#")
        #expect(admin.requestChannel == "app-request#/admin#")
        #expect(admin.responseChannel(uid: "x") == "app-response#/admin#x#")
    }

    static let publishChannels: [([Room], String)] = [
        ([], "socket.io#/#"),
        (["room-1"], "socket.io#/#room-1#"),
        (["L6N75Lhf83esCaB0AAAB"], "socket.io#/#L6N75Lhf83esCaB0AAAB#"),
        (["room-1", "room-2"], "socket.io#/#"),
    ]

    @Test(arguments: publishChannels)
    func publishesToTheRoomChannelOnlyForExactlyOneRoom(rooms: [Room], channel: String) {
        #expect(ClusterChannels().publishChannel(for: BroadcastOptions(rooms: rooms, except: ["x"])) == channel)
    }

    static let parsed: [(String, String?, Room?)] = [
        ("socket.io#/#", "/", nil),
        ("socket.io#/#room-1#", "/", "room-1"),
        ("socket.io#/admin#room-a#", "/admin", "room-a"),
        ("socket.io#/#a#b#", "/", "a#b"),
        ("socket.io#/##", "/", ""),
        ("socket.io#/admin#", "/admin", nil),
        // Not broadcast channels of this prefix:
        ("socket.io-request#/#", nil, nil),
        ("socket.io-response#/#Gem_sd#", nil, nil),
        ("socket.io#/#room-1", nil, nil),
        ("socket.io#/", nil, nil),
        ("socket.io##", nil, nil),
        ("socket.io", nil, nil),
        ("other#/#", nil, nil),
        ("", nil, nil),
    ]

    @Test(arguments: parsed)
    func parsesBroadcastChannels(channel: String, nsp: String?, room: Room?) {
        let result = ClusterChannels.parse(channel)
        #expect(result?.nsp == nsp)
        #expect(result?.room == room)
    }

    @Test func parsesWithACustomPrefix() {
        #expect(ClusterChannels.parse("app#/#r#", prefix: "app")?.room == "r")
        #expect(ClusterChannels.parse("socket.io#/#r#", prefix: "app") == nil)
    }

    @Test func roomChannelsParseBack() {
        for room in ["room-1", "é ✓", "with#hash", "", "L6N75Lhf83esCaB0AAAB"] {
            let channels = ClusterChannels(nsp: "/chat")
            let parsed = ClusterChannels.parse(channels.roomChannel(room))
            #expect(parsed?.nsp == "/chat")
            #expect(parsed?.room == room)
        }
    }

    @Test func uidsAreSixCharactersOfTheUid2Alphabet() {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var seen = Set<Character>()
        for _ in 0..<2000 {
            let uid = ClusterUID.random()
            #expect(uid.count == 6)
            #expect(uid.allSatisfy(alphabet.contains))
            seen.formUnion(uid)
        }
        #expect(seen == alphabet, "every character of the alphabet occurs")
        #expect(ClusterUID.random(length: 20).count == 20)
    }

    @Test func uidsFollowTheGenerator() {
        var first = SplitMix64(seed: 7)
        var second = SplitMix64(seed: 7)
        #expect(ClusterUID.random(using: &first) == ClusterUID.random(using: &second))
    }
}

// MARK: - Broadcasts

@Suite("Cluster broadcasts")
struct ClusterBroadcastTests {
    /// The example of protocol-facts §3.2: `io.to("room1").emit("hello","world")` from uid `AbC123`.
    @Test func encodesTheDocumentedExample() {
        let message = ClusterBroadcast(
            uid: "AbC123",
            packet: BroadcastPacket(event: "hello", "world"),
            options: BroadcastOptions(rooms: ["room1"])
        )
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        #expect(
            hex(buffer.readableBytesView)
                == "93a6416243313233"
                + "83a474797065" + "02" + "a464617461" + "92a568656c6c6fa5776f726c64" + "a36e7370a12f"
                + "83a5726f6f6d7391a5726f6f6d31" + "a6657863657074" + "90" + "a5666c616773" + "80"
        )
    }

    @Test func volatileIsTheOnlyFlagWritten() throws {
        let options = BroadcastOptions(flags: BroadcastFlags(local: true, volatile: true))
        var buffer = ByteBuffer()
        ClusterBroadcast.encode(uid: "u", packet: BroadcastPacket(event: "e"), options: options, into: &buffer)
        #expect(hex(buffer.readableBytesView).hasSuffix("a5666c61677381a8766f6c6174696c65c3"))
        let decoded = try ClusterBroadcast(decoding: buffer)
        #expect(decoded.options.flags == BroadcastFlags(volatile: true), "local never travels")
    }

    @Test func encodingAppendsAndDecodingReadsBack() throws {
        let message = ClusterBroadcast(
            uid: "xD_yKb",
            packet: BroadcastPacket(
                nsp: "/admin",
                event: "bin",
                .binary(ByteBuffer(bytes: [1, 2])),
                .object([(key: "n", value: 1.5), (key: "list", value: .array(Array(repeating: "x", count: 20)))])
            ),
            options: BroadcastOptions(rooms: ["a", "b"], except: ["c"])
        )
        var buffer = ByteBuffer(bytes: [0xaa])
        message.encode(into: &buffer)
        buffer.moveReaderIndex(forwardBy: 1)
        #expect(try ClusterBroadcast(decoding: buffer) == message)
    }

    // Every broadcast Node nodes and the emitter published in the fixtures.

    static let broadcastFiles =
        (try? RedisAdapterFixtures.messages().filter { $0.channel.hasPrefix("socket.io#") }.map(\.file)) ?? []

    @Test func everyBroadcastFixtureIsCovered() {
        #expect(Self.broadcastFiles.count == 30)
        #expect(Self.broadcastFiles.contains("38-seed-join-alice.bin"))
        #expect(Self.broadcastFiles.contains("47-seed-leave-bob.bin"))
    }

    @Test(arguments: broadcastFiles)
    func decodesBroadcastFixture(file: String) throws {
        let fixture = try RedisAdapterFixtures.message(file)
        let message = try ClusterBroadcast(decoding: ByteBuffer(bytes: fixture.bytes))
        let expected = try #require(fixture.expected.arrayValue)

        #expect(message.uid == expected[0].stringValue)
        #expect(message.packet.nsp == expected[1]["nsp"]?.stringValue)
        #expect(message.packet.data == expected[1]["data"]?.arrayValue)
        #expect(message.options.rooms.map(PacketValue.string) == expected[2]["rooms"]?.arrayValue)
        #expect(message.options.except.map(PacketValue.string) == expected[2]["except"]?.arrayValue)
        #expect(message.options.flags.volatile == (expected[2]["flags"]?["volatile"] == true))
        #expect(!message.options.flags.local)
        if fixture.isFromEmitter {
            #expect(message.uid == ClusterUID.emitter)
        }

        // The channel Node chose is the one we would choose, and it parses back to the namespace and room.
        let channels = ClusterChannels(nsp: message.packet.nsp)
        #expect(channels.publishChannel(for: message.options) == fixture.channel)
        let parsed = try #require(ClusterChannels.parse(fixture.channel))
        #expect(parsed.nsp == message.packet.nsp)
        #expect(parsed.room == (message.options.rooms.count == 1 ? message.options.rooms[0] : nil))
    }

    /// A Swift node publishes the very bytes a Node node publishes for the same broadcast.
    @Test(arguments: broadcastFiles)
    func reencodesAdapterBroadcastsByteForByte(file: String) throws {
        let fixture = try RedisAdapterFixtures.message(file)
        guard !fixture.isFromEmitter else { return }  // the emitter writes opts in another key order
        let message = try ClusterBroadcast(decoding: ByteBuffer(bytes: fixture.bytes))
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        let reencoded = Array(buffer.readableBytesView)

        switch file {
        case "09-dates.bin":
            // Dates arrive as their ISO strings, and leave as strings: what Node clients get is unchanged.
            let value = try MessagePackDecoder().decode(buffer)
            #expect(value == fixture.expected)
            #expect(reencoded != fixture.bytes)
        case "11-compress.bin":
            // `compress: false` has no place in BroadcastFlags: the flags come back empty.
            #expect(hex(fixture.bytes).hasSuffix("a5666c61677381a8636f6d7072657373c2"))
            #expect(reencoded == Array(fixture.bytes.dropLast(11)) + [0x80])
        default:
            #expect(hex(reencoded) == hex(fixture.bytes))
        }
    }

    @Test func emitterKeyOrderIsRead() throws {
        let fixture = try RedisAdapterFixtures.message("28-emitter-two-rooms-except.bin")
        let message = try ClusterBroadcast(decoding: ByteBuffer(bytes: fixture.bytes))
        #expect(
            message
                == ClusterBroadcast(
                    uid: "emitter",
                    packet: BroadcastPacket(event: "emitter-multi", 1),
                    options: BroadcastOptions(rooms: ["room-1", "room-2"], except: ["room-3"])
                )
        )
    }

    // Lenient where Node is lenient, strict where the value cannot be a broadcast.

    private func decode(_ value: PacketValue) throws(ClusterMessageError) -> ClusterBroadcast {
        var buffer = ByteBuffer()
        MessagePackEncoder().encode(value, into: &buffer)
        return try ClusterBroadcast(decoding: buffer)
    }

    private static let packet: PacketValue = .object([(key: "type", value: 2), (key: "data", value: ["e", 1])])
    private static let options: PacketValue = .object([(key: "rooms", value: ["r"])])

    @Test func missingNamespaceMeansRoot() throws {
        let message = try decode(["u", Self.packet, Self.options])
        #expect(message.packet == BroadcastPacket(nsp: "/", data: ["e", 1]))
        #expect(message.options == BroadcastOptions(rooms: ["r"]), "absent except and flags are empty")
    }

    @Test func binaryEventIsAnEvent() throws {
        let packet: PacketValue = .object([
            (key: "type", value: 5), (key: "data", value: ["e"]), (key: "nsp", value: "/x"),
        ])
        #expect(try decode(["u", packet, .object([])]).packet == BroadcastPacket(nsp: "/x", data: ["e"]))
    }

    @Test func extraElementsAndUnknownFlagsAreIgnored() throws {
        let options: PacketValue = .object([
            (key: "flags", value: .object([(key: "timeout", value: 1000), (key: "volatile", value: true)])),
            (key: "except", value: ["s", 7]),
        ])
        let message = try decode(["u", Self.packet, options, "extra"])
        #expect(message.options == BroadcastOptions(except: ["s", "7"], flags: BroadcastFlags(volatile: true)))
    }

    static let invalid: [PacketValue] = [
        "not an array",
        ["u", packet],
        [1, packet, options],
        ["u", "packet", options],
        ["u", .object([(key: "type", value: 3), (key: "data", value: ["e"])]), options],
        ["u", .object([(key: "type", value: 2), (key: "data", value: [])]), options],
        ["u", .object([(key: "type", value: 2), (key: "data", value: "e")]), options],
        ["u", .object([(key: "type", value: 2), (key: "data", value: ["e"]), (key: "nsp", value: 1)]), options],
        ["u", packet, "opts"],
        ["u", packet, .object([(key: "rooms", value: "r")])],
        ["u", packet, .object([(key: "except", value: [["nested"]])])],
        ["u", packet, .object([(key: "flags", value: [])])],
    ]

    @Test(arguments: invalid)
    func refusesWhatIsNotABroadcast(value: PacketValue) {
        let error = #expect(throws: ClusterMessageError.self) { try decode(value) }
        guard case .invalidMessage? = error else {
            Issue.record("expected invalidMessage, got \(String(describing: error))")
            return
        }
    }

    @Test func malformedBytesSayWhy() {
        #expect(throws: ClusterMessageError.messagePack(.init(offset: 0, reason: .unexpectedEnd))) {
            try ClusterBroadcast(decoding: ByteBuffer(bytes: [0x93, 0xa1]))
        }
    }
}

// MARK: - Requests and responses

@Suite("Cluster requests and responses")
struct ClusterRequestResponseTests {
    static let requests: [(String, ClusterRequest)] = [
        (
            "14-sockets-join.bin",
            .socketsJoin(uid: "Gem_sd", options: BroadcastOptions(rooms: ["room-1"]), rooms: ["room-3"])
        ),
        (
            "15-sockets-join-many.bin",
            .socketsJoin(
                uid: "Gem_sd",
                options: BroadcastOptions(rooms: ["room-2"], except: ["room-1"]),
                rooms: ["room-4", "room-5"]
            )
        ),
        (
            "16-sockets-leave.bin",
            .socketsLeave(uid: "Gem_sd", options: BroadcastOptions(rooms: ["room-1"]), rooms: ["room-3"])
        ),
        (
            "17-fetch-sockets-1.bin",
            .fetchSockets(uid: "Gem_sd", requestId: "Pm7Ftb", options: BroadcastOptions(rooms: ["room-1"]))
        ),
        ("18-all-rooms-1.bin", .allRooms(uid: "Gem_sd", requestId: "0-ga-9")),
        (
            "20-server-side-emit.bin",
            .serverSideEmit(
                uid: "Gem_sd",
                requestId: nil,
                data: ["cluster-hello", .object([(key: "from", value: "A")]), 42]
            )
        ),
        (
            "21-server-side-emit-ack-1.bin",
            .serverSideEmit(
                uid: "Gem_sd",
                requestId: "wjad-C",
                data: ["cluster-ping", .object([(key: "from", value: "A")])]
            )
        ),
        (
            "22-broadcast-ack-1.bin",
            .broadcastWithAck(
                uid: "Gem_sd",
                requestId: "YWf95j",
                packet: BroadcastPacket(event: "question", .object([(key: "q", value: "ready?")])),
                options: BroadcastOptions(rooms: ["room-1"])
            )
        ),
        (
            "23-broadcast-ack-binary-1.bin",
            .broadcastWithAck(
                uid: "Gem_sd",
                requestId: "F-ASuv",
                packet: BroadcastPacket(event: "question-bin", .binary(ByteBuffer(bytes: [9, 8, 7]))),
                options: BroadcastOptions(rooms: ["room-1"])
            )
        ),
        (
            "32-emitter-sockets-join.bin",
            .socketsJoin(uid: nil, options: BroadcastOptions(rooms: ["room-1"]), rooms: ["room-e"])
        ),
        (
            "33-emitter-sockets-leave.bin",
            .socketsLeave(uid: nil, options: BroadcastOptions(rooms: ["room-1"]), rooms: ["room-e"])
        ),
        (
            "34-emitter-server-side-emit.bin",
            .serverSideEmit(
                uid: "emitter",
                requestId: nil,
                data: ["cluster-hello", .object([(key: "from", value: "emitter")])]
            )
        ),
        (
            "35-disconnect-sockets.bin",
            .disconnectSockets(uid: "Gem_sd", options: BroadcastOptions(rooms: ["room-5"]), close: false)
        ),
        (
            "36-emitter-disconnect.bin",
            .disconnectSockets(uid: nil, options: BroadcastOptions(rooms: ["room-1"]), close: true)
        ),
        (
            "37-disconnect-sockets-close.bin",
            .disconnectSockets(uid: "Gem_sd", options: BroadcastOptions(rooms: ["room-9"]), close: true)
        ),
    ]

    @Test func everyRequestFixtureIsCovered() throws {
        let files = try RedisAdapterFixtures.messages().filter { $0.channel.hasPrefix("socket.io-request#") }.map(
            \.file
        )
        #expect(Set(files) == Set(Self.requests.map(\.0)))
    }

    @Test(arguments: requests)
    func decodesRequestFixture(file: String, expected: ClusterRequest) throws {
        let fixture = try RedisAdapterFixtures.message(file)
        #expect(fixture.channel == ClusterChannels().requestChannel)
        let request = try ClusterRequest(decoding: ByteBuffer(bytes: fixture.bytes))
        #expect(request == expected)
        #expect(request.uid == expected.uid)
    }

    @Test func requestsMayAlsoComeAsMessagePack() throws {
        var buffer = ByteBuffer()
        MessagePackEncoder().encode(
            .object([(key: "uid", value: "n"), (key: "requestId", value: "r"), (key: "type", value: 1)]),
            into: &buffer
        )
        #expect(try ClusterRequest(decoding: buffer) == .allRooms(uid: "n", requestId: "r"))
    }

    @Test func unknownRequestTypesAreReportedAsSuch() {
        #expect(throws: ClusterMessageError.unsupportedRequestType(0)) {
            try ClusterRequest(decoding: ByteBuffer(string: #"{"uid":"n","requestId":"r","type":0}"#))
        }
        #expect(throws: ClusterMessageError.unsupportedRequestType(9)) {
            try ClusterRequest(decoding: ByteBuffer(string: #"{"type":9}"#))
        }
    }

    static let invalidRequests: [String] = [
        #"{"type":1,"uid":"n"}"#,  // no requestId
        #"{"type":1.5,"requestId":"r"}"#,
        #"{"uid":"n"}"#,
        #"{"type":2,"rooms":["a"]}"#,  // no opts
        #"{"type":2,"opts":{},"rooms":"a"}"#,
        #"{"type":4,"opts":{},"close":"yes"}"#,
        #"{"type":5,"requestId":7,"opts":{}}"#,
        #"{"type":6,"data":[]}"#,
        #"{"type":6,"data":["e"],"requestId":1}"#,
        #"{"type":6,"data":["e"],"uid":1}"#,
        #"{"type":7,"requestId":"r","opts":{}}"#,  // no packet
    ]

    @Test(arguments: invalidRequests)
    func refusesMalformedRequests(json: String) {
        let error = #expect(throws: ClusterMessageError.self) { try ClusterRequest(decoding: ByteBuffer(string: json)) }
        guard case .invalidMessage? = error else {
            Issue.record("expected invalidMessage, got \(String(describing: error))")
            return
        }
    }

    @Test func sniffsJSONByItsFirstByte() {
        let error = #expect(throws: ClusterMessageError.self) {
            try ClusterRequest(decoding: ByteBuffer(string: #"{"type":1,"#))
        }
        guard case .json? = error else {
            Issue.record("expected a JSON error, got \(String(describing: error))")
            return
        }
        #expect(throws: ClusterMessageError.messagePack(.init(offset: 0, reason: .invalidFormat(0xc1)))) {
            try ClusterRequest(decoding: ByteBuffer(bytes: [0xc1]))
        }
        // Like Node, anything that does not start with `{` is read as MessagePack: `[` is the fixint 91.
        #expect(throws: ClusterMessageError.messagePack(.init(offset: 1, reason: .trailingBytes(9)))) {
            try ClusterRequest(decoding: ByteBuffer(string: #"["type",1]"#))
        }
    }

    @Test func requestsWithoutOptionalFieldsTakeNodesDefaults() throws {
        let request = try ClusterRequest(decoding: ByteBuffer(string: #"{"type":4,"opts":{}}"#))
        #expect(request == .disconnectSockets(uid: nil, options: BroadcastOptions(), close: false))
    }

    // Responses, byte for byte as node B sent them.

    @Test func encodesTheAllRoomsResponse() throws {
        let response = ClusterResponse.allRooms(
            requestId: "0-ga-9",
            rooms: ["L6N75Lhf83esCaB0AAAB", "e-DPA_V_At-wvCL-AAAE", "room-1", "room-2", "room-4", "room-5"]
        )
        try expectBytes(of: response, equal: "18-all-rooms-2.bin")
    }

    @Test func encodesTheFetchSocketsResponse() throws {
        let fixture = try RedisAdapterFixtures.message("17-fetch-sockets-2.bin")
        let socket = try #require(fixture.expected["sockets"]?.arrayValue?.first)
        let response = ClusterResponse.fetchSockets(
            requestId: "Pm7Ftb",
            sockets: [
                ClusterResponse.Socket(
                    id: "L6N75Lhf83esCaB0AAAB",
                    handshake: try #require(socket["handshake"]),
                    rooms: ["L6N75Lhf83esCaB0AAAB", "room-1", "room-2"],
                    data: .object([(key: "name", value: "b1"), (key: "node", value: "B")])
                )
            ]
        )
        try expectBytes(of: response, equal: "17-fetch-sockets-2.bin")
        #expect(
            String(buffer: ClusterResponse.fetchSockets(requestId: "r", sockets: []).encoded())
                == #"{"requestId":"r","sockets":[]}"#
        )
    }

    @Test func encodesTheServerSideEmitResponse() throws {
        try expectBytes(
            of: .serverSideEmit(requestId: "wjad-C", data: .object([(key: "pong", value: "B")])),
            equal: "21-server-side-emit-ack-2.bin"
        )
    }

    @Test func encodesTheBroadcastResponses() throws {
        try expectBytes(of: .broadcastClientCount(requestId: "YWf95j", clientCount: 1), equal: "22-broadcast-ack-2.bin")
        try expectBytes(
            of: .broadcastAck(requestId: "YWf95j", packet: .object([(key: "answer", value: "b1")])),
            equal: "22-broadcast-ack-3.bin"
        )
        try expectBytes(
            of: .broadcastClientCount(requestId: "F-ASuv", clientCount: 1),
            equal: "23-broadcast-ack-binary-2.bin"
        )
        try expectBytes(
            of: .broadcastAck(requestId: "F-ASuv", packet: .binary(ByteBuffer(string: "b1"))),
            equal: "23-broadcast-ack-binary-3.bin"
        )
        // A node without matching sockets still answers, with 0.
        #expect(
            String(buffer: ClusterResponse.broadcastClientCount(requestId: "r", clientCount: 0).encoded())
                == #"{"type":8,"requestId":"r","clientCount":0}"#
        )
    }

    @Test func onlyTheBroadcastAckIsMessagePack() {
        #expect(ClusterResponse.broadcastAck(requestId: "r", packet: nil).isMessagePack)
        #expect(!ClusterResponse.broadcastClientCount(requestId: "r", clientCount: 0).isMessagePack)
        #expect(!ClusterResponse.allRooms(requestId: "r", rooms: []).isMessagePack)
    }

    @Test func responseStringsAreEscaped() {
        let response = ClusterResponse.allRooms(requestId: "a\"b", rooms: ["line\nbreak", "é"])
        #expect(String(buffer: response.encoded()) == #"{"requestId":"a\"b","rooms":["line\nbreak","é"]}"#)
    }

    private func expectBytes(
        of response: ClusterResponse,
        equal file: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let fixture = try RedisAdapterFixtures.message(file)
        #expect(fixture.channel == ClusterChannels().responseChannel, sourceLocation: sourceLocation)
        #expect(hex(response.encoded().readableBytesView) == hex(fixture.bytes), sourceLocation: sourceLocation)
    }
}

// MARK: - Own echoes

@Suite("Own echoes are recognised before decoding")
struct ClusterBroadcastUIDPeekTests {
    static func message(uid: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        ClusterBroadcast.encode(
            uid: uid, packet: BroadcastPacket(event: "message", .string("hi")), options: BroadcastOptions(rooms: ["r"]),
            into: &buffer)
        return buffer
    }

    @Test func aBroadcastOfOursIsOurs() {
        #expect(ClusterBroadcast.hasUID("Gem_sd", Self.message(uid: "Gem_sd")))
        let long = String(repeating: "u", count: 40)  // str 8
        #expect(ClusterBroadcast.hasUID(long, Self.message(uid: long)))
    }

    @Test func anotherUIDOrAnythingElseIsNot() {
        #expect(!ClusterBroadcast.hasUID("Gem_sd", Self.message(uid: "Gem_sX")))
        #expect(!ClusterBroadcast.hasUID("Gem_sd", Self.message(uid: "Gem_s")))
        #expect(!ClusterBroadcast.hasUID("Gem_s", Self.message(uid: "Gem_sd")))
        let full = Self.message(uid: "Gem_sd")
        for length in 0..<8 {  // every truncation of the header and the uid (8 bytes: all of the uid)
            #expect(!ClusterBroadcast.hasUID("Gem_sd", full.getSlice(at: 0, length: length)!))
        }
        #expect(!ClusterBroadcast.hasUID("Gem_sd", ByteBuffer(bytes: [0x92, 0xa6] + Array("Gem_sd".utf8))))  // 2 elements
        #expect(!ClusterBroadcast.hasUID("Gem_sd", ByteBuffer(bytes: [0x93, 0xc4, 6] + Array("Gem_sd".utf8))))  // bin, not str
        #expect(!ClusterBroadcast.hasUID("", ByteBuffer()))
    }
}
