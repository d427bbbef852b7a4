import NIOCore

/// One reply from a Redis server, in the RESP2 protocol's own terms.
///
/// Pub/sub pushes arrive as arrays too (`["message", channel, payload]`); ``RedisSubscriber`` turns them into
/// callbacks, so most code only sees the replies of ``RedisConnection/send(_:)``.
public enum RESPValue: Sendable, Hashable {
    /// `+OK`: a short status line.
    case simpleString(String)
    /// `-ERR message`: the server refused the command. ``RedisConnection`` fails the command's future with
    /// ``RedisError/errorReply(_:)`` instead of returning this.
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$3 abc`: binary-safe bytes; `nil` is RESP's nil bulk string (`$-1`), e.g. GET of a missing key.
    case bulkString(ByteBuffer?)
    /// `*2 …`: nested values; `nil` is RESP's nil array (`*-1`).
    case array([RESPValue]?)
}

extension RESPValue {
    /// The value as text: simple strings and bulk strings (decoded as UTF-8), else `nil`.
    public var string: String? {
        switch self {
        case .simpleString(let string):
            return string
        case .bulkString(.some(let buffer)):
            return String(buffer: buffer)
        case .error, .integer, .bulkString(.none), .array:
            return nil
        }
    }

    /// The value of an integer reply, else `nil`.
    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of a non-nil array, else `nil`.
    public var array: [RESPValue]? {
        if case .array(.some(let elements)) = self { return elements }
        return nil
    }
}

extension RESPValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let string):
            return "+\(string)"
        case .error(let message):
            return "-\(message)"
        case .integer(let value):
            return ":\(value)"
        case .bulkString(.none):
            return "(nil)"
        case .bulkString(.some(let buffer)):
            return "\"\(String(decoding: buffer.readableBytesView.prefix(64), as: UTF8.self))\""
                + (buffer.readableBytes > 64 ? "…(\(buffer.readableBytes) bytes)" : "")
        case .array(.none):
            return "(nil array)"
        case .array(.some(let elements)):
            return "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
