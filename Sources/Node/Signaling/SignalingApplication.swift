import Adapter
import Logging

/// The seed's signaling events (shared/notes/seed-protocol.md §1), on the namespace `/`.
///
/// | client sends | the server emits |
/// |---|---|
/// | `join_room {roomName, personName}` | `user_joined {personName, roomName, socketId}` to the whole room, joiner included |
/// | `message {roomName, personName, content}` | `message {personName, content, timestamp}` to the whole room |
/// | `leave_room {roomName, personName}` | `user_left {personName, roomName, socketId}` to the others in the room |
/// | `offer` / `answer {…, toPeer}` | the same object, under the same name, to `toPeer` |
/// | `ice_candidate {iccCandidate, fromPeer, toPeer}` | the same object to `toPeer`, as `ice_candidate` and/or `ice-candidate` |
/// | `send-offer` / `send-answer` / `send-icecandidate` | `receive-…` to every other socket (legacy) |
struct SignalingApplication: NamespaceHandler {
    let configuration: SignalingConfiguration

    /// What the server remembers of a socket: the name it joined each room under.
    final class Member {
        var names: [Room: String] = [:]
    }

    func socketConnected(_ socket: Socket) {
        socket.attachment = Member()
        socket.logger.debug("connected")
    }

    func socketDisconnected(_ socket: Socket, reason: String) {
        socket.logger.debug("disconnected", metadata: ["reason": "\(reason)"])
    }

    func socket(_ socket: Socket, event: String, arguments: [PacketValue], ack: Ack?) {
        let payload = arguments.first ?? .null
        switch event {
        case "join_room":
            guard let room = payload["roomName"]?.stringValue else { return refuse(socket, event, ack, "roomName must be a string") }
            let name = payload["personName"] ?? .null
            socket.join(room)
            (socket.attachment as? Member)?.names[room] = name.stringValue ?? ""
            let peer = PacketValue.object([("personName", name), ("roomName", .string(room)), ("socketId", .string(socket.id))])
            socket.namespace.emit("user_joined", [peer], to: [room])
            ack?(.object([("roomName", .string(room)), ("socketId", .string(socket.id)), ("peers", .array([]))]))
        case "message":
            guard let room = payload["roomName"]?.stringValue else { return refuse(socket, event, ack, "roomName must be a string") }
            let message = PacketValue.object([
                ("personName", payload["personName"] ?? .null),
                ("content", payload["content"] ?? .null),
                ("timestamp", .string(HTTPDate.now())),
            ])
            socket.namespace.emit("message", [message], to: [room])
            ack?(.object([("ok", true)]))
        case "leave_room":
            guard let room = payload["roomName"]?.stringValue else { return refuse(socket, event, ack, "roomName must be a string") }
            socket.leave(room)
            (socket.attachment as? Member)?.names[room] = nil
            let peer = PacketValue.object([
                ("personName", payload["personName"] ?? .null), ("roomName", .string(room)), ("socketId", .string(socket.id)),
            ])
            socket.namespace.emit("user_left", [peer], to: [room], except: [socket.id])
            ack?(.object([("ok", true)]))
        case "offer", "answer":
            guard let target = payload["toPeer"]?.stringValue else { return refuse(socket, event, ack, "toPeer must be a string") }
            socket.broadcast(event, [payload], to: [target])
            ack?(.object([("ok", true)]))
        case "ice_candidate", "ice-candidate":
            guard let target = payload["toPeer"]?.stringValue else { return refuse(socket, event, ack, "toPeer must be a string") }
            for name in configuration.iceEventName.names { socket.broadcast(name, [payload], to: [target]) }
            ack?(.object([("ok", true)]))
        case "send-offer", "send-answer", "send-icecandidate":
            socket.broadcast("receive-" + event.dropFirst("send-".count), arguments, to: [])
        default:
            socket.logger.trace("ignored event", metadata: ["event": "\(event)"])
        }
    }

    private func refuse(_ socket: Socket, _ event: String, _ ack: Ack?, _ message: String) {
        let error = PacketValue.object([("event", .string(event)), ("code", "invalid_payload"), ("message", .string(message))])
        if let ack { ack(.object([("error", error)])) } else { socket.emit("error", [error]) }
    }
}
