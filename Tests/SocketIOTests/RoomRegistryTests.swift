import Testing

@testable import SocketIO

@Suite("RoomRegistry")
struct RoomRegistryTests {
    /// Sockets s1…s4, each in the room of its own id, plus: s1 and s2 in "a", s2 and s3 in "b", s4 in "c".
    static func populated() -> RoomRegistry {
        var registry = RoomRegistry()
        for socket in ["s1", "s2", "s3", "s4"] { registry.join(socket, room: socket) }
        registry.join("s1", room: "a")
        registry.join("s2", room: "a")
        registry.join("s2", room: "b")
        registry.join("s3", room: "b")
        registry.join("s4", room: "c")
        return registry
    }

    // MARK: membership changes

    @Test func firstJoinCreatesTheRoomAndLaterJoinsDoNot() {
        var registry = RoomRegistry()
        #expect(registry.join("s1", room: "r") == .roomCreated("r"))
        #expect(registry.join("s2", room: "r") == nil)
        #expect(registry.join("s1", room: "r") == nil)
        #expect(registry.members(of: "r") == ["s1", "s2"])
        #expect(registry.rooms(of: "s1") == ["r"])
        #expect(registry.hasRoom("r"))
    }

    @Test func leavingTheLastMemberDeletesTheRoom() {
        var registry = RoomRegistry()
        registry.join("s1", room: "r")
        registry.join("s2", room: "r")
        #expect(registry.leave("s1", room: "r") == nil)
        #expect(registry.hasRoom("r"))
        #expect(registry.members(of: "r") == ["s2"])
        #expect(registry.leave("s2", room: "r") == .roomDeleted("r"))
        #expect(!registry.hasRoom("r"))
        #expect(registry.members(of: "r").isEmpty)
        #expect(registry.allRooms.isEmpty)
        #expect(registry.socketCount == 0)
    }

    @Test func leavingARoomTheSocketIsNotInChangesNothing() {
        var registry = RoomRegistry()
        registry.join("s1", room: "r")
        #expect(registry.leave("s2", room: "r") == nil)
        #expect(registry.leave("s1", room: "other") == nil)
        #expect(registry.leave("ghost", room: "nowhere") == nil)
        #expect(registry.members(of: "r") == ["s1"])
        #expect(registry.rooms(of: "s1") == ["r"])
        #expect(registry.socketCount == 1)
    }

    @Test func rejoiningADeletedRoomCreatesItAgain() {
        var registry = RoomRegistry()
        registry.join("s1", room: "r")
        registry.leave("s1", room: "r")
        #expect(registry.join("s2", room: "r") == .roomCreated("r"))
    }

    @Test func leaveAllDeletesOnlyTheRoomsThatBecomeEmpty() {
        var registry = Self.populated()
        let changes = registry.leaveAll("s2")
        #expect(changes.count == 1)
        #expect(Set(changes) == [.roomDeleted("s2")])
        #expect(registry.rooms(of: "s2").isEmpty)
        #expect(registry.members(of: "a") == ["s1"])
        #expect(registry.members(of: "b") == ["s3"])
        #expect(registry.socketCount == 3)

        let more = registry.leaveAll("s4")
        #expect(more.count == 2)
        #expect(Set(more) == [.roomDeleted("s4"), .roomDeleted("c")])
        #expect(!registry.hasRoom("c"))
        #expect(Set(registry.allRooms) == ["s1", "s3", "a", "b"])
    }

    @Test func leaveAllOfAnUnknownSocketReturnsNoChanges() {
        var registry = Self.populated()
        #expect(registry.leaveAll("ghost").isEmpty)
        #expect(registry.socketCount == 4)
    }

    @Test func bothDirectionsStayConsistent() {
        let registry = Self.populated()
        #expect(registry.rooms(of: "s2") == ["s2", "a", "b"])
        #expect(registry.rooms(of: "s4") == ["s4", "c"])
        #expect(registry.rooms(of: "ghost").isEmpty)
        #expect(registry.members(of: "a") == ["s1", "s2"])
        #expect(registry.members(of: "b") == ["s2", "s3"])
        #expect(Set(registry.allRooms) == ["s1", "s2", "s3", "s4", "a", "b", "c"])
        #expect(registry.socketCount == 4)
    }

    // MARK: recipients

    static let recipientVectors: [(options: BroadcastOptions, recipients: Set<SocketID>)] = [
        (BroadcastOptions(), ["s1", "s2", "s3", "s4"]),
        (BroadcastOptions(except: ["s1"]), ["s2", "s3", "s4"]),
        (BroadcastOptions(except: ["a"]), ["s3", "s4"]),
        (BroadcastOptions(except: ["a", "b"]), ["s4"]),
        (BroadcastOptions(except: ["nowhere"]), ["s1", "s2", "s3", "s4"]),
        (BroadcastOptions(rooms: ["a"]), ["s1", "s2"]),
        (BroadcastOptions(rooms: ["a"], except: ["s2"]), ["s1"]),
        (BroadcastOptions(rooms: ["a"], except: ["b"]), ["s1"]),
        (BroadcastOptions(rooms: ["a"], except: ["a"]), []),
        (BroadcastOptions(rooms: ["a", "b"]), ["s1", "s2", "s3"]),
        (BroadcastOptions(rooms: ["a", "b", "s2", "c"]), ["s1", "s2", "s3", "s4"]),
        (BroadcastOptions(rooms: ["a", "b"], except: ["s1"]), ["s2", "s3"]),
        (BroadcastOptions(rooms: ["a", "b"], except: ["c", "a"]), ["s3"]),
        (BroadcastOptions(rooms: ["s3"]), ["s3"]),
        (BroadcastOptions(rooms: ["nowhere"]), []),
        (BroadcastOptions(rooms: ["nowhere", "c"]), ["s4"]),
    ]

    @Test("recipients", arguments: recipientVectors)
    func recipientsAreTheSocketsInTheRoomsMinusExcept(
        _ vector: (options: BroadcastOptions, recipients: Set<SocketID>)
    ) {
        let recipients = Self.populated().recipients(of: vector.options)
        #expect(Set(recipients) == vector.recipients)
        #expect(recipients.count == vector.recipients.count, "a socket was listed twice: \(recipients)")
    }

    @Test func aSocketInManyOfTheRoomsIsListedOnce() {
        var registry = RoomRegistry()
        let rooms = (0..<20).map { "room\($0)" }
        for room in rooms {
            registry.join("everywhere", room: room)
            registry.join("only-\(room)", room: room)
        }
        let recipients = registry.recipients(of: BroadcastOptions(rooms: rooms))
        #expect(recipients.count == 21)
        #expect(recipients.filter { $0 == "everywhere" }.count == 1)
        #expect(Set(recipients) == Set(["everywhere"] + rooms.map { "only-\($0)" }))
    }

    @Test func localSocketsInRooms() {
        let registry = Self.populated()
        #expect(registry.localSockets(in: []) == ["s1", "s2", "s3", "s4"])
        #expect(registry.localSockets(in: ["a"]) == ["s1", "s2"])
        #expect(registry.localSockets(in: ["a", "c"]) == ["s1", "s2", "s4"])
        #expect(registry.localSockets(in: ["nowhere"]).isEmpty)
    }

    @Test func anEmptyRegistryHasNoRecipients() {
        let registry = RoomRegistry()
        #expect(registry.recipients(of: BroadcastOptions()).isEmpty)
        #expect(registry.recipients(of: BroadcastOptions(rooms: ["a", "b"])).isEmpty)
        #expect(registry.localSockets(in: []).isEmpty)
        #expect(registry.socketCount == 0)
    }
}
