import Testing

@testable import SocketIO

/// Issue 11, finding 3: one duplicate-key policy for all client JSON, the one `JSON.parse` has: the last value
/// wins, in the place of the first key.
@Suite("PacketValue JSON duplicate keys")
struct PacketValueJSONDuplicateKeyTests {
    static func members(_ json: String) throws -> [(key: String, value: PacketValue)] {
        guard case .object(let members) = try PacketValue.parseJSON(json) else {
            Issue.record("\(json) is not an object")
            return []
        }
        return members
    }

    @Test func duplicateKeyKeepsTheLastValueInTheFirstPlace() throws {
        let value = try PacketValue.parseJSON(#"{"a":1,"b":2,"a":3}"#)
        #expect(value == .object([("a", 3), ("b", 2)]))
        #expect(value.jsonString == #"{"a":3,"b":2}"#)  // JSON.stringify(JSON.parse(…))
    }

    @Test func spoofedFromPeerLeavesOneKey() throws {
        let members = try Self.members(#"{"offer":{},"toPeer":"V","fromPeer":"x","fromPeer":"P"}"#)
        #expect(members.map(\.key) == ["offer", "toPeer", "fromPeer"])
        #expect(members[2].value == "P")
    }

    @Test func nestedDuplicateIsCollapsedToo() throws {
        let value = try PacketValue.parseJSON(#"{"offer":{"type":"offer","sdp":"huge","sdp":"v=0"}}"#)
        #expect(value["offer"] == .object([("type", "offer"), ("sdp", "v=0")]))
        let inArray = try PacketValue.parseJSON(#"[{"k":1,"k":2},{"k":3}]"#)
        #expect(inArray == [.object([("k", 2)]), .object([("k", 3)])])
    }

    @Test(arguments: [5, 11, 12, 13, 40, 1000])
    func largeObjectsCollapseThroughTheIndex(size: Int) throws {
        var json = "{"
        for i in 0..<size { json += "\"k\(i)\":\(i)," }
        json += "\"k0\":\"first again\",\"k\(size - 1)\":\"last again\",\"k\(size / 2)\":null}"
        let members = try Self.members(json)
        #expect(members.count == size)
        #expect(members.map(\.key) == (0..<size).map { "k\($0)" })
        #expect(members[0].value == "first again")
        #expect(members[size / 2].value == .null)
        if size - 1 != size / 2 { #expect(members[size - 1].value == "last again") }
    }

    @Test func keysAreComparedByTheirBytes() throws {
        // U+212A KELVIN SIGN is canonically equivalent to "K": Swift's == merges them, JavaScript does not.
        let members = try Self.members("{\"K\":1,\"\u{212A}\":2,\"e\u{301}\":3,\"\u{E9}\":4}")
        #expect(members.count == 4)
        let value = PacketValue.object(members)
        #expect(value["K"] == 1)
        #expect(value["\u{212A}"] == 2)
        #expect(value["e\u{301}"] == 3)
        #expect(value["\u{E9}"] == 4)
        #expect(!PacketValue.sameKey("K", "\u{212A}"))
        #expect(PacketValue.sameKey("fromPeer", "fromPeer"))
    }

    @Test func escapedAndPlainSpellingsOfAKeyAreOneKey() throws {
        let members = try Self.members(#"{"fromPeer":"x","from\u0050eer":"y"}"#)
        #expect(members.count == 1)
        #expect(members[0].value == "y")
    }
}
