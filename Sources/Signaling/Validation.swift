import NIOCore
import SocketIO

/// Checks on the fields clients send, in one place.
///
/// - Lengths are UTF-16 code units, what a browser's `String.length` counts: a limit of 64 holds 64 ASCII
///   characters or 32 emoji, and combining marks count one each (a grapheme count would let `"a" + "\u{301}" × N`
///   pass as one character). SDP and candidate limits are UTF-8 bytes.
/// - A room name never has the shape of a socket id: every socket is alone in the room named after its id, so
///   joining such a room would receive that socket's signals and let one `message` it.
extension SignalingApplication {
    /// A room name from `payload["roomName"]`: a non-empty string of at most `maxRoomNameLength` UTF-16 code units,
    /// without control characters or `#` (the Redis channel separator).
    func roomName(_ payload: PacketValue) throws(SignalingError) -> Room {
        guard payload.isObject else { throw SignalingError(.invalidPayload, "the payload must be an object") }
        guard let room = payload["roomName"]?.stringValue, !room.isEmpty else {
            throw SignalingError(.invalidPayload, "roomName must be a non-empty string")
        }
        guard Self.utf16Length(room, atMost: configuration.maxRoomNameLength) else {
            throw SignalingError(.roomNameTooLong, "roomName is longer than \(configuration.maxRoomNameLength) characters")
        }
        guard !room.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "#" }) else {
            throw SignalingError(.invalidPayload, "roomName must not contain control characters or '#'")
        }
        return room
    }

    /// The room name of a `join_room`: also refused when it has the shape of a socket id.
    func joinableRoomName(_ payload: PacketValue) throws(SignalingError) -> Room {
        let room = try roomName(payload)
        guard !Self.hasSocketIDShape(room) else {
            throw SignalingError(
                .invalidRoomName,
                "roomName must not look like a socket id (20 characters of A-Z a-z 0-9 _ -)"
            )
        }
        return room
    }

    func personName(_ payload: PacketValue) throws(SignalingError) -> String {
        guard let name = payload["personName"]?.stringValue else {
            throw SignalingError(.invalidPayload, "personName must be a string")
        }
        guard Self.utf16Length(name, atMost: configuration.maxPersonNameLength) else {
            throw SignalingError(.personNameTooLong, "personName is longer than \(configuration.maxPersonNameLength) characters")
        }
        return name
    }

    /// Chat content: a string of at most `maxContentLength` UTF-16 code units, or binary of at most that many bytes.
    func checkContent(_ content: PacketValue?) throws(SignalingError) {
        switch content {
        case .string(let text)?:
            guard Self.utf16Length(text, atMost: configuration.maxContentLength) else {
                throw SignalingError(.contentTooLong, "content is longer than \(configuration.maxContentLength) characters")
            }
        case .binary(let bytes)?:
            guard bytes.readableBytes <= configuration.maxContentLength else {
                throw SignalingError(.contentTooLong, "content is longer than \(configuration.maxContentLength) bytes")
            }
        default:
            throw SignalingError(.invalidPayload, "content must be a string")
        }
    }

    /// Whether `text` has at most `limit` UTF-16 code units. Its UTF-8 length bounds the answer both ways
    /// (1 to 3 bytes per code unit), so most strings need no counting; the count stops past the limit.
    static func utf16Length(_ text: String, atMost limit: Int) -> Bool {
        let bytes = text.utf8.count
        if bytes <= limit { return true }
        if bytes > 3 * limit { return false }
        var units = 0
        for scalar in text.unicodeScalars {
            units += scalar.value > 0xFFFF ? 2 : 1
            if units > limit { return false }
        }
        return true
    }

    /// Whether `name` could be a socket id: 20 characters of the URL-safe base64 alphabet, the shape of ours
    /// (``IDGenerator``) and of the Node.js server's. Every such name is refused, live socket or not: that needs no
    /// cluster lookup and has no race with a socket connecting elsewhere.
    static func hasSocketIDShape(_ name: String) -> Bool {
        var count = 0
        for byte in name.utf8 {
            count += 1
            guard count <= 20 else { return false }
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                continue
            default:
                return false
            }
        }
        return count == 20
    }

    /// Whether a relayed signal (`offer`, `answer`, ICE) is addressed to `socket`: its payload's `toPeer` is the
    /// socket's id. The adapter delivers it to the room named `toPeer`, and only that socket may be in it; this
    /// check holds even if another one got in. Cheap: one key lookup and one string comparison.
    static func isAddressed(_ packet: BroadcastPacket, to socket: SocketID) -> Bool {
        guard packet.data.count > 1, let target = packet.data[1]["toPeer"]?.stringValue else { return false }
        return PacketValue.sameKey(target, socket)
    }
}
