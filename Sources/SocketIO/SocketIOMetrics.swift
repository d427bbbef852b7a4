import CoreMetrics
import Synchronization

/// The Socket.IO layer's metrics, through swift-metrics: events in and out by name, errors by code, broadcasts
/// and dropped acks.
///
/// Counters are made once and kept: labels are bounded (the application's known event names, error codes; any
/// other event name counts as `other`), and the hot path only increments.
public final class SocketIOMetrics: Sendable {
    private let eventsIn: [String: Counter]
    private let eventsOut: [String: Counter]
    private let errors = Mutex<[String: Counter]>([:])
    let broadcasts = Counter(label: "signal_broadcasts_total")
    /// Server-side acks never answered (timed out, or refused beyond the per-socket bound).
    let acksDropped = Counter(label: "signal_acks_dropped_total")

    /// `knownEvents`: the event names counted under their own label (the application's).
    public init(knownEvents: Set<String>) {
        var eventsIn: [String: Counter] = [:]
        var eventsOut: [String: Counter] = [:]
        for name in knownEvents.union(["other"]) {
            eventsIn[name] = Counter(label: "signal_events_in_total", dimensions: [("event", name)])
            eventsOut[name] = Counter(label: "signal_events_out_total", dimensions: [("event", name)])
        }
        self.eventsIn = eventsIn
        self.eventsOut = eventsOut
    }

    func eventReceived(_ name: String) {
        (eventsIn[name] ?? eventsIn["other"])?.increment()
    }

    /// `count` deliveries of one event to local sockets.
    func eventDelivered(_ name: String?, count: Int) {
        (eventsOut[name ?? "other"] ?? eventsOut["other"])?.increment(by: count)
    }

    func ackDropped() { acksDropped.increment() }

    /// An error answered to a client, by its code (the application's codes, and `rate_limited`).
    package func error(_ code: String) {
        let counter = errors.withLock { errors in
            if let counter = errors[code] { return counter }
            let counter = Counter(label: "signal_errors_total", dimensions: [("code", code)])
            errors[code] = counter
            return counter
        }
        counter.increment()
    }
}
