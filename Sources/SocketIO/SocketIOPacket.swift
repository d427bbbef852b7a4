import EngineIO
import NIOCore

/// A Socket.IO v5 packet: `<type>[<attachments>-][<nsp>,][<ackId>][<JSON>]`.
public struct SocketIOPacket: Sendable, Hashable {
    public enum PacketType: UInt8, Sendable {
        case connect = 0
        case disconnect = 1
        case event = 2
        case ack = 3
        case connectError = 4
        case binaryEvent = 5
        case binaryAck = 6
    }

    public var type: PacketType
    public var nsp: String
    public var id: Int?
    public var data: PacketValue?
    /// For binary packets being decoded: how many attachments follow.
    public var attachmentCount: Int

    public init(type: PacketType, nsp: String = "/", id: Int? = nil, data: PacketValue? = nil, attachmentCount: Int = 0)
    {
        self.type = type
        self.nsp = nsp
        self.id = id
        self.data = data
        self.attachmentCount = attachmentCount
    }

    public enum DecodeError: Error, Hashable, CustomStringConvertible {
        case empty
        case unknownType
        case badAttachmentCount
        case tooManyAttachments
        case invalidPayload(String)

        public var description: String {
            switch self {
            case .empty: "empty packet"
            case .unknownType: "unknown packet type"
            case .badAttachmentCount: "illegal attachments"
            case .tooManyAttachments: "too many attachments"
            case .invalidPayload(let why): "invalid payload: \(why)"
            }
        }
    }

    /// Attachments a binary packet may announce.
    public static let maximumAttachments = 10

    /// Decodes the text of a Socket.IO packet (the Engine.IO message payload).
    public static func decode(_ buffer: ByteBuffer) throws(DecodeError) -> SocketIOPacket {
        let bytes = buffer.readableBytesView
        var i = bytes.startIndex
        guard i < bytes.endIndex else { throw .empty }
        guard bytes[i] >= UInt8(ascii: "0"), let type = PacketType(rawValue: bytes[i] &- UInt8(ascii: "0")) else {
            throw .unknownType
        }
        i += 1
        var packet = SocketIOPacket(type: type)
        if type == .binaryEvent || type == .binaryAck {
            var count = 0
            var digits = 0
            while i < bytes.endIndex, let d = digit(bytes[i]) {
                count = count * 10 + d
                digits += 1
                i += 1
                guard digits <= 6 else { throw .badAttachmentCount }
            }
            guard digits > 0, i < bytes.endIndex, bytes[i] == UInt8(ascii: "-") else { throw .badAttachmentCount }
            i += 1
            guard count <= maximumAttachments else { throw .tooManyAttachments }
            packet.attachmentCount = count
        }
        if i < bytes.endIndex, bytes[i] == UInt8(ascii: "/") {
            let end = bytes[i...].firstIndex(of: UInt8(ascii: ",")) ?? bytes.endIndex
            packet.nsp = String(decoding: bytes[i..<end], as: UTF8.self)
            i = end == bytes.endIndex ? end : end + 1
        }
        if i < bytes.endIndex, digit(bytes[i]) != nil {
            var id = 0
            var digits = 0
            while i < bytes.endIndex, let d = digit(bytes[i]) {
                digits += 1
                guard digits <= 15 else { throw .invalidPayload("ack id too long") }
                id = id * 10 + d
                i += 1
            }
            packet.id = id
        }
        if i < bytes.endIndex {
            do {
                packet.data = try PacketValue.parseJSON(bytes[i...])
            } catch {
                throw .invalidPayload(error.description)
            }
        }
        try packet.validate()
        return packet
    }

    private static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    private func validate() throws(DecodeError) {
        switch type {
        case .connect:
            if let data, !data.isObject { throw .invalidPayload("CONNECT payload must be an object") }
        case .disconnect:
            if data != nil { throw .invalidPayload("DISCONNECT carries no payload") }
        case .event, .binaryEvent:
            guard case .array(let elements)? = data, let first = elements.first else {
                throw .invalidPayload("EVENT payload must be a non-empty array")
            }
            // A number name must be finite: `1e400` parses to infinity, which JSON writes as `null`, so the server
            // could not re-send the event it accepted (found by the socketio fuzz target).
            switch first {
            case .string: break
            case .number(let n) where n.isFinite: break
            default: throw .invalidPayload("event name must be a string")
            }
        case .ack, .binaryAck:
            guard id != nil, case .array? = data else { throw .invalidPayload("ACK needs an id and an array") }
        case .connectError:
            break
        }
    }

    // MARK: encoding

    /// Encodes the packet as Engine.IO frames: the text packet (`4…`) and then one binary frame per attachment.
    public func engineFrames() -> [EngineFrame] {
        var attachments: [ByteBuffer] = []
        let payload = data.map { Self.extractAttachments($0, into: &attachments) }
        let binary = !attachments.isEmpty
        var type = self.type
        if binary {
            if type == .event { type = .binaryEvent }
            if type == .ack { type = .binaryAck }
        }
        var out = ByteBuffer()
        out.reserveCapacity(64)
        out.writeInteger(EngineFrame.PacketType.message.rawValue)
        out.writeInteger(UInt8(ascii: "0") + type.rawValue)
        if binary {
            out.writeString(String(attachments.count))
            out.writeInteger(UInt8(ascii: "-"))
        }
        if nsp != "/" {
            out.writeString(nsp)
            out.writeInteger(UInt8(ascii: ","))
        }
        if let id { out.writeString(String(id)) }
        payload?.writeJSON(into: &out)
        var frames: [EngineFrame] = [.text(out)]
        for attachment in attachments { frames.append(.binary(attachment)) }
        return frames
    }

    /// Replaces binary values with `{"_placeholder":true,"num":N}` in order of discovery.
    static func extractAttachments(_ value: PacketValue, into attachments: inout [ByteBuffer]) -> PacketValue {
        guard value.containsBinary else { return value }
        switch value {
        case .binary(let bytes):
            attachments.append(bytes)
            return .object([("_placeholder", .bool(true)), ("num", .number(Double(attachments.count - 1)))])
        case .array(let elements):
            return .array(elements.map { extractAttachments($0, into: &attachments) })
        case .object(let members):
            return .object(members.map { ($0.key, extractAttachments($0.value, into: &attachments)) })
        default:
            return value
        }
    }

    /// Puts attachments back where their placeholders are. Fails on a placeholder with no attachment.
    static func insertAttachments(_ value: PacketValue, _ attachments: [ByteBuffer]) throws(DecodeError) -> PacketValue {
        switch value {
        case .object(let members):
            if members.count == 2, value["_placeholder"] == .bool(true), let num = value["num"]?.numberValue {
                guard num >= 0, num == num.rounded(), num < Double(attachments.count) else {
                    throw .invalidPayload("illegal attachment index")
                }
                return .binary(attachments[Int(num)])
            }
            var out: [(key: String, value: PacketValue)] = []
            out.reserveCapacity(members.count)
            for member in members { out.append((member.key, try insertAttachments(member.value, attachments))) }
            return .object(out)
        case .array(let elements):
            var out: [PacketValue] = []
            out.reserveCapacity(elements.count)
            for element in elements { out.append(try insertAttachments(element, attachments)) }
            return .array(out)
        default:
            return value
        }
    }
}
