import NIOCore
import SocketIO

/// Why MessagePack input was refused.
public struct MessagePackDecodingError: Error, Hashable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        /// The input ends inside a value.
        case unexpectedEnd
        /// `c1`, the one byte MessagePack never uses.
        case invalidFormat(UInt8)
        /// Arrays and maps nest deeper than the decoder's `maximumDepth`.
        case nestingTooDeep
        /// A complete value was followed by more bytes.
        case trailingBytes(Int)
    }

    /// Offset, from the start of the input, of the value that could not be read.
    public var offset: Int
    public var reason: Reason

    public init(offset: Int, reason: Reason) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .unexpectedEnd: "invalid MessagePack: input ends inside the value at byte \(offset)"
        case .invalidFormat(let byte): "invalid MessagePack: format byte 0x\(String(byte, radix: 16)) at byte \(offset)"
        case .nestingTooDeep: "invalid MessagePack: nesting too deep at byte \(offset)"
        case .trailingBytes(let count): "invalid MessagePack: \(count) trailing bytes after the value at byte \(offset)"
        }
    }
}

/// Reads MessagePack into ``PacketValue``s, as a Node peer (notepack.io 3) would see them and then hand them to
/// its Socket.IO clients:
///
/// - nil, booleans, every integer form and float 32/64 become `.null`, `.bool` and `.number` (64-bit integers
///   beyond 2^53 are rounded to the nearest double, as in JavaScript).
/// - str becomes `.string` (invalid UTF-8 is repaired with U+FFFD, like `Buffer.toString`), bin becomes
///   `.binary` (a slice that shares the input's storage).
/// - A map becomes `.object` in wire order. A key that is not a string takes the string JavaScript would make of
///   it when using it as a property name (`1` → `"1"`, `true` → `"true"`, `nil` → `"null"`).
/// - The timestamp extension (type −1, 4, 8 or 12 data bytes) becomes the ISO-8601 string with milliseconds that
///   socket.io-parser sends for a `Date` (`"1969-12-31T23:59:58.500Z"`), or `.null` for dates JavaScript cannot
///   represent (as `JSON.stringify` does for an invalid `Date`).
/// - Any other extension becomes `[type, bytes]`, as notepack returns it.
///
/// Every length is checked against the bytes actually present before anything is allocated, nesting is limited
/// by ``maximumDepth``, and any malformed or truncated input throws ``MessagePackDecodingError``.
public struct MessagePackDecoder: Sendable {
    /// Room for a Socket.IO payload at the JSON reader's own depth limit plus the few levels of the envelope.
    public static let defaultMaximumDepth = 128

    /// How many arrays and maps may nest.
    public var maximumDepth: Int

    public init(maximumDepth: Int = MessagePackDecoder.defaultMaximumDepth) {
        self.maximumDepth = maximumDepth
    }

    /// Decodes the single value that fills all readable bytes of `bytes`.
    public func decode(_ bytes: ByteBuffer) throws(MessagePackDecodingError) -> PacketValue {
        var reader = Reader(buffer: bytes, maximumDepth: maximumDepth)
        let value = try reader.readValue(depth: 0)
        let remaining = reader.buffer.readableBytes
        guard remaining == 0 else {
            throw MessagePackDecodingError(offset: reader.offset, reason: .trailingBytes(remaining))
        }
        return value
    }

    /// Decodes the single value that fills `bytes`.
    public func decode(_ bytes: some Collection<UInt8>) throws(MessagePackDecodingError) -> PacketValue {
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        return try decode(buffer)
    }

    /// Reads one value from the front of `buffer` and moves its reader index past it. On error the buffer is left
    /// as it was.
    public func decodeValue(from buffer: inout ByteBuffer) throws(MessagePackDecodingError) -> PacketValue {
        var reader = Reader(buffer: buffer, maximumDepth: maximumDepth)
        let value = try reader.readValue(depth: 0)
        buffer.moveReaderIndex(to: reader.buffer.readerIndex)
        return value
    }

    /// The property name JavaScript makes of a decoded map key (`String(key)`).
    static func propertyKey(_ key: PacketValue) -> String {
        switch key {
        case .string(let string): return string
        case .null: return "null"
        case .bool(let bool): return bool ? "true" : "false"
        case .number(let number): return JavaScript.numberString(number)
        case .binary(let bytes): return String(buffer: bytes)
        case .array(let elements):
            // Array.prototype.toString: elements joined by commas, null and undefined as empty strings.
            return elements.map { element in
                if case .null = element { return "" }
                return propertyKey(element)
            }.joined(separator: ",")
        case .object: return "[object Object]"
        }
    }
}

extension MessagePackDecoder {
    /// A cursor over the input. Reading moves only the copy's reader index, so no bytes are copied.
    struct Reader {
        var buffer: ByteBuffer
        let origin: Int
        let maximumDepth: Int

        init(buffer: ByteBuffer, maximumDepth: Int) {
            self.buffer = buffer
            self.origin = buffer.readerIndex
            self.maximumDepth = maximumDepth
        }

        var offset: Int { buffer.readerIndex - origin }

        mutating func readValue(depth: Int) throws(MessagePackDecodingError) -> PacketValue {
            let start = offset
            let format = try read(UInt8.self, valueStart: start)
            switch format {
            case 0x00...0x7f:
                return .number(Double(format))
            case 0x80...0x8f:
                return try readMap(count: Int(format & 0x0f), depth: depth, valueStart: start)
            case 0x90...0x9f:
                return try readArray(count: Int(format & 0x0f), depth: depth, valueStart: start)
            case 0xa0...0xbf:
                return .string(try readString(length: Int(format & 0x1f), valueStart: start))
            case 0xc0:
                return .null
            case 0xc1:
                throw MessagePackDecodingError(offset: start, reason: .invalidFormat(format))
            case 0xc2:
                return .bool(false)
            case 0xc3:
                return .bool(true)
            case 0xc4:
                return .binary(try readSlice(length: Int(try read(UInt8.self, valueStart: start)), valueStart: start))
            case 0xc5:
                return .binary(try readSlice(length: Int(try read(UInt16.self, valueStart: start)), valueStart: start))
            case 0xc6:
                return .binary(try readSlice(length: Int(try read(UInt32.self, valueStart: start)), valueStart: start))
            case 0xc7:
                return try readExtension(length: Int(try read(UInt8.self, valueStart: start)), valueStart: start)
            case 0xc8:
                return try readExtension(length: Int(try read(UInt16.self, valueStart: start)), valueStart: start)
            case 0xc9:
                return try readExtension(length: Int(try read(UInt32.self, valueStart: start)), valueStart: start)
            case 0xca:
                return .number(Double(Float(bitPattern: try read(UInt32.self, valueStart: start))))
            case 0xcb:
                return .number(Double(bitPattern: try read(UInt64.self, valueStart: start)))
            case 0xcc:
                return .number(Double(try read(UInt8.self, valueStart: start)))
            case 0xcd:
                return .number(Double(try read(UInt16.self, valueStart: start)))
            case 0xce:
                return .number(Double(try read(UInt32.self, valueStart: start)))
            case 0xcf:
                return .number(Double(try read(UInt64.self, valueStart: start)))
            case 0xd0:
                return .number(Double(try read(Int8.self, valueStart: start)))
            case 0xd1:
                return .number(Double(try read(Int16.self, valueStart: start)))
            case 0xd2:
                return .number(Double(try read(Int32.self, valueStart: start)))
            case 0xd3:
                return .number(Double(try read(Int64.self, valueStart: start)))
            case 0xd4:
                return try readExtension(length: 1, valueStart: start)
            case 0xd5:
                return try readExtension(length: 2, valueStart: start)
            case 0xd6:
                return try readExtension(length: 4, valueStart: start)
            case 0xd7:
                return try readExtension(length: 8, valueStart: start)
            case 0xd8:
                return try readExtension(length: 16, valueStart: start)
            case 0xd9:
                return .string(try readString(length: Int(try read(UInt8.self, valueStart: start)), valueStart: start))
            case 0xda:
                return .string(try readString(length: Int(try read(UInt16.self, valueStart: start)), valueStart: start))
            case 0xdb:
                return .string(try readString(length: Int(try read(UInt32.self, valueStart: start)), valueStart: start))
            case 0xdc:
                return try readArray(
                    count: Int(try read(UInt16.self, valueStart: start)),
                    depth: depth,
                    valueStart: start
                )
            case 0xdd:
                return try readArray(
                    count: Int(try read(UInt32.self, valueStart: start)),
                    depth: depth,
                    valueStart: start
                )
            case 0xde:
                return try readMap(
                    count: Int(try read(UInt16.self, valueStart: start)),
                    depth: depth,
                    valueStart: start
                )
            case 0xdf:
                return try readMap(
                    count: Int(try read(UInt32.self, valueStart: start)),
                    depth: depth,
                    valueStart: start
                )
            default:  // 0xe0...0xff, negative fixint
                return .number(Double(Int8(bitPattern: format)))
            }
        }

        private mutating func read<Integer: FixedWidthInteger>(
            _: Integer.Type,
            valueStart: Int
        ) throws(MessagePackDecodingError) -> Integer {
            guard let value = buffer.readInteger(as: Integer.self) else {
                throw MessagePackDecodingError(offset: valueStart, reason: .unexpectedEnd)
            }
            return value
        }

        private mutating func readSlice(length: Int, valueStart: Int) throws(MessagePackDecodingError) -> ByteBuffer {
            guard let slice = buffer.readSlice(length: length) else {
                throw MessagePackDecodingError(offset: valueStart, reason: .unexpectedEnd)
            }
            return slice
        }

        private mutating func readString(length: Int, valueStart: Int) throws(MessagePackDecodingError) -> String {
            guard let string = buffer.readString(length: length) else {
                throw MessagePackDecodingError(offset: valueStart, reason: .unexpectedEnd)
            }
            return string
        }

        private mutating func readArray(
            count: Int,
            depth: Int,
            valueStart: Int
        ) throws(MessagePackDecodingError) -> PacketValue {
            guard depth < maximumDepth else {
                throw MessagePackDecodingError(offset: valueStart, reason: .nestingTooDeep)
            }
            // Every element takes at least one byte: a count beyond that is a lie, and must not size an allocation.
            guard count <= buffer.readableBytes else {
                throw MessagePackDecodingError(offset: valueStart, reason: .unexpectedEnd)
            }
            var elements: [PacketValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count {
                elements.append(try readValue(depth: depth + 1))
            }
            return .array(elements)
        }

        private mutating func readMap(
            count: Int,
            depth: Int,
            valueStart: Int
        ) throws(MessagePackDecodingError) -> PacketValue {
            guard depth < maximumDepth else {
                throw MessagePackDecodingError(offset: valueStart, reason: .nestingTooDeep)
            }
            // Every entry takes at least two bytes.
            guard count <= buffer.readableBytes / 2 else {
                throw MessagePackDecodingError(offset: valueStart, reason: .unexpectedEnd)
            }
            var members: [(key: String, value: PacketValue)] = []
            members.reserveCapacity(count)
            for _ in 0..<count {
                let key = try readValue(depth: depth + 1)
                let value = try readValue(depth: depth + 1)
                members.append((key: MessagePackDecoder.propertyKey(key), value: value))
            }
            return .object(members)
        }

        private mutating func readExtension(length: Int, valueStart: Int) throws(MessagePackDecodingError)
            -> PacketValue
        {
            let type = try read(Int8.self, valueStart: valueStart)
            var data = try readSlice(length: length, valueStart: valueStart)
            if type == -1, let date = Self.timestamp(&data) {
                return date
            }
            return .array([.number(Double(type)), .binary(data)])
        }

        /// The timestamp extension's three layouts, as the value a Node node would send its clients for the
        /// `Date`. nil when `data` has none of the three lengths.
        private static func timestamp(_ data: inout ByteBuffer) -> PacketValue? {
            let seconds: Int64
            let nanoseconds: UInt32
            switch data.readableBytes {
            case 4:  // timestamp 32: unsigned seconds
                seconds = Int64(data.readInteger(as: UInt32.self)!)
                nanoseconds = 0
            case 8:  // timestamp 64: 30 bits of nanoseconds, then 34 bits of unsigned seconds
                let packed = data.readInteger(as: UInt64.self)!
                seconds = Int64(packed & 0x3_ffff_ffff)
                nanoseconds = UInt32(packed >> 34)
            case 12:  // timestamp 96: unsigned nanoseconds, then signed seconds
                nanoseconds = data.readInteger(as: UInt32.self)!
                seconds = data.readInteger(as: Int64.self)!
            default:
                return nil
            }
            // notepack computes `new Date(seconds * 1e3 + nanoseconds / 1e6)` in doubles; the Date constructor
            // truncates toward zero and refuses anything beyond ±8.64e15 ms.
            let milliseconds = (Double(seconds) * 1000 + Double(nanoseconds) / 1_000_000).rounded(.towardZero)
            guard abs(milliseconds) <= 8.64e15 else { return .null }
            return .string(JavaScript.isoString(millisecondsSince1970: Int64(milliseconds)))
        }
    }
}
