import NIOCore

/// Engine.IO settings; the defaults are the reference server's.
public struct EngineConfiguration: Sendable {
    /// How often the server pings (ms on the wire).
    public var pingInterval: TimeAmount = .milliseconds(25_000)
    /// How long the server waits for the pong.
    public var pingTimeout: TimeAmount = .milliseconds(20_000)
    /// How long a websocket probe may take to send `5`.
    public var upgradeTimeout: TimeAmount = .milliseconds(10_000)
    /// The largest message or polling payload accepted, in bytes.
    public var maxPayload: Int = 1_000_000
    /// The Engine.IO endpoint path, with the trailing slash.
    public var path: String = "/socket.io/"
    /// Whether the websocket upgrade is offered to polling sessions, and direct websocket sessions accepted.
    public var allowWebSocket = true
    /// Whether long-polling is accepted.
    public var allowPolling = true
    /// Browser origins allowed (CORS and WebSocket); nil allows any origin.
    public var allowedOrigins: [String]? = nil
    /// Most sessions this node holds at once; more handshakes are refused with `forbidden`.
    public var maxSessions: Int = 100_000
    /// Most bytes queued for one client: the long-polling outbox waiting for a GET, or a websocket's writes the
    /// client does not read. Beyond it the session is closed as a slow consumer.
    public var maxBufferedBytes: Int = 1_000_000
    /// Handshakes (new sessions) per second per client address; 0 turns the limit off.
    public var handshakeRate: Double = 20
    /// Handshakes per client address in a burst.
    public var handshakeBurst: Double = 200

    public init() {}

    /// The open packet's JSON for a session; `polling` sessions are offered the websocket upgrade.
    func handshakeJSON(_ sid: String, _ polling: Bool) -> String {
        let upgrades = polling && allowWebSocket ? "[\"websocket\"]" : "[]"
        return "{\"sid\":\"\(sid)\",\"upgrades\":\(upgrades),\"pingInterval\":\(pingInterval.nanoseconds / 1_000_000)"
            + ",\"pingTimeout\":\(pingTimeout.nanoseconds / 1_000_000),\"maxPayload\":\(maxPayload)}"
    }
}
