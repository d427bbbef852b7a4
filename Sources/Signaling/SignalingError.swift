import SocketIO

/// A refused event: sent back as the ack's answer when the client asked for one, otherwise as an `error` event,
/// both as `{event, code, message}`.
struct SignalingError: Error, Hashable {
    enum Code: String, CaseIterable {
        /// A field is missing or has the wrong type.
        case invalidPayload = "invalid_payload"
        case roomNameTooLong = "room_name_too_long"
        case personNameTooLong = "person_name_too_long"
        case contentTooLong = "content_too_long"
        case sdpTooLong = "sdp_too_long"
        case candidateTooLong = "candidate_too_long"
        /// `message` or `leave_room` for a room the socket has not joined.
        case notInRoom = "not_in_room"
        /// A signal whose target shares no room with the sender.
        case notInSameRoom = "not_in_same_room"
        /// More events than the socket's token bucket allows.
        case rateLimited = "rate_limited"
        /// `join_room` beyond the rooms-per-socket limit.
        case tooManyRooms = "too_many_rooms"
        /// `join_room` of a room at its member limit.
        case roomFull = "room_full"
        /// `join_room` of a room the client's token does not allow.
        case forbiddenRoom = "forbidden_room"
        /// Too many of the socket's events wait behind a Redis round trip (count or bytes).
        case overloaded = "overloaded"
        /// `join_room` with a room name that has the shape of a socket id.
        case invalidRoomName = "invalid_room_name"
        /// `join_room` of a room the socket is already in.
        case alreadyInRoom = "already_in_room"
    }

    var code: Code
    var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    func payload(event: String) -> PacketValue {
        .object([("event", .string(event)), ("code", .string(code.rawValue)), ("message", .string(message))])
    }
}
