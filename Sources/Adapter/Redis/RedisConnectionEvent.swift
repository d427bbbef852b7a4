import NIOCore

/// What happened to a Redis client's connection, for logs, metrics and `/readyz`.
///
/// Delivered on the client's event loop, in order. Keep the callback short: it runs on the I/O thread.
public enum RedisConnectionEvent: Sendable, Hashable {
    /// A connection was established and its AUTH/SELECT answered. `reconnect` is false for the first one.
    case connected(reconnect: Bool)
    /// A connection attempt failed; the next one starts after `retryIn`. `failures` counts the failures since the
    /// last established connection.
    case connectFailed(failures: Int, retryIn: TimeAmount)
    /// The established connection was lost; reconnecting follows (``connectFailed(failures:retryIn:)`` reports the
    /// attempts).
    case disconnected
    /// ``RedisSubscriber`` only: ``RedisSubscriber/isReady`` changed.
    case readinessChanged(isReady: Bool)
    /// The client was closed by its owner and will not reconnect.
    case closed
}
