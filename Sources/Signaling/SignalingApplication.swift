import Foundation
import Logging
import NIOCore
import SocketIO

/// The seed's signaling events (shared/notes/seed-protocol.md §1) on the namespace `/`, with what the seed lacked:
/// presence across the cluster, server-set identity, validation and limits.
///
/// | client sends | the server emits |
/// |---|---|
/// | `join_room {roomName, personName}` | `user_joined {personName, roomName, socketId}` to the whole room, joiner included; the ack (if asked) answers `{roomName, socketId, peers:[{socketId, personName}]}`; a second join of the same room is refused (`already_in_room`), and so is a room name of a socket id's shape (`invalid_room_name`) |
/// | `message {roomName, content}` | `message {personName, content, timestamp}` to the whole room (the name given at join) |
/// | `leave_room {roomName}` | `user_left {personName, roomName, socketId}` to the others in the room |
/// | (disconnect, or the node dies) | `user_left` to the others in each of its rooms |
/// | `offer` / `answer {…, toPeer}` | the same object with `fromPeer` set to the sender's id, to the socket `toPeer` alone, when they share a room |
/// | `ice_candidate {iccCandidate, toPeer}` | the same, as `ice_candidate` and/or `ice-candidate` |
/// | `send-offer` / `send-answer` / `send-icecandidate` | `receive-…` to the others in the sender's rooms (legacy) |
///
/// Events of one socket are handled one after the other, even when one waits for Redis (a join reads the roster),
/// so what a client sends leaves in the order sent.
package struct SignalingApplication: NamespaceHandler {
    let configuration: SignalingConfiguration
    let presence: any PresenceStore

    /// The event names the metrics count under their own label (any other counts as `other`).
    package static let knownEvents: Set<String> = [
        "join_room", "leave_room", "message", "offer", "answer", "ice_candidate", "ice-candidate",
        "send-offer", "send-answer", "send-icecandidate", "user_joined", "user_left", "receive-offer",
        "receive-answer", "receive-icecandidate", "error", "ice_servers",
    ]

    package init(configuration: SignalingConfiguration, presence: any PresenceStore) {
        self.configuration = configuration
        self.presence = presence
    }

    /// What the server remembers of a socket (its `SocketState`): the name it joined each room under, and the
    /// queue that keeps its events in order. (The event budget is the session's: `socket.budget`.)
    package final class Member {
        var names: [Room: String] = [:]
        /// The rooms the client's token allows (its `rooms` claim); nil allows any.
        var allowedRooms: Set<Room>?
        /// When the client's token expires (its `exp`, seconds since 1970): the socket is disconnected then (plus
        /// the leeway), and its TURN credentials expire no later.
        var tokenExpiry: Double?
        /// Disconnects the socket when its token expires.
        var expiryTimer: Scheduled<Void>?
        /// Per room, the peers this client learned from its join roster: a `user_joined` for one of them that
        /// arrives later (a join racing on another node) is not delivered, so the client hears of each peer once.
        var rosterPeers: [Room: Set<SocketID>] = [:]
        /// Peers known to share a room with this socket (from its roster, the `user_joined` it received, or a
        /// check with presence), dropped on their `user_left` and on this socket's `leave_room`: a signal to one of
        /// them needs no Redis round trip.
        var verifiedPeers: Set<SocketID> = []
        /// Rooms whose join is waiting for presence: not saved when the socket is suspended (the join is abandoned
        /// then, and nobody heard of it).
        var pendingJoins: Set<Room> = []
        /// Usually empty; an empty array costs no allocation on an idle socket.
        private var queue: [(operation: () -> EventLoopFuture<Void>?, bytes: Int)] = []
        private var queuedBytes = 0
        private var running = false
        /// Set when the socket is gone: queued events are dropped, new ones refused; only the cleanup runs.
        private(set) var isClosed = false

        init() {}

        /// Runs `operation` after those before it; an operation returns a future when it has to wait.
        /// `bytes` is what the operation keeps alive while it waits in the queue. Refused (false) once the
        /// socket is gone or when the queue is at one of its bounds (the caller answers `overloaded`).
        func enqueue(
            bytes: Int = 0,
            limits: (events: Int, bytes: Int),
            _ operation: @escaping () -> EventLoopFuture<Void>?
        ) -> Bool {
            guard !isClosed else { return false }
            if running {
                guard queue.count < limits.events, queuedBytes + bytes <= limits.bytes else { return false }
            }
            queue.append((operation, bytes))
            queuedBytes += bytes
            drain()
            return true
        }

        /// The socket is gone: what is queued is dropped, and `cleanup` runs once the operation in progress (if
        /// any) is done with Redis.
        func close(cleanup: @escaping () -> EventLoopFuture<Void>?) {
            guard !isClosed else { return }
            isClosed = true
            queue.removeAll()
            queuedBytes = 0
            queue.append((cleanup, 0))
            drain()
        }

        private func drain() {
            guard !running else { return }
            while !queue.isEmpty {
                let next = queue.removeFirst()
                queuedBytes -= next.bytes
                if let future = next.operation() {
                    running = true
                    future.assumeIsolated().whenComplete { _ in
                        self.running = false
                        self.drain()
                    }
                    return
                }
            }
        }
    }

    package func socketWillConnect(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) -> Member {
        let member = Member()
        if let jwt = configuration.jwt {
            guard let token = auth?["token"]?.stringValue ?? socket.handshakeToken else {
                socket.namespace.metrics.error("unauthorized")
                throw ConnectRefusal("Authentication error: a token is required")
            }
            do {
                let verified = try jwt.verify(token, now: configuration.now())
                member.allowedRooms = verified.rooms
                member.tokenExpiry = verified.expiry
            } catch {
                socket.namespace.metrics.error("unauthorized")
                throw ConnectRefusal("Authentication error: \(error)")
            }
        }
        return member
    }

    package func socketConnected(_ socket: Socket, state member: Member) {
        socket.logger.debug(socket.recovered ? "recovered" : "connected")
        if let expiry = member.tokenExpiry {
            member.expiryTimer = Self.disconnect(socket, in: expiry + (configuration.jwt?.leeway ?? 0) - configuration.now())
        }
        // A recovered client has its ICE servers from before (and the events it missed); it hears nothing new.
        if !configuration.iceServers.isEmpty, !socket.recovered {
            socket.emit("ice_servers", [iceServers(for: socket.id, notAfter: member.tokenExpiry)])
        }
    }

    /// The ICE servers for one socket, with TURN credentials dated by the configuration's clock.
    private func iceServers(for socket: SocketID, notAfter: Double?) -> PacketValue {
        configuration.iceServers.iceServers(for: socket, notAfter: notAfter, now: Int(configuration.now().rounded(.down)))
    }

    /// Disconnects `socket` when its token expires, `seconds` from now, on its own event loop.
    private static func disconnect(_ socket: Socket, in seconds: Double) -> Scheduled<Void> {
        let delay = max(0, seconds)
        let nanoseconds = Int64(min(delay, 10 * 365 * 86_400) * 1e9)
        return socket.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(nanoseconds)) { [weak socket] in
            guard let socket, socket.isConnected else { return }
            socket.logger.debug("token expired: disconnecting")
            socket.disconnect()
        }
    }

    package func socketDisconnected(_ socket: Socket, state member: Member, reason: String) {
        socket.logger.debug("disconnected", metadata: ["reason": "\(reason)"])
        member.expiryTimer?.cancel()
        let namespace = socket.namespace
        let id = socket.id
        let eventLoop = socket.eventLoop
        let presence = self.presence
        member.close {
            let rooms = Array(member.names.keys)
            member.names.removeAll()
            guard !rooms.isEmpty else { return nil }
            let leaves = rooms.map { presence.leave(room: $0, socket: id, on: eventLoop) }
            return EventLoopFuture.whenAllSucceed(leaves, on: eventLoop).map { entries in
                for entry in entries.compactMap({ $0 }) {
                    namespace.emit("user_left", [Self.peer(entry)], to: [entry.room], except: [id])
                }
            }
        }
    }

    // MARK: connection state recovery

    /// What a suspended socket keeps: the name it joined each room under, `{"names": {room: name}}`. Its room
    /// memberships and presence entries stay as they are; the token is checked again on restore.
    package func recoveryState(_ socket: Socket, state member: Member) -> PacketValue? {
        .object([("names", .object(member.names.filter { !member.pendingJoins.contains($0.key) }.map { ($0.key, .string($0.value)) }))])
    }

    /// The transport dropped and the socket is suspended: its timer stops and its queued events are dropped,
    /// but nobody hears of it (no `user_left`): presence keeps its entries, the rooms keep it.
    package func socketSuspended(_ socket: Socket, state member: Member) {
        socket.logger.debug("suspended")
        member.expiryTimer?.cancel()
        member.close { nil }
    }

    /// Restores a suspended socket: the token (when JWT is on) is checked as for a connect, and must still allow
    /// every room the socket is in.
    package func socketWillRecover(_ socket: Socket, auth: PacketValue?, saved: PacketValue) throws(ConnectRefusal) -> Member {
        let member = try socketWillConnect(socket, auth: auth)
        guard case .object(let names)? = saved["names"] else { throw ConnectRefusal("invalid saved session") }
        for (room, name) in names {
            guard let name = name.stringValue else { throw ConnectRefusal("invalid saved session") }
            if let allowed = member.allowedRooms, !allowed.contains(room) {
                socket.namespace.metrics.error("unauthorized")
                throw ConnectRefusal("Authentication error: your token does not allow room \(room)")
            }
            member.names[room] = name
        }
        // Restored on another node than the one that held it: its presence entries become this node's.
        for (room, name) in member.names {
            presence.adopt(PresenceEntry(room: room, socket: socket.id, personName: name))
        }
        return member
    }

    /// Restored on another node (recovery across nodes): this node forgets its entries, quietly.
    package func socketTakenOver(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop) {
        guard case .object(let names)? = saved["names"] else { return }
        for (room, _) in names { presence.forget(room: room, socket: socket) }
    }

    /// A suspended socket that did not come back: what a disconnect does, once (presence removes each entry
    /// once, and only the node that held the socket runs this).
    package func suspendedSocketEnded(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop) {
        guard case .object(let names)? = saved["names"] else { return }
        let presence = self.presence
        let leaves = names.map { presence.leave(room: $0.key, socket: socket, on: eventLoop) }
        EventLoopFuture.whenAllSucceed(leaves, on: eventLoop).whenSuccess { entries in
            for entry in entries.compactMap({ $0 }) {
                namespace.emit("user_left", [Self.peer(entry)], to: [entry.room], except: [socket])
            }
        }
    }

    /// Announces `user_left` for the sockets of a node that died (called once cluster-wide).
    package static func nodeLost(_ entries: [PresenceEntry], namespace: Namespace) {
        for entry in entries {
            namespace.emit("user_left", [peer(entry)], to: [entry.room])
        }
    }

    static func peer(_ entry: PresenceEntry) -> PacketValue {
        .object([("personName", .string(entry.personName)), ("roomName", .string(entry.room)), ("socketId", .string(entry.socket))])
    }

    /// Work that finished after its socket disconnected: dropped without an answer.
    struct SocketGone: Error {}

    /// What handling an event gives: the ack's answer now, or later.
    enum Outcome {
        case done(PacketValue)
        case later(EventLoopFuture<PacketValue>)
    }

    static let ok = PacketValue.object([("ok", true)])

    package func socket(_ socket: Socket, state member: Member, event: String, arguments: [PacketValue], ack: Ack?) {
        guard !member.isClosed else { return }
        let payload = arguments.first ?? .null
        let handle: () throws(SignalingError) -> Outcome
        // What an event keeps while it waits behind a Redis round trip: joins, leaves and messages keep only the
        // fields they use (padding an event costs the sender bandwidth, not the server memory); signals keep
        // what they relay, counted against the queue's byte bound.
        var retained = 0
        switch event {
        case "join_room":
            let request = payload.keeping(["roomName", "personName"])
            handle = { () throws(SignalingError) in try joinRoom(socket, member, request, wantsRoster: ack != nil) }
        case "message":
            let request = payload.keeping(["roomName", "content"])
            retained = request.approximateSize
            handle = { () throws(SignalingError) in try message(socket, member, request) }
        case "leave_room":
            let request = payload.keeping(["roomName"])
            handle = { () throws(SignalingError) in try leaveRoom(socket, member, request) }
        case "offer", "answer":
            retained = payload.approximateSize
            handle = { () throws(SignalingError) in
                try relaySignal(socket, member, payload, descriptionKey: event, as: [event])
            }
        case "ice_candidate", "ice-candidate":
            retained = payload.approximateSize
            handle = { () throws(SignalingError) in
                try relaySignal(socket, member, payload, descriptionKey: nil, as: configuration.iceEventName.names)
            }
        case "send-offer", "send-answer", "send-icecandidate":
            retained = arguments.reduce(0) { $0 + $1.approximateSize }
            handle = { () throws(SignalingError) in try legacyBroadcast(socket, member, event: event, arguments: arguments) }
        default:
            socket.logger.trace("ignored event", metadata: ["event": "\(event)"])
            return
        }
        guard socket.budget.take() else {
            let limit = Int(configuration.eventsPerSecond)
            return refuse(socket, event, ack, SignalingError(.rateLimited, "more than \(limit) events per second"))
        }
        let queued = member.enqueue(bytes: retained, limits: (configuration.maxQueuedEvents, configuration.maxQueuedBytes)) {
            do throws(SignalingError) {
                switch try handle() {
                case .done(let answer):
                    ack?.send([answer])
                    return nil
                case .later(let future):
                    return future.assumeIsolated().map { answer in
                        ack?.send([answer])
                    }.recover { error in
                        if let error = error as? SignalingError { refuse(socket, event, ack, error) }
                    }.nonisolated()
                }
            } catch {
                refuse(socket, event, ack, error)
                return nil
            }
        }
        if !queued, !member.isClosed {
            refuse(socket, event, ack, SignalingError(.overloaded, "too many events waiting; slow down"))
        }
    }

    // MARK: events

    package var filteredEvents: Set<String> { ["user_joined", "user_left", "offer", "answer", "ice_candidate", "ice-candidate"] }

    package func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket, state member: Member) -> Bool {
        switch packet.eventName {
        case "user_joined", "user_left": break
        // A signal reaches exactly the socket it names, whoever else is in the room it was sent to.
        default: return Self.isAddressed(packet, to: socket.id)
        }
        guard packet.data.count > 1,
            let room = packet.data[1]["roomName"]?.stringValue, let peer = packet.data[1]["socketId"]?.stringValue,
            peer != socket.id
        else { return true }
        if packet.eventName == "user_left" {
            // Passes, and the peer is forgotten.
            member.verifiedPeers.remove(peer)
            member.rosterPeers[room]?.remove(peer)
            return true
        }
        if member.names[room] != nil { member.verifiedPeers.insert(peer) }
        // A user_joined of a peer the roster already gave is held back.
        return member.rosterPeers[room]?.remove(peer) == nil
    }

    private func joinRoom(
        _ socket: Socket,
        _ member: Member,
        _ payload: PacketValue,
        wantsRoster: Bool
    ) throws(SignalingError) -> Outcome {
        let room = try joinableRoomName(payload)
        let name = try personName(payload)
        if member.names[room] != nil {
            // Already in: refused at once, so a small request cannot cost a roster read (the roster came with the
            // first join, and user_joined / user_left keep it current).
            throw SignalingError(.alreadyInRoom, "already in room \(room)")
        }
        let id = socket.id
        let eventLoop = socket.eventLoop
        if let allowed = member.allowedRooms, !allowed.contains(room) {
            throw SignalingError(.forbiddenRoom, "your token does not allow room \(room)")
        }
        guard member.names.count < configuration.maxRoomsPerSocket else {
            throw SignalingError(.tooManyRooms, "a socket may be in at most \(configuration.maxRoomsPerSocket) rooms")
        }
        member.names[room] = name
        member.pendingJoins.insert(room)
        let namespace = socket.namespace
        let maxMembers = configuration.maxMembersPerRoom
        let presence = self.presence
        // Not a ternary: `nil` there would become PacketValue.null (PacketValue is ExpressibleByNilLiteral).
        let iceServers: PacketValue? =
            configuration.iceServers.isEmpty
            ? Optional.none : .some(iceServers(for: id, notAfter: member.tokenExpiry))
        let entry = PresenceEntry(room: room, socket: id, personName: name)
        let bound = NIOLoopBound((socket, member), eventLoop: eventLoop)
        let full = SignalingError(.roomFull, "room \(room) has its maximum of \(maxMembers) members")
        // The order matters. (1) A full room is refused before the socket hears any of its traffic. (2) The socket
        // is in the room before presence lists the members, so any peer that joins after that listing
        // announces itself to this socket: nobody is missed, on any node. (3) The roster answers, (4) the
        // announcement goes out; a client that got the roster does not hear again of the peers it listed.
        return .later(
            presence.count(of: room, on: eventLoop).flatMapThrowing { count in
                let (socket, member) = bound.value
                guard socket.isConnected else {
                    // Gone while Redis answered: nothing joined yet, nothing to undo.
                    member.names[room] = nil
                    throw SocketGone()
                }
                guard count < maxMembers else {
                    member.names[room] = nil
                    throw full
                }
                socket.join(room)
            }.flatMap {
                presence.join(entry, on: eventLoop)
            }.flatMapThrowing { result -> PacketValue in
                let (socket, member) = bound.value
                guard socket.isConnected else {
                    // Gone while presence registered it: take the entry back quietly (nobody heard of this
                    // join, so nobody hears of its end); the disconnect's cleanup runs after this and no longer
                    // sees the room.
                    member.names[room] = nil
                    socket.leave(room)  // a suspended socket keeps its rooms: not this one
                    _ = presence.leave(room: room, socket: id, on: eventLoop)
                    throw SocketGone()
                }
                if result.isNew, result.members.count > maxMembers {
                    // Lost a race for the last place.
                    member.names[room] = nil
                    socket.leave(room)
                    _ = presence.leave(room: room, socket: id, on: eventLoop)
                    throw full
                }
                let peers = Set(result.members.map(\.socket).filter { $0 != id })
                member.verifiedPeers.formUnion(peers)
                if wantsRoster { member.rosterPeers[room] = peers }
                namespace.emit("user_joined", [Self.peer(entry)], to: [room])
                var roster = Self.roster(room: room, socket: id, result.members)
                if let iceServers, case .object(var fields) = roster {
                    fields.append(("iceServers", iceServers))
                    roster = .object(fields)
                }
                return roster
            }.always { _ in
                bound.value.1.pendingJoins.remove(room)
                bound.value.0.recoveryStateChanged()
            }
        )
    }

    static func roster(room: Room, socket: SocketID, _ members: [PresenceEntry]) -> PacketValue {
        let peers = members.filter { $0.socket != socket }.sorted { $0.socket < $1.socket }.map { entry in
            PacketValue.object([("socketId", .string(entry.socket)), ("personName", .string(entry.personName))])
        }
        return .object([("roomName", .string(room)), ("socketId", .string(socket)), ("peers", .array(peers))])
    }

    private func message(_ socket: Socket, _ member: Member, _ payload: PacketValue) throws(SignalingError) -> Outcome {
        let room = try roomName(payload)
        guard let name = member.names[room] else { throw SignalingError(.notInRoom, "not in room \(room)") }
        let content = payload["content"]
        try checkContent(content)
        let message = PacketValue.object([
            ("personName", .string(name)),
            ("content", content ?? .null),
            ("timestamp", .string(JavaScript.utcString(secondsSince1970: Int64(configuration.now().rounded(.down))))),
        ])
        socket.namespace.emit("message", [message], to: [room])
        return .done(Self.ok)
    }

    private func leaveRoom(_ socket: Socket, _ member: Member, _ payload: PacketValue) throws(SignalingError) -> Outcome {
        let room = try roomName(payload)
        guard member.names.removeValue(forKey: room) != nil else { throw SignalingError(.notInRoom, "not in room \(room)") }
        member.rosterPeers[room] = nil
        member.verifiedPeers.removeAll()  // they may share no other room with us: check again when needed
        let id = socket.id
        let namespace = socket.namespace
        socket.leave(room)
        return .later(
            presence.leave(room: room, socket: id, on: socket.eventLoop).map { entry in
                if let entry { namespace.emit("user_left", [Self.peer(entry)], to: [room], except: [id]) }
                return Self.ok
            }
        )
    }

    /// `offer`, `answer` and ICE: the whole object goes to `toPeer` with the sender's real id as `fromPeer`,
    /// when the two share a room.
    private func relaySignal(
        _ socket: Socket,
        _ member: Member,
        _ payload: PacketValue,
        descriptionKey: String?,
        as names: [String]
    ) throws(SignalingError) -> Outcome {
        guard case .object(var fields) = payload else { throw SignalingError(.invalidPayload, "the payload must be an object") }
        guard let target = payload["toPeer"]?.stringValue, !target.isEmpty else {
            throw SignalingError(.invalidPayload, "toPeer must be a socket id")
        }
        if let descriptionKey {
            guard let description = payload[descriptionKey], description.isObject, let sdp = description["sdp"]?.stringValue
            else { throw SignalingError(.invalidPayload, "\(descriptionKey) must be {type, sdp}") }
            guard sdp.utf8.count <= configuration.maxSDPLength else {
                throw SignalingError(.sdpTooLong, "sdp is longer than \(configuration.maxSDPLength) bytes")
            }
        } else {
            guard let candidate = payload["iccCandidate"] ?? payload["candidate"], candidate.isObject || candidate == .null else {
                throw SignalingError(.invalidPayload, "iccCandidate must be an object")
            }
            if let line = candidate["candidate"] {
                guard let text = line.stringValue else { throw SignalingError(.invalidPayload, "candidate must be a string") }
                guard text.utf8.count <= configuration.maxCandidateLength else {
                    throw SignalingError(.candidateTooLong, "candidate is longer than \(configuration.maxCandidateLength) bytes")
                }
            }
        }
        // Identity is the server's: whatever the client wrote, fromPeer is the sender.
        if let index = fields.firstIndex(where: { $0.key == "fromPeer" }) {
            fields[index].value = .string(socket.id)
        } else {
            fields.append(("fromPeer", .string(socket.id)))
        }
        let relayed = PacketValue.object(fields)
        let rooms = Array(member.names.keys)
        guard !rooms.isEmpty else { throw SignalingError(.notInSameRoom, "join a room with \(target) first") }
        let namespace = socket.namespace
        let sender = socket.id
        if member.verifiedPeers.contains(target) {
            for name in names { namespace.emit(name, [relayed], to: [target], except: [sender]) }
            return .done(Self.ok)
        }
        let bound = NIOLoopBound(member, eventLoop: socket.eventLoop)
        return .later(
            presence.isMember(target, ofAnyOf: rooms, on: socket.eventLoop).flatMapThrowing { shared in
                guard !bound.value.isClosed else { throw SocketGone() }
                guard shared else { throw SignalingError(.notInSameRoom, "\(target) is in none of your rooms") }
                bound.value.verifiedPeers.insert(target)
                for name in names { namespace.emit(name, [relayed], to: [target], except: [sender]) }
                return Self.ok
            }
        )
    }

    /// The seed's dead legacy events, kept for compatibility but confined to the sender's rooms.
    private func legacyBroadcast(_ socket: Socket, _ member: Member, event: String, arguments: [PacketValue]) throws(SignalingError) -> Outcome {
        let rooms = Array(member.names.keys)
        guard !rooms.isEmpty else { throw SignalingError(.notInRoom, "join a room first") }
        socket.broadcast("receive-" + event.dropFirst("send-".count), arguments, to: rooms)
        return .done(Self.ok)
    }

    private func refuse(_ socket: Socket, _ event: String, _ ack: Ack?, _ error: SignalingError) {
        socket.logger.debug("refused", metadata: ["event": "\(event)", "code": "\(error.code.rawValue)"])
        socket.namespace.metrics.error(error.code.rawValue)
        let payload = error.payload(event: event)
        if let ack { ack.send([payload]) } else { socket.emit("error", [payload]) }
    }
}
