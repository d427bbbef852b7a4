import NIOCore

extension EngineServer {
    /// The handler a websocket connection gets after the upgrade (a new session, no sid), for the fuzz targets
    /// (Sources/signal-fuzz), which drive it on an EmbeddedChannel with hostile frames.
    package func makeWebSocketHandler(maxPayload: Int) -> any ChannelHandler {
        EngineWebSocketHandler(engine: self, sid: nil, token: nil, maxPayload: maxPayload)
    }
}
