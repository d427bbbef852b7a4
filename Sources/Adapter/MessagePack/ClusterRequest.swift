import NIOCore
import SocketIO

/// A request received on the request channel (`socket.io-request#<nsp>#`) of the classic Redis adapter.
///
/// Node nodes and the emitter send these as compact JSON, except the broadcast with acknowledgements (type 7),
/// which is a MessagePack map because its packet may carry binary. Like Node, the decoder looks at the first
/// byte: `{` is JSON, anything else MessagePack.
///
/// A node subscribed to the request channel is counted by `PUBSUB NUMSUB`, so it must answer ``allRooms``,
/// ``fetchSockets``, ``serverSideEmit`` with a requestId and ``broadcastWithAck`` (see ``ClusterResponse``),
/// even when it has nothing to report, or the requesting Node node waits until its timeout.
public enum ClusterRequest: Sendable, Hashable {
    /// Type 1: answer with the rooms of this namespace (``ClusterResponse/allRooms(requestId:rooms:)``).
    case allRooms(uid: String?, requestId: String)
    /// Type 2: make the local sockets matching `options` join `rooms`. No answer. The emitter sends no uid, and
    /// the origin applies its own request when it comes back.
    case socketsJoin(uid: String?, options: BroadcastOptions, rooms: [Room])
    /// Type 3: make the local sockets matching `options` leave `rooms`. No answer.
    case socketsLeave(uid: String?, options: BroadcastOptions, rooms: [Room])
    /// Type 4: disconnect the local sockets matching `options`; with `close`, close their whole connection.
    case disconnectSockets(uid: String?, options: BroadcastOptions, close: Bool)
    /// Type 5: describe the local sockets matching `options` (``ClusterResponse/fetchSockets(requestId:sockets:)``).
    /// Ignore it when `uid` is your own.
    case fetchSockets(uid: String?, requestId: String, options: BroadcastOptions)
    /// Type 6: fire the namespace's server-side listeners with `data` (event name first). With a requestId the
    /// sender wants one answer (``ClusterResponse/serverSideEmit(requestId:data:)``). Ignore it when `uid` is your own.
    case serverSideEmit(uid: String?, requestId: String?, data: [PacketValue])
    /// Type 7: deliver `packet` to the local sockets matching `options` with an ack id, answer the number of
    /// sockets at once (``ClusterResponse/broadcastClientCount(requestId:clientCount:)``) and then each
    /// client's ack (``ClusterResponse/broadcastAck(requestId:packet:)``). Ignore it when `uid` is your own.
    case broadcastWithAck(uid: String?, requestId: String, packet: BroadcastPacket, options: BroadcastOptions)

    /// The uid of the node that sent the request; nil for the emitter's socketsJoin, socketsLeave and
    /// disconnectSockets.
    public var uid: String? {
        switch self {
        case .allRooms(let uid, _), .socketsJoin(let uid, _, _), .socketsLeave(let uid, _, _),
            .disconnectSockets(let uid, _, _), .fetchSockets(let uid, _, _), .serverSideEmit(let uid, _, _),
            .broadcastWithAck(let uid, _, _, _):
            return uid
        }
    }

    /// Decodes a message received on the request channel.
    public init(decoding bytes: ByteBuffer, decoder: MessagePackDecoder = MessagePackDecoder())
        throws(ClusterMessageError)
    {
        let value: PacketValue
        if bytes.readableBytesView.first == UInt8(ascii: "{") {
            do {
                value = try PacketValue.parseJSON(bytes)
            } catch {
                throw .json(error)
            }
        } else {
            do {
                value = try decoder.decode(bytes)
            } catch {
                throw .messagePack(error)
            }
        }
        try self.init(value)
    }

    /// Reads a request from its decoded value.
    public init(_ value: PacketValue) throws(ClusterMessageError) {
        guard value.isObject else { throw .invalidMessage("a request is a map") }
        guard let typeNumber = value["type"]?.numberValue, let type = Int(exactly: typeNumber) else {
            throw .invalidMessage("the request type is not an integer")
        }
        let uid: String?
        switch value["uid"] {
        case .none, .null?: uid = nil
        case .string(let string)?: uid = string
        default: throw .invalidMessage("the request uid is not a string")
        }

        switch type {
        case 1:
            self = .allRooms(uid: uid, requestId: try Self.requestId(value))
        case 2, 3:
            let options = try Self.options(value)
            let rooms = try ClusterBroadcast.rooms(value["rooms"], field: "rooms")
            self =
                type == 2
                ? .socketsJoin(uid: uid, options: options, rooms: rooms)
                : .socketsLeave(uid: uid, options: options, rooms: rooms)
        case 4:
            let close: Bool
            switch value["close"] {
            case .none, .null?: close = false
            case .bool(let bool)?: close = bool
            default: throw .invalidMessage("close is not a boolean")
            }
            self = .disconnectSockets(uid: uid, options: try Self.options(value), close: close)
        case 5:
            self = .fetchSockets(uid: uid, requestId: try Self.requestId(value), options: try Self.options(value))
        case 6:
            guard let data = value["data"]?.arrayValue, !data.isEmpty else {
                throw .invalidMessage("serverSideEmit has no data array")
            }
            let requestId: String?
            switch value["requestId"] {
            case .none, .null?: requestId = nil
            case .string(let string)?: requestId = string
            default: throw .invalidMessage("the requestId is not a string")
            }
            self = .serverSideEmit(uid: uid, requestId: requestId, data: data)
        case 7:
            guard let packet = value["packet"] else { throw .invalidMessage("the broadcast has no packet") }
            self = .broadcastWithAck(
                uid: uid,
                requestId: try Self.requestId(value),
                packet: try ClusterBroadcast.packet(packet),
                options: try Self.options(value)
            )
        default:
            throw .unsupportedRequestType(type)
        }
    }

    private static func requestId(_ value: PacketValue) throws(ClusterMessageError) -> String {
        guard let requestId = value["requestId"]?.stringValue else {
            throw .invalidMessage("the request has no requestId")
        }
        return requestId
    }

    private static func options(_ value: PacketValue) throws(ClusterMessageError) -> BroadcastOptions {
        guard let options = value["opts"] else { throw .invalidMessage("the request has no opts") }
        return try ClusterBroadcast.options(options)
    }
}
