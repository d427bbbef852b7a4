import NIOCore

/// Why a Redis command, connection or configuration failed.
public enum RedisError: Error, Sendable, Hashable {
    /// The client has no connection right now (it is connecting or waiting to reconnect). The command was not
    /// sent and is not queued: the caller decides whether to retry. ``RedisConnection`` counts these in
    /// ``RedisConnection/droppedWhileDisconnected``.
    case notConnected
    /// The connection was lost while the command was in flight: it may or may not have run on the server.
    case connectionClosed
    /// The client was closed by its owner.
    case clientClosed
    /// The server answered with an error reply (`-ERR …`, `-WRONGPASS …`); the text is the server's.
    case errorReply(String)
    /// The server's bytes were not valid RESP, or a reply came that no command was waiting for.
    case protocolError(String)
    /// The server answered nothing, not even a PING, for this long: the connection was closed and the client
    /// reconnects (see ``RedisConfiguration/healthCheckInterval``).
    case serverUnresponsive(after: TimeAmount)
    /// A reply had a shape the command does not produce (for example a string where PUBLISH returns an integer).
    case unexpectedReply(RESPValue)
    /// ``RedisConfiguration/maximumPendingCommands`` commands are already waiting for replies.
    case tooManyPendingCommands(limit: Int)
    /// A `redis://` URL could not be read.
    case invalidURL(String, reason: String)
    /// No sentinel could tell where the primary of this master name is.
    case noPrimary(String, reason: String)
    /// A server the sentinels named as the primary answered `ROLE` with another role (a failover in progress).
    case notPrimary(role: String)
    /// A connect was abandoned because the sentinels announced another primary while it waited.
    case primaryMoved
}

extension RedisError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .notConnected:
            return "Redis is not connected (command not sent)"
        case .connectionClosed:
            return "Redis connection closed while the command was in flight"
        case .clientClosed:
            return "Redis client closed"
        case .errorReply(let message):
            return "Redis error reply: \(message)"
        case .protocolError(let message):
            return "Redis protocol error: \(message)"
        case .serverUnresponsive(let duration):
            return "Redis server did not answer for \(duration)"
        case .unexpectedReply(let value):
            return "unexpected Redis reply: \(value)"
        case .tooManyPendingCommands(let limit):
            return "too many Redis commands in flight (limit \(limit))"
        case .invalidURL(let url, let reason):
            return "invalid Redis URL '\(url)': \(reason)"
        case .noPrimary(let masterName, let reason):
            return "no sentinel knows the primary of '\(masterName)': \(reason)"
        case .notPrimary(let role):
            return "the server named as primary is a \(role)"
        case .primaryMoved:
            return "the primary moved while connecting; asking the sentinels again"
        }
    }
}
