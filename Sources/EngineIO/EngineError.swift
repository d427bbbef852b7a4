

/// The Engine.IO error answers, with the reference server's codes and messages.
public enum EngineError: Int, Error, Sendable, Hashable {
    case unknownTransport = 0
    case unknownSid = 1
    case badHandshakeMethod = 2
    case badRequest = 3
    case forbidden = 4
    case unsupportedProtocolVersion = 5

    public var message: String {
        switch self {
        case .unknownTransport: "Transport unknown"
        case .unknownSid: "Session ID unknown"
        case .badHandshakeMethod: "Bad handshake method"
        case .badRequest: "Bad request"
        case .forbidden: "Forbidden"
        case .unsupportedProtocolVersion: "Unsupported protocol version"
        }
    }

    /// 403 for `forbidden`, 400 for the others.
    public var httpStatus: Int { self == .forbidden ? 403 : 400 }

    public var json: String { "{\"code\":\(rawValue),\"message\":\"\(message)\"}" }
}
