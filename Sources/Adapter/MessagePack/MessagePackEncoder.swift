import NIOCore
import SocketIO

/// Writes ``PacketValue``s as MessagePack, making the same choices as notepack.io 3, the codec of
/// `@socket.io/redis-adapter` 8 and `@socket.io/redis-emitter` 5, so that a Node peer receives exactly the bytes
/// it would have published itself:
///
/// - A number whose value is an integer takes the smallest integer form: positive or negative fixint, then
///   uint 8/16/32/64 for positive values, int 8/16/32/64 for negative ones. `-0` is written as `0x00`.
/// - Every other number (fractions, NaN, ±infinity) is a float 64. notepack never writes float 32.
/// - Strings, binaries, arrays and maps take the smallest length form (fixstr, str 8, …; bin 8 for short binaries).
///
/// One deliberate difference: notepack writes corrupt bytes for integer values at or beyond 2^64 and below
/// -2^63 (its 32-bit shifts wrap). We write those as float 64, which every decoder reads back as the same number.
///
/// The encoder writes straight into a `ByteBuffer` and allocates nothing of its own. Besides ``encode(_:into:)``
/// it exposes the individual writers, so a caller can stream a message (a header, then its elements) without
/// first building a `PacketValue` tree; ``ClusterBroadcast`` does that for every published broadcast.
public struct MessagePackEncoder: Sendable {
    public init() {}

    /// Appends the MessagePack encoding of `value` to `buffer`.
    public func encode(_ value: PacketValue, into buffer: inout ByteBuffer) {
        switch value {
        case .null:
            writeNil(into: &buffer)
        case .bool(let bool):
            writeBool(bool, into: &buffer)
        case .number(let number):
            writeNumber(number, into: &buffer)
        case .string(let string):
            writeString(string, into: &buffer)
        case .binary(let bytes):
            writeBinary(bytes, into: &buffer)
        case .array(let elements):
            writeArrayHeader(count: elements.count, into: &buffer)
            for element in elements {
                encode(element, into: &buffer)
            }
        case .object(let members):
            writeMapHeader(count: members.count, into: &buffer)
            for member in members {
                writeString(member.key, into: &buffer)
                encode(member.value, into: &buffer)
            }
        }
    }

    /// The MessagePack encoding of `value` in a new buffer.
    public func encode(_ value: PacketValue, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(value, into: &buffer)
        return buffer
    }

    /// Writes nil (`c0`).
    public func writeNil(into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0xc0))
    }

    /// Writes false (`c2`) or true (`c3`).
    public func writeBool(_ value: Bool, into buffer: inout ByteBuffer) {
        buffer.writeInteger(value ? UInt8(0xc3) : UInt8(0xc2))
    }

    /// Writes a number the way notepack does: the smallest integer form for integer values, float 64 otherwise.
    public func writeNumber(_ value: Double, into buffer: inout ByteBuffer) {
        // `value.rounded(.down) == value` is JavaScript's `Math.floor(value) === value`: false for fractions, NaN
        // and the infinities.
        guard value.rounded(.down) == value else {
            writeFloat64(value, into: &buffer)
            return
        }
        if value >= 0 {
            // 2^64 is exactly representable; every double below it converts to UInt64 exactly.
            guard value < 18_446_744_073_709_551_616.0 else {
                writeFloat64(value, into: &buffer)
                return
            }
            writeUnsigned(UInt64(value), into: &buffer)
        } else {
            guard value >= -9_223_372_036_854_775_808.0 else {
                writeFloat64(value, into: &buffer)
                return
            }
            writeNegative(Int64(value), into: &buffer)
        }
    }

    /// Writes a non-negative integer in its smallest form.
    public func writeUnsigned(_ value: UInt64, into buffer: inout ByteBuffer) {
        switch value {
        case 0..<0x80:
            buffer.writeInteger(UInt8(truncatingIfNeeded: value))
        case 0x80..<0x100:
            buffer.writeInteger(UInt8(0xcc))
            buffer.writeInteger(UInt8(truncatingIfNeeded: value))
        case 0x100..<0x1_0000:
            buffer.writeInteger(UInt8(0xcd))
            buffer.writeInteger(UInt16(truncatingIfNeeded: value))
        case 0x1_0000..<0x1_0000_0000:
            buffer.writeInteger(UInt8(0xce))
            buffer.writeInteger(UInt32(truncatingIfNeeded: value))
        default:
            buffer.writeInteger(UInt8(0xcf))
            buffer.writeInteger(value)
        }
    }

    /// Writes an integer in its smallest form (non-negative values take the unsigned forms, as in notepack).
    public func writeInteger(_ value: Int64, into buffer: inout ByteBuffer) {
        if value >= 0 {
            writeUnsigned(UInt64(value), into: &buffer)
        } else {
            writeNegative(value, into: &buffer)
        }
    }

    private func writeNegative(_ value: Int64, into buffer: inout ByteBuffer) {
        switch value {
        case -0x20..<0:
            buffer.writeInteger(Int8(truncatingIfNeeded: value))
        case -0x80..<(-0x20):
            buffer.writeInteger(UInt8(0xd0))
            buffer.writeInteger(Int8(truncatingIfNeeded: value))
        case -0x8000..<(-0x80):
            buffer.writeInteger(UInt8(0xd1))
            buffer.writeInteger(Int16(truncatingIfNeeded: value))
        case -0x8000_0000..<(-0x8000):
            buffer.writeInteger(UInt8(0xd2))
            buffer.writeInteger(Int32(truncatingIfNeeded: value))
        default:
            buffer.writeInteger(UInt8(0xd3))
            buffer.writeInteger(value)
        }
    }

    /// Writes a float 64 (`cb`), whatever the value.
    public func writeFloat64(_ value: Double, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0xcb))
        buffer.writeInteger(value.bitPattern)
    }

    /// Writes a UTF-8 string: fixstr, str 8 (`d9`), str 16 (`da`) or str 32 (`db`).
    public func writeString(_ value: String, into buffer: inout ByteBuffer) {
        let length = value.utf8.count
        switch length {
        case 0..<0x20:
            buffer.writeInteger(UInt8(0xa0 | length))
        case 0x20..<0x100:
            buffer.writeInteger(UInt8(0xd9))
            buffer.writeInteger(UInt8(length))
        case 0x100..<0x1_0000:
            buffer.writeInteger(UInt8(0xda))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(0xdb))
            buffer.writeInteger(Self.length32(length, of: "string"))
        }
        buffer.writeString(value)
    }

    /// Writes the readable bytes of `value` as bin 8 (`c4`), bin 16 (`c5`) or bin 32 (`c6`).
    public func writeBinary(_ value: ByteBuffer, into buffer: inout ByteBuffer) {
        let length = value.readableBytes
        switch length {
        case 0..<0x100:
            buffer.writeInteger(UInt8(0xc4))
            buffer.writeInteger(UInt8(length))
        case 0x100..<0x1_0000:
            buffer.writeInteger(UInt8(0xc5))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(0xc6))
            buffer.writeInteger(Self.length32(length, of: "binary"))
        }
        buffer.writeImmutableBuffer(value)
    }

    /// Writes the header of an array of `count` elements: fixarray, array 16 (`dc`) or array 32 (`dd`).
    /// The caller writes the elements next.
    public func writeArrayHeader(count: Int, into buffer: inout ByteBuffer) {
        switch count {
        case 0..<0x10:
            buffer.writeInteger(UInt8(0x90 | count))
        case 0x10..<0x1_0000:
            buffer.writeInteger(UInt8(0xdc))
            buffer.writeInteger(UInt16(count))
        default:
            buffer.writeInteger(UInt8(0xdd))
            buffer.writeInteger(Self.length32(count, of: "array"))
        }
    }

    /// Writes the header of a map of `count` entries: fixmap, map 16 (`de`) or map 32 (`df`).
    /// The caller writes each key and its value next.
    public func writeMapHeader(count: Int, into buffer: inout ByteBuffer) {
        switch count {
        case 0..<0x10:
            buffer.writeInteger(UInt8(0x80 | count))
        case 0x10..<0x1_0000:
            buffer.writeInteger(UInt8(0xde))
            buffer.writeInteger(UInt16(count))
        default:
            buffer.writeInteger(UInt8(0xdf))
            buffer.writeInteger(Self.length32(count, of: "map"))
        }
    }

    /// MessagePack cannot express more than 2^32 − 1 bytes or elements (notepack throws there). Nothing this
    /// server handles comes close: payloads are capped far below that long before they reach the encoder.
    private static func length32(_ length: Int, of kind: StaticString) -> UInt32 {
        guard let length32 = UInt32(exactly: length) else {
            preconditionFailure("MessagePack cannot encode a \(kind) of \(length) bytes or elements")
        }
        return length32
    }
}
