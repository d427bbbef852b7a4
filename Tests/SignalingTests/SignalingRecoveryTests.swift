import NIOCore
import NIOEmbedded
import SocketIO
import Testing

@testable import Signaling

/// The signaling application with connection state recovery: peers hear nothing of a recovered drop, and one
/// `user_left` when the window closes without the client.
@Suite("Signaling: connection state recovery")
struct SignalingRecoveryTests {
    static func harness(window: Int64 = 60, configuration: SignalingConfiguration = SignalingConfiguration()) -> SignalingHarness {
        SignalingHarness(configuration: configuration, recovery: RecoveryConfiguration(window: .seconds(window)))
    }

    /// `{pid, offset}` as socket.io-client 4.8.1 sends it, from what `client` received.
    static func recoveryAuth(_ client: TestClient, token: String? = nil) throws -> String {
        let pid = try #require(client.packets.last { $0.type == .connect }?.data?["pid"]?.stringValue)
        let offset = client.events.last?.arguments.last?.stringValue
        var fields = [#""pid":"\#(pid)""#]
        if let offset { fields.append(#""offset":"\#(offset)""#) }
        if let token { fields.append(#""token":"\#(token)""#) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    @Test func aRecoveredSocketKeepsItsRoomsAndNamesAndPeersHearNothing() throws {
        let h = Self.harness()
        let alice = h.client()
        let bob = h.client()
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        let b = try #require(bob.sid)
        let auth = try Self.recoveryAuth(bob)
        _ = alice.newEvents()
        bob.disconnect()
        alice.emit("message", #"{"roomName":"r","content":"while away"}"#)
        #expect(alice.newEvents() == ["message"])  // no user_left

        let bob2 = h.client(auth: auth)
        #expect(bob2.sid == b)
        #expect(bob2.received("message").map { $0["content"] } == ["while away"])
        #expect(bob2.received("ice_servers").isEmpty)
        // Its join name is back: its messages go out under it, to the room it is still in.
        bob2.emit("message", #"{"roomName":"r","content":"back"}"#)
        #expect(alice.received("message").last?["personName"] == "bob")
        #expect(alice.received("user_left").isEmpty)
        #expect(alice.received("user_joined").count == 2)
    }

    @Test func theWindowClosingSendsUserLeftOnce() throws {
        let h = Self.harness(window: 5)
        let alice = h.client()
        let bob = h.client()
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        let b = try #require(bob.sid)
        bob.disconnect()
        h.loop.advanceTime(by: .seconds(4))
        #expect(alice.received("user_left").isEmpty)
        h.loop.advanceTime(by: .seconds(2))
        #expect(alice.received("user_left").map { $0["socketId"]?.stringValue } == [b])
        h.loop.advanceTime(by: .seconds(60))
        #expect(alice.received("user_left").count == 1)
        // And the room has room for another: presence forgot bob.
        let carol = h.client()
        let roster = carol.join("r", as: "carol")
        #expect(roster?["peers"]?.arrayValue?.count == 1)
    }

    @Test func anUnrecoverableComebackEndsTheOldSocketAtOnce() throws {
        let h = Self.harness()
        let alice = h.client()
        let bob = h.client()
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        let b = try #require(bob.sid)
        let pid = try #require(bob.packets.last { $0.type == .connect }?.data?["pid"]?.stringValue)
        bob.disconnect()
        let bob2 = h.client(auth: #"{"pid":"\#(pid)","offset":"somebody-else's"}"#)
        #expect(bob2.sid != nil && bob2.sid != b)
        #expect(alice.received("user_left").map { $0["socketId"]?.stringValue } == [b])
    }

    @Test func aJoinInFlightWhenTheTransportDropsIsAbandonedNotSaved() throws {
        let presence = DeferredPresenceStore()
        let h = SignalingHarness(presence: presence, recovery: RecoveryConfiguration(window: .seconds(60)))
        let bob = h.client()
        let b = try #require(bob.sid)
        let auth = try Self.recoveryAuth(bob)
        bob.emitWithAck("join_room", #"{"roomName":"r","personName":"bob"}"#)
        presence.answerNext()  // the count: bob is in the room's adapter registry now; presence.join waits
        h.loop.run()
        bob.disconnect()
        presence.answerAll()
        h.loop.run()
        #expect(h.namespace.adapter.localSockets(in: ["r"]).isEmpty)
        let bob2 = h.client(auth: auth)
        #expect(bob2.sid == b)
        // Not in r: it can join it (no already_in_room), and presence has one entry for it.
        let id = bob2.emitWithAck("join_room", #"{"roomName":"r","personName":"bob"}"#)
        presence.answerAll()
        h.loop.run()
        presence.answerAll()
        h.loop.run()
        #expect(bob2.ack(id)?["socketId"]?.stringValue == b)
    }

    @Test func withJWTARecoveredSocketMustPresentAValidTokenAgain() throws {
        let h = Self.harness(configuration: try SignalingApplicationTests.jwtConfiguration())
        let alice = h.client(auth: #"{"token":"\#(SignalingApplicationTests.lobbyToken)"}"#)
        let bob = h.client(auth: #"{"token":"\#(SignalingApplicationTests.lobbyToken)"}"#)
        _ = alice.join("lobby", as: "alice")
        _ = bob.join("lobby", as: "bob")
        let b = try #require(bob.sid)
        let withoutToken = try Self.recoveryAuth(bob)
        let withToken = try Self.recoveryAuth(bob, token: SignalingApplicationTests.lobbyToken)
        bob.disconnect()
        let refused = h.client(auth: withoutToken)
        #expect(refused.sid == nil)
        #expect(refused.connectError == "Authentication error: a token is required")
        let expired = h.client(auth: withoutToken.replacingLast(with: #","token":"\#(JWTVerifierTests.valid)"}"#))
        #expect(expired.connectError == "Authentication error: token expired")
        let bob2 = h.client(auth: withToken)
        #expect(bob2.sid == b)
        #expect(alice.received("user_left").isEmpty)
    }
}

extension String {
    /// The string with its last character replaced by `suffix` (a JSON object's closing brace by more fields).
    fileprivate func replacingLast(with suffix: String) -> String { String(dropLast()) + suffix }
}
