import NIOCore
import Testing

@testable import SocketIO

@Suite("PacketValue JSON")
struct PacketValueJSONTests {
    // MARK: parsing

    static let parseVectors: [(json: String, value: PacketValue)] = [
        ("null", .null),
        ("true", .bool(true)),
        ("false", .bool(false)),
        ("0", .number(0)),
        ("7", .number(7)),
        ("-1", .number(-1)),
        ("-42", .number(-42)),
        ("123456789012345", .number(123_456_789_012_345)),
        ("-12345678901234", .number(-12_345_678_901_234)),
        ("9007199254740993", .number(9_007_199_254_740_992)),  // rounds to the nearest double, like JSON.parse
        ("12345678901234567890", .number(12_345_678_901_234_567_890)),
        ("3.5", .number(3.5)),
        ("-2.25", .number(-2.25)),
        ("0.1", .number(0.1)),
        ("1e3", .number(1000)),
        ("1E-2", .number(0.01)),
        ("2.5e+2", .number(250)),
        ("-1.5e-10", .number(-1.5e-10)),
        ("1e400", .number(.infinity)),
        ("\"\"", .string("")),
        ("\"abc\"", .string("abc")),
        ("\"h\u{E9}llo \u{1F600}\"", .string("h\u{E9}llo \u{1F600}")),
        ("[]", .array([])),
        ("{}", .object([])),
        (" \t\r\n[ 1 , \"a\" , null ]\n ", .array([1, "a", nil])),
        (
            "{\"a\":[1,{\"b\":null}],\"c\":\"d\",\"e\":{\"f\":[true,false,[]]}}",
            .object([
                ("a", .array([1, .object([("b", .null)])])),
                ("c", "d"),
                ("e", .object([("f", .array([true, false, .array([])]))])),
            ])
        ),
    ]

    @Test("parses", arguments: parseVectors)
    func parsesValue(_ vector: (json: String, value: PacketValue)) throws {
        #expect(try PacketValue.parseJSON(vector.json) == vector.value)
    }

    @Test func parsedObjectKeepsKeyOrder() throws {
        let value = try PacketValue.parseJSON("{\"z\":1,\"a\":2,\"m\":3,\"b\":4}")
        guard case .object(let members) = value else {
            Issue.record("expected an object, got \(value)")
            return
        }
        #expect(members.map(\.key) == ["z", "a", "m", "b"])
        #expect(members.map(\.value) == [1, 2, 3, 4])
        #expect(value.jsonString == "{\"z\":1,\"a\":2,\"m\":3,\"b\":4}")
    }

    @Test func objectsWithTheSameMembersInAnotherOrderAreNotEqual() throws {
        let a = try PacketValue.parseJSON("{\"a\":1,\"b\":2}")
        let b = try PacketValue.parseJSON("{\"b\":2,\"a\":1}")
        #expect(a != b)
    }

    @Test func duplicateKeysCollapseToTheLastValueInTheFirstPlace() throws {
        let value = try PacketValue.parseJSON("{\"k\":1,\"x\":true,\"k\":2}")
        #expect(value["k"] == .number(2))
        #expect(value["x"] == .bool(true))
        #expect(value["missing"] == nil)
        #expect(value.jsonString == "{\"k\":2,\"x\":true}")  // JSON.stringify(JSON.parse(…)), issue 11 finding 3
    }

    @Test func negativeZeroParsesAsZeroAndIsWrittenAsZero() throws {
        let value = try PacketValue.parseJSON("-0")
        #expect(value == .number(0))
        #expect(value.jsonString == "0")
        #expect(try PacketValue.parseJSON("-0.0").jsonString == "0")
    }

    static let escapeVectors: [(json: String, string: String)] = [
        ("\"\\\"\"", "\""),
        ("\"\\\\\"", "\\"),
        ("\"\\/\"", "/"),
        ("\"\\b\\f\\n\\r\\t\"", "\u{08}\u{0C}\n\r\t"),
        ("\"a\\nb\"", "a\nb"),
        ("\"\\u0041\"", "A"),
        ("\"\\u00e9\\u00E9\"", "\u{E9}\u{E9}"),
        ("\"\\u20AC\"", "\u{20AC}"),
        ("\"\\u0000\"", "\u{0}"),
        ("\"\\ud83d\\ude00\"", "\u{1F600}"),
        ("\"\\uD83D\\uDE00!\"", "\u{1F600}!"),
        ("\"x\\ud83d\\ude00y\\u00e9z\"", "x\u{1F600}y\u{E9}z"),
        // Lone surrogates cannot live in a Swift String: they become U+FFFD, and what follows is kept.
        ("\"\\ud83d\"", "\u{FFFD}"),
        ("\"\\ud83dx\"", "\u{FFFD}x"),
        ("\"\\ude00x\"", "\u{FFFD}x"),
        ("\"\\ud83d\\u0041\"", "\u{FFFD}A"),
        ("\"\u{E9}\\n\u{1F600}\"", "\u{E9}\n\u{1F600}"),
    ]

    @Test("decodes escapes", arguments: escapeVectors)
    func decodesEscapes(_ vector: (json: String, string: String)) throws {
        #expect(try PacketValue.parseJSON(vector.json) == .string(vector.string))
    }

    @Test func parsesFromByteBufferAndByteSlices() throws {
        var buffer = ByteBuffer(string: "xx[1,2]")
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(try PacketValue.parseJSON(buffer) == [1, 2])
        let bytes = Array("2[\"a\"]".utf8)
        #expect(try PacketValue.parseJSON(bytes[1...]) == ["a"])
    }

    // MARK: malformed input

    static let malformed: [String] = [
        "", " ", "nul", "nulll", "tru", "True", "NaN", "Infinity", "-Infinity", "undefined", "'a'",
        "[", "{", "[1,]", "[1 2]", "[,1]", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1,}", "{,}", "{\"a\" 1}",
        "[1]]", "{}}", "1 2", "[] x", "\"a\"b", "01", "-01", "00", "-", "--1", "+1", "1.", ".5", "1.e3", "1e",
        "1e+", "1e-", "0x10", "\u{FEFF}1",
        "\"abc", "\"", "\"\\", "\"\\\"", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\uZZZZ\"", "\"\\ud83d\\uZZZZ\"",
        "\"a\u{01}b\"", "\"a\nb\"", "\"\t\"", "\"\u{1F}\"", "\"ok\\n\u{0}\"",
    ]

    @Test("rejects malformed input", arguments: malformed)
    func rejectsMalformedInput(_ json: String) {
        #expect(throws: JSONError.self) { try PacketValue.parseJSON(json) }
    }

    @Test func errorsCarryTheOffsetOfTheProblem() {
        #expect(throws: JSONError(offset: 3, reason: "unexpected character")) { try PacketValue.parseJSON("[1,]") }
        #expect(throws: JSONError(offset: 2, reason: "unexpected trailing data")) { try PacketValue.parseJSON("1 2") }
        #expect(throws: JSONError(offset: 4, reason: "unterminated string")) { try PacketValue.parseJSON("\"abc") }
        #expect(throws: JSONError(offset: 3, reason: "invalid escape")) { try PacketValue.parseJSON("\"\\x\"") }
        #expect(throws: JSONError(offset: 2, reason: "control character in string")) {
            try PacketValue.parseJSON("\"a\u{01}\"")
        }
    }

    static func nestedArrays(_ depth: Int) -> String {
        String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
    }

    static func nestedObjects(_ depth: Int) -> String {
        String(repeating: "{\"a\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
    }

    @Test func nestingUpToTheLimitParses() throws {
        #expect(PacketValue.maximumJSONDepth == 64)
        let arrays = try PacketValue.parseJSON(Self.nestedArrays(64))
        #expect(arrays.jsonString == Self.nestedArrays(64))
        let objects = try PacketValue.parseJSON(Self.nestedObjects(64))
        #expect(objects.jsonString == Self.nestedObjects(64))
    }

    @Test func nestingBeyondTheLimitThrows() {
        #expect(throws: JSONError.self) { try PacketValue.parseJSON(Self.nestedArrays(65)) }
        #expect(throws: JSONError.self) { try PacketValue.parseJSON(Self.nestedObjects(65)) }
        #expect(throws: JSONError.self) { try PacketValue.parseJSON("[{\"a\":" + Self.nestedArrays(64) + "}]") }
    }

    @Test func hostileDeepInputThrowsWithoutExhaustingTheStack() {
        #expect(throws: JSONError.self) { try PacketValue.parseJSON(String(repeating: "[", count: 200_000)) }
        #expect(throws: JSONError.self) { try PacketValue.parseJSON(String(repeating: "{\"a\":", count: 100_000)) }
    }

    // MARK: serializing

    static let numberVectors: [(value: Double, json: String)] = [
        (0, "0"),
        (-0.0, "0"),
        (1, "1"),
        (-17, "-17"),
        (1e15, "1000000000000000"),
        (9_007_199_254_740_992, "9007199254740992"),
        (-9_007_199_254_740_992, "-9007199254740992"),
        (1e20, "100000000000000000000"),
        (9_007_199_254_740_994, "9007199254740994"),
        (1_152_921_504_606_846_976, "1152921504606847000"),  // 2^60
        (-1_152_921_504_606_846_976, "-1152921504606847000"),
        (18_446_744_073_709_551_616, "18446744073709552000"),  // 2^64
        (123_456_789_012_345_678_901, "123456789012345680000"),
        (999_999_999_999_999_868_928, "999999999999999900000"),  // the largest double below 1e21
        (-1e20, "-100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (-1.5e300, "-1.5e+300"),
        (0.5, "0.5"),
        (-2.25, "-2.25"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123.456, "123.456"),
        (1.0 / 3.0, "0.3333333333333333"),
        (0.0001, "0.0001"),
        (1.5e-10, "1.5e-10"),
        (-2.5e-300, "-2.5e-300"),
        (5e-324, "5e-324"),
        (4_503_599_627_370_495.5, "4503599627370495.5"),
        (.nan, "null"),
        (.infinity, "null"),
        (-.infinity, "null"),
    ]

    @Test("writes numbers as JSON.stringify does", arguments: numberVectors)
    func writesNumbersAsJSONStringify(_ vector: (value: Double, json: String)) {
        #expect(PacketValue.number(vector.value).jsonString == vector.json)
    }

    /// Values where `JSON.stringify` and the writer disagree; see the disabled reason.
    static let smallFractionVectors: [(value: Double, json: String)] = [
        (0.00001, "0.00001"),
        (0.000001, "0.000001"),
        (1.5e-5, "0.000015"),
        (-0.00002, "-0.00002"),
        (1e-7, "1e-7"),
        (-1.5e-7, "-1.5e-7"),
        (1.5e-9, "1.5e-9"),
    ]

    @Test(
        "writes small fractions as JSON.stringify does",
        arguments: smallFractionVectors
    )
    func writesSmallFractionsAsJSONStringify(_ vector: (value: Double, json: String)) {
        #expect(PacketValue.number(vector.value).jsonString == vector.json)
    }

    static let stringVectors: [(string: String, json: String)] = [
        ("", "\"\""),
        ("plain", "\"plain\""),
        ("a\"b", "\"a\\\"b\""),
        ("back\\slash", "\"back\\\\slash\""),
        ("/", "\"/\""),
        ("\n\r\t\u{08}\u{0C}", "\"\\n\\r\\t\\b\\f\""),
        ("\u{0}\u{01}\u{1F}", "\"\\u0000\\u0001\\u001f\""),
        ("\u{7F}", "\"\u{7F}\""),
        ("h\u{E9}llo \u{1F600} \u{20AC}", "\"h\u{E9}llo \u{1F600} \u{20AC}\""),
        ("\u{E9}\n\u{1F600}", "\"\u{E9}\\n\u{1F600}\""),
        // Runs between escapes, at both ends and back to back (they are copied whole).
        ("\"run\\\r\nrun\u{1}", "\"\\\"run\\\\\\r\\nrun\\u0001\""),
        ("a=x\r\nb=y\r\nc", "\"a=x\\r\\nb=y\\r\\nc\""),
    ]

    @Test("writes strings as JSON.stringify does", arguments: stringVectors)
    func writesStringsAsJSONStringify(_ vector: (string: String, json: String)) throws {
        let value = PacketValue.string(vector.string)
        #expect(value.jsonString == vector.json)
        #expect(try PacketValue.parseJSON(vector.json) == value)
    }

    @Test func writesCompactNestedValues() {
        let value: PacketValue = .object([
            ("type", "offer"),
            ("sdp", "v=0\r\n"),
            ("list", [1, 2.5, nil, true, .object([]), .array([])]),
            ("inner", .object([("z", false), ("a", -3)])),
        ])
        #expect(
            value.jsonString
                == #"{"type":"offer","sdp":"v=0\r\n","list":[1,2.5,null,true,{},[]],"inner":{"z":false,"a":-3}}"#
        )
    }

    @Test func binaryIsWrittenAsNull() {
        let value: PacketValue = ["x", .binary(ByteBuffer(bytes: [1, 2, 3]))]
        #expect(value.jsonString == "[\"x\",null]")
        #expect(value.containsBinary)
        #expect(!PacketValue.array(["x", .object([("a", 1)])]).containsBinary)
        #expect(PacketValue.object([("a", .array([.binary(ByteBuffer())]))]).containsBinary)
    }

    @Test func writeJSONAppendsToTheBuffer() {
        var buffer = ByteBuffer(string: "42")
        PacketValue.array(["hi"]).writeJSON(into: &buffer)
        #expect(String(buffer: buffer) == "42[\"hi\"]")
    }

    static let roundTrips: [String] = [
        "{\"sdp\":\"v=0\\r\\no=- 1 2 IN IP4 127.0.0.1\\r\\n\",\"type\":\"offer\"}",
        #"["candidate",{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 54321 typ host","sdpMid":"0","#
            + #""sdpMLineIndex":0}]"#,
        "[1,-1,0.5,-0.25,1e+21,1.5e-10,null,true,false,\"\",[],{}]",
        "{\"nested\":{\"deeper\":{\"deepest\":[[[\"\\u0001\"]]]}}}",
        "\"\u{1F600}\\\"\\\\\"",
    ]

    @Test("writes what it parsed byte for byte", arguments: roundTrips)
    func writesWhatItParsed(_ json: String) throws {
        #expect(try PacketValue.parseJSON(json).jsonString == json)
    }

    // MARK: accessors

    @Test func accessorsReturnValuesOnlyForTheirCase() {
        #expect(PacketValue.string("s").stringValue == "s")
        #expect(PacketValue.number(1).stringValue == nil)
        #expect(PacketValue.number(2.5).numberValue == 2.5)
        #expect(PacketValue.string("2").numberValue == nil)
        #expect(PacketValue.array([1]).arrayValue == [1])
        #expect(PacketValue.object([]).arrayValue == nil)
        #expect(PacketValue.object([]).isObject)
        #expect(!PacketValue.array([]).isObject)
        #expect(PacketValue.array([])["k"] == nil)
    }

    @Test func equalValuesHashEqually() throws {
        let a = try PacketValue.parseJSON("{\"a\":[1,\"x\"],\"b\":null}")
        let b: PacketValue = .object([("a", [1, "x"]), ("b", nil)])
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        #expect(PacketValue.binary(ByteBuffer(bytes: [1])) != .binary(ByteBuffer(bytes: [2])))
        #expect(PacketValue.number(1) != .string("1"))
        #expect(PacketValue.bool(false) != .null)
    }
}
