import Adapter
import Logging
import NIOCore

/// What every connection handler of a node shares.
final class ServerContext: Sendable {
    let engine: EngineServer
    let cors: CORS
    let isReady: @Sendable () -> Bool

    init(engine: EngineServer, isReady: @escaping @Sendable () -> Bool) {
        self.engine = engine
        self.cors = CORS(allowedOrigins: engine.configuration.allowedOrigins)
        self.isReady = isReady
    }
}
