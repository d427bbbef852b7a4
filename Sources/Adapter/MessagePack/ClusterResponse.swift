import NIOCore
import SocketIO

/// An answer to a ``ClusterRequest``, published on the response channel (`socket.io-response#<nsp>#`). Responses
/// carry no uid: the requester matches them by requestId.
///
/// Each case is written exactly as a Node node writes it: compact JSON with Node's key order, except the
/// per-client acknowledgement of a broadcast (type 9), which is MessagePack because it may carry binary.
public enum ClusterResponse: Sendable, Hashable {
    /// The answer to ``ClusterRequest/allRooms(uid:requestId:)``: `{"requestId","rooms"}`, every room of the
    /// namespace on this node, socket-id rooms included.
    case allRooms(requestId: String, rooms: [Room])
    /// The answer to ``ClusterRequest/fetchSockets(uid:requestId:options:)``: `{"requestId","sockets"}`.
    case fetchSockets(requestId: String, sockets: [Socket])
    /// The answer to ``ClusterRequest/serverSideEmit(uid:requestId:data:)`` when it has a requestId:
    /// `{"type":6,"requestId","data"}`, `data` being the first argument the listener's callback was given.
    case serverSideEmit(requestId: String, data: PacketValue)
    /// The first answer to ``ClusterRequest/broadcastWithAck(uid:requestId:packet:options:)``:
    /// `{"type":8,"requestId","clientCount"}`, the number of local sockets the packet went to (0 included).
    case broadcastClientCount(requestId: String, clientCount: Int)
    /// One per client acknowledgement of a broadcast with acks, in MessagePack: `{type: 9, requestId, packet}`,
    /// `packet` being the client's first ack argument.
    case broadcastAck(requestId: String, packet: PacketValue)

    /// A socket as fetchSockets describes it to another node: `{"id","handshake","rooms","data"}`.
    public struct Socket: Sendable, Hashable {
        public var id: SocketID
        /// Node's shape: headers, time, address, xdomain, secure, issued, url, query, auth.
        public var handshake: PacketValue
        /// The socket's rooms, its own id first.
        public var rooms: [Room]
        /// `socket.data`, `{}` unless the application set something.
        public var data: PacketValue

        public init(id: SocketID, handshake: PacketValue, rooms: [Room], data: PacketValue = .object([])) {
            self.id = id
            self.handshake = handshake
            self.rooms = rooms
            self.data = data
        }
    }

    /// True for the one response that is MessagePack rather than JSON.
    public var isMessagePack: Bool {
        if case .broadcastAck = self { return true }
        return false
    }

    /// Appends the response's bytes to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .allRooms(let requestId, let rooms):
            buffer.writeStaticString("{\"requestId\":")
            PacketValue.writeJSONString(requestId, into: &buffer)
            buffer.writeStaticString(",\"rooms\":")
            Self.writeJSONStrings(rooms, into: &buffer)
            buffer.writeStaticString("}")
        case .fetchSockets(let requestId, let sockets):
            buffer.writeStaticString("{\"requestId\":")
            PacketValue.writeJSONString(requestId, into: &buffer)
            buffer.writeStaticString(",\"sockets\":[")
            for (index, socket) in sockets.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                buffer.writeStaticString("{\"id\":")
                PacketValue.writeJSONString(socket.id, into: &buffer)
                buffer.writeStaticString(",\"handshake\":")
                socket.handshake.writeJSON(into: &buffer)
                buffer.writeStaticString(",\"rooms\":")
                Self.writeJSONStrings(socket.rooms, into: &buffer)
                buffer.writeStaticString(",\"data\":")
                socket.data.writeJSON(into: &buffer)
                buffer.writeStaticString("}")
            }
            buffer.writeStaticString("]}")
        case .serverSideEmit(let requestId, let data):
            buffer.writeStaticString("{\"type\":6,\"requestId\":")
            PacketValue.writeJSONString(requestId, into: &buffer)
            buffer.writeStaticString(",\"data\":")
            data.writeJSON(into: &buffer)
            buffer.writeStaticString("}")
        case .broadcastClientCount(let requestId, let clientCount):
            buffer.writeStaticString("{\"type\":8,\"requestId\":")
            PacketValue.writeJSONString(requestId, into: &buffer)
            buffer.writeStaticString(",\"clientCount\":")
            buffer.writeString(String(clientCount))
            buffer.writeStaticString("}")
        case .broadcastAck(let requestId, let packet):
            let msgpack = MessagePackEncoder()
            msgpack.writeMapHeader(count: 3, into: &buffer)
            msgpack.writeString("type", into: &buffer)
            msgpack.writeUnsigned(9, into: &buffer)
            msgpack.writeString("requestId", into: &buffer)
            msgpack.writeString(requestId, into: &buffer)
            msgpack.writeString("packet", into: &buffer)
            msgpack.encode(packet, into: &buffer)
        }
    }

    /// The response's bytes in a new buffer.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(into: &buffer)
        return buffer
    }

    private static func writeJSONStrings(_ strings: [String], into buffer: inout ByteBuffer) {
        buffer.writeStaticString("[")
        for (index, string) in strings.enumerated() {
            if index > 0 { buffer.writeStaticString(",") }
            PacketValue.writeJSONString(string, into: &buffer)
        }
        buffer.writeStaticString("]")
    }
}
