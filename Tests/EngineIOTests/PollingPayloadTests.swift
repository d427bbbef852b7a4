import NIOCore
import Testing

@testable import EngineIO

@Suite("PollingPayload")
struct PollingPayloadTests {
    static let rs = "\u{1E}"

    static let encodeVectors: [(frames: [EngineFrame], body: String)] = [
        ([], ""),
        ([textFrame("6")], "6"),
        ([textFrame("4hello"), textFrame("2"), textFrame("4world")], "4hello\u{1E}2\u{1E}4world"),
        ([binaryFrame([1, 2, 3, 4])], "bAQIDBA=="),
        ([binaryFrame([])], "b"),
        (
            [textFrame("451-[\"baz\",{\"_placeholder\":true,\"num\":0}]"), binaryFrame([1, 2, 3, 4]), textFrame("3")],
            "451-[\"baz\",{\"_placeholder\":true,\"num\":0}]\u{1E}bAQIDBA==\u{1E}3"
        ),
        ([binaryFrame([0xFB, 0xFF]), binaryFrame([0x66, 0x6F, 0x6F])], "b+/8=\u{1E}bZm9v"),
        ([textFrame("4h\u{E9}\u{1F600}")], "4h\u{E9}\u{1F600}"),
    ]

    @Test("encodes", arguments: encodeVectors)
    func encodes(_ vector: (frames: [EngineFrame], body: String)) {
        #expect(String(buffer: PollingPayload.encode(vector.frames)) == vector.body)
    }

    @Test func encodingLeavesTheFramesReadable() {
        let frame = textFrame("4hello")
        _ = PollingPayload.encode([frame, frame])
        #expect(frame == textFrame("4hello"))
    }

    static let decodeVectors: [(body: String, frames: [EngineFrame])] = [
        ("4hello", [textFrame("4hello")]),
        ("3", [textFrame("3")]),
        ("4hello\u{1E}2\u{1E}4world", [textFrame("4hello"), textFrame("2"), textFrame("4world")]),
        ("bAQIDBA==", [binaryFrame([1, 2, 3, 4])]),
        ("b", [binaryFrame([])]),
        ("bZm9v\u{1E}b+/8=", [binaryFrame([0x66, 0x6F, 0x6F]), binaryFrame([0xFB, 0xFF])]),
        (
            "451-[\"baz\",{\"_placeholder\":true,\"num\":0}]\u{1E}bAQIDBA==",
            [textFrame("451-[\"baz\",{\"_placeholder\":true,\"num\":0}]"), binaryFrame([1, 2, 3, 4])]
        ),
        ("1", [textFrame("1")]),
        ("4", [textFrame("4")]),
        ("40\u{1E}42[\"a\"]\u{1E}6", [textFrame("40"), textFrame("42[\"a\"]"), textFrame("6")]),
        ("4h\u{E9}\u{1F600}", [textFrame("4h\u{E9}\u{1F600}")]),
    ]

    @Test("decodes", arguments: decodeVectors)
    func decodes(_ vector: (body: String, frames: [EngineFrame])) throws {
        #expect(try PollingPayload.decode(ByteBuffer(string: vector.body)) == vector.frames)
    }

    static let decodeErrors: [(body: String, error: PollingPayload.DecodeError)] = [
        ("", .emptyPacket),
        ("4a\u{1E}", .emptyPacket),
        ("\u{1E}4a", .emptyPacket),
        ("4a\u{1E}\u{1E}4b", .emptyPacket),
        ("\u{1E}", .emptyPacket),
        ("b!!!", .invalidBase64),
        ("bAQID\u{1E}bAQ=ID", .invalidBase64),
        ("4a\u{1E}b$", .invalidBase64),
        ("x", .unknownType),
        ("7", .unknownType),
        ("/", .unknownType),
        ("4a\u{1E}9", .unknownType),
        ("Bhello", .unknownType),
    ]

    @Test("rejects", arguments: decodeErrors)
    func rejects(_ vector: (body: String, error: PollingPayload.DecodeError)) {
        #expect(throws: vector.error) { try PollingPayload.decode(ByteBuffer(string: vector.body)) }
    }

    @Test func decodeReadsOnlyTheReadableBytes() throws {
        var body = ByteBuffer(string: "xx4a\u{1E}3")
        body.moveReaderIndex(forwardBy: 2)
        #expect(try PollingPayload.decode(body) == [textFrame("4a"), textFrame("3")])
    }

    @Test func encodeThenDecodeRoundTrips() throws {
        let frames: [EngineFrame] = [
            textFrame("0{\"sid\":\"x\"}"), binaryFrame(Array(0...255)), textFrame("4\u{1F600}"), binaryFrame([0]),
        ]
        #expect(try PollingPayload.decode(PollingPayload.encode(frames)) == frames)
    }

    @Test func frameTypesComeFromTheFirstByte() {
        #expect(textFrame("0{}").type == .open)
        #expect(textFrame("1").type == .close)
        #expect(textFrame("2").type == .ping)
        #expect(textFrame("3probe").type == .pong)
        #expect(textFrame("4hi").type == .message)
        #expect(textFrame("5").type == .upgrade)
        #expect(textFrame("6").type == .noop)
        #expect(textFrame("9").type == nil)
        #expect(binaryFrame([0x32]).type == .message)
        #expect(EngineFrame.probePong == textFrame("3probe"))
        #expect(EngineFrame.packet(.message, "hi") == textFrame("4hi"))
    }
}

@Suite("Base64")
struct Base64Tests {
    static let vectors: [(bytes: [UInt8], text: String)] = [
        ([], ""),
        (Array("f".utf8), "Zg=="),
        (Array("fo".utf8), "Zm8="),
        (Array("foo".utf8), "Zm9v"),
        (Array("foob".utf8), "Zm9vYg=="),
        (Array("fooba".utf8), "Zm9vYmE="),
        (Array("foobar".utf8), "Zm9vYmFy"),
        ([1, 2, 3, 4], "AQIDBA=="),
        ([0xFB, 0xFF, 0xBF], "+/+/"),
        ([0, 0, 0], "AAAA"),
        ([0xFF, 0xFF, 0xFF, 0xFF], "/////w=="),
    ]

    @Test("encodes and decodes", arguments: vectors)
    func encodesAndDecodes(_ vector: (bytes: [UInt8], text: String)) {
        var out = ByteBuffer()
        Base64.encode(vector.bytes, into: &out)
        #expect(String(buffer: out) == vector.text)
        #expect(Base64.decode(Array(vector.text.utf8)) == vector.bytes)
    }

    @Test("round trips", arguments: 0...10)
    func roundTripsAtEveryLength(_ length: Int) {
        // Bytes that cover the whole alphabet across lengths, plus the edges 0x00 and 0xFF.
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ length &* 31) }
        for input in [bytes, [UInt8](repeating: 0, count: length), [UInt8](repeating: 0xFF, count: length)] {
            var out = ByteBuffer()
            Base64.encode(input, into: &out)
            let text = String(buffer: out)
            #expect(text.utf8.count == (length + 2) / 3 * 4)
            #expect(Base64.decode(Array(text.utf8)) == input)
            let urlSafe = Base64.encodeURLSafe(input)
            #expect(urlSafe.utf8.count == (length * 4 + 2) / 3)
            #expect(urlSafe == String(text.filter { $0 != "=" }.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 }))
        }
    }

    @Test func urlSafeUsesDashAndUnderscoreWithoutPadding() {
        #expect(Base64.encodeURLSafe([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(Base64.encodeURLSafe([0xFB, 0xFF]) == "-_8")
        #expect(Base64.encodeURLSafe([1]) == "AQ")
    }

    @Test func decodeAcceptsMissingPadding() {
        #expect(Base64.decode(Array("Zg".utf8)) == Array("f".utf8))
        #expect(Base64.decode(Array("Zm8".utf8)) == Array("fo".utf8))
    }

    static let invalid: [String] = ["Zm9v!", "Zg==Zg", "Z g=", "-_8=", "Zm9v\u{1E}", "\u{E9}"]

    @Test("rejects", arguments: invalid)
    func rejectsInvalidText(_ text: String) {
        #expect(Base64.decode(Array(text.utf8)) == nil)
    }
}

@Suite("IDGenerator")
struct IDGeneratorTests {
    static let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

    @Test func idsAreTwentyURLSafeCharactersAndDistinct() {
        let ids = (0..<1000).map { _ in IDGenerator.next() }
        for id in ids {
            #expect(id.count == 20)
            #expect(id.allSatisfy { Self.alphabet.contains($0) }, "\(id)")
        }
        #expect(Set(ids).count == ids.count)
    }

    @Test func theLastThreeBytesAreAnIncreasingCounter() throws {
        // The last 4 characters encode bytes 12…14: the low 3 bytes of the per-process counter.
        func counter(_ id: String) throws -> Int {
            let tail = String(id.suffix(4)).map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 }
            let bytes = try #require(Base64.decode(Array(String(tail).utf8)))
            try #require(bytes.count == 3)
            return Int(bytes[0]) << 16 | Int(bytes[1]) << 8 | Int(bytes[2])
        }
        let first = try counter(IDGenerator.next())
        let second = try counter(IDGenerator.next())
        #expect(second > first)
    }
}

@Suite("EngineError")
struct EngineErrorTests {
    static let vectors: [(error: EngineError, status: Int, json: String)] = [
        (.unknownTransport, 400, "{\"code\":0,\"message\":\"Transport unknown\"}"),
        (.unknownSid, 400, "{\"code\":1,\"message\":\"Session ID unknown\"}"),
        (.badHandshakeMethod, 400, "{\"code\":2,\"message\":\"Bad handshake method\"}"),
        (.badRequest, 400, "{\"code\":3,\"message\":\"Bad request\"}"),
        (.forbidden, 403, "{\"code\":4,\"message\":\"Forbidden\"}"),
        (.unsupportedProtocolVersion, 400, "{\"code\":5,\"message\":\"Unsupported protocol version\"}"),
    ]

    @Test("answers", arguments: vectors)
    func answersWithTheReferenceCodeAndMessage(_ vector: (error: EngineError, status: Int, json: String)) {
        #expect(vector.error.httpStatus == vector.status)
        #expect(vector.error.json == vector.json)
    }
}

@Suite("EngineConfiguration")
struct EngineConfigurationTests {
    @Test func handshakeOffersTheWebSocketUpgradeOnlyToPollingSessions() {
        let configuration = EngineConfiguration()
        #expect(
            configuration.handshakeJSON("abc", true)
                == #"{"sid":"abc","upgrades":["websocket"],"#
                + #""pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        )
        #expect(
            configuration.handshakeJSON("abc", false)
                == #"{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        )
    }

    @Test func handshakeReflectsTheSettings() {
        var configuration = EngineConfiguration()
        configuration.allowWebSocket = false
        configuration.pingInterval = .seconds(3)
        configuration.pingTimeout = .milliseconds(1500)
        configuration.maxPayload = 42
        #expect(
            configuration.handshakeJSON("s", true)
                == "{\"sid\":\"s\",\"upgrades\":[],\"pingInterval\":3000,\"pingTimeout\":1500,\"maxPayload\":42}"
        )
    }
}

/// Strict base64url, as JSON Web Tokens use it.
@Suite("Base64 URL-safe decoding")
struct Base64URLSafeTests {
    @Test(arguments: [
        ("", [UInt8]()),
        ("YQ", Array("a".utf8)),
        ("YWI", Array("ab".utf8)),
        ("YWJj", Array("abc".utf8)),
        ("-_8", [0xFB, 0xFF]),
        ("-_-_", [0xFB, 0xFF, 0xBF]),
    ])
    func decodes(text: String, bytes: [UInt8]) {
        #expect(Base64.decodeURLSafe(Array(text.utf8)) == bytes)
    }

    /// A lone trailing character, padding, the standard alphabet's `+` and `/`, anything else.
    @Test(arguments: ["Y", "YQ==", "YQ=", "YW+j", "YW/j", "YW j", "YWJjZ"])
    func refuses(text: String) {
        #expect(Base64.decodeURLSafe(Array(text.utf8)) == nil)
    }

    @Test func standardDecodingStillTakesPadding() {
        #expect(Base64.decode(Array("YQ==".utf8)) == Array("a".utf8))
        #expect(Base64.decode(Array("-_8".utf8)) == nil)
        #expect(Base64.encode([0xFB, 0xFF]) == "+/8=")
    }

    @Test("round trips", arguments: 0...10)
    func roundTrips(_ length: Int) {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 89 &+ length &* 13) }
        #expect(Base64.decodeURLSafe(Array(Base64.encodeURLSafe(bytes).utf8)) == bytes)
    }
}
