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

    public init() {}

    /// The open packet's JSON for a session; `polling` sessions are offered the websocket upgrade.
    func handshakeJSON(_ sid: String, _ polling: Bool) -> String {
        let upgrades = polling && allowWebSocket ? "[\"websocket\"]" : "[]"
        return "{\"sid\":\"\(sid)\",\"upgrades\":\(upgrades),\"pingInterval\":\(pingInterval.nanoseconds / 1_000_000)"
            + ",\"pingTimeout\":\(pingTimeout.nanoseconds / 1_000_000),\"maxPayload\":\(maxPayload)}"
    }
}
