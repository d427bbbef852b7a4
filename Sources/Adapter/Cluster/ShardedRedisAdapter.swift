import Logging
import NIOCore
import SocketIO
import Synchronization

/// The cluster adapter on Redis Cluster's sharded pub/sub, wire-compatible with Node's `createShardedAdapter` of
/// `@socket.io/redis-adapter` 8.3.0 in its default `dynamic` subscription mode (see ``ShardedChannels`` and
/// ``ShardedMessage``; the captured bytes are in `Tests/AdapterTests/Fixtures/sharded/`).
///
/// - Subscriptions: the namespace channel and this node's response channel from the start, plus one channel per
///   room with local members (not socket-id rooms), SSUBSCRIBEd when the room is created here and SUNSUBSCRIBEd
///   when it empties. ``RedisClusterClient`` puts each on the master of its slot and moves it when the slot does.
/// - A broadcast is delivered to local sockets first, then SPUBLISHed once, as JSON (MessagePack when it holds
///   binary), to the room's channel for exactly one public room, else to the namespace channel.
/// - A message from Redis is dropped when it carries this node's uid or another namespace; broadcasts go to the
///   local recipients; requests of Node.js nodes (sockets join/leave, disconnect, fetch, server-side emit with ack,
///   broadcast with ack) are answered on the requester's response channel, as the classic adapter answers them.
///
/// Nothing here blocks: room membership is behind a mutex that guards only the registry, Redis I/O runs on the
/// cluster client's event loop.
public final class ShardedRedisAdapter: ClusterRequestAnswering {
    public let nsp: String
    /// 16 lowercase hex characters, as Node's cluster adapter uid.
    public let uid: String
    public let channels: ShardedChannels
    public let registry = LockedRoomRegistry()
    let delivery: any LocalDelivery
    private let cluster: RedisClusterClient
    private let logger: Logger
    private let tallies: RedisAdapterMetrics

    public init(
        nsp: String = "/",
        delivery: any LocalDelivery,
        cluster configuration: RedisClusterConfiguration,
        prefix: String = ClusterChannels.defaultPrefix,
        privateRoomChannels: Bool = false,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        metrics: RedisAdapterMetrics = RedisAdapterMetrics()
    ) {
        self.tallies = metrics
        self.nsp = nsp
        self.uid = Self.randomUID()
        self.channels = ShardedChannels(prefix: prefix, nsp: nsp, privateRoomChannels: privateRoomChannels)
        self.delivery = delivery
        var adapterLogger = logger
        adapterLogger[metadataKey: "adapter.uid"] = "\(uid)"
        self.logger = adapterLogger
        let handlerBox = WeakReference<ShardedRedisAdapter>()
        self.cluster = RedisClusterClient(
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            logger: adapterLogger,
            onMessage: { channel, payload in handlerBox.object?.received(channel: channel, payload: payload) },
            metrics: metrics
        )
        handlerBox.set(self)
    }

    /// 8 random bytes in lowercase hex (Node: `randomBytes(8).toString("hex")`).
    static func randomUID() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    // MARK: lifecycle

    public func start() async throws {
        cluster.ssubscribe([channels.namespaceChannel, channels.responseChannel(uid: uid)])
        cluster.start()
    }

    public func shutdown() async {
        _ = try? await cluster.close().get()
    }

    public var isReady: Bool { cluster.isReady }

    public var readinessDetails: [String] {
        let states = cluster.shardStates
        guard states.mapLoaded else { return ["redis cluster: slot map not read yet"] }
        return ["redis cluster: \(states.shards.count) masters, slot map \(states.complete ? "complete" : "incomplete")"]
            + states.shards.map(\.description)
    }

    /// Counts lost master connections: traffic may have been missed at each (see ``Adapter/continuity``).
    public var continuity: UInt64 { tallies.connectionLosses.load(ordering: .relaxed) }


    // MARK: membership

    /// Dynamic mode: a room's channel while the room has local members (the client reference-counts, so
    /// join/leave races net out). Socket-id rooms have none.
    public func roomsChanged(_ changes: [RoomRegistry.Change]) {
        var subscribe: [String] = []
        var unsubscribe: [String] = []
        for change in changes {
            switch change {
            case .roomCreated(let room) where channels.hasOwnChannel(room):
                subscribe.append(channels.roomChannel(room))
            case .roomDeleted(let room) where channels.hasOwnChannel(room):
                unsubscribe.append(channels.roomChannel(room))
            default:
                break
            }
        }
        if !subscribe.isEmpty { cluster.ssubscribe(subscribe) }
        if !unsubscribe.isEmpty { cluster.sunsubscribe(unsubscribe) }
    }

    // MARK: broadcast

    public func broadcast(_ packet: BroadcastPacket, options: BroadcastOptions) {
        let (recipients, targetIsLocalSocket) = registry.withLock { registry in
            let recipients = registry.recipients(of: options)
            let room = options.rooms.count == 1 ? options.rooms[0] : nil
            let local = room.map { registry.rooms(of: $0).contains($0) } ?? false
            return (recipients, local)
        }
        if !recipients.isEmpty { delivery.deliver(packet, to: recipients) }
        guard !options.flags.local, !targetIsLocalSocket else { return }
        let message = ShardedMessage.broadcast(uid: uid, packet: packet, options: options)
        publish(message, on: channels.publishChannel(for: options))
    }

    private func publish(_ message: ShardedMessage, on channel: String) {
        let tallies = self.tallies
        let logger = self.logger
        cluster.spublish(channel, message: message.encoded()).whenComplete { result in
            tallies.countPublish(result, channel: channel, command: "spublish", logger: logger)
        }
    }

    // MARK: receiving

    /// A message from one of the shard subscribers (on the cluster client's loop).
    func received(channel: String, payload: ByteBuffer) {
        let message: ShardedMessage
        do {
            message = try ShardedMessage(decoding: payload)
        } catch {
            tallies.malformed.increment()
            logger.warning("malformed message from redis", metadata: ["redis.channel": "\(channel)", "error": "\(error)"])
            return
        }
        guard message.uid != uid, message.nsp == nsp else {
            tallies.ignored.increment()
            return
        }
        // Responses to requests: this node makes none.
        guard channel != channels.responseChannel(uid: uid) else { return }
        do {
            try handle(message)
        } catch {
            tallies.malformed.increment()
            logger.debug("unreadable message from redis", metadata: ["redis.channel": "\(channel)", "error": "\(error)"])
        }
    }

    private func handle(_ message: ShardedMessage) throws(ClusterMessageError) {
        switch message.kind {
        case .broadcast:
            let (packet, options, requestId) = try message.broadcast()
            guard let requestId else {
                let recipients = registry.withLock { $0.recipients(of: options) }
                tallies.received.increment()
                if recipients.isEmpty {
                    tallies.ignored.increment()
                } else {
                    delivery.deliver(packet, to: recipients)
                }
                return
            }
            tallies.requests.increment()
            answer(.broadcastWithAck(uid: message.uid, requestId: requestId, packet: packet, options: options))
        case .socketsJoin, .socketsLeave, .disconnectSockets, .fetchSockets, .serverSideEmit:
            tallies.requests.increment()
            if let request = try message.request() { answer(request) }
        case .fetchSocketsResponse, .serverSideEmitResponse, .broadcastClientCount, .broadcastAck, nil:
            tallies.ignored.increment()
        }
    }

    /// Responses go to the requester's own response channel.
    func respond(_ response: ClusterResponse, to requester: String?) {
        guard let requester, let message = ShardedMessage.response(response, uid: uid, nsp: nsp) else { return }
        let channel = channels.responseChannel(uid: requester)
        let logger = self.logger
        cluster.spublish(channel, message: message.encoded()).whenFailure { error in
            logger.warning("could not answer a cluster request", metadata: ["error": "\(error)"])
        }
    }
}
