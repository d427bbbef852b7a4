import NIOCore
import Synchronization

/// Token buckets keyed by client address (`IPAddress.clientKey`), shared by all event loops of a node: `burst`
/// tokens per address, refilled at `rate` per second, one taken per admitted action.
///
/// The table is bounded: at `maximumEntries`, buckets that have refilled completely are dropped first (forgetting
/// them changes nothing: a new bucket starts full), and if that frees too little, arbitrary entries go (the
/// dictionary's order is randomly seeded per process), so a spray of addresses costs at most `maximumEntries`
/// entries and amortised O(1) work per call. An address evicted that way starts again with a full bucket, which is
/// the price of a bound; its budget is still `burst` per eviction cycle.
public final class AddressRateLimiter: Sendable {
    public let rate: Double
    public let burst: Double
    public let maximumEntries: Int

    private struct Bucket {
        var tokens: Double
        var updated: NIODeadline
    }

    private let buckets: Mutex<[String: Bucket]>

    /// `rate` tokens per second (> 0), `burst` tokens at most (≥ 1), `maximumEntries` addresses remembered (≥ 1).
    public init(rate: Double, burst: Double, maximumEntries: Int = 65_536) {
        precondition(rate > 0 && burst >= 1 && maximumEntries >= 1, "invalid AddressRateLimiter settings")
        self.rate = rate
        self.burst = burst
        self.maximumEntries = maximumEntries
        self.buckets = Mutex([:])
    }

    /// The number of addresses remembered now.
    public var count: Int { buckets.withLock { $0.count } }

    /// Takes `cost` tokens from `key`'s bucket if it has them.
    public func allow(_ key: String, cost: Double = 1, now: NIODeadline = .now()) -> Bool {
        buckets.withLock { buckets in
            if var bucket = buckets[key] {
                refill(&bucket, now: now)
                let allowed = bucket.tokens >= cost
                if allowed { bucket.tokens -= cost }
                buckets[key] = bucket
                return allowed
            }
            if buckets.count >= maximumEntries { makeRoom(&buckets, now: now) }
            let allowed = burst >= cost
            buckets[key] = Bucket(tokens: allowed ? burst - cost : burst, updated: now)
            return allowed
        }
    }

    private func refill(_ bucket: inout Bucket, now: NIODeadline) {
        let elapsed = Double((now - bucket.updated).nanoseconds) / 1e9
        guard elapsed > 0 else { return }
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.updated = now
    }

    private func makeRoom(_ buckets: inout [String: Bucket], now: NIODeadline) {
        buckets = buckets.filter { _, bucket in
            var bucket = bucket
            refill(&bucket, now: now)
            return bucket.tokens < burst
        }
        // Keep at least an eighth free so the next inserts do not sweep again at once.
        let target = maximumEntries - max(1, maximumEntries / 8)
        guard buckets.count > target else { return }
        buckets = Dictionary(uniqueKeysWithValues: buckets.dropFirst(buckets.count - target).map { ($0.key, $0.value) })
    }
}
