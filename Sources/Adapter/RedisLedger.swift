import Logging
import NIOCore
import SocketIO
import Synchronization

/// Settings of the ledger (connection state recovery across nodes) of the Redis adapter.
public struct RedisLedgerConfiguration: Sendable {
    /// This node's name as the owner of records: the presence instance.
    public var owner: String
    /// The recovery window: how long a suspended socket's record lives.
    public var window: TimeAmount
    /// Entries the stream keeps (`XADD … MAXLEN ~`): about what the cluster broadcasts in a recovery window, with
    /// room to spare. A client whose place was trimmed gets a new session.
    public var maxLength: Int

    public init(owner: String, window: TimeAmount, maxLength: Int = 100_000) {
        self.owner = owner
        self.window = window
        self.maxLength = maxLength
    }

    /// How often a node renews the records of its connected sockets.
    var renewInterval: TimeAmount { .nanoseconds(min(max(window.nanoseconds / 4, 1_000_000_000), 30_000_000_000)) }
    /// The expiry of a connected socket's record: its node renews it; if the node dies, it lasts a window more.
    var connectedTTL: TimeAmount { window + renewInterval + renewInterval }
}

/// The ``RecoveryLedger`` on one Redis server (`--redis`):
/// - the log is a stream, `<prefix>-log#<nsp>#`, each entry `m` → the classic adapter's MessagePack message
///   (`[uid, packet, opts]`), appended by the sender's node on its loop's publisher connection, so one socket's
///   broadcasts are in the log in the order it sent them;
/// - the append is one Lua script: `XADD … MAXLEN ~`, then `PUBLISH` of `"<id> <message>"` on the channel of the
///   same name. A script runs whole, so the pushes reach every node in the stream's order, with their ids;
///   nodes do not poll the stream (an `XREAD BLOCK` per entry per node cost Redis more than the publish did);
/// - after a lost subscription a node reads what it missed from the stream (`XRANGE` after the last id it
///   handled), holding the pushes meanwhile, so a Redis blip loses nothing that Redis kept;
/// - a record is a hash, `<prefix>-recovery#<nsp>#<socket id>` → `owner`, `pid`, `record` (JSON), with a TTL;
///   saving, claiming and releasing are short Lua scripts, so each is one atomic step.
final class RedisLedger: RecoveryLedger {
    let configuration: RedisLedgerConfiguration
    let streamKey: String
    private let recordPrefix: String
    private let subscriber: RedisSubscriber
    /// The publisher connection of the calling loop.
    private let writer: @Sendable () -> RedisConnection
    private let logger: Logger
    /// Handles entries of the log, in order, on the subscriber's loop.
    private let onEntries: @Sendable ([(StreamOffset, ByteBuffer)]) -> Void
    /// This node's sockets, whose records it renews.
    private let localSockets: @Sendable () -> [SocketID]
    private let renewTask = Mutex<RepeatedTask?>(nil)
    private let loopState: NIOLoopBoundBox<ReaderState>
    private let started = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    /// The reader has a position (its start marker came back) and is reading.
    private let readingFlag = Atomic<Bool>(false)
    /// Times the reader found its place gone from the stream (Redis restarted empty, or trimmed past it).
    let gaps = Atomic<Int>(0)

    private struct ReaderState {
        var last: StreamOffset?
        /// Set while what was missed is read back: pushes wait here.
        var held: [(StreamOffset, ByteBuffer)]?
    }

    var owner: String { configuration.owner }

    init(
        configuration: RedisLedgerConfiguration,
        prefix: String,
        nsp: String,
        redis: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup,
        writer: @escaping @Sendable () -> RedisConnection,
        logger: Logger,
        localSockets: @escaping @Sendable () -> [SocketID],
        onEntries: @escaping @Sendable ([(StreamOffset, ByteBuffer)]) -> Void
    ) {
        self.localSockets = localSockets
        self.configuration = configuration
        self.streamKey = "\(prefix)-log#\(nsp)#"
        self.recordPrefix = "\(prefix)-recovery#\(nsp)#"
        self.writer = writer
        self.logger = logger
        self.onEntries = onEntries
        let box = WeakReference<RedisLedger>()
        self.subscriber = RedisSubscriber(
            configuration: redis,
            eventLoopGroup: eventLoopGroup,
            logger: logger,
            onEvent: { event in
                if case .readinessChanged(true) = event { box.object?.subscribed() }
            },
            onMessage: { _, _, payload in box.object?.pushed(payload) }
        )
        self.loopState = .makeBoxSendingValue(ReaderState(), eventLoop: subscriber.eventLoop)
        box.set(self)
    }

    func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        subscriber.subscribe(channels: [streamKey])
        subscriber.start()
        let interval = configuration.renewInterval
        let task = subscriber.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            guard let self else { return }
            self.renew(self.localSockets())
        }
        renewTask.withLock { $0 = task }
    }

    func close() -> EventLoopFuture<Void> {
        closed.store(true, ordering: .relaxed)
        renewTask.withLock { $0?.cancel(); $0 = nil }
        return subscriber.close()
    }

    var isReading: Bool { readingFlag.load(ordering: .relaxed) && subscriber.isReady }

    // MARK: the log

    private static let appendScript = """
        local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
        redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[1])
        return id
        """

    /// Appends a broadcast's message to the log; its future fails when Redis did not take it.
    func append(_ message: ByteBuffer) -> EventLoopFuture<Int> {
        append(message, on: writer())
    }

    private func append(_ message: ByteBuffer, on connection: RedisConnection) -> EventLoopFuture<Int> {
        connection.send([
            "EVAL", .string(Self.appendScript), "1", .string(streamKey), .buffer(message),
            .string(String(configuration.maxLength)),
        ]).map { _ in 1 }
    }

    /// A push: `"<id> <message>"`.
    private func pushed(_ payload: ByteBuffer) {
        var payload = payload
        guard let space = payload.readableBytesView.firstIndex(of: UInt8(ascii: " ")),
            let text = payload.readString(length: space - payload.readerIndex),
            let id = StreamOffset(text)
        else { return }
        payload.moveReaderIndex(forwardBy: 1)
        let state = loopState
        if state.value.held != nil {
            state.value.held!.append((id, payload))
            return
        }
        if state.value.last == nil {
            // Nothing before our marker is ours to deliver: the first push we take is the marker.
            guard payload.readableBytes == 0 else { return }
            readingFlag.store(true, ordering: .relaxed)
        } else if let last = state.value.last, id <= last {
            return
        }
        state.value.last = id
        onEntries([(id, payload)])
    }

    /// The subscription is (again) in place.
    private func subscribed() {
        let state = loopState
        guard let last = state.value.last else {
            // The first position: a marker entry appended once subscribed, so that every entry after it comes as
            // a push, and the records made before anything is broadcast have a place that exists.
            // (Again after a lost subscription before the first marker came back: an extra marker is harmless.)
            append(ByteBuffer(), on: writer()).whenFailure { error in
                self.logger.warning("recovery log: could not start reading", metadata: ["error": "\(error)"])
                // The publisher may not be connected yet: again, while we have no place.
                self.subscriber.eventLoop.scheduleTask(in: .milliseconds(200)) {
                    if state.value.last == nil, self.subscriber.isReady { self.subscribed() }
                }
            }
            return
        }
        // Back after a lost subscription: what was appended meanwhile is read from the stream, the pushes that
        // come in the meantime wait, then those the reading did not cover go on.
        state.value.held = []
        catchUp(after: last)
    }

    private func catchUp(after last: StreamOffset) {
        let state = loopState
        let eventLoop = subscriber.eventLoop
        let connection = writer()
        connection.send(["XRANGE", .string(streamKey), .string(last.description), .string(last.description)])
            .and(connection.send(["XRANGE", .string(streamKey), .string("(" + last.description), "+", "COUNT", "512"]))
            .hop(to: eventLoop)
            .whenComplete { result in
                guard case .success(let (place, reply)) = result else {
                    eventLoop.scheduleTask(in: .milliseconds(100)) { self.catchUp(after: last) }
                    return
                }
                if (place.array ?? []).isEmpty {
                    // Our place is gone from the stream (Redis restarted empty, or trimmed past it): entries
                    // may be missing between it and what comes next.
                    self.gaps.add(1, ordering: .relaxed)
                    self.logger.warning("recovery log: our place is gone from the stream; entries may be missing")
                }
                let entries = Self.entries(ofRange: reply)
                if let newest = entries.last?.0 {
                    state.value.last = newest
                    self.onEntries(entries)
                }
                if entries.count == 512, let newest = entries.last?.0 {
                    self.catchUp(after: newest)
                    return
                }
                let held = state.value.held ?? []
                state.value.held = nil
                for (id, message) in held {
                    if let last = state.value.last, id <= last { continue }
                    state.value.last = id
                    self.onEntries([(id, message)])
                }
            }
    }

    /// `[[id, [field, value, …]], …]` → the ids and `m` values.
    static func entries(ofRange reply: RESPValue) -> [(StreamOffset, ByteBuffer)] {
        (reply.array ?? []).compactMap { entry in
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string.flatMap(StreamOffset.init(_:)),
                let fields = parts[1].array
            else { return nil }
            var index = 0
            while index + 1 < fields.count {
                if fields[index].string == "m", case .bulkString(let value?) = fields[index + 1] { return (id, value) }
                index += 2
            }
            return nil
        }
    }

    /// Entries read per `XRANGE` while looking for a socket's missed events.
    static let page = 512

    func entries(
        after: StreamOffset,
        through: StreamOffset,
        limit: Int,
        where wanted: @escaping @Sendable (LedgerEntry) -> Bool
    ) -> EventLoopFuture<[LedgerEntry]?> {
        let connection = writer()
        let eventLoop = connection.eventLoop
        return placeExists(after, on: connection).flatMap { exists -> EventLoopFuture<[LedgerEntry]?> in
            guard exists else { return eventLoop.makeSucceededFuture(nil) }
            return self.readPages(after: after, through: through, limit: limit, wanted: wanted, found: [], on: connection)
        }
    }

    /// The wanted entries after `after` up to `through`, a page at a time (the log holds every socket's events,
    /// so a short gap in a busy namespace is many entries, few of them this socket's).
    private func readPages(
        after: StreamOffset,
        through: StreamOffset,
        limit: Int,
        wanted: @escaping @Sendable (LedgerEntry) -> Bool,
        found: [LedgerEntry],
        on connection: RedisConnection
    ) -> EventLoopFuture<[LedgerEntry]?> {
        guard after < through else { return connection.eventLoop.makeSucceededFuture(found) }
        return connection.send([
            "XRANGE", .string(streamKey), .string("(" + after.description), .string(through.description),
            "COUNT", .string(String(Self.page)),
        ]).flatMap { reply -> EventLoopFuture<[LedgerEntry]?> in
            let raw = Self.entries(ofRange: reply)
            var found = found
            for (id, bytes) in raw {
                guard bytes.readableBytes > 0, let message = try? ClusterBroadcast(decoding: bytes) else { continue }
                let entry = LedgerEntry(id: id, packet: message.packet, options: message.options)
                guard wanted(entry) else { continue }
                found.append(entry)
                if found.count > limit { return connection.eventLoop.makeSucceededFuture(nil) }
            }
            guard raw.count == Self.page, let last = raw.last?.0 else {
                return connection.eventLoop.makeSucceededFuture(found)
            }
            return self.readPages(after: last, through: through, limit: limit, wanted: wanted, found: found, on: connection)
        }
    }

    private func placeExists(_ id: StreamOffset, on connection: RedisConnection) -> EventLoopFuture<Bool> {
        connection.send(["XRANGE", .string(streamKey), .string(id.description), .string(id.description)])
            .map { !($0.array ?? []).isEmpty }
    }

    // MARK: records

    private func recordKey(_ socket: SocketID) -> String { recordPrefix + socket }

    private static let saveScript = """
        local owner = redis.call('HGET', KEYS[1], 'owner')
        if owner and owner ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'pid', ARGV[2], 'record', ARGV[3])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return 1
        """
    private static let renewScript = """
        if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """
    private static let claimScript = """
        local pid = redis.call('HGET', KEYS[1], 'pid')
        if not pid or pid ~= ARGV[1] or redis.call('HGET', KEYS[1], 'owner') == '-' then return false end
        redis.call('HSET', KEYS[1], 'owner', ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return redis.call('HGET', KEYS[1], 'record')
        """
    /// Ours: a tombstone (owner `-`) for a window. Another's: 0. None: -1.
    private static let releaseScript = """
        local owner = redis.call('HGET', KEYS[1], 'owner')
        if not owner then return -1 end
        if owner ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'owner', '-', 'record', '')
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return 1
        """

    private static func milliseconds(_ ttl: TimeAmount) -> String { String(max(ttl.nanoseconds / 1_000_000, 1)) }

    func save(_ record: RecoveryRecord, suspended: Bool) {
        let ttl = suspended ? configuration.window : configuration.connectedTTL
        let logger = self.logger
        writer().send([
            "EVAL", .string(Self.saveScript), "1", .string(recordKey(record.socket)), .string(owner), .string(record.pid),
            .string(record.json), .string(Self.milliseconds(ttl)),
        ]).whenFailure { error in
            logger.debug("recovery record not saved", metadata: ["error": "\(error)"])
        }
    }

    /// Renews the expiry of this node's records of `sockets` (its connected sockets).
    func renew(_ sockets: [SocketID]) {
        let connection = writer()
        let ms = Self.milliseconds(configuration.connectedTTL)
        for socket in sockets {
            _ = connection.send(["EVAL", .string(Self.renewScript), "1", .string(recordKey(socket)), .string(owner), .string(ms)])
        }
    }

    func claim(socket: SocketID, pid: String) -> EventLoopFuture<RecoveryRecord?> {
        writer().send([
            "EVAL", .string(Self.claimScript), "1", .string(recordKey(socket)), .string(pid), .string(owner),
            .string(Self.milliseconds(configuration.connectedTTL)),
        ]).map { reply in
            reply.string.flatMap { RecoveryRecord(json: $0, pid: pid) }
        }
    }

    func release(socket: SocketID) -> EventLoopFuture<RecoveryRelease> {
        writer().send([
            "EVAL", .string(Self.releaseScript), "1", .string(recordKey(socket)), .string(owner),
            .string(Self.milliseconds(configuration.window)),
        ]).map { reply in
            switch reply.integer {
            case 1: .released
            case 0: .takenOver
            default: .missing
            }
        }
    }

    func fates(of sockets: [SocketID]) -> EventLoopFuture<[RecoveryFate]> {
        let connection = writer()
        let asks = sockets.map { connection.send(["HGET", .string(recordKey($0)), "owner"]) }
        return EventLoopFuture.whenAllSucceed(asks, on: connection.eventLoop).map { replies in
            replies.map { reply in
                guard let owner = reply.string, owner != "-" else { return RecoveryFate.gone }
                return .owned(by: owner)
            }
        }
    }
}
