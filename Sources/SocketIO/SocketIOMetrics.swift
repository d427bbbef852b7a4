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
    private let labelPrefix: String
    let broadcasts: Counter
    /// Server-side acks never answered (timed out, or refused beyond the per-socket bound).
    let acksDropped: Counter
    /// Connection state recovery: sockets suspended on a transport drop, restored, ended without a restore
    /// (window closed, or not restorable when their client came back), and restore requests refused (unknown or
    /// expired pid, lost events, unknown offset: the client got a new session).
    let recoverySuspended: Counter
    let recoveryRestored: Counter
    let recoveryEnded: Counter
    let recoveryRefused: Counter

    /// `knownEvents`: the event names counted under their own label (the application's). `labelPrefix` starts
    /// every metric's name (`<prefix>_events_in_total`, …); the node's is `signal`.
    public init(labelPrefix: String = "socketio", knownEvents: Set<String>) {
        var eventsIn: [String: Counter] = [:]
        var eventsOut: [String: Counter] = [:]
        for name in knownEvents.union(["other"]) {
            eventsIn[name] = Counter(label: "\(labelPrefix)_events_in_total", dimensions: [("event", name)])
            eventsOut[name] = Counter(label: "\(labelPrefix)_events_out_total", dimensions: [("event", name)])
        }
        self.eventsIn = eventsIn
        self.eventsOut = eventsOut
        self.labelPrefix = labelPrefix
        self.broadcasts = Counter(label: "\(labelPrefix)_broadcasts_total")
        self.acksDropped = Counter(label: "\(labelPrefix)_acks_dropped_total")
        self.recoverySuspended = Counter(label: "\(labelPrefix)_recovery_suspended_total")
        self.recoveryRestored = Counter(label: "\(labelPrefix)_recovery_restored_total")
        self.recoveryEnded = Counter(label: "\(labelPrefix)_recovery_ended_total")
        self.recoveryRefused = Counter(label: "\(labelPrefix)_recovery_refused_total")
    }

    func eventReceived(_ name: String) {
        (eventsIn[name] ?? eventsIn["other"])?.increment()
    }

    /// `count` deliveries of one event to local sockets.
    func eventDelivered(_ name: String?, count: Int) {
        (eventsOut[name ?? "other"] ?? eventsOut["other"])?.increment(by: count)
    }

    func ackDropped() { acksDropped.increment() }

    enum RecoveryOutcome { case suspended, restored, ended, refused }

    func recovery(_ outcome: RecoveryOutcome) {
        switch outcome {
        case .suspended: recoverySuspended.increment()
        case .restored: recoveryRestored.increment()
        case .ended: recoveryEnded.increment()
        case .refused: recoveryRefused.increment()
        }
    }

    /// An error answered to a client, by its code (the application's codes, and `rate_limited`).
    package func error(_ code: String) {
        let counter = errors.withLock { errors in
            if let counter = errors[code] { return counter }
            let counter = Counter(label: "\(labelPrefix)_errors_total", dimensions: [("code", code)])
            errors[code] = counter
            return counter
        }
        counter.increment()
    }
}
