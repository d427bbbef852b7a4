import EngineIO
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import Node

/// The node's own endpoints, answered beside the Engine.IO path (`HTTPRoutes`); no sockets.
@Suite("Node HTTP endpoints")
struct NodeEndpointsTests {
    static func make(
        servesMetrics: Bool = true,
        ready: Bool = true,
        metrics: String? = "signal_up 1\n"
    ) -> (NodeEndpoints, HTTPServerContext) {
        let endpoints = NodeEndpoints(servesMetrics: servesMetrics, adapterReady: { ready }, metricsText: { metrics })
        let engine = EngineServer(configuration: EngineConfiguration(), logger: Logger(label: "test"), metrics: EngineMetrics()) { _ in }
        return (endpoints, HTTPServerContext(engine: engine, connections: ConnectionConfiguration(), routes: endpoints))
    }

    static func get(_ endpoints: NodeEndpoints, _ server: HTTPServerContext, _ path: String, method: HTTPMethod = .GET) -> HTTPRouteResponse {
        endpoints.response(to: HTTPRequestHead(version: .http1_1, method: method, uri: path), path: path[...], server: server)
    }

    static func text(_ response: HTTPRouteResponse) -> String? { response.body.map { String(buffer: $0) } }

    @Test func healthAndUnknownPaths() {
        let (endpoints, server) = Self.make()
        let health = Self.get(endpoints, server, "/healthz")
        #expect(health.status == .ok)
        #expect(Self.text(health) == "ok\n")
        #expect(health.contentType == "text/plain; charset=utf-8")
        let missing = Self.get(endpoints, server, "/nothing-here")
        #expect(missing.status == .notFound)
        #expect(Self.text(missing) == "not found\n")
        #expect(Self.get(endpoints, server, "/healthz", method: .POST).status == .methodNotAllowed)
        #expect(Self.get(endpoints, server, "/healthz", method: .HEAD).status == .ok)
    }

    @Test func readinessFollowsTheAdapterAndDraining() {
        let (endpoints, server) = Self.make()
        #expect(Self.get(endpoints, server, "/readyz").status == .ok)
        server.draining.store(true, ordering: .relaxed)
        let draining = Self.get(endpoints, server, "/readyz")
        #expect(draining.status == .serviceUnavailable)
        #expect(Self.text(draining) == "not ready\ndraining\n")
        let (notReady, otherServer) = Self.make(ready: false)
        #expect(Self.get(notReady, otherServer, "/readyz").status == .serviceUnavailable)
    }

    @Test func readinessListsWhatItDependsOn() {
        let (plain, server) = Self.make(ready: false)
        var endpoints = plain
        endpoints.readinessDetails = { ["redis shard 10.0.0.1:7000: 5461 slots, commands disconnected, subscriptions unused", "presence: ready"] }
        let answer = Self.get(endpoints, server, "/readyz")
        #expect(answer.status == .serviceUnavailable)
        #expect(Self.text(answer) == "not ready\nredis shard 10.0.0.1:7000: 5461 slots, commands disconnected, subscriptions unused\npresence: ready\n")
    }

    @Test func metricsOnlyWhenServedHere() {
        let (endpoints, server) = Self.make()
        let metrics = Self.get(endpoints, server, "/metrics")
        #expect(metrics.status == .ok)
        #expect(metrics.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(Self.text(metrics) == "signal_up 1\n")
        let (elsewhere, server2) = Self.make(servesMetrics: false)
        #expect(Self.get(elsewhere, server2, "/metrics").status == .notFound)
        let (off, server3) = Self.make(metrics: nil)
        #expect(Self.text(Self.get(off, server3, "/metrics")) == "metrics are off\n")
    }

    @Test func demoPageIsServedOnTheRootWithoutCaching() throws {
        let (endpoints, server) = Self.make()
        let page = Self.get(endpoints, server, "/")
        #expect(page.status == .ok)
        #expect(page.contentType == "text/html; charset=utf-8")
        #expect(page.headers.first(name: "Cache-Control") == "no-cache")
        let html = try #require(Self.text(page))
        #expect(html.lowercased().contains("<html") || html.contains("<h1>signal-node</h1>"))
        // every bundled file is served under its own path, with the type its extension gives
        for (path, file) in DemoPage.files {
            let response = Self.get(endpoints, server, path)
            #expect(response.status == .ok)
            #expect(response.contentType == file.contentType)
            #expect(response.body?.readableBytes == file.body.count)
        }
        #expect(Self.get(endpoints, server, "/index.html.bak").status == .notFound)
    }
}
