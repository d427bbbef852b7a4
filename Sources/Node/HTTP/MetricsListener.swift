import NIOCore
import NIOHTTP1
import NIOPosix

/// A listener that serves only `GET /metrics`, so the metrics can be bound to a private address or port
/// (`--metrics-host`, `--metrics-port`) while the main listener faces clients.
enum MetricsListener {
    static func bind(
        host: String,
        port: Int,
        group: any EventLoopGroup,
        text: @escaping @Sendable () -> String?
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(text: text))
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// Answers `GET /metrics` with the Prometheus text, anything else with 404; one request at a time, then closes.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let text: @Sendable () -> String?
    private var head: HTTPRequestHead?

    init(text: @escaping @Sendable () -> String?) {
        self.text = text
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let (status, body): (HTTPResponseStatus, String) =
                if head.method == .GET, path == "/metrics", let metrics = text() {
                    (.ok, metrics)
                } else {
                    (.notFound, "not found\n")
                }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension MetricsHTTPHandler: Sendable {}
