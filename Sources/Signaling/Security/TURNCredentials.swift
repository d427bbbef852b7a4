import Crypto
import EngineIO
import Foundation
import SocketIO

/// ICE servers for clients, with short-lived TURN credentials in coturn's shared-secret REST scheme
/// (`use-auth-secret`): username `<expiry unix time>:<socket id>`, credential base64(HMAC-SHA1(secret, username)).
public struct ICEServerConfiguration: Sendable {
    /// STUN URLs given as they are (`stun:host:3478`).
    public var stunURLs: [String] = []
    /// TURN URLs (`turn:host:3478?transport=udp`); used only with a secret.
    public var turnURLs: [String] = []
    /// The secret shared with the TURN server; nil gives no TURN entry.
    public var turnSecret: String? = nil
    /// How long credentials stay valid.
    public var credentialLifetime: Int = 86_400

    public init() {}

    public var isEmpty: Bool { stunURLs.isEmpty && (turnURLs.isEmpty || turnSecret == nil) }

    /// The `RTCIceServer` list for one socket. `notAfter` (seconds since 1970) caps the TURN credentials' expiry:
    /// a socket's credentials do not outlive its token.
    public func iceServers(
        for socket: String,
        notAfter: Double? = nil,
        now: Int = Int(Date().timeIntervalSince1970)
    ) -> PacketValue {
        var servers: [PacketValue] = []
        if !stunURLs.isEmpty {
            servers.append(.object([("urls", .array(stunURLs.map { .string($0) }))]))
        }
        if let turnSecret, !turnURLs.isEmpty {
            var expiry = now + credentialLifetime
            if let notAfter, notAfter < Double(expiry) { expiry = Int(max(notAfter, 0).rounded(.down)) }
            let username = "\(expiry):\(socket)"
            servers.append(
                .object([
                    ("urls", .array(turnURLs.map { .string($0) })),
                    ("username", .string(username)),
                    ("credential", .string(Self.credential(secret: turnSecret, username: username))),
                ])
            )
        }
        return .array(servers)
    }

    public static func credential(secret: String, username: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(username.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Base64.encode(Array(mac))
    }
}
