import EngineIO
import NIOCore
import NIOHTTP1
import Synchronization

/// What every connection handler of a node shares: the Engine.IO layer's HTTP context, with the node's own
/// endpoints (`NodeEndpoints`) as its routes, and the text of `/metrics` (also served by the metrics listener).
final class ServerContext: Sendable {
    let http: HTTPServerContext
    /// The Prometheus text of `/metrics`; nil when metrics are off.
    let metricsText: @Sendable () -> String?

    init(
        engine: EngineServer,
        connections: ConnectionConfiguration,
        servesMetrics: Bool = true,
        isReady: @escaping @Sendable () -> Bool,
        readinessDetails: @escaping @Sendable () -> [String] = { [] },
        metricsText: @escaping @Sendable () -> String?
    ) {
        self.metricsText = metricsText
        self.http = HTTPServerContext(
            engine: engine,
            connections: connections,
            routes: NodeEndpoints(
                servesMetrics: servesMetrics, adapterReady: isReady, readinessDetails: readinessDetails, metricsText: metricsText
            )
        )
    }
}

/// The node's HTTP endpoints beside Engine.IO's path: `/healthz`, `/readyz`, `/metrics` and the demo page.
struct NodeEndpoints: HTTPRoutes {
    /// Whether `/metrics` is served by the main listener (not when it has a listener of its own).
    let servesMetrics: Bool
    /// Whether the adapter and presence serve the cluster; `/readyz` also reports not-ready while draining.
    let adapterReady: @Sendable () -> Bool
    /// Lines after the verdict in `/readyz`'s body: the state of each Redis connection or shard, presence.
    var readinessDetails: @Sendable () -> [String] = { [] }
    let metricsText: @Sendable () -> String?

    func isReady(_ server: HTTPServerContext) -> Bool { !server.draining.load(ordering: .relaxed) && adapterReady() }

    func response(to head: HTTPRequestHead, path: Substring, server: HTTPServerContext) -> HTTPRouteResponse {
        guard head.method == .GET || head.method == .HEAD else {
            return .text(.methodNotAllowed, "method not allowed\n")
        }
        switch path {
        case "/healthz":
            return .text(.ok, "ok\n")
        case "/metrics":
            guard servesMetrics, let text = metricsText() else {
                return .text(.notFound, "metrics are off\n")
            }
            return .text(.ok, text, contentType: "text/plain; version=0.0.4; charset=utf-8")
        case "/readyz":
            let ready = isReady(server)
            var body = ready ? "ready\n" : "not ready\n"
            if server.draining.load(ordering: .relaxed) { body += "draining\n" }
            for line in readinessDetails() { body += line + "\n" }
            return .text(ready ? .ok : .serviceUnavailable, body)
        default:
            if let file = DemoPage.files[String(path)] {
                var headers = HTTPHeaders()
                headers.add(name: "Cache-Control", value: "no-cache")
                return HTTPRouteResponse(status: .ok, headers: headers, contentType: file.contentType, body: ByteBuffer(bytes: file.body))
            } else {
                return .text(.notFound, "not found\n")
            }
        }
    }
}
