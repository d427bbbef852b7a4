import NIOCore

/// Limits on TCP connections and on the HTTP phase before a websocket upgrade, and who may say where a client is.
public struct ConnectionConfiguration: Sendable {
    /// Most TCP connections this node holds at once (HTTP and websocket); more are closed as they are accepted.
    public var maxConnections = 110_000
    /// Most TCP connections from one client address (the /64 for IPv6); 0 turns the limit off. Not applied to
    /// connections from a trusted proxy without the PROXY protocol: their clients are only known per request.
    public var maxConnectionsPerAddress = 1_000
    /// Time a request may take to arrive whole (head and body), from its first byte, and the time a new connection
    /// has to start its first request.
    public var requestTimeout: TimeAmount = .seconds(15)
    /// Time a keep-alive connection may sit with no request in flight (a held long-polling GET is in flight).
    public var idleTimeout: TimeAmount = .seconds(30)
    /// Peers whose `X-Forwarded-For` is believed, and (with `proxyProtocol`) the only peers allowed to connect.
    public var trustedProxies: [IPNetwork] = []
    /// Every connection starts with a PROXY protocol v1 or v2 header, which names the client.
    public var proxyProtocol = false

    public init() {}

    func isTrusted(_ address: IPAddress?) -> Bool {
        guard let address else { return false }
        return trustedProxies.contains { $0.contains(address) }
    }

    /// The client behind a request: `connection` (the peer, or the PROXY header's source) unless it is a trusted
    /// proxy, in which case `X-Forwarded-For` is read from the right, skipping trusted hops; the first address
    /// that is not trusted is the client. A malformed entry stops the walk at the last good hop.
    func clientAddress(connection: IPAddress?, forwardedFor: [String]) -> IPAddress? {
        guard var client = connection, isTrusted(client), !forwardedFor.isEmpty else { return connection }
        // Bounded: at most 32 hops are looked at.
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.suffix(32).reversed()
        for hop in hops {
            guard let address = IPAddress(hop.trimmingSpaces) else { break }
            client = address
            guard isTrusted(address) else { break }
        }
        return client
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}
