import NIOCore

/// How long to wait before reconnecting: exponential backoff with jitter.
///
/// Attempt `n` (counting from 1) waits `min(maximum, base × 2^(n−1))`, of which a random share of up to `jitter`
/// is taken off, so that many nodes losing Redis together do not all come back in the same millisecond.
public struct RedisBackoff: Sendable, Hashable {
    /// The delay before the first reconnect attempt, before jitter.
    public var base: TimeAmount
    /// The cap on the delay.
    public var maximum: TimeAmount
    /// The largest share of a delay taken off at random, in `0...1` (0 = no jitter).
    public var jitter: Double

    public init(base: TimeAmount = .milliseconds(100), maximum: TimeAmount = .seconds(10), jitter: Double = 0.5) {
        precondition(base.nanoseconds > 0 && maximum >= base, "backoff needs 0 < base <= maximum")
        precondition((0...1).contains(jitter), "jitter is a share in 0...1")
        self.base = base
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay before `attempt` (1 = the first attempt after a failure or a lost connection), given a random
    /// number `random` in `0..<1`.
    public func delay(forAttempt attempt: Int, random: Double) -> TimeAmount {
        precondition(attempt >= 1, "attempts count from 1")
        let exponent = min(attempt - 1, 62)
        var nanoseconds = self.maximum.nanoseconds
        // base × 2^exponent, saturating at the maximum without overflowing.
        if exponent < 62, self.base.nanoseconds <= self.maximum.nanoseconds >> Int64(exponent) {
            nanoseconds = self.base.nanoseconds << Int64(exponent)
        }
        let kept = 1 - self.jitter * min(max(random, 0), 1)
        return .nanoseconds(Int64((Double(nanoseconds) * kept).rounded()))
    }

    /// ``delay(forAttempt:random:)`` with the system's random numbers.
    public func delay(forAttempt attempt: Int) -> TimeAmount {
        self.delay(forAttempt: attempt, random: Double.random(in: 0..<1))
    }
}
