import EngineIO
import NIOCore

/// Connection state recovery (Socket.IO 4.6+): a socket whose transport dropped is kept, suspended, for a window;
/// a client that comes back within it with its private session id (`pid`) and the offset of the last event it
/// saw gets the same socket id, its rooms and the application's state back, and every event it missed, in order,
/// before new ones.
///
/// Why it is built this way:
/// - **Offsets are per socket, not per namespace.** Each event sent to a recoverable socket carries
///   `"<tag>-<n>"` as its last argument, `n` counting that socket's events on its own loop. The order a client
///   sees is then the order of the offsets by construction, whatever loop a broadcast came from, so "replay what
///   follows the client's offset" is exact. (A namespace-wide counter assigned at broadcast time can reach a
///   socket out of order from two loops, and a client that remembers the last offset it saw would then be
///   replayed an event twice.) The tag, random per socket, makes an offset of another session, or a string the
///   application sent as its last argument, unknown rather than mistaken for one of ours.
/// - **Events in flight when the transport died are covered by a short history**: the last few stamped events
///   of a connected socket (``RecoveryConfiguration/historyEvents``) are kept, so the ones written to a dying
///   transport are replayed from the client's offset. An offset older than the history, or unknown, is not
///   recoverable: the client gets a new session, never a partial replay presented as complete.
/// - **A suspended socket stays in its rooms** on this node and in presence; broadcasts to it are kept, in the
///   order they reach `LocalSockets`, in the ``RecoveryStore`` (bounded in count and bytes; past either bound the
///   session is marked lost and is not restored). `LocalSockets` checks the store and swaps a restored socket in
///   under its own lock, so no event falls between "suspended" and "restored" and none is delivered twice.
/// - **Only a transport drop suspends** (transport close or error, ping timeout). A client's own disconnect, a
///   server's, a protocol error, a slow consumer or a shutdown ends the socket as before.
public struct RecoveryConfiguration: Sendable {
    /// How long a suspended socket waits for its client (Socket.IO's `maxDisconnectionDuration`).
    public var window: TimeAmount
    /// Suspended sockets this node keeps; beyond it, a dropped socket ends as usual.
    public var maxSessions: Int
    /// Events, and their bytes, kept for one suspended socket (its history included); past either the session
    /// is lost (not restored).
    public var maxEvents: Int
    public var maxBytes: Int
    /// Bytes kept for all suspended sockets of this node together; past it, a socket that gets one more event
    /// is lost (its events dropped, its memory freed).
    public var maxTotalBytes: Int
    /// Events a connected socket keeps after sending them, and their bytes, to replay those written to a
    /// transport that was already dying.
    public var historyEvents: Int
    public var historyBytes: Int

    public init(
        window: TimeAmount = .seconds(120),
        maxSessions: Int = 10_000,
        maxEvents: Int = 1_000,
        maxBytes: Int = 1 << 20,
        maxTotalBytes: Int = 64 << 20,
        historyEvents: Int = 16,
        historyBytes: Int = 16 << 10
    ) {
        self.window = window
        self.maxSessions = maxSessions
        self.maxEvents = maxEvents
        self.maxBytes = maxBytes
        self.maxTotalBytes = maxTotalBytes
        self.historyEvents = historyEvents
        self.historyBytes = historyBytes
    }
}

/// The offsets of one recoverable socket and the events it sent last. A value: the socket owns it on its loop,
/// and hands it to the store when it is suspended.
public struct RecoveryLog: Sendable {
    /// The private session id, a bearer secret: never logged.
    public let pid: String
    /// Random per socket: the prefix of its offsets.
    let tag: String
    /// The number of the next event.
    private(set) var next: UInt64 = 1
    /// Stamped events, the last of them numbered `next - 1`, contiguous.
    private(set) var history: [(offset: UInt64, frames: [EngineFrame])] = []
    private(set) var historyBytes = 0

    init(pid: String, tag: String) {
        self.pid = pid
        self.tag = tag
    }

    static func make() -> RecoveryLog {
        RecoveryLog(pid: RecoveryLog.randomToken(bytes: 18), tag: RecoveryLog.randomToken(bytes: 6))
    }

    /// URL-safe base64 of `bytes` random bytes from the system's CSPRNG (getrandom on Linux): 18 bytes (144
    /// bits) for a pid.
    static func randomToken(bytes count: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: count)
        for i in bytes.indices { bytes[i] = rng.next() }
        return Base64.encodeURLSafe(bytes)
    }

    func offsetString(_ n: UInt64) -> String { "\(tag)-\(n)" }

    /// Our number for an offset string, or nil when it is not one of this socket's.
    func parse(_ offset: String) -> UInt64? {
        guard offset.hasPrefix(tag), offset.utf8.count > tag.utf8.count + 1 else { return nil }
        let rest = offset.utf8.dropFirst(tag.utf8.count)
        guard rest.first == UInt8(ascii: "-") else { return nil }
        let digits = Substring(rest.dropFirst())
        guard let n = UInt64(digits), String(n) == digits else { return nil }
        return n
    }

    /// The number of the next event when the client last answered a ping.
    private var nextAtLastPong: UInt64 = 1

    /// The client answered a ping. The events stamped before its previous answer were written before this
    /// ping (a ping goes out a ping interval after the previous answer), and a transport delivers in order, so
    /// the client has them: they leave the history. An idle socket keeps none for long.
    mutating func pongReceived() {
        let delivered = nextAtLastPong
        nextAtLastPong = next
        while let first = history.first, first.offset < delivered {
            historyBytes -= Self.size(of: history.removeFirst().frames)
        }
    }

        /// Stamps an EVENT's frames with the next offset and keeps them in the history (trimmed to its bounds).
    mutating func stamp(_ frames: [EngineFrame], historyEvents: Int, historyBytes limit: Int) -> [EngineFrame] {
        let n = next
        next += 1
        let stamped = Self.appendingOffset(offsetString(n), to: frames)
        let bytes = Self.size(of: stamped)
        history.append((n, stamped))
        historyBytes += bytes
        while !history.isEmpty, history.count > historyEvents || historyBytes > limit {
            historyBytes -= Self.size(of: history.removeFirst().frames)
        }
        return stamped
    }

    /// The stamped events that follow `offset` (nil: the client saw none of ours), or nil when the client's
    /// place is not known: an offset of another session, one never sent, or older than the history.
    func events(after offset: String?) -> [[EngineFrame]]? {
        let seen: UInt64
        if let offset {
            guard let n = parse(offset), n < next else { return nil }
            seen = n
        } else {
            seen = 0
        }
        if seen == next - 1 { return [] }
        guard let first = history.first, first.offset <= seen + 1 else { return nil }
        return history.filter { $0.offset > seen }.map(\.frames)
    }

    static func size(of frames: [EngineFrame]) -> Int {
        frames.reduce(0) { total, frame in
            switch frame {
            case .text(let b), .binary(let b): total + b.readableBytes
            }
        }
    }

    /// `4<type>…[…]` → `4<type>…[…,"offset"]`: the offset as the EVENT's last argument, on the encoded packet.
    static func appendingOffset(_ offset: String, to frames: [EngineFrame]) -> [EngineFrame] {
        guard case .text(let text)? = frames.first, text.readableBytes > 0,
            text.getInteger(at: text.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "]")
        else { return frames }
        var out = ByteBuffer()
        out.reserveCapacity(text.readableBytes + offset.utf8.count + 3)
        var body = text
        body.moveWriterIndex(to: text.writerIndex - 1)
        out.writeImmutableBuffer(body)
        out.writeString(",\"")
        out.writeString(offset)  // base64url and digits: nothing to escape
        out.writeString("\"]")
        var result = frames
        result[0] = .text(out)
        return result
    }
}
