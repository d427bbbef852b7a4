import CoreMetrics
import Logging
import NIOCore
import Synchronization

/// The Redis adapter's counters, through swift-metrics (the node's Prometheus backend renders them with the other
/// layers' metrics), each also kept as a number that ``RedisAdapter/statistics`` reads.
///
/// Names are `<prefix>_redis_<what>_total`: `published`, `dropped` (cross-node messages lost while Redis was
/// unreachable), `received`, `ignored` (own echoes, other namespaces, rooms without local members), `requests`
/// (on the request channel), `malformed`, `reconnects` (of the subscriber and publisher connections).
public final class RedisAdapterMetrics: Sendable {
    /// One counter: the swift-metrics handle and its value so far.
    final class Tally: Sendable {
        private let counter: Counter
        private let count = Atomic<Int>(0)

        init(_ label: String) {
            counter = Counter(label: label)
        }

        func increment() {
            count.add(1, ordering: .relaxed)
            counter.increment()
        }

        var value: Int { count.load(ordering: .relaxed) }
    }

    let published: Tally
    let dropped: Tally
    let received: Tally
    let ignored: Tally
    let requests: Tally
    let malformed: Tally
    let reconnects: Tally
    /// Redis connections of the adapter lost so far (not a metric: ``RedisAdapter/continuity``).
    let connectionLosses = Atomic<UInt64>(0)
    /// Drops since the adapter last logged about them (the log says how many were lost; not a metric).
    let droppedSinceLog = Atomic<Int>(0)
    /// The prefix every name starts with (the cluster client names its own counters with it).
    let labelPrefix: String

    /// `labelPrefix` starts every metric's name; the node's is `signal` (`signal_redis_published_total`, …).
    public init(labelPrefix: String = "socketio") {
        self.labelPrefix = labelPrefix
        published = Tally("\(labelPrefix)_redis_published_total")
        dropped = Tally("\(labelPrefix)_redis_dropped_total")
        received = Tally("\(labelPrefix)_redis_received_total")
        ignored = Tally("\(labelPrefix)_redis_ignored_total")
        requests = Tally("\(labelPrefix)_redis_requests_total")
        malformed = Tally("\(labelPrefix)_redis_malformed_total")
        reconnects = Tally("\(labelPrefix)_redis_reconnects_total")
    }

    /// Counts the outcome of publishing a cross-node message (`command` is `publish` or `spublish`), and logs
    /// the losses while Redis is unreachable: the first, every thousandth, and how many when it is back.
    func countPublish(_ result: Result<Int, any Error>, channel: String, command: String, logger: Logger) {
        switch result {
        case .success:
            published.increment()
            let lost = droppedSinceLog.exchange(0, ordering: .relaxed)
            if lost > 0 {
                logger.warning("redis is back; cross-node messages lost meanwhile", metadata: ["lost": "\(lost)"])
            }
        case .failure(let error):
            dropped.increment()
            let pending = droppedSinceLog.add(1, ordering: .relaxed).newValue
            if pending == 1 || pending % 1000 == 0 {
                logger.error(
                    "cross-node message lost: redis \(command) failed",
                    metadata: ["redis.channel": "\(channel)", "error": "\(error)", "lost.since.last.log": "\(pending)"]
                )
            }
        }
    }
}
