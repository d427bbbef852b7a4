import NIOCore
import Testing

@testable import EngineIO
@testable import SocketIO

/// Frames as the tests write them: text frames from strings, binary frames from bytes.
func textFrame(_ text: String) -> EngineFrame { .text(ByteBuffer(string: text)) }
func binaryFrame(_ bytes: [UInt8]) -> EngineFrame { .binary(ByteBuffer(bytes: bytes)) }

@Suite("SocketIOPacket")
struct SocketIOPacketTests {
    static let placeholder0: PacketValue = .object([("_placeholder", true), ("num", 0)])
    static let placeholder1: PacketValue = .object([("_placeholder", true), ("num", 1)])

    // MARK: decoding

    /// The Socket.IO text (Engine.IO `4` prefix removed) and the packet it stands for.
    static let decodeVectors: [(text: String, packet: SocketIOPacket)] = [
        ("0", SocketIOPacket(type: .connect)),
        ("0/admin,", SocketIOPacket(type: .connect, nsp: "/admin")),
        ("0/admin,{\"token\":\"x\"}", SocketIOPacket(type: .connect, nsp: "/admin", data: .object([("token", "x")]))),
        (
            "0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}",
            SocketIOPacket(type: .connect, data: .object([("sid", "wZX3oN0bSVIhsaknAAAI")]))
        ),
        ("1", SocketIOPacket(type: .disconnect)),
        ("1/admin,", SocketIOPacket(type: .disconnect, nsp: "/admin")),
        ("2[\"hello\",\"Jude\"]", SocketIOPacket(type: .event, data: ["hello", "Jude"])),
        ("2/admin,[\"bar\"]", SocketIOPacket(type: .event, nsp: "/admin", data: ["bar"])),
        ("212[\"foo\"]", SocketIOPacket(type: .event, id: 12, data: ["foo"])),
        (
            "2/admin,0[\"foo\",{\"a\":[1,2]}]",
            SocketIOPacket(type: .event, nsp: "/admin", id: 0, data: ["foo", .object([("a", [1, 2])])])
        ),
        ("2[42,\"numeric name\"]", SocketIOPacket(type: .event, data: [42, "numeric name"])),
        ("3/admin,13[\"bar\"]", SocketIOPacket(type: .ack, nsp: "/admin", id: 13, data: ["bar"])),
        ("37[]", SocketIOPacket(type: .ack, id: 7, data: [])),
        (
            "4{\"message\":\"Not authorized\"}",
            SocketIOPacket(type: .connectError, data: .object([("message", "Not authorized")]))
        ),
        ("4/admin,\"plain\"", SocketIOPacket(type: .connectError, nsp: "/admin", data: "plain")),
        (
            "51-[\"baz\",{\"_placeholder\":true,\"num\":0}]",
            SocketIOPacket(type: .binaryEvent, data: ["baz", placeholder0], attachmentCount: 1)
        ),
        (
            "52-/admin,9[\"up\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
            SocketIOPacket(
                type: .binaryEvent,
                nsp: "/admin",
                id: 9,
                data: ["up", placeholder0, placeholder1],
                attachmentCount: 2
            )
        ),
        ("510-[\"ten\"]", SocketIOPacket(type: .binaryEvent, data: ["ten"], attachmentCount: 10)),
        (
            "61-/admin,15[{\"_placeholder\":true,\"num\":0}]",
            SocketIOPacket(type: .binaryAck, nsp: "/admin", id: 15, data: [placeholder0], attachmentCount: 1)
        ),
    ]

    @Test("decodes", arguments: decodeVectors)
    func decodes(_ vector: (text: String, packet: SocketIOPacket)) throws {
        #expect(try SocketIOPacket.decode(ByteBuffer(string: vector.text)) == vector.packet)
    }

    enum ErrorKind: Sendable, Hashable {
        case empty, unknownType, badAttachmentCount, tooManyAttachments, invalidPayload
    }

    static func kind(_ error: SocketIOPacket.DecodeError) -> ErrorKind {
        switch error {
        case .empty: .empty
        case .unknownType: .unknownType
        case .badAttachmentCount: .badAttachmentCount
        case .tooManyAttachments: .tooManyAttachments
        case .invalidPayload: .invalidPayload
        }
    }

    static let errorVectors: [(text: String, kind: ErrorKind)] = [
        ("", .empty),
        ("7", .unknownType),
        ("9[\"x\"]", .unknownType),
        ("x", .unknownType),
        ("/", .unknownType),
        (" 2[\"x\"]", .unknownType),
        ("5[\"x\"]", .badAttachmentCount),
        ("5-[\"x\"]", .badAttachmentCount),
        ("51[\"x\"]", .badAttachmentCount),
        ("5a-[\"x\"]", .badAttachmentCount),
        ("5", .badAttachmentCount),
        ("51", .badAttachmentCount),
        ("61", .badAttachmentCount),
        ("51234567-[\"x\"]", .badAttachmentCount),
        ("511-[\"x\"]", .tooManyAttachments),
        ("5999999-[\"x\"]", .tooManyAttachments),
        ("2", .invalidPayload),
        ("2{\"a\":1}", .invalidPayload),
        ("2\"hello\"", .invalidPayload),
        ("2[]", .invalidPayload),
        ("2[null]", .invalidPayload),
        // A number name that overflows to infinity would be written back as `null` (found by the socketio fuzzer).
        ("2[1e400,6666666666667]", .invalidPayload),
        ("2[-1e999]", .invalidPayload),
        ("2[[\"x\"]]", .invalidPayload),
        ("2[{\"a\":1}]", .invalidPayload),
        ("2[true]", .invalidPayload),
        ("2/admin,", .invalidPayload),
        ("51-[]", .invalidPayload),
        ("2[\"hello\"", .invalidPayload),
        ("2[\"hello\"]x", .invalidPayload),
        ("2[\"a\",]", .invalidPayload),
        ("2{", .invalidPayload),
        ("0[1]", .invalidPayload),
        ("0\"x\"", .invalidPayload),
        ("1{}", .invalidPayload),
        ("1/admin,[]", .invalidPayload),
        ("3[\"x\"]", .invalidPayload),
        ("313", .invalidPayload),
        ("313{}", .invalidPayload),
        ("61-[\"x\"]", .invalidPayload),
        ("21234567890123456[\"x\"]", .invalidPayload),
    ]

    @Test("rejects", arguments: errorVectors)
    func rejects(_ vector: (text: String, kind: ErrorKind)) {
        do {
            let packet = try SocketIOPacket.decode(ByteBuffer(string: vector.text))
            Issue.record("decoded \(packet), expected \(vector.kind)")
        } catch {
            #expect(Self.kind(error) == vector.kind)
        }
    }

    @Test func decodeReadsOnlyTheReadableBytes() throws {
        var buffer = ByteBuffer(string: "42[\"hi\"]")
        buffer.moveReaderIndex(forwardBy: 1)
        #expect(try SocketIOPacket.decode(buffer) == SocketIOPacket(type: .event, data: ["hi"]))
    }

    @Test func errorsDescribeThemselves() {
        #expect(SocketIOPacket.DecodeError.tooManyAttachments.description == "too many attachments")
        #expect(SocketIOPacket.DecodeError.invalidPayload("x").description == "invalid payload: x")
        #expect(SocketIOPacket.maximumAttachments == 10)
    }

    // MARK: encoding

    static let encodeVectors: [(packet: SocketIOPacket, frames: [EngineFrame])] = [
        (SocketIOPacket(type: .connect), [textFrame("40")]),
        (
            SocketIOPacket(type: .connect, data: .object([("sid", "wZX3oN0bSVIhsaknAAAI")])),
            [textFrame("40{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}")]
        ),
        (
            SocketIOPacket(type: .connect, nsp: "/admin", data: .object([("sid", "abc"), ("pid", "def")])),
            [textFrame("40/admin,{\"sid\":\"abc\",\"pid\":\"def\"}")]
        ),
        (SocketIOPacket(type: .disconnect), [textFrame("41")]),
        (SocketIOPacket(type: .disconnect, nsp: "/admin"), [textFrame("41/admin,")]),
        (SocketIOPacket(type: .event, data: ["hello", "Jude"]), [textFrame("42[\"hello\",\"Jude\"]")]),
        (SocketIOPacket(type: .event, nsp: "/admin", data: ["bar"]), [textFrame("42/admin,[\"bar\"]")]),
        (SocketIOPacket(type: .event, id: 12, data: ["foo"]), [textFrame("4212[\"foo\"]")]),
        (
            SocketIOPacket(type: .event, nsp: "/admin", id: 0, data: ["foo", 1.5]),
            [textFrame("42/admin,0[\"foo\",1.5]")]
        ),
        (SocketIOPacket(type: .ack, nsp: "/admin", id: 13, data: ["bar"]), [textFrame("43/admin,13[\"bar\"]")]),
        (SocketIOPacket(type: .ack, id: 7, data: []), [textFrame("437[]")]),
        (
            SocketIOPacket(type: .connectError, data: .object([("message", "Not authorized")])),
            [textFrame("44{\"message\":\"Not authorized\"}")]
        ),
        (
            SocketIOPacket(type: .connectError, nsp: "/admin", data: .object([("message", "Invalid namespace")])),
            [textFrame("44/admin,{\"message\":\"Invalid namespace\"}")]
        ),
        (
            SocketIOPacket(type: .event, data: ["baz", .binary(ByteBuffer(bytes: [1, 2, 3, 4]))]),
            [textFrame("451-[\"baz\",{\"_placeholder\":true,\"num\":0}]"), binaryFrame([1, 2, 3, 4])]
        ),
        (
            SocketIOPacket(
                type: .event,
                nsp: "/admin",
                id: 3,
                data: [
                    "up",
                    .object([("a", .binary(ByteBuffer(bytes: [0xFF]))), ("b", [.binary(ByteBuffer(bytes: []))])]),
                ]
            ),
            [
                textFrame(
                    #"452-/admin,3["up",{"a":{"_placeholder":true,"num":0},"b":[{"_placeholder":true,"num":1}]}]"#
                ),
                binaryFrame([0xFF]),
                binaryFrame([]),
            ]
        ),
        (
            SocketIOPacket(type: .ack, id: 5, data: [.binary(ByteBuffer(bytes: [9, 8]))]),
            [textFrame("461-5[{\"_placeholder\":true,\"num\":0}]"), binaryFrame([9, 8])]
        ),
    ]

    @Test("encodes", arguments: encodeVectors)
    func encodes(_ vector: (packet: SocketIOPacket, frames: [EngineFrame])) {
        #expect(vector.packet.engineFrames() == vector.frames)
    }

    @Test func encodedPacketsDecodeToTheSamePacket() throws {
        for vector in Self.decodeVectors where vector.packet.attachmentCount == 0 {
            let frames = vector.packet.engineFrames()
            guard frames.count == 1, case .text(var buffer) = frames[0] else {
                Issue.record("expected one text frame for \(vector.text), got \(frames)")
                continue
            }
            #expect(buffer.readInteger(as: UInt8.self) == UInt8(ascii: "4"))
            #expect(try SocketIOPacket.decode(buffer) == vector.packet)
        }
    }

    // MARK: attachments

    @Test func attachmentsAreExtractedInOrderOfDiscoveryAndPutBack() throws {
        let value: PacketValue = [
            "file",
            .binary(ByteBuffer(bytes: [1])),
            .object([("thumb", .binary(ByteBuffer(bytes: [2, 2]))), ("name", "x.png")]),
            [.binary(ByteBuffer(bytes: [3, 3, 3])), 4],
        ]
        var attachments: [ByteBuffer] = []
        let stripped = SocketIOPacket.extractAttachments(value, into: &attachments)
        #expect(attachments == [ByteBuffer(bytes: [1]), ByteBuffer(bytes: [2, 2]), ByteBuffer(bytes: [3, 3, 3])])
        #expect(
            stripped.jsonString
                == #"["file",{"_placeholder":true,"num":0},{"thumb":{"_placeholder":true,"num":1},"name":"x.png"},"#
                + "[{\"_placeholder\":true,\"num\":2},4]]"
        )
        #expect(!stripped.containsBinary)
        #expect(try SocketIOPacket.insertAttachments(stripped, attachments) == value)
    }

    @Test func decodedBinaryEventGetsItsAttachmentsBack() throws {
        let packet = try SocketIOPacket.decode(ByteBuffer(string: "51-[\"baz\",{\"_placeholder\":true,\"num\":0}]"))
        let data = try #require(packet.data)
        let restored = try SocketIOPacket.insertAttachments(data, [ByteBuffer(bytes: [1, 2, 3, 4])])
        #expect(restored == ["baz", .binary(ByteBuffer(bytes: [1, 2, 3, 4]))])
    }

    @Test func valuesWithoutBinaryAreLeftAlone() throws {
        let value: PacketValue = ["x", .object([("_placeholder", false), ("num", 0)]), .object([("num", 0)])]
        var attachments: [ByteBuffer] = []
        #expect(SocketIOPacket.extractAttachments(value, into: &attachments) == value)
        #expect(attachments.isEmpty)
        #expect(try SocketIOPacket.insertAttachments(value, []) == value)
    }

    static let badPlaceholders: [String] = [
        "{\"_placeholder\":true,\"num\":1}",
        "{\"_placeholder\":true,\"num\":-1}",
        "{\"_placeholder\":true,\"num\":0.5}",
        "[\"x\",{\"_placeholder\":true,\"num\":2}]",
        "{\"a\":[{\"_placeholder\":true,\"num\":7}]}",
    ]

    @Test("a placeholder without its attachment is an error", arguments: badPlaceholders)
    func placeholderOutOfRangeIsAnError(_ json: String) throws {
        let value = try PacketValue.parseJSON(json)
        #expect(throws: SocketIOPacket.DecodeError.invalidPayload("illegal attachment index")) {
            try SocketIOPacket.insertAttachments(value, [ByteBuffer(bytes: [1])])
        }
    }

    @Test("a placeholder index beyond Int is an error, not a crash")
    func hugePlaceholderIndexIsAnError() throws {
        let value = try PacketValue.parseJSON("[\"x\",{\"_placeholder\":true,\"num\":1e300}]")
        #expect(throws: SocketIOPacket.DecodeError.invalidPayload("illegal attachment index")) {
            try SocketIOPacket.insertAttachments(value, [ByteBuffer(bytes: [1])])
        }
    }
}
