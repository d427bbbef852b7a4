import Foundation
import Histogram
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

/// Where a client connects: `http://host:port[/path]` or `ws://…` (path defaults to `/socket.io/`).
struct Endpoint: Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    var path: String

    init?(_ url: String) {
        var rest = Substring(url)
        for scheme in ["http://", "ws://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
        let hostPort = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(hostPort.count)
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]) else {
            return nil
        }
        host = String(hostPort[..<colon])
        self.port = port
        self.path = path.isEmpty || path == "/" ? "/socket.io/" : String(path)
    }

    var description: String { "http://\(host):\(port)\(path)" }
}

/// SplitMix64: cheap WebSocket masking keys without a getrandom call per frame.
struct FastRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum LoadMode: Sendable {
    case none
    case broadcast
    case saturate(window: Int)
    case signal
}

/// Counters and histograms of one phase on one event loop (merged by the driver).
struct PhaseStats: Sendable {
    var delivery = makeLatencyHistogram()
    var signalHop = makeLatencyHistogram()
    var signalRTT = makeLatencyHistogram()
    var offerHop = makeLatencyHistogram()
    var answerHop = makeLatencyHistogram()
    var iceHop = makeLatencyHistogram()
    var connect = makeLatencyHistogram()
    var messagesSent = 0
    var deliveries = 0
    var staleDeliveries = 0
    var misrouted = 0
    var offersSent = 0, offersReceived = 0
    var answersSent = 0, answersReceived = 0
    var iceSent = 0, iceReceived = 0
    var iceHyphen = 0
    var userJoined = 0, userLeft = 0
    var connects = 0, connectFailures = 0, joinFailures = 0, unexpectedCloses = 0
    var serverErrors: [String: Int] = [:]

    mutating func merge(_ o: PhaseStats) {
        delivery.add(o.delivery)
        signalHop.add(o.signalHop)
        signalRTT.add(o.signalRTT)
        offerHop.add(o.offerHop)
        answerHop.add(o.answerHop)
        iceHop.add(o.iceHop)
        connect.add(o.connect)
        messagesSent += o.messagesSent
        deliveries += o.deliveries
        staleDeliveries += o.staleDeliveries
        misrouted += o.misrouted
        offersSent += o.offersSent
        offersReceived += o.offersReceived
        answersSent += o.answersSent
        answersReceived += o.answersReceived
        iceSent += o.iceSent
        iceReceived += o.iceReceived
        iceHyphen += o.iceHyphen
        userJoined += o.userJoined
        userLeft += o.userLeft
        connects += o.connects
        connectFailures += o.connectFailures
        joinFailures += o.joinFailures
        unexpectedCloses += o.unexpectedCloses
        for (k, v) in o.serverErrors { serverErrors[k, default: 0] += v }
    }

    var errorDetail: [String: Int] {
        [
            "connect_failures": connectFailures, "join_failures": joinFailures, "unexpected_closes": unexpectedCloses,
            "server_error_events": serverErrors.values.reduce(0, +),
        ]
    }

    var errorCount: Int { serverErrors.values.reduce(0, +) + connectFailures + joinFailures + unexpectedCloses }
}

/// Per-client delivery accounting, collected by the driver to count lost and duplicated room messages exactly.
struct ClientCounters: Sendable {
    var index: Int
    var sent: Int
    var receivedFrom: [Int]  // by room slot
    var reorders: Int
}

/// Everything that lives on one event loop: its clients, its stats, its pacer. Touched only on `loop`.
final class LoopContext: @unchecked Sendable {
    let loop: any EventLoop
    var clients: [SIOClient] = []
    var stats = PhaseStats()
    var phase: UInt64 = 0
    var mode: LoadMode = .none
    var rng: FastRandom
    private var pacerStart: UInt64 = 0
    private var pacerCount = 0
    private var pacerRate = 0.0
    private var pacerNext = 0
    private var senders: [SIOClient] = []

    init(loop: any EventLoop, seed: UInt64) {
        self.loop = loop
        self.rng = FastRandom(state: seed)
    }

    func resetPhase(_ phase: UInt64) {
        self.phase = phase
        stats = PhaseStats()
        for c in clients { c.resetCounters() }
    }

    /// Open-loop pacing: every 2 ms, send what is due since the start at `rate` per second, round-robin over
    /// `senders`; the latency clock starts at the intended send time, so a stalled generator shows up as latency.
    func startPacer(rate: Double, senders: [SIOClient], mode: LoadMode) {
        self.mode = mode
        guard rate > 0, !senders.isEmpty else { return }
        self.senders = senders
        pacerRate = rate
        pacerStart = nowNanos()
        pacerCount = 0
        pacerNext = Int(rng.next() % UInt64(senders.count))
        pacerGeneration &+= 1
        tick(pacerGeneration)
    }

    private var pacerGeneration = 0

    /// Sends everything due, then sleeps until the next intended send time (NIO timers are timerfd-precise).
    private func tick(_ generation: Int) {
        guard generation == pacerGeneration else { return }
        let now = nowNanos()
        let due = Int(Double(now &- pacerStart) * pacerRate / 1e9) + 1
        while pacerCount < due {
            let intended = pacerStart &+ UInt64(Double(pacerCount) * 1e9 / pacerRate)
            let c = senders[pacerNext]
            pacerNext = (pacerNext + 1) % senders.count
            pacerCount += 1
            switch mode {
            case .broadcast: c.sendRoomMessage(at: intended)
            case .signal: c.startSignalRound(at: intended)
            default: break
            }
        }
        let next = pacerStart &+ UInt64(Double(pacerCount) * 1e9 / pacerRate)
        loop.scheduleTask(deadline: .uptimeNanoseconds(next)) { [self] in tick(generation) }
    }

    /// Closed loop: each client keeps about `window` messages in flight, counting a message in flight until
    /// every member of the room has received it (so a slow cross-node path cannot build a backlog).
    func startSaturation(window: Int) {
        mode = .saturate(window: window)
        let now = nowNanos()
        for c in clients where c.joined {
            for _ in 0..<window { c.sendRoomMessage(at: now) }
        }
    }

    var saturationThreshold: Int? {
        if case .saturate(let w) = mode { return (w - 1) * clientsPerRoom }
        return nil
    }
    var clientsPerRoom = 4

    func stop() {
        mode = .none
        pacerGeneration &+= 1
    }

    func counters() -> [ClientCounters] {
        clients.map { ClientCounters(index: $0.index, sent: $0.sent, receivedFrom: $0.receivedFrom, reorders: $0.reorders) }
    }
}

/// All working clients by index, filled before any connects and read-only afterwards.
final class Registry: @unchecked Sendable {
    var clients: [SIOClient] = []
}

/// Immutable facts shared by all clients.
struct ClientConfig: Sendable {
    var roomSize: Int
    var contentPadding: String
    var sdp: String
    var candidate: String
    var connectTimeout: TimeAmount
    /// Count relayed ICE under `ice-candidate` (the seed's name) instead of `ice_candidate`.
    var iceHyphen: Bool
}

/// Consumes the HTTP/1.1 upgrade response, then hands the rest of the stream to the WebSocket decoder and leaves.
final class WebSocketHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let request: String
    var buffer: ByteBuffer?
    let onFailure: (String) -> Void

    init(endpoint: Endpoint, onFailure: @escaping (String) -> Void) {
        request =
            "GET \(endpoint.path)?EIO=4&transport=websocket HTTP/1.1\r\nHost: \(endpoint.host):\(endpoint.port)\r\n"
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + "Sec-WebSocket-Version: 13\r\n\r\n"
        self.onFailure = onFailure
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil { buffer = incoming } else { buffer!.writeBuffer(&incoming) }
        guard var buf = buffer else { return }
        let end: Int? = buf.withUnsafeReadableBytes { raw in
            guard raw.count >= 4 else { return nil }
            for i in 0...(raw.count - 4) where raw[i] == 13 && raw[i + 1] == 10 && raw[i + 2] == 13 && raw[i + 3] == 10 {
                return i + 4
            }
            return nil
        }
        guard let end else {
            if buf.readableBytes > 16384 { fail(context, "oversized HTTP response") }
            return
        }
        let head = buf.readString(length: end) ?? ""
        guard head.hasPrefix("HTTP/1.1 101") else {
            fail(context, "upgrade refused: " + (head.split(separator: "\r\n").first.map(String.init) ?? "?"))
            return
        }
        buffer = nil
        if buf.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(buf)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func fail(_ context: ChannelHandlerContext, _ why: String) {
        buffer = nil
        onFailure(why)
        context.close(promise: nil)
    }
}

/// One Socket.IO client over a WebSocket: Engine.IO open/ping, namespace CONNECT, join_room with an ack, and the
/// benchmark's room messages and offer/answer/ICE relays.
final class SIOClient: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let index: Int
    let roomBase: Int
    let roomName: String
    let endpoint: Endpoint
    let lc: LoopContext
    let config: ClientConfig
    let registry: Registry
    /// Deliveries of this client's messages not yet received by their room (saturation window).
    let outstanding = Atomic<Int>(0)
    /// A refill is scheduled on this client's loop (receivers on other loops decrement `outstanding`).
    let refillPending = Atomic<Bool>(false)
    /// Signal peer (the other end of its offer/answer pair), set by the driver once every sid is known.
    var peerSid = ""
    var isInitiator = false

    private var context: ChannelHandlerContext?
    private var channel: (any Channel)?
    private(set) var sid = ""
    private(set) var joined = false
    private var closing = false
    private var connectStart: UInt64 = 0
    private var joinPromise: EventLoopPromise<Void>?
    private var joinAckId = -1
    private var nextAckId = 0

    // Accounting of the current phase.
    private(set) var sent = 0
    private(set) var receivedFrom: [Int]
    private var lastSeq: [Int]
    private(set) var reorders = 0
    private var signalSeq: UInt64 = 0

    init(
        index: Int, roomBase: Int, roomName: String, endpoint: Endpoint, lc: LoopContext, config: ClientConfig,
        registry: Registry
    ) {
        self.registry = registry
        self.index = index
        self.roomBase = roomBase
        self.roomName = roomName
        self.endpoint = endpoint
        self.lc = lc
        self.config = config
        receivedFrom = Array(repeating: 0, count: config.roomSize)
        lastSeq = Array(repeating: -1, count: config.roomSize)
    }

    func resetCounters() {
        sent = 0
        outstanding.store(0, ordering: .relaxed)
        refillPending.store(false, ordering: .relaxed)
        for i in receivedFrom.indices {
            receivedFrom[i] = 0
            lastSeq[i] = -1
        }
        reorders = 0
    }

    /// Connects, upgrades, CONNECTs the namespace and joins the room; succeeds on the join ack. Call on `lc.loop`.
    func start(startedAt: UInt64) -> EventLoopFuture<Void> {
        connectStart = startedAt
        let promise = lc.loop.makePromise(of: Void.self)
        joinPromise = promise
        let timeout = lc.loop.scheduleTask(in: config.connectTimeout) { [self] in
            failJoin("timeout")
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        ClientBootstrap(group: lc.loop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(config.connectTimeout)
            .channelInitializer { [self] channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(WebSocketHandshakeHandler(endpoint: endpoint) { [self] why in failJoin(why) })
                    try sync.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 22)))
                    try sync.addHandler(WebSocketFrameEncoder())
                    try sync.addHandler(self)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .whenComplete { [self] result in
                switch result {
                case .success(let ch): channel = ch
                case .failure(let error):
                    if joinPromise != nil {
                        lc.stats.connectFailures += 1
                        let p = joinPromise
                        joinPromise = nil
                        p?.fail(error)
                    }
                }
            }
        return promise.futureResult
    }

    private struct JoinError: Error { var why: String }

    private func failJoin(_ why: String) {
        guard let p = joinPromise else { return }
        joinPromise = nil
        lc.stats.joinFailures += 1
        closing = true
        channel?.close(promise: nil)
        context?.close(promise: nil)
        p.fail(JoinError(why: why))
    }

    func close() {
        closing = true
        context?.close(promise: nil)
    }

    // MARK: ChannelHandler

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelInactive(context: ChannelHandlerContext) {
        if !closing {
            lc.stats.unexpectedCloses += 1
            failJoin("closed")
        }
        joined = false
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !closing { lc.stats.serverErrors["channel error", default: 0] += 1 }
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text: handleText(frame.unmaskedData)
        case .ping:
            send(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
        case .connectionClose:
            closing = closing || !joined
            context.close(promise: nil)
        default: break
        }
    }

    private func send(_ frame: WebSocketFrame) {
        guard let context else { return }
        var f = frame
        f.maskKey = WebSocketMaskingKey.random(using: &lc.rng)
        context.writeAndFlush(wrapOutboundOut(f), promise: nil)
    }

    private func sendText(_ text: String) {
        guard let context else { return }
        send(WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: text)))
    }

    private func handleText(_ buf: ByteBuffer) {
        guard let b0 = buf.getInteger(at: buf.readerIndex, as: UInt8.self) else { return }
        switch b0 {
        case UInt8(ascii: "0"): sendText("40")  // Engine.IO open → Socket.IO CONNECT
        case UInt8(ascii: "2"): sendText("3")  // ping → pong
        case UInt8(ascii: "1"):
            closing = closing || !joined
            context?.close(promise: nil)
        case UInt8(ascii: "4"):
            guard let b1 = buf.getInteger(at: buf.readerIndex + 1, as: UInt8.self) else { return }
            switch b1 {
            case UInt8(ascii: "0"): handleConnect(buf)
            case UInt8(ascii: "2"): handleEvent(buf)
            case UInt8(ascii: "3"): handleAck(buf)
            case UInt8(ascii: "4"): failJoin("connect_error")
            case UInt8(ascii: "1"): failJoin("disconnected")
            default: break
            }
        default: break
        }
    }

    private func handleConnect(_ buf: ByteBuffer) {
        let text = buf.getString(at: buf.readerIndex, length: buf.readableBytes) ?? ""
        if let r = text.range(of: "\"sid\":\"") {
            sid = String(text[r.upperBound...].prefix { $0 != "\"" })
        }
        joinAckId = nextAckId
        nextAckId += 1
        sendText(
            "42\(joinAckId)[\"join_room\",{\"roomName\":\"\(roomName)\",\"personName\":\"p\(index)\"}]")
    }

    private func handleAck(_ buf: ByteBuffer) {
        var id = 0
        var i = buf.readerIndex + 2
        while let c = buf.getInteger(at: i, as: UInt8.self), c >= 48, c <= 57 {
            id = id * 10 + Int(c - 48)
            i += 1
        }
        guard id == joinAckId, let p = joinPromise else { return }
        if let text = buf.getString(at: buf.readerIndex, length: Swift.min(buf.readableBytes, 200)),
            text.contains("\"code\":")
        {
            lc.stats.serverErrors["join: " + text, default: 0] += 1
            failJoin("join refused")
            return
        }
        confirmJoin(p)
    }

    /// The join is confirmed by its ack or by the room's `user_joined` naming this socket, whichever comes first
    /// (the seed's server never answers acks).
    private func confirmJoin(_ p: EventLoopPromise<Void>) {
        joinPromise = nil
        joined = true
        lc.stats.connects += 1
        lc.stats.connect.recordNanos(nowNanos() &- connectStart)
        p.succeed(())
    }

    private func handleEvent(_ buf: ByteBuffer) {
        // 42["name",...]
        let start = buf.readerIndex + 4
        guard buf.getInteger(at: start - 2, as: UInt8.self) == UInt8(ascii: "["),
            buf.getInteger(at: start - 1, as: UInt8.self) == UInt8(ascii: "\"")
        else { return }
        var end = start
        while let c = buf.getInteger(at: end, as: UInt8.self), c != UInt8(ascii: "\"") { end += 1 }
        let name = buf.getString(at: start, length: end - start) ?? ""
        switch name {
        case "message": onRoomMessage(buf)
        case "offer", "answer": onSignal(name, buf)
        case "ice_candidate":
            if config.iceHyphen { lc.stats.iceHyphen += 1 } else { onSignal(name, buf) }
        case "ice-candidate":
            if config.iceHyphen { onSignal("ice_candidate", buf) } else { lc.stats.iceHyphen += 1 }
        case "user_joined":
            lc.stats.userJoined += 1
            if let p = joinPromise, !sid.isEmpty,
                let text = buf.getString(at: buf.readerIndex, length: buf.readableBytes),
                text.contains("\"socketId\":\"\(sid)\"")
            {
                confirmJoin(p)
            }
        case "user_left": lc.stats.userLeft += 1
        case "error":
            let text = buf.getString(at: buf.readerIndex, length: buf.readableBytes) ?? ""
            var code = "error"
            if let r = text.range(of: "\"code\":\"") { code = String(text[r.upperBound...].prefix { $0 != "\"" }) }
            lc.stats.serverErrors[code, default: 0] += 1
        default: break
        }
    }

    // MARK: Room messages

    func sendRoomMessage(at intended: UInt64) {
        guard joined else { return }
        let seq = sent
        sent += 1
        lc.stats.messagesSent += 1
        outstanding.add(config.roomSize, ordering: .relaxed)
        sendText(
            "42[\"message\",{\"roomName\":\"\(roomName)\",\"personName\":\"p\(index)\",\"content\":\"~B~\(lc.phase):\(index):\(seq):\(intended)~\(config.contentPadding)\"}]"
        )
    }

    private func onRoomMessage(_ buf: ByteBuffer) {
        let now = nowNanos()
        var m: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        guard Marker.parse(buf, tag: UInt8(ascii: "B"), into: &m) == 4 else { return }
        guard m.0 == lc.phase else {
            lc.stats.staleDeliveries += 1
            return
        }
        let slot = Int(m.1) - roomBase
        guard slot >= 0, slot < receivedFrom.count else {
            lc.stats.misrouted += 1
            return
        }
        receivedFrom[slot] += 1
        if Int(m.2) != lastSeq[slot] + 1 { reorders += 1 }
        lastSeq[slot] = Int(m.2)
        lc.stats.deliveries += 1
        lc.stats.delivery.recordNanos(now &- m.3)
        let sender = Int(m.1)
        if let threshold = lc.saturationThreshold, sender < registry.clients.count {
            let s = registry.clients[sender]
            if s.outstanding.subtract(1, ordering: .relaxed).newValue <= threshold,
                s.refillPending.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
            {
                if s.lc === lc {
                    s.refill()
                } else {
                    s.lc.loop.execute { s.refill() }
                }
            }
        }
    }

    /// Saturation: sends until fewer than `window` messages are in flight (on this client's loop).
    func refill() {
        refillPending.store(false, ordering: .relaxed)
        guard let threshold = lc.saturationThreshold else { return }
        let now = nowNanos()
        while joined && outstanding.load(ordering: .relaxed) <= threshold { sendRoomMessage(at: now) }
    }

    // MARK: Signals (offer → answer → ICE, between two clients on different nodes)

    func startSignalRound(at intended: UInt64) {
        guard joined, !peerSid.isEmpty else { return }
        signalSeq += 1
        lc.stats.offersSent += 1
        sendText(
            "42[\"offer\",{\"offer\":{\"type\":\"offer\",\"sdp\":\"~S~\(lc.phase):\(index):\(signalSeq):\(intended):\(intended)~\(config.sdp)\"},\"toPeer\":\"\(peerSid)\"}]"
        )
    }

    private func onSignal(_ name: String, _ buf: ByteBuffer) {
        let now = nowNanos()
        var m: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        guard Marker.parse(buf, tag: UInt8(ascii: "S"), into: &m) == 5 else { return }
        guard m.0 == lc.phase else {
            lc.stats.staleDeliveries += 1
            return
        }
        let hop = now &- m.3
        lc.stats.signalHop.recordNanos(hop)
        let tag = "~S~\(m.0):\(m.1):\(m.2):\(now):\(m.4)~"
        switch name {
        case "offer":
            lc.stats.offerHop.recordNanos(hop)
            lc.stats.offersReceived += 1
            lc.stats.answersSent += 1
            sendText(
                "42[\"answer\",{\"answer\":{\"type\":\"answer\",\"sdp\":\"\(tag)\(config.sdp)\"},\"toPeer\":\"\(peerSid)\"}]")
        case "answer":
            lc.stats.answerHop.recordNanos(hop)
            lc.stats.answersReceived += 1
            lc.stats.signalRTT.recordNanos(now &- m.4)
            lc.stats.iceSent += 1
            sendText(
                "42[\"ice_candidate\",{\"iccCandidate\":{\"candidate\":\"\(tag)\(config.candidate)\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0},\"toPeer\":\"\(peerSid)\"}]"
            )
        default:
            lc.stats.iceHop.recordNanos(hop)
            lc.stats.iceReceived += 1
        }
    }
}
