import SocketIO
import Testing

@testable import EngineIO
@testable import Signaling

/// Issue 11, findings 2 and 4: socket-id-shaped room names, signal addressing, UTF-16 lengths.
@Suite("Signaling validation")
struct SignalingValidationTests {
    @Test func everyGeneratedSocketIDHasTheRefusedShape() {
        for _ in 0..<1000 {
            let id = IDGenerator.next()
            #expect(SignalingApplication.hasSocketIDShape(id), "\(id)")
        }
    }

    @Test(arguments: [
        ("abcdefghij0123456789", true),
        ("AAAAAAAAAAAAAAAAAAA-", true),
        ("____________________", true),
        ("abcdefghij012345678", false),
        ("abcdefghij0123456789a", false),
        ("abcdefghij012345678.", false),
        ("abcdefghij01234567 9", false),
        ("abcdefghij01234567\u{E9}", false),
        ("", false),
        ("room-one", false),
    ])
    func socketIDShape(name: String, refused: Bool) {
        #expect(SignalingApplication.hasSocketIDShape(name) == refused)
    }

    @Test(arguments: [
        ("", 0),
        ("abc", 3),
        ("\u{E9}", 1),
        ("e\u{301}", 2),
        ("a" + String(repeating: "\u{301}", count: 10), 11),
        ("\u{1F600}", 2),
        ("\u{1F600}\u{1F600}x", 5),
        ("\u{20AC}\u{20AC}\u{20AC}", 3),
    ])
    func utf16Length(text: String, units: Int) {
        #expect(text.utf16.count == units)  // the vector is right
        for limit in 0...(units + 3) {
            #expect(SignalingApplication.utf16Length(text, atMost: limit) == (units <= limit), "limit \(limit)")
        }
    }

    @Test func signalIsAddressedOnlyToItsToPeer() {
        let offer = BroadcastPacket(event: "offer", .object([("offer", .object([])), ("toPeer", "abc"), ("fromPeer", "x")]))
        #expect(SignalingApplication.isAddressed(offer, to: "abc"))
        #expect(!SignalingApplication.isAddressed(offer, to: "abd"))
        #expect(!SignalingApplication.isAddressed(offer, to: "x"))
        #expect(!SignalingApplication.isAddressed(BroadcastPacket(event: "offer", .object([("offer", .null)])), to: "abc"))
        #expect(!SignalingApplication.isAddressed(BroadcastPacket(event: "offer", "abc"), to: "abc"))
        #expect(!SignalingApplication.isAddressed(BroadcastPacket(event: "offer"), to: "abc"))
        #expect(!SignalingApplication.isAddressed(BroadcastPacket(event: "offer", .object([("toPeer", 5)])), to: "5"))
    }
}
