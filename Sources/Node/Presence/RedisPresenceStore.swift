import Adapter
import Logging
import NIOCore
import Signaling
import SocketIO
import Synchronization

/// Presence shared through Redis, with node heartbeats so that the sockets of a node that dies get their
/// `user_left` from the survivors.
///
/// Keys, under a prefix (default `signal`):
/// - `<prefix>:room:<room>`: a hash, socket id → person name, for every member on any node;
/// - `<prefix>:node:<instance>`: a set of `["room","socket"]` JSON pairs, the entries a node instance added;
/// - `<prefix>:nodes`: a sorted set, node instance → time of its last heartbeat (Redis `TIME`, ms);
/// - `<prefix>:reap:<instance>`: a short-lived lock, so a dead node is reaped by one survivor only.
///
/// Each node also keeps its own entries in memory (`LocalPresence`): it is the source of truth for them. When a
/// heartbeat finds the node missing from `<prefix>:nodes` (Redis restarted empty, or the node was reaped after a
/// long stall), the node writes all its entries again. While Redis is unreachable, answers fall back to the
/// local entries, so local rooms keep working.
public final class RedisPresenceStore: PresenceStore {
    public struct Configuration: Sendable {
        public var redis: RedisConfiguration
        public var prefix: String
        /// How long a node may go without a heartbeat before the others declare it dead.
        public var nodeTimeout: TimeAmount
        public var nodeName: String
        /// A Redis Cluster instead of the one server of ``redis``: each command goes to the master of its key's
        /// slot. Every presence command names one key, so no two keys need to share a slot (and `TIME` is asked of
        /// the master of `<prefix>:nodes`, so all nodes compare heartbeats on one clock).
        public var cluster: RedisClusterConfiguration?

        public init(
            redis: RedisConfiguration,
            prefix: String = "signal",
            nodeTimeout: TimeAmount = .seconds(10),
            nodeName: String,
            cluster: RedisClusterConfiguration? = nil
        ) {
            self.redis = redis
            self.prefix = prefix
            self.nodeTimeout = nodeTimeout
            self.nodeName = nodeName
            self.cluster = cluster
        }

        /// Heartbeats come this often: a quarter of the timeout.
        var heartbeatInterval: TimeAmount { .nanoseconds(max(nodeTimeout.nanoseconds / 4, 50_000_000)) }
    }

    public let configuration: Configuration
    /// This process's identity in `<prefix>:nodes`: the node name plus a random suffix, so a restarted node is
    /// a new instance and its predecessor's sockets are reaped.
    public let instance: String
    private let connection: any RedisCommandSender
    private let local = Mutex(LocalPresence())
    private let logger: Logger
    private let heartbeatTask = Mutex<RepeatedTask?>(nil)
    private let nodeLost = Mutex<(@Sendable ([PresenceEntry]) -> Void)?>(nil)
    /// With recovery across nodes: who owns the record of each socket, so that the reaper of a dead node holds
    /// back the `user_left` of a socket whose client may still come back, and skips one restored elsewhere.
    private let recoveryFates = Mutex<(@Sendable ([SocketID]) -> EventLoopFuture<[RecoveryFate]>)?>(nil)

    public func setRecoveryFates(_ fates: @escaping @Sendable ([SocketID]) -> EventLoopFuture<[RecoveryFate]>) {
        recoveryFates.withLock { $0 = fates }
    }
    /// Set once a heartbeat has registered this node (and its entries) on the current connection.
    private let registered = Atomic<Bool>(false)
    /// How long a presence command may take before the answer falls back to local knowledge (a frozen Redis
    /// must not stall a socket's events).
    public let commandTimeout: TimeAmount = .milliseconds(1000)

    public init(configuration: Configuration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.instance = "\(configuration.nodeName)-\(ClusterUID.random(length: 8))"
        var logger = logger
        logger[metadataKey: "presence.instance"] = "\(instance)"
        self.logger = logger
        let reconnected = WeakReference<RedisPresenceStore>()
        let onEvent: @Sendable (RedisConnectionEvent) -> Void = { event in
            // Connected (first time, or back after an outage): register at once rather than at the next
            // heartbeat, so a node that dies early is known, and a Redis that lost our entries gets them back.
            switch event {
            case .connected: reconnected.object?.heartbeatNow()
            case .disconnected, .closed: reconnected.object?.registered.store(false, ordering: .relaxed)
            default: break
            }
        }
        if let cluster = configuration.cluster {
            self.connection = RedisClusterClient(
                configuration: cluster, eventLoopGroup: eventLoopGroup, logger: logger, onEvent: onEvent)
        } else {
            self.connection = RedisConnection(
                configuration: configuration.redis, eventLoopGroup: eventLoopGroup, logger: logger, onEvent: onEvent)
        }
        reconnected.set(self)
    }

    private func heartbeatNow() {
        guard let nodeLost = nodeLost.withLock({ $0 }) else { return }
        _ = heartbeat(nodeLost: nodeLost)
    }

    /// The future's value, or `fallback()` when it fails or takes longer than ``commandTimeout``.
    private func bounded<T: Sendable>(
        _ future: EventLoopFuture<T>,
        fallback: @escaping @Sendable () -> T
    ) -> EventLoopFuture<T> {
        let promise = future.eventLoop.makePromise(of: T.self)
        let once = Once()
        let timeout = future.eventLoop.scheduleTask(in: commandTimeout) {
            if once.claim() { promise.succeed(fallback()) }
        }
        future.whenComplete { result in
            timeout.cancel()
            guard once.claim() else { return }
            switch result {
            case .success(let value): promise.succeed(value)
            case .failure: promise.succeed(fallback())
            }
        }
        return promise.futureResult
    }

    private final class Once: Sendable {
        private let done = Atomic<Bool>(false)
        func claim() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
    }

    private var nodesKey: String { "\(configuration.prefix):nodes" }
    private func roomKey(_ room: Room) -> String { "\(configuration.prefix):room:\(room)" }
    private func nodeKey(_ instance: String) -> String { "\(configuration.prefix):node:\(instance)" }
    private func reapKey(_ instance: String) -> String { "\(configuration.prefix):reap:\(instance)" }

    private static func member(_ room: Room, _ socket: SocketID) -> String {
        PacketValue.array([.string(room), .string(socket)]).jsonString
    }

    // MARK: lifecycle

    public func start(nodeLost: @escaping @Sendable ([PresenceEntry]) -> Void) async throws {
        self.nodeLost.withLock { $0 = nodeLost }
        connection.start()
        let interval = configuration.heartbeatInterval
        let eventLoop = connection.eventLoop
        let task = eventLoop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: interval) { [weak self] _ in
            guard let self else { return eventLoop.makeSucceededVoidFuture() }
            return self.heartbeat(nodeLost: nodeLost)
        }
        heartbeatTask.withLock { $0 = task }
    }

    /// Connected, and registered (with this node's entries written again if Redis had lost them).
    public var isReady: Bool { connection.isConnected && registered.load(ordering: .relaxed) }

    public func shutdown() async {
        heartbeatTask.withLock { $0?.cancel(); $0 = nil }
        _ = try? await connection.close().get()
    }

    /// One heartbeat: note ourselves alive (writing our entries again if we were missing), then reap the nodes
    /// whose heartbeats stopped.
    private func heartbeat(nodeLost: @escaping @Sendable ([PresenceEntry]) -> Void) -> EventLoopFuture<Void> {
        let eventLoop = connection.eventLoop
        guard connection.isConnected else { return eventLoop.makeSucceededVoidFuture() }
        let timeoutMS = configuration.nodeTimeout.nanoseconds / 1_000_000
        return connection.send(RedisCommand(["TIME"]), routingKey: nodesKey).flatMap { time -> EventLoopFuture<Void> in
            guard let parts = time.array, parts.count == 2, let seconds = parts[0].string.flatMap(Int64.init),
                let micros = parts[1].string.flatMap(Int64.init)
            else { return eventLoop.makeSucceededVoidFuture() }
            let now = seconds * 1000 + micros / 1000
            let added = self.connection.send(["ZADD", .string(self.nodesKey), .integer(now), .string(self.instance)])
            let dead = self.connection.send([
                "ZRANGEBYSCORE", .string(self.nodesKey), "-inf", .integer(now - timeoutMS),
            ])
            return added.and(dead).flatMap { added, dead in
                if added.integer == 1 { self.republish() }
                self.registered.store(true, ordering: .relaxed)
                let instances = (dead.array ?? []).compactMap(\.string).filter { $0 != self.instance }
                let reaps = instances.map { self.reap($0, nodeLost: nodeLost) }
                return EventLoopFuture.andAllComplete(reaps, on: eventLoop)
            }
        }.recover { error in
            self.logger.debug("presence heartbeat failed", metadata: ["error": "\(error)"])
        }
    }

    /// Writes every local entry again (after Redis lost them).
    private func republish() {
        let entries = local.withLock { $0.all }
        logger.info("presence: registering local entries again", metadata: ["entries": "\(entries.count)"])
        for entry in entries {
            write(entry)
        }
    }

    private func write(_ entry: PresenceEntry) {
        _ = connection.send(["HSET", .string(roomKey(entry.room)), .string(entry.socket), .string(entry.personName)])
        _ = connection.send(["SADD", .string(nodeKey(instance)), .string(Self.member(entry.room, entry.socket))])
    }

    /// Takes the reap lock of a dead instance; the one survivor that gets it announces its entries and deletes them.
    private func reap(_ dead: String, nodeLost: @escaping @Sendable ([PresenceEntry]) -> Void) -> EventLoopFuture<Void> {
        let eventLoop = connection.eventLoop
        let lockTTL = max(configuration.nodeTimeout.nanoseconds / 1_000_000 * 3, 1000)
        return connection.send(["SET", .string(reapKey(dead)), .string(instance), "NX", "PX", .integer(lockTTL)])
            .flatMap { reply -> EventLoopFuture<Void> in
                guard reply.string == "OK" else { return eventLoop.makeSucceededVoidFuture() }
                return self.connection.send(["SMEMBERS", .string(self.nodeKey(dead))]).flatMap { members in
                    let pairs: [(Room, SocketID)] = (members.array ?? []).compactMap { member in
                        guard let text = member.string, let value = try? PacketValue.parseJSON(text),
                            let parts = value.arrayValue, parts.count == 2,
                            let room = parts[0].stringValue, let socket = parts[1].stringValue
                        else { return nil }
                        return (room, socket)
                    }
                    return self.sortByFate(pairs, dead: dead).flatMap { pairs, waiting, taken in
                        let names = pairs.map { room, socket in
                            self.connection.send(["HGET", .string(self.roomKey(room)), .string(socket)])
                        }
                        return EventLoopFuture.whenAllSucceed(names, on: eventLoop).map { names in
                            var lost: [PresenceEntry] = []
                            for ((room, socket), name) in zip(pairs, names) {
                                guard let name = name.string else { continue }
                                lost.append(PresenceEntry(room: room, socket: socket, personName: name))
                                _ = self.connection.send(["HDEL", .string(self.roomKey(room)), .string(socket)])
                            }
                            if waiting.isEmpty {
                                _ = self.connection.send(["DEL", .string(self.nodeKey(dead))])
                                _ = self.connection.send(["ZREM", .string(self.nodesKey), .string(dead)])
                            } else {
                                // Sockets whose clients may still come back elsewhere: their entries stay, and
                                // the dead node stays listed, so a later reap (after this one's lock) looks again.
                                for (room, socket) in pairs + taken {
                                    _ = self.connection.send(["SREM", .string(self.nodeKey(dead)), .string(Self.member(room, socket))])
                                }
                            }
                            self.logger.warning(
                                "presence: node lost",
                                metadata: [
                                    "lost.instance": "\(dead)", "entries": "\(lost.count)",
                                    "recoverable": "\(waiting.count)", "restored.elsewhere": "\(taken.count)",
                                ]
                            )
                            if !lost.isEmpty { nodeLost(lost) }
                        }
                    }
                }
            }
    }

    /// Splits a dead node's entries by the fate of their sockets' recovery records: gone (announce them now),
    /// still the dead node's (their clients may come back: wait), or another node's (restored there: only the
    /// dead node's list forgets them).
    private func sortByFate(
        _ pairs: [(Room, SocketID)],
        dead: String
    ) -> EventLoopFuture<(gone: [(Room, SocketID)], waiting: [(Room, SocketID)], taken: [(Room, SocketID)])> {
        let eventLoop = connection.eventLoop
        guard let fates = recoveryFates.withLock({ $0 }), !pairs.isEmpty else {
            return eventLoop.makeSucceededFuture((pairs, [], []))
        }
        return fates(pairs.map(\.1)).hop(to: eventLoop).map { fates in
            var result: (gone: [(Room, SocketID)], waiting: [(Room, SocketID)], taken: [(Room, SocketID)]) = ([], [], [])
            for (pair, fate) in zip(pairs, fates) {
                switch fate {
                case .gone: result.gone.append(pair)
                case .owned(let owner) where owner == dead: result.waiting.append(pair)
                case .owned: result.taken.append(pair)
                }
            }
            return result
        }.recover { _ in (pairs, [], []) }
    }

    // MARK: PresenceStore

    public func join(_ entry: PresenceEntry, on eventLoop: any EventLoop) -> EventLoopFuture<(isNew: Bool, members: [PresenceEntry])> {
        let isNew = local.withLock { $0.join(entry) }
        if isNew { write(entry) }
        let room = entry.room
        let reply = connection.send(["HGETALL", .string(roomKey(room))]).map { Self.entries(room: room, hash: $0) }
        // Redis unreachable or frozen: what this node knows.
        return bounded(reply) { self.local.withLock { $0.members(of: room) } }
            .map { members in (isNew: isNew, members: members) }
            .hop(to: eventLoop)
    }

    public func leave(room: Room, socket: SocketID, on eventLoop: any EventLoop) -> EventLoopFuture<PresenceEntry?> {
        let entry = local.withLock { $0.leave(room: room, socket: socket) }
        if entry != nil {
            _ = connection.send(["HDEL", .string(roomKey(room)), .string(socket)])
            _ = connection.send(["SREM", .string(nodeKey(instance)), .string(Self.member(room, socket))])
        }
        return eventLoop.makeSucceededFuture(entry)
    }

    public func adopt(_ entry: PresenceEntry) {
        if local.withLock({ $0.join(entry) }) { write(entry) }
    }

    public func forget(room: Room, socket: SocketID) {
        guard local.withLock({ $0.leave(room: room, socket: socket) }) != nil else { return }
        _ = connection.send(["SREM", .string(nodeKey(instance)), .string(Self.member(room, socket))])
    }

    public func count(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let reply = connection.send(["HLEN", .string(roomKey(room))]).map { Int($0.integer ?? 0) }
        return bounded(reply) { self.local.withLock { $0.count(of: room) } }.hop(to: eventLoop)
    }

    public func members(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<[PresenceEntry]> {
        let reply = connection.send(["HGETALL", .string(roomKey(room))]).map { Self.entries(room: room, hash: $0) }
        return bounded(reply) { self.local.withLock { $0.members(of: room) } }.hop(to: eventLoop)
    }

    public func isMember(_ socket: SocketID, ofAnyOf rooms: [Room], on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        if local.withLock({ local in rooms.contains { local.contains(room: $0, socket: socket) } }) {
            return eventLoop.makeSucceededFuture(true)
        }
        guard !rooms.isEmpty else { return eventLoop.makeSucceededFuture(false) }
        let checks = rooms.map { connection.send(["HEXISTS", .string(roomKey($0)), .string(socket)]) }
        let reply = EventLoopFuture.whenAllSucceed(checks, on: connection.eventLoop)
            .map { replies in replies.contains { $0.integer == 1 } }
        return bounded(reply) { false }.hop(to: eventLoop)
    }

    private static func entries(room: Room, hash: RESPValue) -> [PresenceEntry] {
        let values = hash.array ?? []
        var entries: [PresenceEntry] = []
        entries.reserveCapacity(values.count / 2)
        var index = 0
        while index + 1 < values.count {
            if let socket = values[index].string, let name = values[index + 1].string {
                entries.append(PresenceEntry(room: room, socket: socket, personName: name))
            }
            index += 2
        }
        return entries
    }
}
