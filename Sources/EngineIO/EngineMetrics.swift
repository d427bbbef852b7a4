import CoreMetrics
import Synchronization

/// The Engine.IO and HTTP layer's metrics, through swift-metrics: sessions per transport, slow consumers, and
/// connections and handshakes turned away by a limit. (The labels keep the node's `signal_` prefix: dashboards
/// read them by these names.)
public final class EngineMetrics: Sendable {
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

    public init() {}

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
