import NIOCore

/// How long to wait before each reconnect attempt: at once first, then quick retries with jitter, capped low.
///
/// - Attempt 1, the first after a connection was lost (or after a first connect failed), waits a random time of
///   at most ``initialSpread``: a dropped connection is replaced at once, yet nodes that lost Redis together do
///   not all come back in the same millisecond.
/// - Attempt `n ≥ 2` waits `min(maximum, base × 2^(n−2))`, of which a random share of up to ``jitter`` is taken
///   off.
///
/// The cap bounds the time from Redis accepting connections again to the next attempt: with the defaults
/// (25 ms, 50 ms, then every 50–100 ms), a restarted Redis is found again within 0.1 s however long it was
/// down. Refused connects cost little, so the retries keep that pace for as long as the outage lasts; raise
/// ``maximum`` for a Redis behind a network that should see fewer attempts.
public struct RedisBackoff: Sendable, Hashable {
    /// The longest random wait before the first attempt (`.zero`: at once).
    public var initialSpread: TimeAmount
    /// The delay before the second attempt, before jitter; it doubles with each attempt after that.
    public var base: TimeAmount
    /// The cap on the delay.
    public var maximum: TimeAmount
    /// The largest share of a delay taken off at random, in `0...1` (0 = no jitter).
    public var jitter: Double

    public init(
        initialSpread: TimeAmount = .milliseconds(10),
        base: TimeAmount = .milliseconds(25),
        maximum: TimeAmount = .milliseconds(100),
        jitter: Double = 0.5
    ) {
        precondition(base.nanoseconds > 0 && maximum >= base, "backoff needs 0 < base <= maximum")
        precondition(initialSpread >= .zero && initialSpread <= maximum, "backoff needs 0 <= initialSpread <= maximum")
        precondition((0...1).contains(jitter), "jitter is a share in 0...1")
        self.initialSpread = initialSpread
        self.base = base
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay before `attempt` (1 = the first attempt after a failure or a lost connection), given a random
    /// number `random` in `0..<1`.
    public func delay(forAttempt attempt: Int, random: Double) -> TimeAmount {
        precondition(attempt >= 1, "attempts count from 1")
        let random = min(max(random, 0), 1)
        if attempt == 1 {
            return .nanoseconds(Int64((Double(self.initialSpread.nanoseconds) * random).rounded()))
        }
        let exponent = min(attempt - 2, 62)
        var nanoseconds = self.maximum.nanoseconds
        // base × 2^exponent, saturating at the maximum without overflowing.
        if exponent < 62, self.base.nanoseconds <= self.maximum.nanoseconds >> Int64(exponent) {
            nanoseconds = self.base.nanoseconds << Int64(exponent)
        }
        let kept = 1 - self.jitter * random
        return .nanoseconds(Int64((Double(nanoseconds) * kept).rounded()))
    }

    /// ``delay(forAttempt:random:)`` with the system's random numbers.
    public func delay(forAttempt attempt: Int) -> TimeAmount {
        self.delay(forAttempt: attempt, random: Double.random(in: 0..<1))
    }
}
