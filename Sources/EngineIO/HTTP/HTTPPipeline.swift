import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The HTTP pipeline of a connection, with the websocket upgrade available on every request.
///
/// NIO's `HTTPServerUpgradeHandler` only considers the first request of a connection and then removes itself.
/// Clients that pool keep-alive connections (aiohttp, so python-socketio) send the websocket upgrade on a
/// connection that already carried long-polling requests, so `HTTPHandler` puts a fresh upgrade handler back
/// in front of itself when a later request asks to upgrade.
package enum HTTPPipeline {
    package static func configure(
        channel: any Channel,
        context: HTTPServerContext,
        upgrader: NIOWebSocketServerUpgrader
    ) throws {
        let pipeline = channel.pipeline.syncOperations
        let connectionGuard = ConnectionGuardHandler(
            configuration: context.connections,
            limiter: context.connectionLimiter,
            metrics: context.metrics
        )
        let encoder = HTTPResponseEncoder()
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
        let pipelining = HTTPServerPipelineHandler()
        let errors = HTTPServerProtocolErrorHandler()
        let handler = HTTPHandler(server: context, upgrader: upgrader, connectionGuard: connectionGuard)
        try pipeline.addHandlers([connectionGuard, encoder, decoder, pipelining, errors])
        try pipeline.addHandler(makeUpgradeHandler(upgrader: upgrader, encoder: encoder, httpHandlers: [decoder, pipelining, errors], handler: handler))
        try pipeline.addHandler(handler)
    }

    static func makeUpgradeHandler(
        upgrader: NIOWebSocketServerUpgrader,
        encoder: HTTPResponseEncoder,
        httpHandlers: [any RemovableChannelHandler],
        handler: HTTPHandler
    ) -> HTTPServerUpgradeHandler {
        HTTPServerUpgradeHandler(
            upgraders: [upgrader],
            httpEncoder: encoder,
            extraHTTPHandlers: httpHandlers,
            upgradeCompletionHandler: { context in
                context.pipeline.syncOperations.removeHandler(handler, promise: nil)
            }
        )
    }

    /// Puts an upgrade handler in front of `handler` and hands it the request head it must decide on.
    static func reinsertUpgradeHandler(
        context: ChannelHandlerContext,
        handler: HTTPHandler,
        upgrader: NIOWebSocketServerUpgrader,
        head: HTTPRequestHead
    ) throws {
        let pipeline = context.pipeline.syncOperations
        let encoder = try pipeline.handler(type: HTTPResponseEncoder.self)
        let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        let pipelining = try pipeline.handler(type: HTTPServerPipelineHandler.self)
        let errors = try pipeline.handler(type: HTTPServerProtocolErrorHandler.self)
        let upgradeHandler = makeUpgradeHandler(
            upgrader: upgrader,
            encoder: encoder,
            httpHandlers: [decoder, pipelining, errors],
            handler: handler
        )
        try pipeline.addHandler(upgradeHandler, position: .before(handler))
        let upgradeContext = try pipeline.context(handler: upgradeHandler)
        upgradeHandler.channelRead(context: upgradeContext, data: NIOAny(HTTPServerRequestPart.head(head)))
    }
}
