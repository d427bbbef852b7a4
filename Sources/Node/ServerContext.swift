import Adapter
import Logging
import NIOCore
import Synchronization

/// What every connection handler of a node shares.
final class ServerContext: Sendable {
    let engine: EngineServer
    let cors: CORS
    let connections: ConnectionConfiguration
    let connectionLimiter: ConnectionLimiter
    /// Handshakes per client address; nil when the limit is off.
    let handshakeLimiter: AddressRateLimiter?
    let metrics: SignalMetrics
    let adapterReady: @Sendable () -> Bool
    /// The Prometheus text of `/metrics`; nil when metrics are off.
    let metricsText: @Sendable () -> String?
    /// Whether `/metrics` is served by the main listener (not when it has a listener of its own).
    let servesMetrics: Bool
    /// Set when the node drains: `/readyz` answers 503 and new handshakes are refused.
    let draining = Atomic<Bool>(false)

    func isReady() -> Bool { !draining.load(ordering: .relaxed) && adapterReady() }

    init(
        engine: EngineServer,
        connections: ConnectionConfiguration,
        servesMetrics: Bool = true,
        isReady: @escaping @Sendable () -> Bool,
        metricsText: @escaping @Sendable () -> String?
    ) {
        self.adapterReady = isReady
        self.metricsText = metricsText
        self.servesMetrics = servesMetrics
        self.engine = engine
        self.metrics = engine.metrics
        self.cors = CORS(allowedOrigins: engine.configuration.allowedOrigins)
        self.connections = connections
        self.connectionLimiter = ConnectionLimiter(
            maximum: connections.maxConnections,
            maximumPerAddress: connections.maxConnectionsPerAddress
        )
        let configuration = engine.configuration
        self.handshakeLimiter =
            configuration.handshakeRate > 0
            ? AddressRateLimiter(rate: configuration.handshakeRate, burst: max(1, configuration.handshakeBurst))
            : nil
    }

    /// Whether `client` may open one more session now (its handshake budget); counts a refusal.
    func admitHandshake(from client: IPAddress?) -> Bool {
        guard let handshakeLimiter, let client else { return true }
        guard handshakeLimiter.allow(client.clientKey) else {
            metrics.refused(.handshakeRate)
            return false
        }
        return true
    }
}
