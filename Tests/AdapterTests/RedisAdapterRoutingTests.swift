import Logging
import NIOCore
import NIOEmbedded
import SocketIO
import Synchronization
import Testing

@testable import Adapter

/// What `RedisAdapter` decides without Redis: which local sockets a broadcast or a message from another node
/// reaches, what it publishes, which requests it acts on. The adapter is never started, so its connections
/// never open a socket; a publish fails at once (no connection) and is counted as dropped, which is how these
/// tests see that something was published.
@Suite("Redis adapter routing")
struct RedisAdapterRoutingTests {
    /// Records what the adapter hands to the namespace.
    final class RecordingDelivery: LocalDelivery {
        struct State {
            var delivered: [(packet: BroadcastPacket, sockets: Set<SocketID>)] = []
            var disconnected: [(sockets: Set<SocketID>, close: Bool)] = []
            var askedForAcks: [(packet: BroadcastPacket, sockets: Set<SocketID>)] = []
        }
        let state = Mutex(State())

        func deliver(_ packet: BroadcastPacket, to sockets: [SocketID]) {
            state.withLock { $0.delivered.append((packet, Set(sockets))) }
        }
        func disconnect(_ sockets: [SocketID], close: Bool) {
            state.withLock { $0.disconnected.append((Set(sockets), close)) }
        }
        func deliverWithAck(_ packet: BroadcastPacket, to sockets: [SocketID], onAck: @escaping @Sendable ([PacketValue]) -> Void) {
            state.withLock { $0.askedForAcks.append((packet, Set(sockets))) }
        }

        var delivered: [(packet: BroadcastPacket, sockets: Set<SocketID>)] { state.withLock { $0.delivered } }
        var disconnected: [(sockets: Set<SocketID>, close: Bool)] { state.withLock { $0.disconnected } }
        var askedForAcks: [(packet: BroadcastPacket, sockets: Set<SocketID>)] { state.withLock { $0.askedForAcks } }
    }

    final class Harness {
        let loop = EmbeddedEventLoop()
        let delivery = RecordingDelivery()
        let adapter: RedisAdapter

        init(mode: RedisAdapterConfiguration.SubscriptionMode = .pattern) throws {
            let configuration = RedisAdapterConfiguration(redis: try RedisConfiguration(url: "redis://127.0.0.1:1"), mode: mode)
            adapter = RedisAdapter(
                delivery: delivery,
                configuration: configuration,
                eventLoopGroup: loop,
                logger: Logger(label: "test")
            )
        }

        deinit { try? loop.syncShutdownGracefully() }

        var channels: ClusterChannels { adapter.channels }

        /// A broadcast as another node publishes it.
        func fromOtherNode(
            _ event: String,
            rooms: [Room] = [],
            except: [Room] = [],
            uid: String = "other-node",
            nsp: String = "/",
            channel: String? = nil
        ) {
            let options = BroadcastOptions(rooms: rooms, except: except)
            var payload = ByteBuffer()
            ClusterBroadcast(uid: uid, packet: BroadcastPacket(nsp: nsp, data: [.string(event)]), options: options)
                .encode(into: &payload)
            adapter.received(channel: channel ?? channels.publishChannel(for: options), payload: payload)
            loop.run()
        }

        /// A request on the request channel, written as JSON and sent as MessagePack.
        func request(_ json: String) throws {
            adapter.received(channel: channels.requestChannel, payload: MessagePackEncoder().encode(try PacketValue.parseJSON(json)))
            loop.run()
        }

        func broadcast(_ event: String, rooms: [Room] = [], except: [Room] = [], local: Bool = false) {
            adapter.broadcast(
                BroadcastPacket(nsp: "/", data: [.string(event)]),
                options: BroadcastOptions(rooms: rooms, except: except, flags: BroadcastFlags(local: local))
            )
            loop.run()
        }
    }

    @Test func broadcastDeliversToLocalMembersAndPublishesOnce() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A", "r"])
        h.adapter.join("B", rooms: ["B", "r"])
        h.adapter.join("C", rooms: ["C"])
        h.broadcast("m", rooms: ["r"], except: ["B"])
        #expect(h.delivery.delivered.map(\.sockets) == [["A"]])
        #expect(h.adapter.statistics.droppedPublishes == 1)  // published (and lost: no Redis here)
    }

    @Test func aSignalToALocalSocketIsNotPublished() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A"])
        h.broadcast("offer", rooms: ["A"])
        #expect(h.delivery.delivered.map(\.sockets) == [["A"]])
        #expect(h.adapter.statistics.droppedPublishes == 0)
        // a socket of another node: published
        h.broadcast("offer", rooms: ["Z"])
        #expect(h.delivery.delivered.count == 1)
        #expect(h.adapter.statistics.droppedPublishes == 1)
    }

    @Test func localBroadcastsAreNotPublished() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A"])
        h.broadcast("m", local: true)
        #expect(h.delivery.delivered.map(\.sockets) == [["A"]])
        #expect(h.adapter.statistics.droppedPublishes == 0)
    }

    @Test func messagesFromOtherNodesReachTheLocalMembers() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A", "r"])
        h.adapter.join("B", rooms: ["B", "r"])
        h.fromOtherNode("m", rooms: ["r"], except: ["A"])
        #expect(h.delivery.delivered.map(\.sockets) == [["B"]])
        #expect(h.delivery.delivered.first?.packet.eventName == "m")
        h.fromOtherNode("everyone")
        #expect(h.delivery.delivered.last?.sockets == ["A", "B"])
        let statistics = h.adapter.statistics
        #expect(statistics.received == 2)
        #expect(statistics.ignored == 0)
    }

    @Test func ownEchoesOtherNamespacesAndRoomsWithoutLocalMembersAreIgnored() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A", "r"])
        h.fromOtherNode("echo", uid: h.adapter.uid)
        h.fromOtherNode("elsewhere", nsp: "/admin")
        h.fromOtherNode("other channel", channel: "socket.io#/admin#")
        h.fromOtherNode("nobody here", rooms: ["empty"])
        #expect(h.delivery.delivered.isEmpty)
        #expect(h.adapter.statistics.received == 4)
        #expect(h.adapter.statistics.ignored == 4)
    }

    @Test func malformedMessagesAreCountedAndDropped() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A"])
        h.adapter.received(channel: h.channels.broadcastChannel, payload: ByteBuffer(bytes: [0xC1]))
        h.adapter.received(channel: h.channels.requestChannel, payload: ByteBuffer(string: "not messagepack"))
        #expect(h.delivery.delivered.isEmpty)
        #expect(h.adapter.statistics.malformed == 2)
        #expect(h.adapter.statistics.requests == 1)
    }

    @Test func socketsJoinAndLeaveRequestsChangeLocalRooms() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A", "r"])
        h.adapter.join("B", rooms: ["B"])
        try h.request(#"{"type":2,"uid":"other","opts":{"rooms":["r"]},"rooms":["s","t"]}"#)
        #expect(h.adapter.rooms(of: "A") == ["A", "r", "s", "t"])
        #expect(h.adapter.rooms(of: "B") == ["B"])
        try h.request(#"{"type":3,"uid":"other","opts":{"rooms":[]},"rooms":["t"]}"#)
        #expect(h.adapter.rooms(of: "A") == ["A", "r", "s"])
    }

    @Test func disconnectRequestsReachTheTargetedSockets() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A", "r"])
        h.adapter.join("B", rooms: ["B"])
        try h.request(#"{"type":4,"uid":"other","opts":{"rooms":["r"]},"close":true}"#)
        #expect(h.delivery.disconnected.map(\.sockets) == [["A"]])
        #expect(h.delivery.disconnected.first?.close == true)
        try h.request(#"{"type":4,"uid":"other","opts":{"rooms":["nobody"]}}"#)
        #expect(h.delivery.disconnected.count == 1)
    }

    @Test func requestsThatNeedAnAnswerAreAnsweredOnlyForOtherNodes() throws {
        let h = try Harness()
        h.adapter.join("A", rooms: ["A"])
        try h.request(#"{"type":1,"uid":"\#(h.adapter.uid)","requestId":"own"}"#)
        try h.request(#"{"type":5,"uid":"\#(h.adapter.uid)","requestId":"own","opts":{}}"#)
        let answered = h.adapter.statistics.droppedPublishes
        #expect(answered == 0)
        try h.request(#"{"type":7,"uid":"other","requestId":"q","packet":{"type":2,"nsp":"/","data":["ping"]},"opts":{}}"#)
        #expect(h.delivery.askedForAcks.map(\.sockets) == [["A"]])
        #expect(h.delivery.askedForAcks.first?.packet.eventName == "ping")
        #expect(h.adapter.statistics.requests == 3)
    }

    @Test func perRoomModeReferenceCountsRoomChannels() throws {
        let h = try Harness(mode: .perRoom)
        h.adapter.join("A", rooms: ["r"])
        h.adapter.join("B", rooms: ["r"])
        #expect(h.adapter.localRoomCount == 1)
        h.adapter.leave("A", room: "r")
        #expect(h.adapter.localRoomCount == 1)
        h.adapter.leaveAll("B")
        #expect(h.adapter.localRoomCount == 0)
        #expect(h.adapter.localSockets(in: []) == [])
    }
}
