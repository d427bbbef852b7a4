import NIOCore
import NIOHTTP1
import Synchronization

/// What every HTTP connection handler of a server shares: the engine, CORS, the connection limits, the handshake
/// budget, and the application's own endpoints (everything outside the Engine.IO path).
package final class HTTPServerContext: Sendable {
    package let engine: EngineServer
    let cors: CORS
    let connections: ConnectionConfiguration
    let connectionLimiter: ConnectionLimiter
    /// Handshakes per client address; nil when the limit is off.
    let handshakeLimiter: AddressRateLimiter?
    let metrics: EngineMetrics
    /// Answers the requests outside the Engine.IO path.
    let routes: any HTTPRoutes
    /// Set when the server drains: new handshakes are refused (and the application reports not-ready).
    package let draining = Atomic<Bool>(false)

    package init(engine: EngineServer, connections: ConnectionConfiguration, routes: any HTTPRoutes) {
        self.engine = engine
        self.metrics = engine.metrics
        self.routes = routes
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

/// The application's HTTP endpoints beside Engine.IO's path (health, metrics, static pages). Called on the
/// connection's event loop with a request received whole; a HEAD request's answer is sent without its body.
package protocol HTTPRoutes: Sendable {
    func response(to head: HTTPRequestHead, path: Substring, server: HTTPServerContext) -> HTTPRouteResponse
}

/// One answer of the application's endpoints.
package struct HTTPRouteResponse: Sendable {
    package var status: HTTPResponseStatus
    package var headers: HTTPHeaders
    package var contentType: String?
    package var body: ByteBuffer?

    package init(status: HTTPResponseStatus, headers: HTTPHeaders = HTTPHeaders(), contentType: String? = nil, body: ByteBuffer? = nil) {
        self.status = status
        self.headers = headers
        self.contentType = contentType
        self.body = body
    }

    /// A text answer (plain UTF-8 unless `contentType` says otherwise).
    package static func text(_ status: HTTPResponseStatus, _ text: String, contentType: String = "text/plain; charset=utf-8") -> Self {
        HTTPRouteResponse(status: status, contentType: contentType, body: ByteBuffer(string: text))
    }
}
