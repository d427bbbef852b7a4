import NIOCore
import SocketIO

/// A message of the sharded Redis adapter (socket.io-adapter's cluster messages): the object
/// `{type, data, uid, nsp}`, in that key order.
///
/// ```
/// {"type":3,"data":{"packet":{"type":2,"data":["hello","world"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},
///  "uid":"19183eaa9eddca93","nsp":"/"}
/// ```
///
/// It travels as compact JSON text, except a message of a type that may carry binary (3, 8, 9, 10, 12) whose data
/// does hold binary: that one is the MessagePack encoding of the same object. Receivers tell them apart by the
/// first byte (`{` is JSON).
public struct ShardedMessage: Sendable, Hashable {
    /// socket.io-adapter's `MessageType`.
    public enum Kind: Int, Sendable {
        case broadcast = 3
        case socketsJoin = 4
        case socketsLeave = 5
        case disconnectSockets = 6
        case fetchSockets = 7
        case fetchSocketsResponse = 8
        case serverSideEmit = 9
        case serverSideEmitResponse = 10
        case broadcastClientCount = 11
        case broadcastAck = 12
    }

    /// The `type` number (kept as read: types this node does not know are ignored, not refused).
    public var type: Int
    public var data: PacketValue
    /// The sender's uid (a node skips its own messages).
    public var uid: String
    public var nsp: String

    public init(type: Int, data: PacketValue, uid: String, nsp: String) {
        self.type = type
        self.data = data
        self.uid = uid
        self.nsp = nsp
    }

    public var kind: Kind? { Kind(rawValue: type) }

    // MARK: Encoding

    /// The message as Node would publish it: compact JSON, or MessagePack when binary must travel.
    public func encoded() -> ByteBuffer {
        let object = PacketValue.object([
            (key: "type", value: .number(Double(type))),
            (key: "data", value: data),
            (key: "uid", value: .string(uid)),
            (key: "nsp", value: .string(nsp)),
        ])
        let mayContainBinary = [3, 8, 9, 10, 12].contains(type)
        if mayContainBinary && data.containsBinary {
            return MessagePackEncoder().encode(object)
        }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(192)
        object.writeJSON(into: &buffer)
        return buffer
    }

    /// A broadcast: `data` = `{packet:{type:2, data}, opts:{rooms, except, flags}}` (and `requestId` last when
    /// acks are expected). `flags` is `{}` or `{"volatile":true}`.
    public static func broadcast(
        uid: String,
        packet: BroadcastPacket,
        options: BroadcastOptions,
        requestId: String? = nil
    ) -> ShardedMessage {
        var data: [(key: String, value: PacketValue)] = [
            (key: "packet", value: .object([(key: "type", value: 2), (key: "data", value: .array(packet.data))])),
            (key: "opts", value: .object([
                (key: "rooms", value: .array(options.rooms.map(PacketValue.string))),
                (key: "except", value: .array(options.except.map(PacketValue.string))),
                (key: "flags", value: .object(options.flags.volatile ? [(key: "volatile", value: .bool(true))] : [])),
            ])),
        ]
        if let requestId { data.append((key: "requestId", value: .string(requestId))) }
        return ShardedMessage(type: Kind.broadcast.rawValue, data: .object(data), uid: uid, nsp: packet.nsp)
    }

    /// A response to a request (`data` holds its `requestId` first).
    public static func response(
        _ kind: Kind,
        requestId: String,
        _ fields: [(key: String, value: PacketValue)],
        uid: String,
        nsp: String
    ) -> ShardedMessage {
        ShardedMessage(
            type: kind.rawValue,
            data: .object([(key: "requestId", value: .string(requestId))] + fields),
            uid: uid,
            nsp: nsp
        )
    }

    /// The sharded message answering `response` (nil for the classic adapter's `allRooms`, which the sharded
    /// protocol does not have).
    public static func response(_ response: ClusterResponse, uid: String, nsp: String) -> ShardedMessage? {
        switch response {
        case .allRooms:
            return nil
        case .fetchSockets(let requestId, let sockets):
            let sockets: [PacketValue] = sockets.map { socket in
                .object([
                    (key: "id", value: .string(socket.id)),
                    (key: "handshake", value: socket.handshake),
                    (key: "rooms", value: .array(socket.rooms.map(PacketValue.string))),
                    (key: "data", value: socket.data),
                ])
            }
            return .response(.fetchSocketsResponse, requestId: requestId, [(key: "sockets", value: .array(sockets))], uid: uid, nsp: nsp)
        case .serverSideEmit(let requestId, let data):
            return .response(.serverSideEmitResponse, requestId: requestId, [(key: "packet", value: data)], uid: uid, nsp: nsp)
        case .broadcastClientCount(let requestId, let clientCount):
            return .response(
                .broadcastClientCount, requestId: requestId, [(key: "clientCount", value: .number(Double(clientCount)))],
                uid: uid, nsp: nsp
            )
        case .broadcastAck(let requestId, let packet):
            return .response(.broadcastAck, requestId: requestId, [(key: "packet", value: packet)], uid: uid, nsp: nsp)
        }
    }

    /// The request this message carries, in the classic adapter's model: nil for a plain broadcast (no
    /// requestId), a fetchSockets without requestId, and responses.
    public func request() throws(ClusterMessageError) -> ClusterRequest? {
        switch kind {
        case .broadcast:
            let (packet, options, requestId) = try broadcast()
            guard let requestId else { return nil }
            return .broadcastWithAck(uid: uid, requestId: requestId, packet: packet, options: options)
        case .socketsJoin:
            return .socketsJoin(uid: uid, options: try requestOptions(), rooms: try ClusterBroadcast.rooms(data["rooms"], field: "rooms"))
        case .socketsLeave:
            return .socketsLeave(uid: uid, options: try requestOptions(), rooms: try ClusterBroadcast.rooms(data["rooms"], field: "rooms"))
        case .disconnectSockets:
            return .disconnectSockets(uid: uid, options: try requestOptions(), close: data["close"] == .bool(true))
        case .fetchSockets:
            guard let requestId else { return nil }
            return .fetchSockets(uid: uid, requestId: requestId, options: try requestOptions())
        case .serverSideEmit:
            return .serverSideEmit(uid: uid, requestId: requestId, data: [])
        case .fetchSocketsResponse, .serverSideEmitResponse, .broadcastClientCount, .broadcastAck, nil:
            return nil
        }
    }

    // MARK: Decoding

    /// Reads a message received on a shard channel.
    public init(decoding bytes: ByteBuffer, decoder: MessagePackDecoder = MessagePackDecoder())
        throws(ClusterMessageError)
    {
        let value: PacketValue
        if bytes.readableBytesView.first == UInt8(ascii: "{") {
            do { value = try PacketValue.parseJSON(bytes) } catch { throw .json(error) }
        } else {
            do { value = try decoder.decode(bytes) } catch { throw .messagePack(error) }
        }
        guard value.isObject else { throw .invalidMessage("a sharded adapter message is an object") }
        guard let type = value["type"]?.numberValue, type == type.rounded(), type >= 0, type < 1000 else {
            throw .invalidMessage("the message type is not a number")
        }
        guard case .string(let uid)? = value["uid"] else { throw .invalidMessage("the message has no uid") }
        // 8.2.x messages had no nsp and 8.3 nodes drop them; so do we.
        guard case .string(let nsp)? = value["nsp"] else { throw .invalidMessage("the message has no nsp") }
        self.init(type: Int(type), data: value["data"] ?? .null, uid: uid, nsp: nsp)
    }

    /// The broadcast this message carries (type 3): its packet (in the message's namespace), its options and its
    /// requestId when the sender expects acks.
    public func broadcast() throws(ClusterMessageError) -> (packet: BroadcastPacket, options: BroadcastOptions, requestId: String?) {
        guard kind == .broadcast, data.isObject else { throw .invalidMessage("not a broadcast") }
        guard let packetValue = data["packet"] else { throw .invalidMessage("the broadcast has no packet") }
        var packet = try ClusterBroadcast.packet(packetValue)
        packet.nsp = nsp
        guard let opts = data["opts"] else { throw .invalidMessage("the broadcast has no opts") }
        let options = try ClusterBroadcast.options(opts)
        return (packet, options, data["requestId"]?.stringValue)
    }

    /// `data.opts` of a request (sockets join/leave, disconnect, fetch).
    public func requestOptions() throws(ClusterMessageError) -> BroadcastOptions {
        guard let opts = data["opts"] else { throw .invalidMessage("the request has no opts") }
        return try ClusterBroadcast.options(opts)
    }

    /// `data.requestId`, when there is one.
    public var requestId: String? { data["requestId"]?.stringValue }
}
