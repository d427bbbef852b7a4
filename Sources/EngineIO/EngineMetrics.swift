import CoreMetrics
import Synchronization

/// The Engine.IO and HTTP layer's metrics, through swift-metrics: sessions per transport, slow consumers, and
/// connections and handshakes turned away by a limit.
public final class EngineMetrics: Sendable {
    let connectionsOpened: Counter
    let pollingConnections: Gauge
    let webSocketConnections: Gauge
    let slowPollingConsumers: Counter
    let slowWebSocketConsumers: Counter
    private let refusals: [Refusal: Counter]
    private let polling = Atomic<Int>(0)
    private let webSocket = Atomic<Int>(0)

    /// `labelPrefix` starts every metric's name (`<prefix>_connections`, …); the node's is `signal`.
    public init(labelPrefix: String = "engineio") {
        connectionsOpened = Counter(label: "\(labelPrefix)_connections_opened_total")
        pollingConnections = Gauge(label: "\(labelPrefix)_connections", dimensions: [("transport", "polling")])
        webSocketConnections = Gauge(label: "\(labelPrefix)_connections", dimensions: [("transport", "websocket")])
        slowPollingConsumers = Counter(label: "\(labelPrefix)_slow_consumers_total", dimensions: [("transport", "polling")])
        slowWebSocketConsumers = Counter(label: "\(labelPrefix)_slow_consumers_total", dimensions: [("transport", "websocket")])
        refusals = Dictionary(
            uniqueKeysWithValues: Refusal.allCases.map {
                ($0, Counter(label: "\(labelPrefix)_refused_total", dimensions: [("reason", $0.rawValue)]))
            }
        )
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
