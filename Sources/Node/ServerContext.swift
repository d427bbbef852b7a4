import Adapter
import Logging
import NIOCore
import Synchronization

/// What every connection handler of a node shares.
final class ServerContext: Sendable {
    let engine: EngineServer
    let cors: CORS
    let adapterReady: @Sendable () -> Bool
    /// The Prometheus text of `/metrics`; nil when metrics are off.
    let metricsText: @Sendable () -> String?
    /// Set when the node drains: `/readyz` answers 503 and new handshakes are refused.
    let draining = Atomic<Bool>(false)

    func isReady() -> Bool { !draining.load(ordering: .relaxed) && adapterReady() }

    init(engine: EngineServer, isReady: @escaping @Sendable () -> Bool, metricsText: @escaping @Sendable () -> String?) {
        self.adapterReady = isReady
        self.metricsText = metricsText
        self.engine = engine
        self.cors = CORS(allowedOrigins: engine.configuration.allowedOrigins)
    }
}
