import CoreMetrics
import Synchronization

/// The node's metrics, through swift-metrics (the executable bootstraps the Prometheus backend).
///
/// Counters are made once and kept: labels are bounded (known event names, error codes and transports; any other
/// event name counts as `other`), and the hot path only increments.
public final class SignalMetrics: Sendable {
    static let knownEvents: Set<String> = [
        "join_room", "leave_room", "message", "offer", "answer", "ice_candidate", "ice-candidate",
        "send-offer", "send-answer", "send-icecandidate", "user_joined", "user_left", "receive-offer",
        "receive-answer", "receive-icecandidate", "error", "ice_servers",
    ]

    private let eventsIn: [String: Counter]
    private let eventsOut: [String: Counter]
    private let errors = Mutex<[String: Counter]>([:])
    let broadcasts = Counter(label: "signal_broadcasts_total")
    /// Server-side acks never answered (timed out, or refused beyond the per-socket bound).
    let acksDropped = Counter(label: "signal_acks_dropped_total")
    let connectionsOpened = Counter(label: "signal_connections_opened_total")
    let pollingConnections = Gauge(label: "signal_connections", dimensions: [("transport", "polling")])
    let webSocketConnections = Gauge(label: "signal_connections", dimensions: [("transport", "websocket")])
    let slowPollingConsumers = Counter(label: "signal_slow_consumers_total", dimensions: [("transport", "polling")])
    let slowWebSocketConsumers = Counter(label: "signal_slow_consumers_total", dimensions: [("transport", "websocket")])
    private let refusals: [Refusal: Counter] = Dictionary(
        uniqueKeysWithValues: Refusal.allCases.map { ($0, Counter(label: "signal_refused_total", dimensions: [("reason", $0.rawValue)])) }
    )
    private let polling = Atomic<Int>(0)
    private let webSocket = Atomic<Int>(0)

    public init() {
        var eventsIn: [String: Counter] = [:]
        var eventsOut: [String: Counter] = [:]
        for name in Self.knownEvents.union(["other"]) {
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

    func error(_ code: String) {
        let counter = errors.withLock { errors in
            if let counter = errors[code] { return counter }
            let counter = Counter(label: "signal_errors_total", dimensions: [("code", code)])
            errors[code] = counter
            return counter
        }
        counter.increment()
    }

    /// A session closed because its client did not read what it was sent.
    func slowConsumer(polling: Bool) {
        (polling ? slowPollingConsumers : slowWebSocketConsumers).increment()
    }

    /// Connections and handshakes turned away by a limit.
    enum Refusal: String, CaseIterable {
        case handshakeRate = "handshake_rate"
        case sessions
        case tcpConnections = "tcp_connections"
        case tcpConnectionsPerAddress = "tcp_connections_per_address"
        case proxyProtocol = "proxy_protocol"
        case httpTimeout = "http_timeout"
    }

    func refused(_ reason: Refusal) {
        refusals[reason]?.increment()
    }

    enum TransportChange { case opened(polling: Bool), upgraded, closed(polling: Bool) }

    func transport(_ change: TransportChange) {
        switch change {
        case .opened(let isPolling):
            connectionsOpened.increment()
            if isPolling { polling.add(1, ordering: .relaxed) } else { webSocket.add(1, ordering: .relaxed) }
        case .upgraded:
            polling.subtract(1, ordering: .relaxed)
            webSocket.add(1, ordering: .relaxed)
        case .closed(let isPolling):
            if isPolling { polling.subtract(1, ordering: .relaxed) } else { webSocket.subtract(1, ordering: .relaxed) }
        }
        pollingConnections.record(polling.load(ordering: .relaxed))
        webSocketConnections.record(webSocket.load(ordering: .relaxed))
    }
}
