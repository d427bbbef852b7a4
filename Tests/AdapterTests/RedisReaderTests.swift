import NIOCore
import Testing

@testable import Adapter

@Suite("RESP decoding with hiredis")
struct RedisReaderTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        var values: [RESPValue]
        var testDescription: String { self.name }

        init(_ name: String, _ bytes: [UInt8], _ values: [RESPValue]) {
            self.name = name
            self.bytes = bytes
            self.values = values
        }

        init(_ name: String, _ text: String, _ values: [RESPValue]) {
            self.init(name, Array(text.utf8), values)
        }
    }

    static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }
    static func bulk(_ bytes: [UInt8]) -> RESPValue { .bulkString(ByteBuffer(bytes: bytes)) }

    static let vectors: [Vector] = [
        Vector("simple string", "+OK\r\n", [.simpleString("OK")]),
        Vector("empty simple string", "+\r\n", [.simpleString("")]),
        Vector(
            "error",
            "-ERR unknown command 'FOO'\r\n",
            [.error("ERR unknown command 'FOO'")]
        ),
        Vector("zero", ":0\r\n", [.integer(0)]),
        Vector("negative integer", ":-42\r\n", [.integer(-42)]),
        Vector("largest integer", ":9223372036854775807\r\n", [.integer(.max)]),
        Vector("bulk string", "$5\r\nhello\r\n", [bulk("hello")]),
        Vector("empty bulk string", "$0\r\n\r\n", [bulk("")]),
        Vector("nil bulk string", "$-1\r\n", [.bulkString(nil)]),
        Vector(
            "binary bulk string",
            Array("$6\r\n".utf8) + [0x0D, 0x0A, 0x00, 0xFF, 0x24, 0x2A] + Array("\r\n".utf8),
            [bulk([0x0D, 0x0A, 0x00, 0xFF, 0x24, 0x2A])]
        ),
        Vector(
            "UTF-8 bulk string",
            Array("$9\r\n".utf8) + Array("h\u{e9}llo\u{2713}".utf8) + Array("\r\n".utf8),
            [bulk("h\u{e9}llo\u{2713}")]
        ),
        Vector("nil array", "*-1\r\n", [.array(nil)]),
        Vector("empty array", "*0\r\n", [.array([])]),
        Vector(
            "nested arrays with nils",
            "*4\r\n:1\r\n*2\r\n$1\r\na\r\n*-1\r\n$-1\r\n*1\r\n*1\r\n*0\r\n",
            [
                .array([
                    .integer(1), .array([bulk("a"), .array(nil)]), .bulkString(nil), .array([.array([.array([])])]),
                ])
            ]
        ),
        Vector(
            "array mixing every type",
            "*5\r\n+OK\r\n-ERR no\r\n:7\r\n$3\r\nabc\r\n*1\r\n$0\r\n\r\n",
            [.array([.simpleString("OK"), .error("ERR no"), .integer(7), bulk("abc"), .array([bulk("")])])]
        ),
        Vector(
            "pub/sub message push",
            "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
            [.array([bulk("message"), bulk("news"), bulk("hello")])]
        ),
        Vector(
            "several replies back to back",
            "+OK\r\n:1\r\n$-1\r\n*-1\r\n$2\r\nhi\r\n",
            [.simpleString("OK"), .integer(1), .bulkString(nil), .array(nil), bulk("hi")]
        ),
    ]

    /// Feeds `chunks` one after the other, collecting every reply that becomes complete.
    static func decode(_ chunks: [ArraySlice<UInt8>]) throws -> [RESPValue] {
        let reader = HiredisReader()
        var values: [RESPValue] = []
        for chunk in chunks {
            try reader.feed(ByteBuffer(bytes: chunk))
            while let value = try reader.nextReply() {
                values.append(value)
            }
        }
        return values
    }

    @Test(arguments: RedisReaderTests.vectors)
    func decodesInOneRead(_ vector: Vector) throws {
        #expect(try Self.decode([vector.bytes[...]]) == vector.values)
    }

    @Test(arguments: RedisReaderTests.vectors)
    func decodesWhenSplitAtEveryByte(_ vector: Vector) throws {
        for split in 0...vector.bytes.count {
            let values = try Self.decode([vector.bytes[..<split], vector.bytes[split...]])
            #expect(values == vector.values, "split at \(split)")
        }
    }

    @Test(arguments: RedisReaderTests.vectors)
    func decodesOneByteAtATime(_ vector: Vector) throws {
        #expect(try Self.decode(vector.bytes.map { [$0][...] }) == vector.values)
    }

    @Test func decodesAllVectorsConcatenatedSplitAtEveryByte() throws {
        let bytes = Self.vectors.flatMap(\.bytes)
        let expected = Self.vectors.flatMap(\.values)
        for split in 0...bytes.count {
            #expect(try Self.decode([bytes[..<split], bytes[split...]]) == expected, "split at \(split)")
        }
    }

    @Test func noReplyUntilTheLastByteArrives() throws {
        let reader = HiredisReader()
        let bytes = Array("*2\r\n$3\r\nabc\r\n:5\r\n".utf8)
        for byte in bytes.dropLast() {
            try reader.feed(ByteBuffer(bytes: [byte]))
            #expect(try reader.nextReply() == nil)
        }
        try reader.feed(ByteBuffer(bytes: [bytes.last!]))
        #expect(try reader.nextReply() == .array([Self.bulk("abc"), .integer(5)]))
        #expect(try reader.nextReply() == nil)
    }

    @Test func decodesALargeBulkStringInAnyChunking() throws {
        let payload = (0..<(1 << 20) + 13).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let bytes = Array("$\(payload.count)\r\n".utf8) + payload + Array("\r\n+OK\r\n".utf8)
        let expected: [RESPValue] = [Self.bulk(payload), .simpleString("OK")]

        #expect(try Self.decode([bytes[...]]) == expected)
        for chunkSize in [1000, 4096, 65_536, 100_003] {
            let chunks = stride(from: 0, to: bytes.count, by: chunkSize).map {
                bytes[$0..<min($0 + chunkSize, bytes.count)]
            }
            #expect(try Self.decode(chunks) == expected, "chunks of \(chunkSize)")
        }
    }

    @Test(arguments: ["?what\r\n", "$abc\r\n", ":12x\r\n", "*x\r\n"])
    func rejectsMalformedInput(_ text: String) throws {
        let reader = HiredisReader()
        try reader.feed(ByteBuffer(string: text))
        #expect {
            _ = try reader.nextReply()
        } throws: { error in
            guard case .protocolError = error as? RedisError else { return false }
            return true
        }
    }

    /// Found by the `resp` fuzz target: `*2147483647\r\n` (13 bytes) made hiredis calloc 16 GB for the element
    /// pointers before any element arrived. A header beyond the limit is now refused at once.
    @Test(arguments: ["*100000000\r\n", "*2147483647\r\n", "*1\r\n*100000000\r\n"])
    func refusesAnArrayHeaderBeyondTheElementLimit(_ text: String) throws {
        let reader = HiredisReader()
        try reader.feed(ByteBuffer(string: text))
        #expect {
            _ = try reader.nextReply()
        } throws: { error in
            guard case .protocolError(let message) = error as? RedisError else { return false }
            return message.contains("elements")
        }
    }

    @Test func acceptsAnArrayHeaderAtTheElementLimit() throws {
        let reader = HiredisReader()
        try reader.feed(ByteBuffer(string: "*\(HiredisReader.maximumArrayElements)\r\n:1\r\n"))
        #expect(try reader.nextReply() == nil)  // waits for the other elements
    }

    @Test func staysFailedAfterAProtocolError() throws {
        let reader = HiredisReader()
        try reader.feed(ByteBuffer(string: "!oops\r\n"))
        #expect(throws: RedisError.self) { try reader.nextReply() }
        #expect(throws: RedisError.self) {
            try reader.feed(ByteBuffer(string: "+OK\r\n"))
            _ = try reader.nextReply()
        }
    }

    @Test func errorRepliesAreValuesNotFailures() throws {
        #expect(
            try Self.decode([Array("-WRONGPASS invalid password\r\n".utf8)[...]]) == [
                .error("WRONGPASS invalid password")
            ])
    }
}
