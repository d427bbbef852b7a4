import NIOCore

/// One encoded Engine.IO packet, ready for either transport: a text packet (type digit + payload, e.g. `4…`)
/// or a binary message. Encoded once and shared by every recipient (ByteBuffer is copy-on-write).
public enum EngineFrame: Sendable, Hashable {
    case text(ByteBuffer)
    case binary(ByteBuffer)

    /// Engine.IO v4 packet types.
    public enum PacketType: UInt8, Sendable {
        case open = 0x30  // "0"
        case close = 0x31
        case ping = 0x32
        case pong = 0x33
        case message = 0x34
        case upgrade = 0x35
        case noop = 0x36
    }

    static func packet(_ type: PacketType, _ payload: String = "") -> EngineFrame {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(1 + payload.utf8.count)
        buffer.writeInteger(type.rawValue)
        buffer.writeString(payload)
        return .text(buffer)
    }

    static let ping = packet(.ping)
    static let pong = packet(.pong)
    static let close = packet(.close)
    static let noop = packet(.noop)
    static let probePong = packet(.pong, "probe")

    /// Bytes this frame takes in a long-polling payload (separator included; binary is base64 with a `b`).
    var pollingSize: Int {
        switch self {
        case .text(let buffer): buffer.readableBytes + 1
        case .binary(let buffer): (buffer.readableBytes + 2) / 3 * 4 + 2
        }
    }

    /// The packet type of a text frame.
    var type: PacketType? {
        guard case .text(let buffer) = self, let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self)
        else { return .message }
        return PacketType(rawValue: first)
    }
}

/// HTTP long-polling payloads: packets joined by the record separator 0x1E, binary as `b` + base64.
package enum PollingPayload {
    static let separator: UInt8 = 0x1E

    package static func encode(_ frames: [EngineFrame]) -> ByteBuffer {
        var size = 0
        for frame in frames { size += frame.pollingSize }
        var out = ByteBuffer()
        out.reserveCapacity(size)
        var first = true
        for frame in frames {
            if !first { out.writeInteger(separator) }
            first = false
            switch frame {
            case .text(var b): out.writeBuffer(&b)
            case .binary(let b):
                out.writeInteger(UInt8(ascii: "b"))
                Base64.encode(b.readableBytesView, into: &out)
            }
        }
        return out
    }

    package enum DecodeError: Error { case emptyPacket, invalidBase64, unknownType }

    /// Splits a POST body into frames. Text frames keep their type digit.
    package static func decode(_ body: ByteBuffer) throws(DecodeError) -> [EngineFrame] {
        var frames: [EngineFrame] = []
        let view = body.readableBytesView
        var start = view.startIndex
        while start <= view.endIndex {
            let end = view[start...].firstIndex(of: separator) ?? view.endIndex
            let part = view[start..<end]
            guard let first = part.first else { throw .emptyPacket }
            if first == UInt8(ascii: "b") {
                guard let bytes = Base64.decode(part.dropFirst()) else { throw .invalidBase64 }
                frames.append(.binary(ByteBuffer(bytes: bytes)))
            } else {
                guard EngineFrame.PacketType(rawValue: first) != nil else { throw .unknownType }
                frames.append(.text(ByteBuffer(bytes: part)))
            }
            start = end + 1
            if end == view.endIndex { break }
        }
        return frames
    }
}
