import SocketIO
import Testing

@testable import Signaling

/// coturn's shared-secret REST scheme (`use-auth-secret`).
@Suite("TURN credentials")
struct TURNCredentialsTests {
    /// base64(HMAC-SHA1("secret", "1700000000:sock")), computed with Python's hmac and base64.
    @Test func credentialIsTheBase64OfTheHMACOfTheUsername() {
        #expect(ICEServerConfiguration.credential(secret: "secret", username: "1700000000:sock") == "0gAqUt5aRYeljdbuSRR6L9L8NU4=")
        #expect(ICEServerConfiguration.credential(secret: "other", username: "1700000000:sock") != "0gAqUt5aRYeljdbuSRR6L9L8NU4=")
    }

    @Test func serversListsStunThenTurnWithAUsernameOfExpiryAndSocket() throws {
        var ice = ICEServerConfiguration()
        ice.stunURLs = ["stun:a:3478", "stun:b:3478"]
        ice.turnURLs = ["turn:t:3478?transport=udp"]
        ice.turnSecret = "secret"
        ice.credentialLifetime = 600
        let servers = try #require(ice.iceServers(for: "sock", now: 1_699_999_400).arrayValue)
        #expect(servers.count == 2)
        #expect(servers[0].jsonString == #"{"urls":["stun:a:3478","stun:b:3478"]}"#)
        #expect(servers[1]["urls"]?.arrayValue == ["turn:t:3478?transport=udp"])
        #expect(servers[1]["username"]?.stringValue == "1700000000:sock")
        #expect(servers[1]["credential"]?.stringValue == "0gAqUt5aRYeljdbuSRR6L9L8NU4=")
    }

    @Test func noTurnEntryWithoutASecretOrURLs() {
        var ice = ICEServerConfiguration()
        #expect(ice.isEmpty)
        #expect(ice.iceServers(for: "s").arrayValue == [])
        ice.turnURLs = ["turn:t:3478"]
        #expect(ice.isEmpty)  // no secret
        #expect(ice.iceServers(for: "s").arrayValue == [])
        ice.turnURLs = []
        ice.turnSecret = "x"
        #expect(ice.isEmpty)  // no URL
        ice.stunURLs = ["stun:a:3478"]
        #expect(!ice.isEmpty)
        #expect(ice.iceServers(for: "s").arrayValue?.count == 1)
    }
}
