import NIOCore
import SocketIO

/// A broadcast as the classic Redis adapter publishes it: the MessagePack array `[uid, packet, opts]`.
///
/// ```
/// [ "AbC123",                                                  uid of the publishing node ("emitter" for the emitter)
///   { "type": 2, "data": ["hello", "world"], "nsp": "/" },     the Socket.IO EVENT
///   { "rooms": ["room1"], "except": [], "flags": {} } ]        who gets it
/// ```
///
/// Encoding writes Node's key order (packet: type, data, nsp; opts: rooms, except, flags) straight into the
/// buffer, so a Swift node publishes the bytes a Node node would. `flags` is `{}`, or `{"volatile":true}` for a
/// volatile broadcast.
///
/// Decoding accepts what Node nodes and the emitter send: opts keys in any order (the emitter writes rooms, flags,
/// except), no `nsp` (meaning `/`), packet type 2 (EVENT) or 5 (BINARY_EVENT), and flags other than `volatile`
/// (`compress`, `timeout`, …), which are dropped.
public struct ClusterBroadcast: Sendable, Hashable {
    /// The publishing node's uid: a node ignores broadcasts carrying its own.
    public var uid: String
    public var packet: BroadcastPacket
    public var options: BroadcastOptions

    public init(uid: String, packet: BroadcastPacket, options: BroadcastOptions) {
        self.uid = uid
        self.packet = packet
        self.options = options
    }

    /// Appends the MessagePack message to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        Self.encode(uid: uid, packet: packet, options: options, into: &buffer)
    }

    /// Appends the MessagePack message for a broadcast to `buffer`, without building an intermediate value.
    public static func encode(
        uid: String,
        packet: BroadcastPacket,
        options: BroadcastOptions,
        into buffer: inout ByteBuffer
    ) {
        let msgpack = MessagePackEncoder()
        msgpack.writeArrayHeader(count: 3, into: &buffer)
        msgpack.writeString(uid, into: &buffer)

        // {"type":2,"data":[…],"nsp":"/"}
        msgpack.writeMapHeader(count: 3, into: &buffer)
        msgpack.writeString("type", into: &buffer)
        msgpack.writeUnsigned(2, into: &buffer)
        msgpack.writeString("data", into: &buffer)
        msgpack.writeArrayHeader(count: packet.data.count, into: &buffer)
        for element in packet.data {
            msgpack.encode(element, into: &buffer)
        }
        msgpack.writeString("nsp", into: &buffer)
        msgpack.writeString(packet.nsp, into: &buffer)

        // {"rooms":[…],"except":[…],"flags":{}}
        msgpack.writeMapHeader(count: 3, into: &buffer)
        msgpack.writeString("rooms", into: &buffer)
        writeStrings(options.rooms, msgpack: msgpack, into: &buffer)
        msgpack.writeString("except", into: &buffer)
        writeStrings(options.except, msgpack: msgpack, into: &buffer)
        msgpack.writeString("flags", into: &buffer)
        if options.flags.volatile {
            msgpack.writeMapHeader(count: 1, into: &buffer)
            msgpack.writeString("volatile", into: &buffer)
            msgpack.writeBool(true, into: &buffer)
        } else {
            msgpack.writeMapHeader(count: 0, into: &buffer)
        }
    }

    /// Decodes a message received on a broadcast channel.
    public init(decoding bytes: ByteBuffer, decoder: MessagePackDecoder = MessagePackDecoder())
        throws(ClusterMessageError)
    {
        let value: PacketValue
        do {
            value = try decoder.decode(bytes)
        } catch {
            throw .messagePack(error)
        }
        try self.init(value)
    }

    /// Whether `bytes` is a broadcast `[uid, …]` whose uid is `uid`, read from its first bytes without decoding
    /// the rest: a node skips its own echoes (in pattern mode, every broadcast it publishes comes back) for the
    /// cost of a comparison. False for anything else, which then goes through the full decode.
    public static func hasUID(_ uid: String, _ bytes: ByteBuffer) -> Bool {
        let view = bytes.readableBytesView
        var index = view.startIndex
        guard index < view.endIndex else { return false }
        let header = view[index]
        // An array of 3 or more elements: fixarray 0x93…0x9f, array 16 (0xdc), array 32 (0xdd).
        switch header {
        case 0x93...0x9f: index += 1
        case 0xdc: index += 3
        case 0xdd: index += 5
        default: return false
        }
        guard index < view.endIndex else { return false }
        let length: Int
        let marker = view[index]
        switch marker {
        case 0xa0...0xbf:
            length = Int(marker & 0x1f)
            index += 1
        case 0xd9:
            guard index + 1 < view.endIndex else { return false }
            length = Int(view[index + 1])
            index += 2
        default:
            return false
        }
        let utf8 = uid.utf8
        guard length == utf8.count, view.endIndex - index >= length else { return false }
        return view[index..<(index + length)].elementsEqual(utf8)
    }

    /// Reads a broadcast from its decoded value `[uid, packet, opts]`.
    public init(_ value: PacketValue) throws(ClusterMessageError) {
        // Node destructures `const [uid, packet, opts] = decode(msg)`: extra elements are ignored.
        guard case .array(let elements) = value, elements.count >= 3 else {
            throw .invalidMessage("a broadcast is an array [uid, packet, opts]")
        }
        guard case .string(let uid) = elements[0] else {
            throw .invalidMessage("the broadcast uid is not a string")
        }
        self.init(uid: uid, packet: try Self.packet(elements[1]), options: try Self.options(elements[2]))
    }

    /// Reads the packet map `{type, data, nsp}` of a broadcast.
    static func packet(_ value: PacketValue) throws(ClusterMessageError) -> BroadcastPacket {
        guard value.isObject else { throw .invalidMessage("the broadcast packet is not a map") }
        guard let type = value["type"]?.numberValue, type == 2 || type == 5 else {
            throw .invalidMessage("the broadcast packet is not an EVENT (type 2 or 5)")
        }
        guard let data = value["data"]?.arrayValue, !data.isEmpty else {
            throw .invalidMessage("the broadcast packet has no data array")
        }
        let nsp: String
        switch value["nsp"] {
        case .none, .null?: nsp = "/"
        case .string(let string)?: nsp = string
        default: throw .invalidMessage("the broadcast namespace is not a string")
        }
        return BroadcastPacket(nsp: nsp, data: data)
    }

    /// Reads the options map `{rooms, except, flags}` (any order; absent lists are empty). Of the flags only
    /// `volatile` has a meaning here.
    static func options(_ value: PacketValue) throws(ClusterMessageError) -> BroadcastOptions {
        guard value.isObject else { throw .invalidMessage("the broadcast options are not a map") }
        var flags = BroadcastFlags()
        switch value["flags"] {
        case .none, .null?: break
        case .object?: flags.volatile = value["flags"]?["volatile"] == .bool(true)
        default: throw .invalidMessage("the broadcast flags are not a map")
        }
        return BroadcastOptions(
            rooms: try rooms(value["rooms"], field: "rooms"),
            except: try rooms(value["except"], field: "except"),
            flags: flags
        )
    }

    /// A list of room names; absent or nil means none. Numbers are accepted as their JavaScript string form,
    /// since Node turns the list into a `Set` whose members are compared with room names as they are.
    static func rooms(_ value: PacketValue?, field: StaticString) throws(ClusterMessageError) -> [Room] {
        switch value {
        case .none, .null?:
            return []
        case .array(let elements)?:
            var rooms: [Room] = []
            rooms.reserveCapacity(elements.count)
            for element in elements {
                switch element {
                case .string(let room): rooms.append(room)
                case .number: rooms.append(MessagePackDecoder.propertyKey(element))
                default: throw .invalidMessage("\(field) holds something other than room names")
                }
            }
            return rooms
        default:
            throw .invalidMessage("\(field) is not an array")
        }
    }

    private static func writeStrings(_ strings: [String], msgpack: MessagePackEncoder, into buffer: inout ByteBuffer) {
        msgpack.writeArrayHeader(count: strings.count, into: &buffer)
        for string in strings {
            msgpack.writeString(string, into: &buffer)
        }
    }
}
