import NIOCore

/// A value carried by a Socket.IO packet: JSON with ordered object keys, plus binary (Socket.IO attachments,
/// msgpack `bin` on Redis).
///
/// Objects keep their key order, because relayed payloads (`offer`, `answer`, ICE) must leave the server as
/// they arrived, and the seed's own payloads have a fixed key order.
public enum PacketValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([PacketValue])
    case object([(key: String, value: PacketValue)])
    case binary(ByteBuffer)

    public static func == (lhs: PacketValue, rhs: PacketValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.binary(let a), .binary(let b)): return a == b
        case (.object(let a), .object(let b)):
            guard a.count == b.count else { return false }
            for (x, y) in zip(a, b) where x.key != y.key || x.value != y.value { return false }
            return true
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(b)
        case .number(let n): hasher.combine(n)
        case .string(let s): hasher.combine(s)
        case .array(let a): hasher.combine(a)
        case .binary(let b): hasher.combine(b)
        case .object(let o):
            hasher.combine(o.count)
            for (k, v) in o {
                hasher.combine(k)
                hasher.combine(v)
            }
        }
    }

    /// The value of `key` when this is an object. Parsed JSON has each key once (the reader keeps the last value,
    /// as `JSON.parse`); for an object built otherwise, the last one is taken too. Keys match by their UTF-8 bytes.
    public subscript(key: String) -> PacketValue? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { Self.sameKey($0.key, key) })?.value
    }

    /// Whether two object keys are the same key for JavaScript: the same code units, with no Unicode
    /// normalisation (Swift's `==` would call "K" and U+212A KELVIN SIGN equal).
    @inlinable
    public static func sameKey(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var numberValue: Double? {
        if case .number(let n) = self { return n }
        return nil
    }

    public var arrayValue: [PacketValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isObject: Bool {
        if case .object = self { return true }
        return false
    }

    /// True when the value or anything inside it is binary.
    public var containsBinary: Bool {
        switch self {
        case .binary: return true
        case .array(let a): return a.contains { $0.containsBinary }
        case .object(let o): return o.contains { $0.value.containsBinary }
        default: return false
        }
    }
}

extension PacketValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: PacketValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
}
