import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import EngineIO

/// The whole HTTP pipeline of a connection (`HTTPPipeline.configure`) on an EmbeddedChannel: raw request bytes in,
/// raw response bytes out. The Engine.IO path, CORS preflights, and what goes to the application's routes.
@Suite("HTTP pipeline")
struct HTTPPipelineTests {
    /// The application's routes: `/hello` answers, anything else is 404.
    struct Routes: HTTPRoutes {
        func response(to head: HTTPRequestHead, path: Substring, server: HTTPServerContext) -> HTTPRouteResponse {
            path == "/hello" ? .text(.ok, "hello \(head.method)\n") : .text(.notFound, "not found\n")
        }
    }

    final class Harness {
        let channel = EmbeddedChannel()
        let engine: EngineServer

        init(configuration: EngineConfiguration = EngineConfiguration()) throws {
            engine = EngineServer(configuration: configuration, logger: Logger(label: "test"), metrics: EngineMetrics()) { _ in }
            let context = HTTPServerContext(engine: engine, connections: ConnectionConfiguration(), routes: Routes())
            try HTTPPipeline.configure(channel: channel, context: context, upgrader: HTTPPipeline.makeUpgrader(context: context))
            try channel.connect(to: SocketAddress(ipAddress: "192.0.2.10", port: 5000)).wait()
        }

        deinit {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            try? channel.embeddedEventLoop.syncShutdownGracefully()
        }

        /// Sends `request` and returns everything written back, as text.
        func exchange(_ request: String) throws -> String {
            try channel.writeInbound(ByteBuffer(string: request))
            channel.embeddedEventLoop.run()
            var text = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        func get(_ target: String, headers: String = "") throws -> Response {
            try Response(exchange("GET \(target) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n"))
        }
    }

    /// A parsed HTTP/1.1 response.
    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: String

        struct Unreadable: Error {}

        init(_ text: String) throws {
            let parts = text.components(separatedBy: "\r\n\r\n")
            let lines = parts[0].components(separatedBy: "\r\n")
            let statusLine = lines[0].split(separator: " ")
            guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw Unreadable() }
            self.status = status
            headers = lines.dropFirst().map { line in
                let colon = line.firstIndex(of: ":")!
                return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            body = parts.dropFirst().joined(separator: "\r\n\r\n")
        }

        func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
    }

    @Test func applicationRoutesAnswerOutsideTheEnginePath() throws {
        let h = try Harness()
        let hello = try h.get("/hello?x=1")
        #expect(hello.status == 200)
        #expect(hello.body == "hello GET\n")
        #expect(hello.header("content-length") == "10")
        #expect(hello.header("content-type") == "text/plain; charset=utf-8")
        #expect(hello.header("connection") == "keep-alive")
        let missing = try h.get("/nothing")
        #expect(missing.status == 404)
        #expect(missing.body == "not found\n")
        #expect(h.channel.isActive)  // keep-alive: the connection serves the next request
    }

    @Test func headAnswersWithoutABody() throws {
        let h = try Harness()
        let head = try Response(h.exchange("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.header("content-length") == "0")
    }

    @Test func pollingHandshakeOpensASession() throws {
        let h = try Harness()
        let open = try h.get("/socket.io/?EIO=4&transport=polling")
        #expect(open.status == 200)
        #expect(open.body.hasPrefix("0{\"sid\":\""))
        #expect(open.body.contains("\"upgrades\":[\"websocket\"]"))
        #expect(open.header("access-control-allow-origin") == "*")
        #expect(h.engine.sessionCount == 1)
    }

    @Test(arguments: [
        ("/socket.io/?EIO=4&transport=carrier-pigeon", 400, EngineError.unknownTransport),
        ("/socket.io/?EIO=3&transport=polling", 400, .unsupportedProtocolVersion),
        ("/socket.io/?EIO=4&transport=polling&sid=nope", 400, .unknownSid),
        ("/socket.io/?EIO=4&transport=websocket", 400, .badRequest),
    ])
    func engineErrorsHaveTheReferenceCodes(target: String, status: Int, error: EngineError) throws {
        let h = try Harness()
        let response = try h.get(target)
        #expect(response.status == status)
        #expect(response.body == error.json)
        #expect(response.header("connection") == "close")
        #expect(h.engine.sessionCount == 0)
    }

    @Test func handshakeByPostIsRefused() throws {
        let h = try Harness()
        let response = try Response(
            h.exchange("POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        )
        #expect(response.body == EngineError.badHandshakeMethod.json)
    }

    @Test func corsPreflightAnswersNoContentWithTheAllowHeaders() throws {
        let h = try Harness()
        let response = try Response(
            h.exchange(
                "OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n"
                    + "Access-Control-Request-Headers: content-type\r\n\r\n"
            )
        )
        #expect(response.status == 204)
        #expect(response.header("access-control-allow-origin") == "*")
        #expect(response.header("access-control-allow-methods") == "GET,POST")
        #expect(response.header("access-control-allow-headers") == "content-type")
        #expect(response.header("access-control-max-age") == "86400")
        #expect(response.header("access-control-allow-credentials") == nil)
    }

    @Test func listedOriginsAreEchoedWithCredentialsAndOthersRefused() throws {
        var configuration = EngineConfiguration()
        configuration.allowedOrigins = ["https://app.example"]
        let h = try Harness(configuration: configuration)
        let allowed = try h.get("/socket.io/?EIO=4&transport=polling", headers: "Origin: https://app.example\r\n")
        #expect(allowed.status == 200)
        #expect(allowed.header("access-control-allow-origin") == "https://app.example")
        #expect(allowed.header("access-control-allow-credentials") == "true")
        let other = try Harness(configuration: configuration)
        let refused = try other.get("/socket.io/?EIO=4&transport=polling", headers: "Origin: https://evil.example\r\n")
        #expect(refused.status == 400)
        #expect(refused.body == EngineError.badRequest.json)
        #expect(refused.header("access-control-allow-origin") == nil)
        #expect(other.engine.sessionCount == 0)
    }

    @Test func bodyOverMaxPayloadIsRefusedAndTheConnectionCloses() throws {
        var configuration = EngineConfiguration()
        configuration.maxPayload = 10
        let h = try Harness(configuration: configuration)
        let response = try Response(
            h.exchange("POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890")
        )
        #expect(response.status == 413)
        #expect(response.body == #"{"code":3,"message":"Payload too large"}"#)
        #expect(!h.channel.isActive)
    }
}
