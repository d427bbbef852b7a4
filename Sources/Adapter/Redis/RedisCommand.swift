import NIOCore

/// One argument of a Redis command. Arguments are binary-safe: a `ByteBuffer` or `[UInt8]` goes to the server
/// byte for byte, a `String` as its UTF-8 bytes.
public enum RESPArgument: Sendable, Hashable {
    case string(String)
    case bytes([UInt8])
    case buffer(ByteBuffer)

    /// An integer argument, in decimal as Redis expects (`SELECT 2`, `EXPIRE key 10`).
    public static func integer(_ value: some BinaryInteger) -> RESPArgument {
        .string(String(value))
    }

    var byteCount: Int {
        switch self {
        case .string(let string): return string.utf8.count
        case .bytes(let bytes): return bytes.count
        case .buffer(let buffer): return buffer.readableBytes
        }
    }
}

extension RESPArgument: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

/// A command name and its arguments, as the client sends it (`["PUBLISH", channel, payload]`).
public struct RedisCommand: Sendable, Hashable {
    public var arguments: [RESPArgument]

    public init(_ arguments: [RESPArgument]) {
        precondition(!arguments.isEmpty, "a Redis command needs at least its name")
        self.arguments = arguments
    }
}

extension RedisCommand: CustomStringConvertible {
    /// The command name only: arguments may hold secrets (AUTH) or large payloads.
    public var description: String {
        guard case .string(let name) = self.arguments.first else { return "<binary command>" }
        return name
    }
}
