import SocketIO

/// Why a message received on a Redis adapter channel was refused.
public enum ClusterMessageError: Error, Hashable, CustomStringConvertible {
    /// The bytes are not valid MessagePack.
    case messagePack(MessagePackDecodingError)
    /// The bytes start with `{` but are not valid JSON.
    case json(JSONError)
    /// The value decoded but does not have the shape of the message (a field is missing or has the wrong type).
    case invalidMessage(String)
    /// A request whose `type` this node does not handle. Node ignores these too.
    case unsupportedRequestType(Int)

    public var description: String {
        switch self {
        case .messagePack(let error): "\(error)"
        case .json(let error): "\(error)"
        case .invalidMessage(let reason): "invalid cluster message: \(reason)"
        case .unsupportedRequestType(let type): "unsupported cluster request type \(type)"
        }
    }
}
