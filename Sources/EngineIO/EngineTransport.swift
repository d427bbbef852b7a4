import NIOCore

/// The answer to one held long-polling GET. Written from the session's loop; the implementation hops to its
/// own channel.
public protocol PollingResponder: Sendable {
    /// Identifies the HTTP connection the GET came on.
    var connection: ObjectIdentifier { get }
    /// Answers 200 with the encoded payload.
    func respond(_ payload: ByteBuffer)
    /// Drops the request without an answer (the client sees a transport error and reconnects).
    func abort()
}

/// A websocket carrying a session (or probing to carry it).
public protocol WebSocketConnection: AnyObject, Sendable {
    func write(_ frames: [EngineFrame])
    func close()
}

/// What the session reports to the layer above (Socket.IO).
public protocol EngineSessionDelegate: AnyObject {
    /// A text message packet (`4…`), the payload without the type digit.
    func engineSession(_ session: EngineSession, didReceiveText payload: ByteBuffer)
    /// A binary message packet.
    func engineSession(_ session: EngineSession, didReceiveBinary payload: ByteBuffer)
    /// The session is closed; nothing more will be delivered or sent.
    func engineSession(_ session: EngineSession, didCloseWithReason reason: EngineSession.CloseReason)
    /// The client answered a ping: it has received everything the session wrote before that ping.
    func engineSessionDidReceivePong(_ session: EngineSession)
}

extension EngineSessionDelegate {
    public func engineSessionDidReceivePong(_ session: EngineSession) {}
}
