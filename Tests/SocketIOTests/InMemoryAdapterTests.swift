import Synchronization
import Testing

@testable import SocketIO

@Suite("InMemoryAdapter")
struct InMemoryAdapterTests {
    let delivery = RecordingDelivery()
    let adapter: InMemoryAdapter

    init() {
        adapter = InMemoryAdapter(delivery: delivery)
        // Sockets s1…s4 in their own rooms; s1 and s2 in "a", s2 and s3 in "b".
        for socket in ["s1", "s2", "s3", "s4"] { adapter.join(socket, rooms: [socket]) }
        adapter.join("s1", rooms: ["a"])
        adapter.join("s2", rooms: ["a", "b"])
        adapter.join("s3", rooms: ["b"])
    }

    let hello = BroadcastPacket(event: "hello", "world", 1)

    /// The single delivery made, with its sockets sorted.
    func onlyDelivery() -> (packet: BroadcastPacket, sockets: [SocketID])? {
        let deliveries = delivery.deliveries
        #expect(deliveries.count == 1, "expected exactly one delivery, got \(deliveries)")
        return deliveries.first.map { ($0.packet, $0.sockets.sorted()) }
    }

    @Test func broadcastToAllReachesEveryLocalSocketOnce() {
        adapter.broadcast(hello, options: BroadcastOptions())
        let sent = onlyDelivery()
        #expect(sent?.sockets == ["s1", "s2", "s3", "s4"])
        #expect(sent?.packet == hello)
        #expect(sent?.packet.data == ["hello", "world", 1])
        #expect(sent?.packet.nsp == "/")
    }

    @Test func broadcastToARoomReachesOnlyItsMembers() {
        adapter.broadcast(hello, options: BroadcastOptions(rooms: ["a"]))
        #expect(onlyDelivery()?.sockets == ["s1", "s2"])
    }

    @Test func broadcastToSeveralRoomsReachesEachSocketOnce() {
        adapter.broadcast(hello, options: BroadcastOptions(rooms: ["a", "b", "s2"]))
        #expect(onlyDelivery()?.sockets == ["s1", "s2", "s3"])
    }

    @Test func exceptRemovesTheSenderAndExcludedRooms() {
        adapter.broadcast(hello, options: BroadcastOptions(rooms: ["a", "b"], except: ["s2"]))
        adapter.broadcast(hello, options: BroadcastOptions(except: ["b"]))
        let deliveries = delivery.deliveries
        #expect(deliveries.count == 2)
        #expect(deliveries.map { $0.sockets.sorted() } == [["s1", "s3"], ["s1", "s4"]])
    }

    @Test func broadcastWithNoRecipientsDeliversNothing() {
        adapter.broadcast(hello, options: BroadcastOptions(rooms: ["nowhere"]))
        adapter.broadcast(hello, options: BroadcastOptions(rooms: ["a"], except: ["a"]))
        #expect(delivery.deliveries.isEmpty)
    }

    @Test func leftSocketsAreNoLongerReached() {
        adapter.leave("s1", room: "a")
        adapter.broadcast(hello, options: BroadcastOptions(rooms: ["a"]))
        #expect(onlyDelivery()?.sockets == ["s2"])
        #expect(adapter.rooms(of: "s1") == ["s1"])
    }

    @Test func leaveAllRemovesTheSocketEverywhere() {
        adapter.leaveAll("s2")
        #expect(adapter.rooms(of: "s2").isEmpty)
        adapter.broadcast(hello, options: BroadcastOptions())
        #expect(onlyDelivery()?.sockets == ["s1", "s3", "s4"])
    }

    @Test func roomsAndLocalSocketsReflectMembership() {
        #expect(adapter.rooms(of: "s2") == ["s2", "a", "b"])
        #expect(adapter.rooms(of: "ghost").isEmpty)
        #expect(adapter.localSockets(in: []) == ["s1", "s2", "s3", "s4"])
        #expect(adapter.localSockets(in: ["b"]) == ["s2", "s3"])
        #expect(adapter.localSockets(in: ["a", "b"]) == ["s1", "s2", "s3"])
    }

    @Test func thePacketIsHandedOverUnchanged() {
        let packet = BroadcastPacket(nsp: "/admin", data: ["offer", .object([("sdp", "v=0"), ("type", "offer")])])
        adapter.broadcast(packet, options: BroadcastOptions(rooms: ["s4"]))
        let sent = onlyDelivery()
        #expect(sent?.packet == packet)
        #expect(sent?.packet.eventName == "offer")
        #expect(sent?.sockets == ["s4"])
    }

    @Test func defaultsServeTheMainNamespaceAndAreReady() async throws {
        #expect(adapter.nsp == "/")
        #expect(InMemoryAdapter(nsp: "/admin", delivery: delivery).nsp == "/admin")
        #expect(adapter.isReady)
        try await adapter.start()
        await adapter.shutdown()
        #expect(adapter.isReady)
    }
}

extension InMemoryAdapterTests {
    /// Records what the adapter hands to the namespace.
    final class RecordingDelivery: LocalDelivery {
        struct Delivery: Sendable, Hashable {
            var packet: BroadcastPacket
            var sockets: [SocketID]
        }

        private let recorded = Mutex<[Delivery]>([])

        var deliveries: [Delivery] { recorded.withLock { $0 } }

        func deliver(_ packet: BroadcastPacket, to sockets: [SocketID]) {
            recorded.withLock { $0.append(Delivery(packet: packet, sockets: sockets)) }
        }

        func disconnect(_ sockets: [SocketID], close: Bool) {
            Issue.record("the in-memory adapter never disconnects sockets by itself")
        }

        func deliverWithAck(
            _ packet: BroadcastPacket,
            to sockets: [SocketID],
            onAck: @escaping @Sendable ([PacketValue]) -> Void
        ) {
            Issue.record("the in-memory adapter never asks for acks by itself")
        }
    }
}
