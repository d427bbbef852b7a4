import NIOCore

/// Connection state recovery across nodes (issue 13, stage 2): what the cluster keeps so that a client whose node
/// died or dropped its transport can be restored by **any** node.
///
/// Why it is built this way:
/// - **One order for the whole namespace.** With a ledger, a broadcast is not delivered by the node that makes it:
///   it is appended to one log (a Redis stream), and every node delivers what it reads from that log, in the log's
///   order, its own events included. An event's offset is its id in the log, the same for every recipient, so a
///   client's place is one id whichever node it was on: "replay what follows the client's offset" is exact on any
///   node. (Offsets per publisher would need a vector per client; offsets per receiving node die with it.)
/// - **Join marks.** A socket that joins a room notes the id of the last entry its node had read at that moment,
///   atomically with the join (under the adapter's registry lock, which reading an entry takes too): an entry up
///   to the mark was delivered without the socket in the room, one after it with. The replay of a room's traffic
///   starts after its mark, so a replay delivers exactly what the socket would have received.
/// - **The socket's record** (id, pid, rooms with their marks, the application's state) is kept in the ledger
///   while the socket lives, rewritten when its rooms change, with an expiry its node renews; a node that dies
///   leaves it to expire one window later. A node restoring the socket **claims** the record (one atomic step: the
///   pid must match, the owner becomes the claimer), so one node restores it, once; the previous owner, when
///   alive, finds out when it tries to **release** it (a socket ending there asks "is it still mine?") and then
///   ends its copy without a word to anyone.
public struct StreamOffset: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var milliseconds: UInt64
    public var sequence: UInt64

    public init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    /// A Redis stream id, `"<ms>-<seq>"`, exactly as Redis writes it (no sign, no leading zeros).
    public init?(_ text: String) {
        let parts = text.utf8.split(separator: UInt8(ascii: "-"), maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = Self.number(parts[0]), let seq = Self.number(parts[1]) else { return nil }
        self.init(milliseconds: ms, sequence: seq)
    }

    private static func number(_ digits: Substring.UTF8View.SubSequence) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            digits.count == 1 || digits.first != UInt8(ascii: "0")
        else { return nil }
        return UInt64(Substring(digits))
    }

    public var description: String { "\(milliseconds)-\(sequence)" }

    public static func < (a: StreamOffset, b: StreamOffset) -> Bool {
        (a.milliseconds, a.sequence) < (b.milliseconds, b.sequence)
    }
}

/// One socket as the ledger keeps it, for a node to restore it.
public struct RecoveryRecord: Sendable, Hashable {
    public var socket: SocketID
    public var pid: String
    /// Its rooms (its own id's included), each with the log position when it joined.
    public var rooms: [Room: StreamOffset]
    /// The log position when it connected: a client that saw no event yet is replayed from here.
    public var since: StreamOffset
    /// The application's state (``NamespaceHandler/recoveryState(_:state:)``).
    public var state: PacketValue

    public init(socket: SocketID, pid: String, rooms: [Room: StreamOffset], since: StreamOffset, state: PacketValue) {
        self.socket = socket
        self.pid = pid
        self.rooms = rooms
        self.since = since
        self.state = state
    }

    /// `{"sid", "rooms": {room: id}, "since", "state"}` as JSON (the pid is kept beside it, not in it).
    public var json: String {
        PacketValue.object([
            ("sid", .string(socket)),
            ("rooms", .object(rooms.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value.description)) })),
            ("since", .string(since.description)),
            ("state", state),
        ]).jsonString
    }

    public init?(json: String, pid: String) {
        guard let value = try? PacketValue.parseJSON(json), let socket = value["sid"]?.stringValue,
            let since = value["since"]?.stringValue.flatMap(StreamOffset.init(_:)),
            case .object(let roomList)? = value["rooms"], let state = value["state"]
        else { return nil }
        var rooms: [Room: StreamOffset] = [:]
        for (room, mark) in roomList {
            guard let mark = mark.stringValue.flatMap(StreamOffset.init(_:)) else { return nil }
            rooms[room] = mark
        }
        self.init(socket: socket, pid: pid, rooms: rooms, since: since, state: state)
    }

    /// Whether a broadcast appended at `id` to the log would have reached this socket: it is in one of the
    /// target rooms (any room when there are none) since before `id`, and in none of the excluded rooms then.
    public func receives(_ id: StreamOffset, options: BroadcastOptions) -> Bool {
        func member(_ room: Room) -> Bool { rooms[room].map { $0 < id } ?? false }
        if options.flags.local { return false }
        if options.except.contains(where: member) { return false }
        if options.rooms.isEmpty { return since < id }
        return options.rooms.contains(where: member)
    }

    /// A pid for a socket of a namespace with a ledger: 144 random bits, then the socket id, so that a node that
    /// knows nothing of the socket finds its record (and the reaper of a dead node can ask after a socket).
    public static func makePid(socket: SocketID) -> String {
        RecoveryLog.randomToken(bytes: 18) + socket
    }

    /// The socket id in a pid made by ``makePid(socket:)``.
    public static func socket(inPid pid: String) -> SocketID? {
        let utf8 = pid.utf8
        guard utf8.count == 24 + 20 else { return nil }
        return String(Substring(utf8.dropFirst(24)))
    }
}

/// An entry read back from the log.
public struct LedgerEntry: Sendable {
    public var id: StreamOffset
    public var packet: BroadcastPacket
    public var options: BroadcastOptions

    public init(id: StreamOffset, packet: BroadcastPacket, options: BroadcastOptions) {
        self.id = id
        self.packet = packet
        self.options = options
    }
}

/// What releasing a record found.
public enum RecoveryRelease: Sendable, Hashable {
    /// It was this node's: the socket ends here, with the usual goodbyes.
    case released
    /// Another node took it (the socket lives on there, or ended there): this node forgets it without a word.
    case takenOver
    /// There was none (Redis lost it): the socket is this node's to end.
    case missing
}

/// Where a record stands, as the reaper of a dead node asks.
public enum RecoveryFate: Sendable, Hashable {
    /// No record (never recoverable, ended, or its window closed): the socket is gone.
    case gone
    /// Still owned by the named owner: its client may come back.
    case owned(by: String)
}

/// The cluster-wide side of connection state recovery: the log of the namespace's broadcasts and the sockets'
/// records. The Redis adapter provides it (a stream and one hash per socket); methods may be called from any
/// thread, and none blocks.
public protocol RecoveryLedger: AnyObject, Sendable {
    /// This node's name as an owner of records (the presence instance, so the reaper of a dead node knows its
    /// records).
    var owner: String { get }
    /// Writes `record` as this node's; nothing when another node has claimed it meanwhile. A connected socket's
    /// record is renewed by its node (the ledger does it for the adapter's local sockets) and outlives a dead
    /// node by a window; a suspended socket's expires one window after this call.
    func save(_ record: RecoveryRecord, suspended: Bool)
    /// Takes the record of `socket` if `pid` is its pid: this node owns it from now on (as a connected
    /// socket's). Nil when there is none (or the pid does not match).
    func claim(socket: SocketID, pid: String) -> EventLoopFuture<RecoveryRecord?>
    /// Ends the record of `socket` if this node still owns it (a tombstone stays for a window, so that a node
    /// that had the socket before hears it was taken, and a claim finds nothing).
    func release(socket: SocketID) -> EventLoopFuture<RecoveryRelease>
    /// Who owns the record of each socket (for the presence reaper of a dead node).
    func fates(of sockets: [SocketID]) -> EventLoopFuture<[RecoveryFate]>
    /// The entries after `after` up to `through` included that `wanted` accepts, in order; nil when the log no
    /// longer has `after` (trimmed, or Redis lost it): the client's place is unknown. More than `limit` of them
    /// is nil too.
    func entries(
        after: StreamOffset,
        through: StreamOffset,
        limit: Int,
        where wanted: @escaping @Sendable (LedgerEntry) -> Bool
    ) -> EventLoopFuture<[LedgerEntry]?>
}
