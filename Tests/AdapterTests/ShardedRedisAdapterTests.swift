import Foundation
import Logging
import NIOCore
import NIOPosix
import SocketIO
import Synchronization
import Testing

@testable import Adapter

/// The sharded adapter's receiving side, fed the captured Node.js payloads as if they came from Redis (no
/// connection is made: the adapter is never started).
@Suite("Sharded adapter: what local sockets get from captured Node.js messages")
struct ShardedRedisAdapterTests {
    final class RecordingDelivery: LocalDelivery {
        struct Delivery: Sendable, Hashable {
            var packet: BroadcastPacket
            var sockets: Set<SocketID>
        }

        private let recorded = Mutex<[Delivery]>([])
        var deliveries: [Delivery] { recorded.withLock { $0 } }

        func deliver(_ packet: BroadcastPacket, to sockets: [SocketID]) {
            recorded.withLock { $0.append(Delivery(packet: packet, sockets: Set(sockets))) }
        }

        func disconnect(_ sockets: [SocketID], close: Bool) {}

        func deliverWithAck(_ packet: BroadcastPacket, to sockets: [SocketID], onAck: @escaping @Sendable ([PacketValue]) -> Void) {}
    }

    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    func adapter(_ delivery: RecordingDelivery) throws -> ShardedRedisAdapter {
        ShardedRedisAdapter(
            delivery: delivery,
            cluster: try RedisClusterConfiguration(urls: "redis://127.0.0.1:1"),
            eventLoopGroup: Self.group,
            logger: Logger(label: "test")
        )
    }

    func fixture(_ step: String) throws -> (channel: String, bytes: ByteBuffer, message: ShardedMessage) {
        let (command, bytes) = try #require(try ShardedFixtures.publishes().first { $0.command.step == step })
        return (command.channel, bytes, try ShardedMessage(decoding: bytes))
    }

    @Test func aSignalToASocketIdReachesThatSocketOnly() throws {
        let delivery = RecordingDelivery()
        let adapter = try adapter(delivery)
        let offer = try fixture("offer")
        let target = try #require(try offer.message.broadcast().options.rooms.first)
        adapter.join(target, rooms: [target, "room-1"])
        adapter.join("someoneElseSocketId0", rooms: ["someoneElseSocketId0", "room-1"])
        adapter.received(channel: offer.channel, payload: offer.bytes)
        #expect(delivery.deliveries.count == 1)
        #expect(delivery.deliveries.first?.sockets == [target])
        #expect(delivery.deliveries.first?.packet.eventName == "offer")
        #expect(delivery.deliveries.first?.packet == (try offer.message.broadcast().packet))
    }

    @Test func userLeftSkipsTheLeaverAndTheRoomChannelNeedsLocalMembers() throws {
        let delivery = RecordingDelivery()
        let adapter = try adapter(delivery)
        let left = try fixture("leave-bob")
        #expect(left.channel == "socket.io#/#room-1#")
        adapter.received(channel: left.channel, payload: left.bytes)
        #expect(delivery.deliveries.isEmpty)  // no local member of room-1
        let leaver = try #require(try left.message.broadcast().options.except.first)
        adapter.join("aliceSocketId0000000", rooms: ["aliceSocketId0000000", "room-1"])
        adapter.join(leaver, rooms: [leaver, "room-1"])
        adapter.received(channel: left.channel, payload: left.bytes)
        #expect(delivery.deliveries.map(\.sockets) == [["aliceSocketId0000000"]])
        #expect(delivery.deliveries.first?.packet.eventName == "user_left")
    }

    @Test func ownMessagesOtherNamespacesAndGarbageAreDropped() throws {
        let delivery = RecordingDelivery()
        let adapter = try adapter(delivery)
        adapter.join("s1", rooms: ["s1", "r"])
        let packet = BroadcastPacket(event: "e")
        let own = ShardedMessage.broadcast(uid: adapter.uid, packet: packet, options: BroadcastOptions(rooms: ["r"]))
        adapter.received(channel: "socket.io#/#r#", payload: own.encoded())
        let admin = ShardedMessage.broadcast(
            uid: "0123456789abcdef", packet: BroadcastPacket(nsp: "/admin", event: "e"), options: BroadcastOptions(rooms: ["r"]))
        adapter.received(channel: "socket.io#/admin#r#", payload: admin.encoded())
        adapter.received(channel: "socket.io#/#r#", payload: ByteBuffer(string: "{garbage"))
        #expect(delivery.deliveries.isEmpty)
        let other = ShardedMessage.broadcast(uid: "0123456789abcdef", packet: packet, options: BroadcastOptions(rooms: ["r"]))
        adapter.received(channel: "socket.io#/#r#", payload: other.encoded())
        #expect(delivery.deliveries.map(\.sockets) == [["s1"]])
        #expect(adapter.uid.count == 16 && adapter.uid.allSatisfy { $0.isHexDigit && !$0.isUppercase })
    }

    @Test func socketsJoinFromANodeJSNodeMakesLocalSocketsJoin() throws {
        let delivery = RecordingDelivery()
        let adapter = try adapter(delivery)
        adapter.join("s1", rooms: ["s1", "a"])
        adapter.join("s2", rooms: ["s2", "b"])
        let join = ShardedMessage(
            type: 4,
            data: .object([
                (key: "opts", value: .object([(key: "rooms", value: ["a"]), (key: "except", value: [])])),
                (key: "rooms", value: ["c"]),
            ]),
            uid: "0123456789abcdef", nsp: "/")
        adapter.received(channel: "socket.io#/#", payload: join.encoded())
        #expect(adapter.rooms(of: "s1") == ["s1", "a", "c"])
        #expect(adapter.rooms(of: "s2") == ["s2", "b"])
    }
}
