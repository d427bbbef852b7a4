import NIOCore
import NIOHTTP1
import NIOWebSocket

extension HTTPPipeline {
    /// The websocket upgrade of the Engine.IO path: a new session (no sid) or the upgrade of a polling session.
    /// Requests it turns down fall through to `HTTPHandler`, which answers with the Engine.IO error.
    package static func makeUpgrader(context: HTTPServerContext) -> NIOWebSocketServerUpgrader {
        let engine = context.engine
        let maxPayload = engine.configuration.maxPayload
        let bufferedBytes = engine.configuration.maxBufferedBytes
        let path = engine.configuration.path
        return NIOWebSocketServerUpgrader(
            maxFrameSize: max(maxPayload, 1 << 16),
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    guard Self.acceptsWebSocket(head, engine: engine, path: path) else { return nil }
                    // A new session counts against its client's handshake budget; a refusal is answered by the
                    // HTTP handler (429), which the request falls through to.
                    if RequestQuery(target: head.uri).sid == nil {
                        let connectionGuard = try channel.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
                        guard context.admitHandshake(from: connectionGuard.clientAddress(for: head)) else {
                            connectionGuard.refusedHandshake = .rateLimited
                            return nil
                        }
                    }
                    return HTTPHeaders()
                }
            },
            upgradePipelineHandler: { channel, head in
                let query = RequestQuery(target: head.uri)
                let sid = query.sid.map(String.init)
                let token = query.token.map(String.init)
                return channel.eventLoop.makeCompletedFuture {
                    let connectionGuard = try channel.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
                    connectionGuard.upgraded()
                    // Writes the client does not read pile up in the channel; the handler watches its writability.
                    try channel.syncOptions?.setOption(
                        .writeBufferWaterMark,
                        value: EngineWebSocketHandler.waterMark(maxBufferedBytes: bufferedBytes)
                    )
                    // Fragmented messages are put together by the handler itself: one handler less per idle
                    // connection than with NIO's frame aggregator.
                    try channel.pipeline.syncOperations.addHandler(
                        EngineWebSocketHandler(
                            engine: engine,
                            sid: sid,
                            token: token,
                            maxPayload: maxPayload,
                            clientAddress: connectionGuard.clientAddress(for: head)
                        )
                    )
                }
            }
        )
    }

    /// Whether a websocket upgrade request is one the engine takes; others fall through to the HTTP handler,
    /// which answers with the Engine.IO error.
    static func acceptsWebSocket(_ head: HTTPRequestHead, engine: EngineServer, path: String) -> Bool {
        let query = RequestQuery(target: head.uri)
        guard query.path == path || query.path + "/" == path, query.transport == "websocket",
            engine.configuration.allowWebSocket, query.eio == "4"
        else { return false }
        if let origin = head.headers.first(name: "origin"), let allowed = engine.configuration.allowedOrigins,
            !allowed.contains(origin)
        {
            return false
        }
        if let sid = query.sid { return engine.session(String(sid)) != nil }
        return engine.hasCapacity
    }
}
