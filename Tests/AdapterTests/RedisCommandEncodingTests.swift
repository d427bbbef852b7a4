import NIOCore
import Testing

@testable import Adapter

@Suite("RESP command encoding with hiredis")
struct RedisCommandEncodingTests {
    static func encode(_ arguments: [RESPArgument]) throws -> String {
        var out = ByteBuffer()
        try RESPCommandEncoder.format(RedisCommand(arguments), into: &out)
        return String(buffer: out)
    }

    @Test func formatsAnArrayOfBulkStrings() throws {
        #expect(try Self.encode(["PING"]) == "*1\r\n$4\r\nPING\r\n")
        #expect(
            try Self.encode(["PUBLISH", "socket.io#/#", .buffer(ByteBuffer(string: "hi"))])
                == "*3\r\n$7\r\nPUBLISH\r\n$12\r\nsocket.io#/#\r\n$2\r\nhi\r\n"
        )
    }

    @Test func argumentsAreBinarySafe() throws {
        let payload: [UInt8] = [0x00, 0x0D, 0x0A, 0xFF, 0x2A]
        var out = ByteBuffer()
        try RESPCommandEncoder.format(RedisCommand(["SET", .bytes([0x6B]), .bytes(payload)]), into: &out)
        #expect(
            Array(out.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\n".utf8) + payload + [0x0D, 0x0A])
    }

    @Test func emptyArgumentsAreKept() throws {
        #expect(try Self.encode(["", .bytes([]), .buffer(ByteBuffer())]) == "*3\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n")
    }

    @Test func stringsAreSentAsUTF8AndBuffersFromTheirReaderIndex() throws {
        var buffer = ByteBuffer(string: "skip-keep")
        buffer.moveReaderIndex(forwardBy: 5)
        #expect(
            try Self.encode(["ECHO", "h\u{e9}", .buffer(buffer)])
                == "*3\r\n$4\r\nECHO\r\n$3\r\nh\u{e9}\r\n$4\r\nkeep\r\n")
        #expect(try Self.encode(["SELECT", .integer(12)]) == "*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n")
    }

    @Test func aLargePayloadRoundTripsThroughTheReader() throws {
        let payload = ByteBuffer(bytes: (0..<300_000).map { UInt8(truncatingIfNeeded: $0) })
        var out = ByteBuffer()
        try RESPCommandEncoder.format(RedisCommand(["SET", "k", .buffer(payload)]), into: &out)
        let reader = HiredisReader()
        try reader.feed(out)
        #expect(
            try reader.nextReply()
                == .array([
                    .bulkString(ByteBuffer(string: "SET")), .bulkString(ByteBuffer(string: "k")), .bulkString(payload),
                ]))
    }

    @Test func descriptionNamesOnlyTheCommand() {
        #expect(RedisCommand(["AUTH", "user", "secret"]).description == "AUTH")
    }
}
