import NIOCore

/// Events per second with bursts: `capacity` tokens, refilled at `rate` per second, one per event.
struct TokenBucket {
    let rate: Double
    let capacity: Double
    private var tokens: Double
    private var updated: NIODeadline

    init(rate: Double, capacity: Double, now: NIODeadline = .now()) {
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now
    }

    /// Takes a token if there is one.
    mutating func take(now: NIODeadline = .now()) -> Bool {
        let elapsed = Double((now - updated).nanoseconds) / 1e9
        if elapsed > 0 {
            tokens = min(capacity, tokens + elapsed * rate)
            updated = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
