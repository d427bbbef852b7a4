import Adapter
import Crypto
import EngineIO
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Signaling
import SocketIO

/// One decoder that sees network bytes, and what must hold for any input: it returns or throws, never crashes,
/// and whatever it accepts survives the matching encoder (checked with `require`, which crashes on purpose so
/// libFuzzer keeps the input).
struct FuzzTarget: Sendable {
    let name: String
    let summary: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void
}

/// A broken invariant: crash so that libFuzzer (or the replay) reports the input.
func require(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError("fuzz invariant broken: \(message())", file: file, line: line) }
}

enum FuzzTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "json", summary: "PacketValue.parseJSON (Socket.IO payloads, JWT claims, cluster JSON)", run: json),
        FuzzTarget(name: "socketio", summary: "SocketIOPacket.decode (the text of every Engine.IO message)", run: socketIO),
        FuzzTarget(name: "polling", summary: "PollingPayload.decode (long-polling POST bodies)", run: polling),
        FuzzTarget(name: "base64", summary: "Base64.decode (binary packets on long-polling)", run: base64),
        FuzzTarget(name: "websocket", summary: "EngineWebSocketHandler on an EmbeddedChannel (fragments, control frames)", run: webSocket),
        FuzzTarget(name: "msgpack", summary: "MessagePackDecoder (messages from other nodes via Redis)", run: messagePack),
        FuzzTarget(name: "cluster", summary: "ClusterBroadcast/ClusterRequest decoding and ClusterChannels.parse", run: cluster),
        FuzzTarget(name: "resp", summary: "HiredisReader (RESP replies from Redis, split at arbitrary points)", run: resp),
        FuzzTarget(name: "redisurl", summary: "RedisConfiguration(url:) (--redis-url)", run: redisURL),
        FuzzTarget(name: "jwt", summary: "JWTVerifier.verify (raw tokens, and validly signed tokens with fuzzed claims)", run: jwt),
        FuzzTarget(name: "proxy", summary: "ProxyProtocol.parse (PROXY v1/v2 headers from the load balancer)", run: proxyProtocol),
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    // MARK: PROXY protocol

    @Sendable static func proxyProtocol(_ data: UnsafeRawBufferPointer) {
        _ = ProxyProtocol.parse(data)
        // The header arrives in pieces: parse each prefix, as the connection's first reads would.
        for end in stride(from: 0, to: data.count, by: 7) { _ = ProxyProtocol.parse(data[..<end]) }
    }

    // MARK: JSON

    @Sendable static func json(_ data: UnsafeRawBufferPointer) {
        guard let value = try? PacketValue.parseJSON(data) else { return }
        var written = ByteBuffer()
        value.writeJSON(into: &written)
        // What the server writes, it (and the browser) must read back, and writing it again changes nothing.
        guard let again = try? PacketValue.parseJSON(written) else {
            return require(false, "writeJSON output does not parse: \(String(buffer: written))")
        }
        var rewritten = ByteBuffer()
        again.writeJSON(into: &rewritten)
        require(written == rewritten, "JSON not stable: \(String(buffer: written)) then \(String(buffer: rewritten))")
    }

    // MARK: Socket.IO

    @Sendable static func socketIO(_ data: UnsafeRawBufferPointer) {
        guard let packet = try? SocketIOPacket.decode(ByteBuffer(bytes: data)) else { return }
        let first = reencode(packet)
        // A number payload right after an ack id (`3` `1` `2` → `312`) cannot be told apart from more id digits, in
        // socket.io-parser too: such packets do not round-trip (the server never re-sends a client's packet).
        if case .number? = packet.data { return }
        guard let again = try? SocketIOPacket.decode(first) else {
            return require(false, "re-encoded packet does not decode: \(String(buffer: first))")
        }
        let second = reencode(again)
        require(first == second, "Socket.IO packet not stable: \(String(buffer: first)) then \(String(buffer: second))")
    }

    /// The Socket.IO text of the packet's first Engine.IO frame (without the Engine.IO type digit).
    /// A decoded binary packet still holds placeholders, not binary values: it is re-encoded as the plain type.
    private static func reencode(_ packet: SocketIOPacket) -> ByteBuffer {
        var packet = packet
        if packet.type == .binaryEvent { packet.type = .event }
        if packet.type == .binaryAck { packet.type = .ack }
        guard case .text(var text)? = packet.engineFrames().first else {
            require(false, "a Socket.IO packet encodes to a text frame first")
            return ByteBuffer()
        }
        text.moveReaderIndex(forwardBy: 1)
        return text
    }

    // MARK: Engine.IO long-polling

    @Sendable static func polling(_ data: UnsafeRawBufferPointer) {
        guard let frames = try? PollingPayload.decode(ByteBuffer(bytes: data)) else { return }
        let body = PollingPayload.encode(frames)
        let again = try? PollingPayload.decode(body)
        require(again == frames, "polling payload does not round-trip: \(String(buffer: body))")
    }

    @Sendable static func base64(_ data: UnsafeRawBufferPointer) {
        if let decoded = Base64.decode(data) {
            var encoded = ByteBuffer()
            Base64.encode(decoded, into: &encoded)
            require(Base64.decode(encoded.readableBytesView) == decoded, "base64 of decoded bytes does not decode back")
        }
        var encoded = ByteBuffer()
        Base64.encode(data, into: &encoded)
        require(Base64.decode(encoded.readableBytesView) == Array(data), "base64 does not round-trip")
    }

    // MARK: WebSocket

    /// Shared by all runs: metrics objects register with the (no-op) metrics system.
    static let metrics = EngineMetrics()
    static let quietLogger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Frames as records: `flags, length, [mask key ×4], payload`. Flags: bit 7 FIN, bit 6 masked, bits 4–5
    /// RSV1–2, bits 0–3 the opcode. A short maxPayload so the limits are reached.
    @Sendable static func webSocket(_ data: UnsafeRawBufferPointer) {
        var configuration = EngineConfiguration()
        configuration.maxPayload = 300
        let engine = EngineServer(configuration: configuration, logger: quietLogger, metrics: metrics) { session in
            session.delegate = SocketIOSink.shared
        }
        let channel = EmbeddedChannel()
        defer {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            channel.embeddedEventLoop.run()
            try? channel.embeddedEventLoop.syncShutdownGracefully()
        }
        do {
            // Active, as after the upgrade (closing it makes it inactive, which ends the run).
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4000)).wait()
            try channel.pipeline.syncOperations.addHandler(engine.makeWebSocketHandler(maxPayload: 300))
        } catch {
            return require(false, "adding the websocket handler failed: \(error)")
        }
        channel.embeddedEventLoop.run()
        var input = data[...]
        while let flags = input.popFirst(), let length = input.popFirst() {
            guard let opcode = WebSocketOpcode(encodedWebSocketOpcode: flags & 0x0F) else { continue }
            var maskKey: WebSocketMaskingKey?
            if flags & 0x40 != 0 {
                guard input.count >= 4 else { break }
                maskKey = WebSocketMaskingKey(Array(input.prefix(4)))
                input = input.dropFirst(4)
            }
            let payload = input.prefix(Int(length))
            input = input.dropFirst(payload.count)
            let frame = WebSocketFrame(
                fin: flags & 0x80 != 0,
                rsv1: flags & 0x20 != 0,
                rsv2: flags & 0x10 != 0,
                opcode: opcode,
                maskKey: maskKey,
                data: ByteBuffer(bytes: payload)
            )
            guard channel.isActive else { break }
            do {
                try channel.writeInbound(frame)
            } catch {
                break
            }
            channel.embeddedEventLoop.run()
            while (try? channel.readOutbound(as: WebSocketFrame.self)) != nil {}
        }
    }

    /// The layer above Engine.IO for the websocket target: decodes each message as Socket.IO would.
    final class SocketIOSink: EngineSessionDelegate, @unchecked Sendable {
        static let shared = SocketIOSink()
        func engineSession(_ session: EngineSession, didReceiveText payload: ByteBuffer) {
            _ = try? SocketIOPacket.decode(payload)
        }
        func engineSession(_ session: EngineSession, didReceiveBinary payload: ByteBuffer) {}
        func engineSession(_ session: EngineSession, didCloseWithReason reason: EngineSession.CloseReason) {}
    }

    // MARK: MessagePack and the cluster messages

    @Sendable static func messagePack(_ data: UnsafeRawBufferPointer) {
        let decoder = MessagePackDecoder()
        // Values one after another, as decodeValue(from:) reads them.
        var buffer = ByteBuffer(bytes: data)
        var count = 0
        while buffer.readableBytes > 0, count < 64, (try? decoder.decodeValue(from: &buffer)) != nil { count += 1 }
        guard let value = try? decoder.decode(ByteBuffer(bytes: data)) else { return }
        let encoder = MessagePackEncoder()
        let first = encoder.encode(value)
        guard let again = try? decoder.decode(first) else {
            return require(false, "re-encoded MessagePack does not decode (\(first.readableBytes) bytes)")
        }
        require(encoder.encode(again) == first, "MessagePack not stable")
    }

    @Sendable static func cluster(_ data: UnsafeRawBufferPointer) {
        let bytes = ByteBuffer(bytes: data)
        if let broadcast = try? ClusterBroadcast(decoding: bytes) {
            var encoded = ByteBuffer()
            broadcast.encode(into: &encoded)
            require((try? ClusterBroadcast(decoding: encoded)) != nil, "re-encoded broadcast does not decode")
            // The echo check before decoding never claims a uid the decoder does not read (it may say no where
            // the decoder reads one: a non-canonical string header, which then goes through the full decode).
            require(!ClusterBroadcast.hasUID(broadcast.uid + "x", bytes), "hasUID takes a longer uid")
            if ClusterBroadcast.hasUID("Gem_sd", bytes) { require(broadcast.uid == "Gem_sd", "hasUID disagrees") }
        }
        _ = ClusterBroadcast.hasUID("Gem_sd", bytes)
        _ = try? ClusterRequest(decoding: bytes)
        _ = ClusterChannels.parse(String(decoding: data, as: UTF8.self))
    }

    // MARK: Redis

    /// The first byte picks the chunk size the rest is fed in (Redis bytes arrive split anywhere).
    @Sendable static func resp(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first else { return }
        let chunk = Int(first % 32) + 1
        let reader = HiredisReader()
        var rest = data.dropFirst()
        var replies = 0
        while !rest.isEmpty {
            let piece = rest.prefix(chunk)
            rest = rest.dropFirst(piece.count)
            do {
                try reader.feed(ByteBuffer(bytes: piece))
                while try reader.nextReply() != nil {
                    replies += 1
                }
            } catch {
                return  // the connection would be closed
            }
        }
    }

    @Sendable static func redisURL(_ data: UnsafeRawBufferPointer) {
        let url = String(decoding: data, as: UTF8.self)
        do {
            _ = try RedisConfiguration(url: url)
        } catch {
            _ = error.description
        }
    }

    // MARK: JWT

    static let jwtSecret = "fuzz-secret"
    static let verifier: JWTVerifier = {
        do {
            return try JWTVerifier(secret: jwtSecret, rsaPublicKeyPEM: nil)
        } catch {
            fatalError("JWTVerifier: \(error)")
        }
    }()

    /// First byte even: the rest is a token as a client sends it. Odd: the rest is `header 0x00 claims`, encoded
    /// and signed with the verifier's secret, so the claim checks run on hostile JSON too.
    @Sendable static func jwt(_ data: UnsafeRawBufferPointer) {
        guard let mode = data.first else { return }
        let rest = data.dropFirst()
        if mode & 1 == 0 {
            _ = try? verifier.verify(String(decoding: rest, as: UTF8.self), now: 1_700_000_000)
            return
        }
        let split = rest.firstIndex(of: 0) ?? rest.endIndex
        let header = Base64.encodeURLSafe(rest[..<split])
        let claims = Base64.encodeURLSafe(rest[split...].dropFirst())
        let signingInput = header + "." + claims
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array(signingInput.utf8),
            using: SymmetricKey(data: Array(jwtSecret.utf8))
        )
        let token = signingInput + "." + Base64.encodeURLSafe(Array(mac))
        _ = try? verifier.verify(token, now: 1_700_000_000)
    }
}
