import Foundation
import NIOCore
import SocketIO
import Testing

@testable import Adapter

// MARK: - Encoding: every size form and its boundaries

@Suite("MessagePack encoding")
struct MessagePackEncodingTests {
    static let integers: [(Double, String)] = [
        (0, "00"), (1, "01"), (127, "7f"),
        (128, "cc80"), (255, "ccff"),
        (256, "cd0100"), (65535, "cdffff"),
        (65536, "ce00010000"), (4_294_967_295, "ceffffffff"),
        (4_294_967_296, "cf0000000100000000"),
        (9_007_199_254_740_992, "cf0020000000000000"),  // 2^53
        (18_446_744_073_709_549_568, "cffffffffffffff800"),  // the largest double below 2^64
        (-1, "ff"), (-32, "e0"),
        (-33, "d0df"), (-128, "d080"),
        (-129, "d1ff7f"), (-32768, "d18000"),
        (-32769, "d2ffff7fff"), (-2_147_483_648, "d280000000"),
        (-2_147_483_649, "d3ffffffff7fffffff"),
        (-9_223_372_036_854_775_808, "d38000000000000000"),  // -2^63
        (-0.0, "00"),  // JavaScript: Math.floor(-0) === -0 and -0 >= 0
    ]

    @Test(arguments: integers)
    func integerValuedNumbersTakeTheSmallestIntegerForm(value: Double, hex: String) {
        #expect(encodeHex(.number(value)) == hex)
    }

    static let floats: [(Double, String)] = [
        (0.5, "cb3fe0000000000000"),
        (-0.5, "cbbfe0000000000000"),
        (3.14, "cb40091eb851eb851f"),
        (.infinity, "cb7ff0000000000000"),
        (-.infinity, "cbfff0000000000000"),
        (.nan, "cb7ff8000000000000"),
        // Integer values outside the 64-bit forms (notepack writes wrapped garbage there).
        (18_446_744_073_709_551_616, "cb43f0000000000000"),  // 2^64
        (-9_223_372_036_854_777_856, "cbc3e0000000000001"),  // the next double below -2^63
        (1e300, "cb7e37e43c8800759c"),
    ]

    @Test(arguments: floats)
    func otherNumbersAreFloat64(value: Double, hex: String) {
        #expect(encodeHex(.number(value)) == hex)
    }

    @Test func scalars() {
        #expect(encodeHex(.null) == "c0")
        #expect(encodeHex(.bool(false)) == "c2")
        #expect(encodeHex(.bool(true)) == "c3")
        #expect(encodeHex(.string("")) == "a0")
        #expect(encodeHex(.string("é")) == "a2c3a9")
        #expect(encodeHex(.binary(ByteBuffer())) == "c400")
        #expect(encodeHex(.array([])) == "90")
        #expect(encodeHex(.object([])) == "80")
    }

    /// (length, expected header) for strings, binaries, arrays and maps.
    static let stringLengths: [(Int, String)] = [
        (0, "a0"), (31, "bf"), (32, "d920"), (255, "d9ff"), (256, "da0100"), (65535, "daffff"), (65536, "db00010000"),
    ]
    static let binaryLengths: [(Int, String)] = [
        (0, "c400"), (255, "c4ff"), (256, "c50100"), (65535, "c5ffff"), (65536, "c600010000"),
    ]
    static let arrayCounts: [(Int, String)] = [
        (0, "90"), (15, "9f"), (16, "dc0010"), (65535, "dcffff"), (65536, "dd00010000"),
    ]
    static let mapCounts: [(Int, String)] = [
        (0, "80"), (15, "8f"), (16, "de0010"), (65535, "deffff"), (65536, "df00010000"),
    ]

    @Test(arguments: stringLengths)
    func stringHeaders(length: Int, header: String) throws {
        let value = PacketValue.string(String(repeating: "x", count: length))
        let bytes = encode(value)
        #expect(hex(bytes.prefix(header.count / 2)) == header)
        #expect(bytes.count == header.count / 2 + length)
        #expect(try MessagePackDecoder().decode(bytes) == value)
    }

    @Test func stringLengthCountsUTF8Bytes() {
        // 16 × "é" is 16 characters but 32 bytes: str 8, not fixstr.
        let bytes = encode(.string(String(repeating: "é", count: 16)))
        #expect(hex(bytes.prefix(2)) == "d920")
        #expect(bytes.count == 34)
        #expect(encodeHex(.string("😀")) == "a4f09f9880")
    }

    @Test(arguments: binaryLengths)
    func binaryHeaders(length: Int, header: String) throws {
        let value = PacketValue.binary(ByteBuffer(repeating: 0xab, count: length))
        let bytes = encode(value)
        #expect(hex(bytes.prefix(header.count / 2)) == header)
        #expect(bytes.count == header.count / 2 + length)
        #expect(try MessagePackDecoder().decode(bytes) == value)
    }

    @Test(arguments: arrayCounts)
    func arrayHeaders(count: Int, header: String) throws {
        let value = PacketValue.array(Array(repeating: .number(1), count: count))
        let bytes = encode(value)
        #expect(hex(bytes.prefix(header.count / 2)) == header)
        #expect(bytes.count == header.count / 2 + count)
        #expect(try MessagePackDecoder().decode(bytes) == value)
    }

    @Test(arguments: mapCounts)
    func mapHeaders(count: Int, header: String) throws {
        let value = PacketValue.object((0..<count).map { (key: String($0), value: .null) })
        let bytes = encode(value)
        #expect(hex(bytes.prefix(header.count / 2)) == header)
        #expect(try MessagePackDecoder().decode(bytes) == value)
    }

    @Test func mapsKeepTheirKeyOrder() {
        let value: PacketValue = .object([(key: "b", value: 1), (key: "a", value: 2)])
        #expect(encodeHex(value) == "82a16201a16102")
    }

    @Test func binaryWritesOnlyTheReadableBytes() {
        var bytes = ByteBuffer(bytes: [9, 9, 1, 2])
        bytes.moveReaderIndex(forwardBy: 2)
        #expect(encodeHex(.binary(bytes)) == "c4020102")
    }

    @Test func encodingAppendsToTheBuffer() {
        var buffer = ByteBuffer(bytes: [0xee])
        MessagePackEncoder().encode(.array([true, nil]), into: &buffer)
        #expect(hex(Array(buffer.readableBytesView)) == "ee92c3c0")
    }

    static let roundTrips: [PacketValue] = [
        .null, true, false, 0, -1, 42, 3.5, -1e-7, 1e21, "", "hello", "ünïcödé ✓",
        .binary(ByteBuffer(bytes: [0, 1, 2, 255])),
        ["offer", .object([(key: "type", value: "offer"), (key: "sdp", value: "v=0\r\n")])],
        .object([
            (key: "nested", value: [[[1, [2, [3]]]], .object([(key: "deep", value: [nil, true, 1.25])])]),
            (key: "bin", value: .binary(ByteBuffer(bytes: [0xc1]))),
            (key: "", value: .object([])),
        ]),
    ]

    @Test(arguments: roundTrips)
    func roundTrip(value: PacketValue) throws {
        #expect(try MessagePackDecoder().decode(encode(value)) == value)
    }
}

// MARK: - Decoding: every format byte, extensions, keys, malformed input

@Suite("MessagePack decoding")
struct MessagePackDecodingTests {
    /// Forms our encoder never writes (or writes only for other values) must still be read.
    static let forms: [(String, PacketValue)] = [
        ("00", 0), ("7f", 127), ("e0", -32), ("ff", -1),
        ("cc05", 5), ("cd0005", 5), ("ce00000005", 5), ("cf0000000000000005", 5),
        ("cfffffffffffffffff", .number(18_446_744_073_709_551_615)),  // rounded as in JavaScript
        ("d0ff", -1), ("d080", -128), ("d1ff80", -128), ("d280000000", -2_147_483_648),
        ("d3ffffffffffffffff", -1), ("d38000000000000000", .number(-9_223_372_036_854_775_808)),
        ("d30020000000000001", .number(9_007_199_254_740_993)),  // 2^53 + 1 rounds like JavaScript's hi * 2^32 + lo
        ("ca3fc00000", 1.5), ("ca7f800000", .number(.infinity)), ("cb3ff8000000000000", 1.5),
        ("c0", nil), ("c2", false), ("c3", true),
        ("a3616263", "abc"), ("d903616263", "abc"), ("da0003616263", "abc"), ("db00000003616263", "abc"),
        ("a2c328", "\u{FFFD}("),  // invalid UTF-8 is repaired, as Buffer.toString does
        ("c4020102", .binary(ByteBuffer(bytes: [1, 2]))), ("c500020102", .binary(ByteBuffer(bytes: [1, 2]))),
        ("c6000000020102", .binary(ByteBuffer(bytes: [1, 2]))),
        ("920102", [1, 2]), ("dc00020102", [1, 2]), ("dd000000020102", [1, 2]),
        ("81a16101", .object([(key: "a", value: 1)])), ("de0001a16101", .object([(key: "a", value: 1)])),
        ("df00000001a16101", .object([(key: "a", value: 1)])),
        // Extensions other than timestamps: [type, bytes], as notepack returns them.
        ("d40501", [5, .binary(ByteBuffer(bytes: [1]))]),
        ("d5fe0102", [-2, .binary(ByteBuffer(bytes: [1, 2]))]),
        ("d60101020304", [1, .binary(ByteBuffer(bytes: [1, 2, 3, 4]))]),
        ("d7000000000000000000", [0, .binary(ByteBuffer(repeating: 0, count: 8))]),
        ("d81100000000000000000000000000000000", [17, .binary(ByteBuffer(repeating: 0, count: 16))]),
        ("c70007", [7, .binary(ByteBuffer())]), ("c8000107ff", [7, .binary(ByteBuffer(bytes: [0xff]))]),
        ("c90000000107ff", [7, .binary(ByteBuffer(bytes: [0xff]))]),
        ("d4ff00", [-1, .binary(ByteBuffer(bytes: [0]))]),  // type −1 but no timestamp length
    ]

    @Test(arguments: forms)
    func decodesEveryForm(hex: String, expected: PacketValue) throws {
        #expect(try MessagePackDecoder().decode(bytes(hex)) == expected)
    }

    /// Timestamps become the string a Node node sends its clients for the `Date` (`toISOString()`).
    static let timestamps: [(String, PacketValue)] = [
        ("d6ff00000000", "1970-01-01T00:00:00.000Z"),
        ("d6ffffffffff", "2106-02-07T06:28:15.000Z"),  // timestamp 32 maximum
        ("d6ff695735a5", "2026-01-02T03:04:05.000Z"),
        ("d7ffa1a5d600695735a5", "2026-01-02T03:04:05.678Z"),  // 678 000 000 ns
        ("d7ffee6b27fc00000000", "1970-01-01T00:00:00.999Z"),  // 999 999 999 ns: truncated, not rounded
        ("d7ff00000003ffffffff", "2514-05-30T01:53:03.000Z"),  // 34-bit seconds maximum
        ("c70cff1dcd6500fffffffffffffffe", "1969-12-31T23:59:58.500Z"),  // new Date(-1500)
        ("c70cff000f4240fffffffffffffffe", "1969-12-31T23:59:58.001Z"),  // -2 s + 1 ms
        ("c70cff00000000fffffff1868b8400", "0000-01-01T00:00:00.000Z"),
        ("c70cff00000000fffffff1868b83ff", "-000001-12-31T23:59:59.000Z"),
        ("c70cff000000000000003afff44180", "+010000-01-01T00:00:00.000Z"),
        ("c70cff00000000000007dba8218000", "+275760-09-13T00:00:00.000Z"),  // 8.64e15 ms: the last valid Date
        ("c70cff00000000000007dba8218001", nil),  // beyond: an invalid Date, which JSON.stringify writes as null
        ("c70cff000000007fffffffffffffff", nil),
        // Any ext with type −1 and 4, 8 or 12 bytes is a timestamp, whatever its header.
        ("c704ff00000000", "1970-01-01T00:00:00.000Z"),
    ]

    @Test(arguments: timestamps)
    func decodesTimestamps(hex: String, expected: PacketValue) throws {
        #expect(try MessagePackDecoder().decode(bytes(hex)) == expected)
    }

    /// `new Date(ms)` truncates toward zero: -2 s + 500 µs is -1999.5 ms, which becomes -1999.
    @Test func timestampsTruncateTowardZero() throws {
        #expect(try MessagePackDecoder().decode(bytes("c70cff0007a120fffffffffffffffe")) == "1969-12-31T23:59:58.001Z")
        #expect(try MessagePackDecoder().decode(bytes("c70cff0007a1200000000000000001")) == "1970-01-01T00:00:01.000Z")
    }

    /// Keys that are not strings become what JavaScript makes of them as property names.
    static let keys: [(String, String)] = [
        ("81a1610c", "a"), ("81010c", "1"), ("81ff0c", "-1"), ("81cb3ff80000000000000c", "1.5"),
        ("81cb7ff80000000000000c", "NaN"), ("81cbfff00000000000000c", "-Infinity"),
        ("81c00c", "null"), ("81c30c", "true"), ("81c20c", "false"),
        ("81c40268690c", "hi"), ("819301c0a1610c", "1,,a"), ("81800c", "[object Object]"),
        ("81d6ff000000000c", "1970-01-01T00:00:00.000Z"),
    ]

    @Test(arguments: keys)
    func mapKeysBecomeStrings(hex: String, key: String) throws {
        #expect(try MessagePackDecoder().decode(bytes(hex)) == .object([(key: key, value: .number(12))]))
    }

    @Test func binaryValuesShareTheInputStorage() throws {
        let input = ByteBuffer(bytes: bytes("92c403010203c0"))
        guard case .array(let elements) = try MessagePackDecoder().decode(input), case .binary(let slice) = elements[0]
        else {
            Issue.record("expected [bin, nil]")
            return
        }
        #expect(Array(slice.readableBytesView) == [1, 2, 3])
    }

    // Malformed input

    static let malformed: [(String, MessagePackDecodingError)] = [
        ("", .init(offset: 0, reason: .unexpectedEnd)),
        ("c1", .init(offset: 0, reason: .invalidFormat(0xc1))),
        ("92c1c0", .init(offset: 1, reason: .invalidFormat(0xc1))),
        ("0000", .init(offset: 1, reason: .trailingBytes(1))),
        ("92", .init(offset: 0, reason: .unexpectedEnd)),
        ("9201", .init(offset: 0, reason: .unexpectedEnd)),
        ("81a161", .init(offset: 3, reason: .unexpectedEnd)),
        ("a3ab", .init(offset: 0, reason: .unexpectedEnd)),
        ("cd01", .init(offset: 0, reason: .unexpectedEnd)),
        ("cb000000", .init(offset: 0, reason: .unexpectedEnd)),
        ("d7ff0000", .init(offset: 0, reason: .unexpectedEnd)),
        ("c7", .init(offset: 0, reason: .unexpectedEnd)),
        ("c705", .init(offset: 0, reason: .unexpectedEnd)),
        // Lengths far beyond the input must fail before anything is allocated for them.
        ("ddffffffff", .init(offset: 0, reason: .unexpectedEnd)),
        ("dfffffffff", .init(offset: 0, reason: .unexpectedEnd)),
        ("dbffffffff61", .init(offset: 0, reason: .unexpectedEnd)),
        ("c6ffffffff61", .init(offset: 0, reason: .unexpectedEnd)),
        ("c9ffffffff0161", .init(offset: 0, reason: .unexpectedEnd)),
        ("91dcffff", .init(offset: 1, reason: .unexpectedEnd)),
    ]

    @Test(arguments: malformed)
    func refusesMalformedInput(hex: String, expected: MessagePackDecodingError) {
        #expect(throws: expected) { try MessagePackDecoder().decode(bytes(hex)) }
    }

    @Test func errorsDescribeThemselves() {
        let error = MessagePackDecodingError(offset: 3, reason: .invalidFormat(0xc1))
        #expect(error.description == "invalid MessagePack: format byte 0xc1 at byte 3")
    }

    @Test func nestingIsLimited() throws {
        let decoder = MessagePackDecoder()
        let limit = MessagePackDecoder.defaultMaximumDepth
        let deepest = Array(repeating: UInt8(0x91), count: limit) + [0xc0]
        #expect(throws: Never.self) { try decoder.decode(deepest) }
        let tooDeep = Array(repeating: UInt8(0x91), count: limit + 1) + [0xc0]
        #expect(throws: MessagePackDecodingError(offset: limit, reason: .nestingTooDeep)) {
            try decoder.decode(tooDeep)
        }
        // Maps count too, in key position as well.
        let mapKeys =
            Array(repeating: UInt8(0x81), count: limit + 1) + [0xc0] + Array(repeating: UInt8(0xc0), count: limit + 1)
        #expect(throws: MessagePackDecodingError(offset: limit, reason: .nestingTooDeep)) {
            try decoder.decode(mapKeys)
        }
        // Hostile depth far beyond the limit fails without exhausting the stack.
        #expect(throws: MessagePackDecodingError.self) {
            try decoder.decode(Array(repeating: UInt8(0x91), count: 1_000_000))
        }
        #expect(throws: MessagePackDecodingError.self) {
            try MessagePackDecoder(maximumDepth: 2).decode(bytes("919191c0"))
        }
    }

    @Test func decodeValueReadsOneValueAndAdvances() throws {
        var buffer = ByteBuffer(bytes: bytes("a161" + "92c3c2" + "cd01"))
        let decoder = MessagePackDecoder()
        #expect(try decoder.decodeValue(from: &buffer) == "a")
        #expect(try decoder.decodeValue(from: &buffer) == [true, false])
        #expect(throws: MessagePackDecodingError(offset: 0, reason: .unexpectedEnd)) {
            try decoder.decodeValue(from: &buffer)
        }
        #expect(buffer.readableBytes == 2, "a failed read leaves the buffer as it was")
    }

    @Test func decodesFromAReaderIndexOtherThanZero() throws {
        var buffer = ByteBuffer(bytes: [0xff, 0xff, 0x92, 0x01])
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(throws: MessagePackDecodingError(offset: 0, reason: .unexpectedEnd)) {
            try MessagePackDecoder().decode(buffer)
        }
        buffer.writeInteger(UInt8(0x02))
        #expect(try MessagePackDecoder().decode(buffer) == [1, 2])
    }

    /// Every strict prefix of every captured message is truncated input and must throw.
    @Test func everyPrefixOfEveryFixtureThrows() throws {
        for message in try RedisAdapterFixtures.messages() where message.encoding == "msgpack" {
            for length in 0..<message.bytes.count {
                #expect(throws: MessagePackDecodingError.self, "\(message.file) cut at \(length)") {
                    try MessagePackDecoder().decode(message.bytes.prefix(length))
                }
            }
        }
    }

    /// Random and mutated input either decodes or throws; it never traps.
    @Test func survivesGarbage() throws {
        var generator = SplitMix64(seed: 0x5eed)
        let decoder = MessagePackDecoder()
        for _ in 0..<20_000 {
            let count = Int(generator.next() % 48)
            let garbage = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            _ = try? decoder.decode(garbage)
        }
        let seeds = try RedisAdapterFixtures.messages().filter { $0.encoding == "msgpack" }.map(\.bytes)
        for _ in 0..<20_000 {
            var mutated = seeds[Int(generator.next() % UInt64(seeds.count))]
            for _ in 0...(generator.next() % 3) {
                mutated[Int(generator.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: generator.next())
            }
            if let value = try? decoder.decode(mutated) {
                _ = encode(value)  // and whatever decodes, encodes
            }
        }
    }
}

// MARK: - Fixtures: the bytes Node actually published

@Suite("MessagePack against the Node fixtures")
struct MessagePackFixtureTests {
    static let messagePackFiles =
        (try? RedisAdapterFixtures.messages().filter { $0.encoding == "msgpack" }.map(\.file))
        ?? []

    @Test func fixturesArePresent() throws {
        // 30 broadcasts, 2 broadcast-with-ack requests and their 2 client acks.
        #expect(Self.messagePackFiles.count == 34)
    }

    @Test(arguments: messagePackFiles)
    func decodesWhatNodePublished(file: String) throws {
        let message = try RedisAdapterFixtures.message(file)
        let decoded = try MessagePackDecoder().decode(message.bytes)
        #expect(decoded == message.expected)
    }

    /// notepack's choices are canonical: re-encoding the decoded value gives Node's bytes back, except where a
    /// `Date` (which `PacketValue` holds as its ISO string) was involved.
    @Test(arguments: messagePackFiles)
    func reencodesToTheSameBytes(file: String) throws {
        let message = try RedisAdapterFixtures.message(file)
        let decoded = try MessagePackDecoder().decode(message.bytes)
        let reencoded = encode(decoded)
        if message.containsTimestamp {
            #expect(reencoded != message.bytes)
        } else {
            #expect(hex(reencoded) == hex(message.bytes))
        }
    }
}

// MARK: - Python's msgpack agrees with our encoder

@Suite("MessagePack against Python msgpack")
struct MessagePackPythonTests {
    /// (Python expression, the same value for us). Integer-valued numbers are Python ints and the others
    /// floats, which is the distinction notepack draws from a JavaScript number's value.
    static let vectors: [(python: String, value: PacketValue)] = {
        var vectors: [(String, PacketValue)] = [
            ("None", nil), ("True", true), ("False", false),
            ("0", 0), ("0", -0.0), ("127", 127), ("128", 128), ("255", 255), ("256", 256), ("65535", 65535),
            ("65536", 65536), ("2**32-1", 4_294_967_295), ("2**32", 4_294_967_296), ("2**53", 9_007_199_254_740_992),
            ("18446744073709549568", .number(18_446_744_073_709_549_568)),
            ("-1", -1), ("-32", -32), ("-33", -33), ("-128", -128), ("-129", -129), ("-32768", -32768),
            ("-32769", -32769), ("-2**31", -2_147_483_648), ("-2**31-1", -2_147_483_649),
            ("-2**63", -9_223_372_036_854_775_808),
            ("0.5", 0.5), ("-0.5", -0.5), ("3.14", 3.14), ("1e-7", 1e-7), ("float('inf')", .number(.infinity)),
            ("float('-inf')", .number(-.infinity)), ("float('nan')", .number(.nan)),
            ("''", ""), ("'é'", "é"), ("'😀'", "😀"),
            ("b''", .binary(ByteBuffer())), ("bytes([0,1,2,255])", .binary(ByteBuffer(bytes: [0, 1, 2, 255]))),
            ("[]", []), ("{}", .object([])),
            (
                "['offer', {'type': 'offer', 'sdp': 'v=0', 'n': [1, None, True, 2.5]}]",
                [
                    "offer",
                    .object([
                        (key: "type", value: "offer"), (key: "sdp", value: "v=0"),
                        (key: "n", value: [1, nil, true, 2.5]),
                    ]),
                ]
            ),
        ]
        for length in [31, 32, 255, 256, 65535, 65536] {
            vectors.append(("'x'*\(length)", .string(String(repeating: "x", count: length))))
            vectors.append(("'é'*\(length / 2)", .string(String(repeating: "é", count: length / 2))))
        }
        for length in [255, 256, 65535, 65536] {
            vectors.append(("bytes([7])*\(length)", .binary(ByteBuffer(repeating: 7, count: length))))
        }
        for count in [15, 16, 65535, 65536] {
            vectors.append(("[1]*\(count)", .array(Array(repeating: 1, count: count))))
            vectors.append(
                (
                    "{str(i): i for i in range(\(count))}",
                    .object((0..<count).map { (key: String($0), value: .number(Double($0))) })
                )
            )
        }
        return vectors
    }()

    @Test func encoderMatchesPythonMsgpack() throws {
        let script = """
            import msgpack, sys
            values = [\(Self.vectors.map(\.python).joined(separator: ",\n"))]
            sys.stdout.write("\\n".join(msgpack.packb(v, use_bin_type=True).hex() for v in values))
            """
        let output = try runPython(script)
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(lines.count == Self.vectors.count, "python printed \(lines.count) lines")
        for (vector, expected) in zip(Self.vectors, lines) {
            let ours = encodeHex(vector.value)
            #expect(ours == expected, "\(vector.python.prefix(60))")
        }
    }

    private func runPython(_ script: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Read before waiting: the output (about 1 MB of hex) is larger than a pipe's buffer.
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(
            process.terminationStatus == 0,
            "python3 with the msgpack package is needed: \(String(decoding: errors, as: UTF8.self))"
        )
        return String(decoding: output, as: UTF8.self)
    }
}

// MARK: - Helpers shared with ClusterMessageTests

/// The captured Redis messages in `Fixtures/redis-adapter` (copied from the shared fixtures, so CI needs nothing
/// else): each `.bin` holds the exact bytes, `index.json` the channel and the decoded value.
enum RedisAdapterFixtures {
    struct Message {
        var file: String
        var channel: String
        var publishedBy: String
        var encoding: String
        var bytes: [UInt8]
        /// `decoded` from the index with bin as `.binary` and timestamps as their ISO strings.
        var expected: PacketValue
        var containsTimestamp: Bool

        var isFromEmitter: Bool { publishedBy == "emitter" }
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/redis-adapter")

    /// ISO strings the receiving Node nodes sent their clients for the captured Dates (`delivered_to_clients`).
    static let isoStringsOfCapturedDates: [Double: String] = [
        1_767_323_045_678: "2026-01-02T03:04:05.678Z",
        1_767_323_045_000: "2026-01-02T03:04:05.000Z",
        -1500: "1969-12-31T23:59:58.500Z",
    ]

    static func messages() throws -> [Message] {
        let index = try PacketValue.parseJSON(
            Array(try Data(contentsOf: directory.appendingPathComponent("index.json")))
        )
        let entries = try #require(index["messages"]?.arrayValue)
        return try entries.map { entry in
            let file = try #require(entry["file"]?.stringValue)
            var containsTimestamp = false
            return Message(
                file: file,
                channel: try #require(entry["channel"]?.stringValue),
                publishedBy: try #require(entry["published_by"]?.stringValue),
                encoding: try #require(entry["encoding"]?.stringValue),
                bytes: Array(try Data(contentsOf: directory.appendingPathComponent(file))),
                expected: try expectedValue(try #require(entry["decoded"]), containsTimestamp: &containsTimestamp),
                containsTimestamp: containsTimestamp
            )
        }
    }

    static func message(_ file: String) throws -> Message {
        try #require(try messages().first { $0.file == file })
    }

    private static func expectedValue(_ value: PacketValue, containsTimestamp: inout Bool) throws -> PacketValue {
        switch value {
        case .object(let members):
            if members.count == 1, members[0].key == "$bin_hex", let hexString = members[0].value.stringValue {
                return .binary(ByteBuffer(bytes: bytes(hexString)))
            }
            if members.count == 1, members[0].key == "$timestamp" {
                containsTimestamp = true
                let milliseconds = try #require(members[0].value["ms_since_epoch"]?.numberValue)
                return .string(try #require(isoStringsOfCapturedDates[milliseconds]))
            }
            var converted: [(key: String, value: PacketValue)] = []
            for member in members {
                converted.append((member.key, try expectedValue(member.value, containsTimestamp: &containsTimestamp)))
            }
            return .object(converted)
        case .array(let elements):
            var converted: [PacketValue] = []
            for element in elements {
                converted.append(try expectedValue(element, containsTimestamp: &containsTimestamp))
            }
            return .array(converted)
        default:
            return value
        }
    }
}

func encode(_ value: PacketValue) -> [UInt8] {
    var buffer = ByteBuffer()
    MessagePackEncoder().encode(value, into: &buffer)
    return Array(buffer.readableBytesView)
}

func encodeHex(_ value: PacketValue) -> String {
    hex(encode(value))
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: text, as: UTF8.self)
}

func bytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex.utf8)
    precondition(digits.count.isMultiple(of: 2), "odd hex string \(hex)")
    func value(_ digit: UInt8) -> UInt8 {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        default: preconditionFailure("not a hex digit in \(hex)")
        }
    }
    return stride(from: 0, to: digits.count, by: 2).map { value(digits[$0]) << 4 | value(digits[$0 + 1]) }
}

/// A small seeded generator, so garbage tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
