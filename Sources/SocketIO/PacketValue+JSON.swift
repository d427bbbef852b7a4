import NIOCore

/// Errors of the JSON reader.
public struct JSONError: Error, Hashable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension PacketValue {
    /// Nesting deeper than this is refused, so hostile input cannot exhaust the stack.
    public static let maximumJSONDepth = 64

    /// Parses exactly one JSON value from `bytes` (surrounding whitespace allowed).
    public static func parseJSON<Bytes: Collection>(_ bytes: Bytes) throws(JSONError) -> PacketValue
    where Bytes.Element == UInt8 {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { (buffer) throws(JSONError) -> PacketValue in
            var reader = JSONReader(bytes: buffer)
            return try reader.readDocument()
        }
    }

    public static func parseJSON(_ buffer: ByteBuffer) throws(JSONError) -> PacketValue {
        try parseJSON(buffer.readableBytesView)
    }

    public static func parseJSON(_ string: String) throws(JSONError) -> PacketValue {
        try parseJSON(Array(string.utf8))
    }

    /// Writes the value as compact JSON, as `JSON.stringify` would. Binary values are written as the
    /// Socket.IO placeholder they stand for only by the Socket.IO encoder; here they are an error-free `null`.
    public func writeJSON(into buffer: inout ByteBuffer) {
        switch self {
        case .null: buffer.writeStaticString("null")
        case .bool(let b): buffer.writeStaticString(b ? "true" : "false")
        case .number(let n): Self.writeNumber(n, into: &buffer)
        case .string(let s): Self.writeJSONString(s, into: &buffer)
        case .array(let elements):
            buffer.writeInteger(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                element.writeJSON(into: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        case .object(let members):
            buffer.writeInteger(UInt8(ascii: "{"))
            var first = true
            for (key, value) in members {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                Self.writeJSONString(key, into: &buffer)
                buffer.writeInteger(UInt8(ascii: ":"))
                value.writeJSON(into: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        case .binary:
            buffer.writeStaticString("null")
        }
    }

    /// Compact JSON text.
    public var jsonString: String {
        var buffer = ByteBuffer()
        writeJSON(into: &buffer)
        return String(buffer: buffer)
    }

    static func writeNumber(_ n: Double, into buffer: inout ByteBuffer) {
        // JSON.stringify(NaN) === "null", and so for the infinities.
        buffer.writeString(n.isFinite ? JavaScript.numberString(n) : "null")
    }

    package static func writeJSONString(_ string: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        let written: Void? = string.utf8.withContiguousStorageIfAvailable { writeEscaped($0, into: &buffer) }
        if written == nil {
            var copy = string
            copy.makeContiguousUTF8()
            copy.utf8.withContiguousStorageIfAvailable { writeEscaped($0, into: &buffer) }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }

    /// The bytes of a string's JSON form between its quotes: runs that need no escaping are copied whole, so an
    /// SDP (a `\r\n` every 60 bytes or so) costs a few copies per line, not a call per byte.
    private static func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: bytes.count + 8)
        var runStart = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else {
                index += 1
                continue
            }
            if runStart < index {
                buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart..<index])))
            }
            switch byte {
            case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
            case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
            case 0x0A: buffer.writeStaticString("\\n")
            case 0x0D: buffer.writeStaticString("\\r")
            case 0x09: buffer.writeStaticString("\\t")
            case 0x08: buffer.writeStaticString("\\b")
            case 0x0C: buffer.writeStaticString("\\f")
            default:
                buffer.writeStaticString("\\u00")
                buffer.writeInteger(hexDigit(byte >> 4))
                buffer.writeInteger(hexDigit(byte & 0xF))
            }
            index += 1
            runStart = index
        }
        if runStart < bytes.count {
            buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[runStart...])))
        }
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }
}

/// A small recursive-descent JSON reader over raw bytes.
struct JSONReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    mutating func readDocument() throws(JSONError) -> PacketValue {
        skipWhitespace()
        let value = try readValue(depth: 0)
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected trailing data") }
        return value
    }

    func fail(_ reason: String) -> JSONError { JSONError(offset: index, reason: reason) }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func readValue(depth: Int) throws(JSONError) -> PacketValue {
        guard depth < PacketValue.maximumJSONDepth else { throw fail("nesting too deep") }
        guard index < bytes.count else { throw fail("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try readObject(depth: depth)
        case UInt8(ascii: "["): return try readArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try readNumber())
        default: throw fail("unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail("unexpected end") }
        let p = literal.utf8Start
        for i in 0..<count where bytes[index + i] != p[i] { throw fail("invalid literal") }
        index += count
    }

    /// Duplicate keys: the last value wins, in the place of the first key, as `JSON.parse` does; what the server
    /// validates is then exactly what a browser will see, and nothing unvalidated rides along. Keys are compared
    /// by their UTF-8 bytes (as JavaScript compares them), not by Swift's canonical equivalence.
    mutating func readObject(depth: Int) throws(JSONError) -> PacketValue {
        index += 1
        var members: [(key: String, value: PacketValue)] = []
        // Built only for objects with many members; small ones are searched linearly.
        var positions: [JSONKey: Int]? = nil
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let key = try readString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            let value = try readValue(depth: depth + 1)
            if let position = Self.position(of: key, in: members, index: &positions) {
                members[position].value = value
            } else {
                positions?[JSONKey(key)] = members.count
                members.append((key, value))
            }
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            } else {
                throw fail("expected ',' or '}'")
            }
        }
    }

    /// Objects with fewer members than this are searched for a duplicate key linearly (the common case: a
    /// handful of keys, no duplicates, no allocation); larger ones get a hash index, so a hostile object with
    /// thousands of keys costs linear time, not quadratic.
    static let linearKeySearchLimit = 12

    static func position(
        of key: String,
        in members: [(key: String, value: PacketValue)],
        index: inout [JSONKey: Int]?
    ) -> Int? {
        if index == nil {
            if members.count < linearKeySearchLimit {
                return members.firstIndex { PacketValue.sameKey($0.key, key) }
            }
            var built: [JSONKey: Int] = [:]
            built.reserveCapacity(members.count * 2)
            for (position, member) in members.enumerated() { built[JSONKey(member.key)] = position }
            index = built
        }
        return index?[JSONKey(key)]
    }

    mutating func readArray(depth: Int) throws(JSONError) -> PacketValue {
        index += 1
        var elements: [PacketValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try readValue(depth: depth + 1))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            } else {
                throw fail("expected ',' or ']'")
            }
        }
    }

    mutating func readString() throws(JSONError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw fail("control character in string") }
            index += 1
        }
        var scalars: [UInt8] = []
        scalars.reserveCapacity(min(bytes.count - start, 4096))
        scalars.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: scalars, as: UTF8.self)
            }
            if byte < 0x20 { throw fail("control character in string") }
            if byte != UInt8(ascii: "\\") {
                // A run up to the next quote, backslash or control character, appended whole.
                let run = index
                index += 1
                while index < bytes.count {
                    let next = bytes[index]
                    if next == UInt8(ascii: "\"") || next == UInt8(ascii: "\\") || next < 0x20 { break }
                    index += 1
                }
                scalars.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<index]))
                continue
            }
            index += 1
            guard index < bytes.count else { break }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): scalars.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "/"): scalars.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): scalars.append(0x08)
            case UInt8(ascii: "f"): scalars.append(0x0C)
            case UInt8(ascii: "n"): scalars.append(0x0A)
            case UInt8(ascii: "r"): scalars.append(0x0D)
            case UInt8(ascii: "t"): scalars.append(0x09)
            case UInt8(ascii: "u"):
                var code = try readHex4()
                if (0xD800...0xDBFF).contains(code) {
                    // A high surrogate should be followed by an escaped low one.
                    if index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                    {
                        let save = index
                        index += 2
                        let low = try readHex4()
                        if (0xDC00...0xDFFF).contains(low) {
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            index = save
                            code = 0xFFFD
                        }
                    } else {
                        code = 0xFFFD
                    }
                } else if (0xDC00...0xDFFF).contains(code) {
                    code = 0xFFFD
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                scalars.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw fail("invalid escape")
            }
        }
        throw fail("unterminated string")
    }

    mutating func readHex4() throws(JSONError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    mutating func readNumber() throws(JSONError) -> Double {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[index]) {
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
        } else {
            throw fail("invalid number")
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            let digitsStart = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            guard index > digitsStart else { throw fail("invalid number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            let digitsStart = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            guard index > digitsStart else { throw fail("invalid number") }
        }
        let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
        if isInteger, slice.count <= 15 {
            var value: Int64 = 0
            var negative = false
            for b in slice {
                if b == UInt8(ascii: "-") { negative = true; continue }
                value = value * 10 + Int64(b - UInt8(ascii: "0"))
            }
            return Double(negative ? -value : value)
        }
        guard let value = Double(String(decoding: slice, as: UTF8.self)) else { throw fail("invalid number") }
        return value
    }
}

/// An object key compared and hashed by its UTF-8 bytes, as JavaScript tells keys apart (Swift's `String`
/// equality would merge canonically equivalent keys, e.g. "K" and the Kelvin sign).
struct JSONKey: Hashable {
    let key: String

    init(_ key: String) { self.key = key }

    static func == (lhs: JSONKey, rhs: JSONKey) -> Bool { PacketValue.sameKey(lhs.key, rhs.key) }

    func hash(into hasher: inout Hasher) {
        let done: Void? = key.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in key.utf8 { hasher.combine(byte) }
        }
    }
}
