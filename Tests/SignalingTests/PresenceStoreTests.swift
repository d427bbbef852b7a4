import NIOCore
import NIOEmbedded
import SocketIO
import Testing

@testable import Signaling

@Suite("Presence")
struct PresenceStoreTests {
    static let alice = PresenceEntry(room: "r", socket: "A", personName: "alice")
    static let bob = PresenceEntry(room: "r", socket: "B", personName: "bob")

    @Test func localPresenceJoinsOnceAndForgetsEmptyRooms() {
        var local = LocalPresence()
        let joins = [
            local.join(Self.alice),
            local.join(PresenceEntry(room: "r", socket: "A", personName: "other name")),
            local.join(Self.bob),
            local.join(PresenceEntry(room: "s", socket: "A", personName: "alice")),
        ]
        #expect(joins == [true, false, true, true])
        #expect(Set(local.members(of: "r")) == [Self.alice, Self.bob])  // alice keeps her first name
        #expect(local.count(of: "r") == 2)
        #expect(local.contains(room: "s", socket: "A"))
        #expect(!local.contains(room: "s", socket: "B"))
        #expect(local.all.count == 3)

        let leaves = [
            local.leave(room: "r", socket: "A"),
            local.leave(room: "r", socket: "A"),
            local.leave(room: "nowhere", socket: "A"),
            local.leave(room: "r", socket: "B"),
        ]
        #expect(leaves == [Self.alice, nil, nil, Self.bob])
        #expect(local.count(of: "r") == 0)
        #expect(local.members(of: "r").isEmpty)
        #expect(local.all == [PresenceEntry(room: "s", socket: "A", personName: "alice")])
    }

    @Test func inMemoryStoreAnswersAtOnceOnTheCallersLoop() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let store = InMemoryPresenceStore()
        #expect(store.isReady)

        let first = try store.join(Self.alice, on: loop).wait()
        #expect(first.isNew)
        #expect(first.members == [Self.alice])
        let second = try store.join(Self.bob, on: loop).wait()
        #expect(second.isNew)
        #expect(Set(second.members) == [Self.alice, Self.bob])
        let again = try store.join(Self.bob, on: loop).wait()
        #expect(!again.isNew)
        #expect(again.members.count == 2)

        #expect(try store.count(of: "r", on: loop).wait() == 2)
        #expect(try store.count(of: "empty", on: loop).wait() == 0)
        #expect(try store.isMember("B", ofAnyOf: ["x", "r"], on: loop).wait())
        #expect(try !store.isMember("B", ofAnyOf: ["x"], on: loop).wait())
        #expect(try !store.isMember("B", ofAnyOf: [], on: loop).wait())

        #expect(try store.leave(room: "r", socket: "A", on: loop).wait() == Self.alice)
        #expect(try store.leave(room: "r", socket: "A", on: loop).wait() == nil)
        #expect(try store.members(of: "r", on: loop).wait() == [Self.bob])
    }

    @Test func rosterListsThePeersSortedWithoutTheJoiner() {
        let members = [
            PresenceEntry(room: "r", socket: "C", personName: "carol"),
            PresenceEntry(room: "r", socket: "A", personName: "alice"),
            PresenceEntry(room: "r", socket: "B", personName: "bob"),
        ]
        let roster = SignalingApplication.roster(room: "r", socket: "B", members)
        #expect(
            roster.jsonString
                == #"{"roomName":"r","socketId":"B","peers":[{"socketId":"A","personName":"alice"},{"socketId":"C","personName":"carol"}]}"#
        )
        #expect(SignalingApplication.peer(Self.alice).jsonString == #"{"personName":"alice","roomName":"r","socketId":"A"}"#)
    }
}
