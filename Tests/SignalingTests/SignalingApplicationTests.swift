import NIOCore
import NIOEmbedded
import SocketIO
import Testing

@testable import Signaling

/// The seed's events end to end through the Socket.IO layer, on one node with the in-memory adapter: what the
/// python suite checks against the binary, here without a socket.
@Suite("Signaling application")
struct SignalingApplicationTests {
    static func json(_ value: PacketValue?) -> String? { value?.jsonString }

    // MARK: join_room

    @Test func joinAnswersTheRosterAndAnnouncesTheJoinerToTheWholeRoom() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        let a = try #require(alice.sid)
        let b = try #require(bob.sid)

        #expect(Self.json(alice.join("r", as: "alice")) == #"{"roomName":"r","socketId":"\#(a)","peers":[]}"#)
        #expect(Self.json(alice.received("user_joined").last) == #"{"personName":"alice","roomName":"r","socketId":"\#(a)"}"#)

        let roster = bob.join("r", as: "bob")
        #expect(Self.json(roster) == #"{"roomName":"r","socketId":"\#(b)","peers":[{"socketId":"\#(a)","personName":"alice"}]}"#)
        // The joiner hears of itself; the one already there hears of the joiner.
        #expect(bob.received("user_joined").map { $0["socketId"]?.stringValue } == [b])
        #expect(alice.received("user_joined").map { $0["socketId"]?.stringValue } == [a, b])
    }

    @Test func secondJoinOfTheSameRoomIsRefused() throws {
        let h = SignalingHarness()
        let alice = h.client()
        _ = alice.join("r", as: "alice")
        let answer = alice.join("r", as: "alice again")
        #expect(answer?["code"]?.stringValue == "already_in_room")
        #expect(answer?["event"]?.stringValue == "join_room")
        #expect(alice.received("user_joined").count == 1)
    }

    @Test(arguments: [
        (#"{"roomName":"","personName":"a"}"#, "invalid_payload"),
        (#"{"personName":"a"}"#, "invalid_payload"),
        (#"{"roomName":"r"}"#, "invalid_payload"),
        (#"{"roomName":"r","personName":5}"#, "invalid_payload"),
        (#""just a string""#, "invalid_payload"),
        (#"{"roomName":"a#b","personName":"a"}"#, "invalid_payload"),
        (#"{"roomName":"AAAAAAAAAAAAAAAAAAAA","personName":"a"}"#, "invalid_room_name"),
        (#"{"roomName":"r","personName":"\#(String(repeating: "n", count: 65))"}"#, "person_name_too_long"),
        (#"{"roomName":"\#(String(repeating: "r", count: 129))","personName":"a"}"#, "room_name_too_long"),
    ])
    func invalidJoinsAreRefusedWithTheirCode(payload: String, code: String) throws {
        let h = SignalingHarness()
        let alice = h.client()
        let answer = alice.ack(alice.emitWithAck("join_room", payload))
        #expect(answer?["code"]?.stringValue == code)
        #expect(alice.received("user_joined").isEmpty)
    }

    @Test func roomsPerSocketAndMembersPerRoomAreBounded() throws {
        var configuration = SignalingConfiguration()
        configuration.maxRoomsPerSocket = 1
        configuration.maxMembersPerRoom = 1
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client()
        let bob = h.client()
        #expect(alice.join("r", as: "alice")?["peers"] != nil)
        #expect(alice.join("s", as: "alice")?["code"]?.stringValue == "too_many_rooms")
        #expect(bob.join("r", as: "bob")?["code"]?.stringValue == "room_full")
        // bob was never in the room: alice hears nothing of him
        #expect(alice.received("user_joined").count == 1)
    }

    // MARK: message

    @Test func messageGoesToTheRoomUnderTheJoinName() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        let carol = h.client()
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        _ = carol.join("elsewhere", as: "carol")
        let id = alice.emitWithAck("message", #"{"roomName":"r","content":"hi","personName":"mallory"}"#)
        #expect(Self.json(alice.ack(id)) == #"{"ok":true}"#)
        for client in [alice, bob] {
            let message = try #require(client.received("message").last)
            #expect(message["personName"]?.stringValue == "alice")
            #expect(message["content"]?.stringValue == "hi")
            #expect(message["timestamp"]?.stringValue?.hasSuffix(" GMT") == true)
        }
        #expect(carol.received("message").isEmpty)
    }

    @Test func messageToARoomNotJoinedIsRefusedAsAnErrorEvent() throws {
        let h = SignalingHarness()
        let alice = h.client()
        alice.emit("message", #"{"roomName":"r","content":"hi"}"#)
        let error = try #require(alice.received("error").last)
        #expect(error["code"]?.stringValue == "not_in_room")
        #expect(error["event"]?.stringValue == "message")
        #expect(alice.received("message").isEmpty)
    }

    @Test func contentIsBounded() throws {
        var configuration = SignalingConfiguration()
        configuration.maxContentLength = 4
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client()
        _ = alice.join("r", as: "alice")
        #expect(alice.ack(alice.emitWithAck("message", #"{"roomName":"r","content":"12345"}"#))?["code"]?.stringValue == "content_too_long")
        #expect(alice.ack(alice.emitWithAck("message", #"{"roomName":"r","content":5}"#))?["code"]?.stringValue == "invalid_payload")
        // four UTF-16 code units: two emoji fit, a third does not
        #expect(alice.ack(alice.emitWithAck("message", #"{"roomName":"r","content":"😀😀"}"#))?["ok"] == true)
        #expect(alice.ack(alice.emitWithAck("message", #"{"roomName":"r","content":"😀😀😀"}"#))?["code"]?.stringValue == "content_too_long")
        #expect(alice.received("message").count == 1)
    }

    // MARK: leave_room and disconnect

    @Test func leaveAnnouncesUserLeftToTheOthersOnly() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        let b = try #require(bob.sid)
        #expect(Self.json(bob.ack(bob.emitWithAck("leave_room", #"{"roomName":"r"}"#))) == #"{"ok":true}"#)
        #expect(Self.json(alice.received("user_left").last) == #"{"personName":"bob","roomName":"r","socketId":"\#(b)"}"#)
        #expect(bob.received("user_left").isEmpty)
        // out of the room: no more messages, and a second leave is refused
        alice.emit("message", #"{"roomName":"r","content":"hi"}"#)
        #expect(bob.received("message").isEmpty)
        #expect(bob.ack(bob.emitWithAck("leave_room", #"{"roomName":"r"}"#))?["code"]?.stringValue == "not_in_room")
    }

    @Test func disconnectAnnouncesUserLeftInEveryRoom() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        let carol = h.client()
        _ = alice.join("r", as: "alice")
        _ = alice.join("s", as: "alice")
        _ = bob.join("r", as: "bob")
        _ = carol.join("s", as: "carol")
        let a = try #require(alice.sid)
        alice.disconnect()
        #expect(bob.received("user_left").map { $0["roomName"]?.stringValue } == ["r"])
        #expect(carol.received("user_left").map { $0["roomName"]?.stringValue } == ["s"])
        #expect(bob.received("user_left").first?["socketId"]?.stringValue == a)
        #expect(h.namespace.localSockets.count == 2)
    }

    @Test func nodeLostAnnouncesUserLeftForEachEntry() throws {
        let h = SignalingHarness()
        let bob = h.client()
        _ = bob.join("r", as: "bob")
        SignalingApplication.nodeLost(
            [PresenceEntry(room: "r", socket: "gone", personName: "ghost"), PresenceEntry(room: "x", socket: "g2", personName: "g")],
            namespace: h.namespace
        )
        h.loop.run()
        #expect(Self.json(bob.received("user_left").last) == #"{"personName":"ghost","roomName":"r","socketId":"gone"}"#)
        #expect(bob.received("user_left").count == 1)
    }

    // MARK: offer, answer, ICE

    @Test func offerGoesToToPeerAloneWithTheSendersIdAsFromPeer() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        let carol = h.client()
        for (client, name) in [(alice, "alice"), (bob, "bob"), (carol, "carol")] { _ = client.join("r", as: name) }
        let a = try #require(alice.sid)
        let b = try #require(bob.sid)
        let id = alice.emitWithAck("offer", #"{"offer":{"type":"offer","sdp":"v=0"},"toPeer":"\#(b)","fromPeer":"spoofed"}"#)
        #expect(Self.json(alice.ack(id)) == #"{"ok":true}"#)
        let offer = try #require(bob.received("offer").last)
        #expect(offer["fromPeer"]?.stringValue == a)
        #expect(offer["offer"]?["sdp"]?.stringValue == "v=0")
        #expect(carol.received("offer").isEmpty)
        #expect(alice.received("offer").isEmpty)

        bob.emit("answer", #"{"answer":{"type":"answer","sdp":"v=0"},"toPeer":"\#(a)"}"#)
        #expect(alice.received("answer").last?["fromPeer"]?.stringValue == b)
        #expect(carol.received("answer").isEmpty)
    }

    @Test func signalToSomeoneInNoSharedRoomIsRefused() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        let b = try #require(bob.sid)
        let offer = #"{"offer":{"type":"offer","sdp":"v=0"},"toPeer":"\#(b)"}"#
        // in no room at all
        #expect(alice.ack(alice.emitWithAck("offer", offer))?["code"]?.stringValue == "not_in_same_room")
        _ = alice.join("r", as: "alice")
        _ = bob.join("s", as: "bob")
        #expect(alice.ack(alice.emitWithAck("offer", offer))?["code"]?.stringValue == "not_in_same_room")
        #expect(bob.received("offer").isEmpty)
    }

    @Test(arguments: [
        (#"{"offer":{"type":"offer"},"toPeer":"B"}"#, "invalid_payload"),
        (#"{"offer":"v=0","toPeer":"B"}"#, "invalid_payload"),
        (#"{"offer":{"type":"offer","sdp":"v=0"}}"#, "invalid_payload"),
        (#"{"offer":{"type":"offer","sdp":"v=0"},"toPeer":""}"#, "invalid_payload"),
        (#"{"offer":{"type":"offer","sdp":"0123456789"},"toPeer":"B"}"#, "sdp_too_long"),
        (#"[1]"#, "invalid_payload"),
    ])
    func invalidOffersAreRefused(payload: String, code: String) throws {
        var configuration = SignalingConfiguration()
        configuration.maxSDPLength = 8
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client()
        _ = alice.join("r", as: "alice")
        #expect(alice.ack(alice.emitWithAck("offer", payload))?["code"]?.stringValue == code)
    }

    @Test(arguments: [
        (SignalingConfiguration.ICEEventName.both, ["ice_candidate", "ice-candidate"]),
        (.underscore, ["ice_candidate"]),
        (.hyphen, ["ice-candidate"]),
    ])
    func iceCandidateIsRelayedUnderTheConfiguredNames(name: SignalingConfiguration.ICEEventName, expected: [String]) throws {
        var configuration = SignalingConfiguration()
        configuration.iceEventName = name
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client()
        let bob = h.client()
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        let b = try #require(bob.sid)
        _ = bob.newEvents()
        alice.emit("ice-candidate", #"{"iccCandidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"},"toPeer":"\#(b)"}"#)
        #expect(bob.newEvents() == expected)
        #expect(bob.received(expected[0]).last?["fromPeer"]?.stringValue == alice.sid)
    }

    @Test func candidateLinesAreChecked() throws {
        var configuration = SignalingConfiguration()
        configuration.maxCandidateLength = 5
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client()
        _ = alice.join("r", as: "alice")
        let long = alice.emitWithAck("ice_candidate", #"{"iccCandidate":{"candidate":"123456"},"toPeer":"B"}"#)
        #expect(alice.ack(long)?["code"]?.stringValue == "candidate_too_long")
        let notString = alice.emitWithAck("ice_candidate", #"{"candidate":{"candidate":5},"toPeer":"B"}"#)
        #expect(alice.ack(notString)?["code"]?.stringValue == "invalid_payload")
        let notObject = alice.emitWithAck("ice_candidate", #"{"iccCandidate":"x","toPeer":"B"}"#)
        #expect(alice.ack(notObject)?["code"]?.stringValue == "invalid_payload")
    }

    @Test func legacyEventsGoToTheOthersInTheSendersRooms() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let bob = h.client()
        let carol = h.client()
        #expect(alice.ack(alice.emitWithAck("send-offer", #"{"sdp":"x"}"#))?["code"]?.stringValue == "not_in_room")
        _ = alice.join("r", as: "alice")
        _ = bob.join("r", as: "bob")
        _ = carol.join("s", as: "carol")
        alice.emit("send-offer", #"{"sdp":"x"}"#)
        #expect(Self.json(bob.received("receive-offer").last) == #"{"sdp":"x"}"#)
        #expect(alice.received("receive-offer").isEmpty)
        #expect(carol.received("receive-offer").isEmpty)
    }

    @Test func unknownEventsAreIgnoredWithoutAnAnswer() throws {
        let h = SignalingHarness()
        let alice = h.client()
        let id = alice.emitWithAck("no_such_event", "{}")
        #expect(alice.ack(id) == nil)
        #expect(alice.received("error").isEmpty)
    }

    // MARK: limits

    @Test func eventsBeyondTheBudgetAreRefusedRateLimited() throws {
        var limits = SocketIOLimits()
        limits.eventsPerSecond = 0.001
        limits.eventBurst = 3  // the CONNECT takes one
        let h = SignalingHarness(limits: limits)
        let alice = h.client()
        _ = alice.join("r", as: "alice")
        #expect(alice.ack(alice.emitWithAck("message", #"{"roomName":"r","content":"1"}"#))?["ok"] == true)
        #expect(alice.ack(alice.emitWithAck("message", #"{"roomName":"r","content":"2"}"#))?["code"]?.stringValue == "rate_limited")
        alice.emit("message", #"{"roomName":"r","content":"3"}"#)
        #expect(alice.received("error").last?["code"]?.stringValue == "rate_limited")
        #expect(alice.received("message").map { $0["content"]?.stringValue } == ["1"])
    }

    @Test func eventsWaitingBehindPresenceAreBoundedAndKeepTheirOrder() throws {
        var configuration = SignalingConfiguration()
        configuration.maxQueuedEvents = 2
        let presence = DeferredPresenceStore()
        let h = SignalingHarness(configuration: configuration, presence: presence)
        let alice = h.client()
        let join = alice.emitWithAck("join_room", #"{"roomName":"r","personName":"alice"}"#)
        #expect(alice.ack(join) == nil)  // waiting for the room's count
        let first = alice.emitWithAck("message", #"{"roomName":"r","content":"1"}"#)
        let second = alice.emitWithAck("message", #"{"roomName":"r","content":"2"}"#)
        let third = alice.emitWithAck("message", #"{"roomName":"r","content":"3"}"#)
        #expect(alice.ack(third)?["code"]?.stringValue == "overloaded")
        #expect(alice.ack(first) == nil)
        presence.answerAll()
        h.loop.run()
        // the join completed before the messages ran: they were not refused not_in_room
        #expect(alice.ack(join)?["roomName"]?.stringValue == "r")
        #expect(alice.ack(first)?["ok"] == true)
        #expect(alice.ack(second)?["ok"] == true)
        #expect(alice.received("message").map { $0["content"]?.stringValue } == ["1", "2"])
    }

    @Test func joinFinishingAfterADisconnectLeavesNothingBehind() throws {
        let presence = DeferredPresenceStore()
        let h = SignalingHarness(presence: presence)
        let alice = h.client()
        let bob = h.client()
        bob.emitWithAck("join_room", #"{"roomName":"r","personName":"bob"}"#)
        presence.answerAll()
        let join = alice.emitWithAck("join_room", #"{"roomName":"r","personName":"alice"}"#)
        presence.answerNext()  // the count: alice is in the room now, presence registers her next
        alice.disconnect()
        presence.answerAll()
        h.loop.run()
        presence.answerAll()
        #expect(alice.ack(join) == nil)
        let members = try presence.store.members(of: "r", on: h.loop).wait()
        #expect(members.map(\.personName) == ["bob"])
        #expect(h.namespace.adapter.localSockets(in: ["r"]) == [try #require(bob.sid)])
        #expect(bob.received("user_joined").count == 1)  // bob heard of himself only
    }

    // MARK: connect: JWT and ICE servers

    /// HS256 with "unit-secret": `{"sub":"u","exp":4102444800,"rooms":["lobby"]}` (made with Python's hmac).
    static let lobbyToken =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwLCJyb29tcyI6WyJsb2JieSJdfQ.zLvIE4_0eRG6_waj4iTsvaNsrNobxtA88bC34ncmIds"

    static func jwtConfiguration() throws -> SignalingConfiguration {
        var configuration = SignalingConfiguration()
        configuration.jwt = try JWTVerifier(secret: "unit-secret", rsaPublicKeyPEM: nil)
        return configuration
    }

    @Test func connectWithoutAValidTokenIsRefused() throws {
        let h = SignalingHarness(configuration: try Self.jwtConfiguration())
        let anonymous = h.client()
        #expect(anonymous.sid == nil)
        #expect(anonymous.connectError == "Authentication error: a token is required")
        let expired = h.client(auth: #"{"token":"\#(JWTVerifierTests.valid)"}"#)
        #expect(expired.connectError == "Authentication error: token expired")
        #expect(h.namespace.localSockets.count == 0)
    }

    @Test func tokenRoomsClaimLimitsTheRoomsJoined() throws {
        let h = SignalingHarness(configuration: try Self.jwtConfiguration())
        let viaAuth = h.client(auth: #"{"token":"\#(Self.lobbyToken)"}"#)
        let viaQuery = h.client(token: Self.lobbyToken)
        #expect(viaAuth.sid != nil)
        #expect(viaQuery.sid != nil)
        #expect(viaAuth.join("lobby", as: "a")?["roomName"]?.stringValue == "lobby")
        #expect(viaQuery.join("kitchen", as: "b")?["code"]?.stringValue == "forbidden_room")
    }

    @Test func iceServersGoToEachSocketOnConnectAndWithTheRoster() throws {
        var configuration = SignalingConfiguration()
        configuration.iceServers.stunURLs = ["stun:s.example:3478"]
        configuration.iceServers.turnURLs = ["turn:t.example:3478"]
        configuration.iceServers.turnSecret = "s"
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client()
        let a = try #require(alice.sid)
        let servers = try #require(alice.received("ice_servers").first?.arrayValue)
        #expect(servers.count == 2)
        #expect(servers[0]["urls"]?.arrayValue == ["stun:s.example:3478"])
        #expect(servers[1]["username"]?.stringValue?.hasSuffix(":" + a) == true)
        #expect(alice.join("r", as: "alice")?["iceServers"]?.arrayValue?.count == 2)
    }

    @Test func noIceServersEventWithoutConfiguration() {
        let h = SignalingHarness()
        let alice = h.client()
        #expect(alice.received("ice_servers").isEmpty)
        #expect(alice.join("r", as: "alice")?["iceServers"] == nil)
    }

    // MARK: the clock

    @Test func aSocketIsDisconnectedWhenItsTokenExpiresPlusTheLeeway() throws {
        var configuration = try Self.jwtConfiguration()
        configuration.now = { 1000 }
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client(token: JWTVerifierTests.valid)  // exp 2000; the leeway is 5 s
        let bob = h.client(token: Self.lobbyToken)  // exp 2100-01-01
        #expect(alice.sid != nil)
        #expect(bob.sid != nil)
        h.loop.advanceTime(by: .seconds(1004))
        #expect(!alice.packets.contains { $0.type == .disconnect })
        h.loop.advanceTime(by: .seconds(1))
        #expect(alice.packets.last?.type == .disconnect)
        #expect(!bob.packets.contains { $0.type == .disconnect })
        #expect(h.namespace.localSockets.count == 1)
    }

    @Test func turnCredentialsAndMessageTimestampsFollowTheClock() throws {
        var configuration = try Self.jwtConfiguration()
        configuration.now = { 1_000.75 }
        configuration.iceServers.turnURLs = ["turn:t.example:3478"]
        configuration.iceServers.turnSecret = "s"
        let h = SignalingHarness(configuration: configuration)
        let alice = h.client(token: JWTVerifierTests.valid)  // exp 2000: the credentials expire then too
        let a = try #require(alice.sid)
        #expect(alice.received("ice_servers").first?.arrayValue?.first?["username"]?.stringValue == "2000:" + a)
        _ = alice.join("a", as: "alice")
        alice.emit("message", #"{"roomName":"a","content":"hi"}"#)
        #expect(alice.received("message").last?["timestamp"]?.stringValue == "Thu, 01 Jan 1970 00:16:40 GMT")
    }
}
