import EngineIO
import Logging
import NIOCore
import NIOEmbedded
import SocketIO
import Synchronization

@testable import Signaling

/// A websocket that records what its session writes.
final class RecordingWebSocket: WebSocketConnection {
    private let written = Mutex<[EngineFrame]>([])

    var frames: [EngineFrame] { written.withLock { $0 } }

    func write(_ frames: [EngineFrame]) { written.withLock { $0.append(contentsOf: frames) } }
    func close() {}
}

/// Presence that answers later, when the test says so: what a Redis round trip looks like to the application.
final class DeferredPresenceStore: PresenceStore, @unchecked Sendable {
    // Touched only on the embedded loop's thread (the test's).
    let store = InMemoryPresenceStore()
    private var held: [() -> Void] = []
    var pending: Int { held.count }

    private func later<T: Sendable>(_ future: EventLoopFuture<T>, on eventLoop: any EventLoop) -> EventLoopFuture<T> {
        let promise = eventLoop.makePromise(of: T.self)
        held.append { promise.completeWith(future) }
        return promise.futureResult
    }

    /// Answers the oldest question.
    func answerNext() {
        guard !held.isEmpty else { return }
        held.removeFirst()()
    }

    func answerAll() {
        while !held.isEmpty { answerNext() }
    }

    func join(_ entry: PresenceEntry, on eventLoop: any EventLoop) -> EventLoopFuture<(isNew: Bool, members: [PresenceEntry])> {
        later(store.join(entry, on: eventLoop), on: eventLoop)
    }
    func leave(room: Room, socket: SocketID, on eventLoop: any EventLoop) -> EventLoopFuture<PresenceEntry?> {
        later(store.leave(room: room, socket: socket, on: eventLoop), on: eventLoop)
    }
    func count(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        later(store.count(of: room, on: eventLoop), on: eventLoop)
    }
    func members(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<[PresenceEntry]> {
        later(store.members(of: room, on: eventLoop), on: eventLoop)
    }
    func isMember(_ socket: SocketID, ofAnyOf rooms: [Room], on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        later(store.isMember(socket, ofAnyOf: rooms, on: eventLoop), on: eventLoop)
    }
}

/// The signaling application on the namespace `/` of one node, with the in-memory adapter, on an embedded loop:
/// clients are Engine.IO sessions on recording websockets, driven with Socket.IO packets. No sockets, no sleeps.
final class SignalingHarness {
    let loop = EmbeddedEventLoop()
    let namespace: Namespace
    let limits: SocketIOLimits

    init(
        configuration: SignalingConfiguration = SignalingConfiguration(),
        presence: any PresenceStore = InMemoryPresenceStore(),
        limits: SocketIOLimits = SocketIOLimits(),
        recovery: RecoveryConfiguration? = nil
    ) {
        self.limits = limits
        namespace = Namespace(
            name: "/",
            handler: SignalingApplication(configuration: configuration, presence: presence),
            logger: Logger(label: "test"),
            metrics: SocketIOMetrics(knownEvents: SignalingApplication.knownEvents),
            recovery: recovery
        ) { InMemoryAdapter(nsp: $0, delivery: $1) }
    }

    deinit { try? loop.syncShutdownGracefully() }

    /// A client whose session is open; `connect` sends the Socket.IO CONNECT (with `auth`, a JSON object).
    func client(connect: Bool = true, auth: String? = nil, token: String? = nil) -> TestClient {
        let client = TestClient(harness: self, token: token)
        if connect { client.connect(auth: auth) }
        return client
    }
}

/// One client of the harness: sends packets, reads back what the server wrote to it.
final class TestClient {
    let ws = RecordingWebSocket()
    let session: EngineSession
    let loop: EmbeddedEventLoop
    private var read = 0
    private var nextAck = 0

    init(harness: SignalingHarness, token: String?) {
        loop = harness.loop
        // No heartbeat within a test's virtual time: the clients here never answer pings.
        var engine = EngineConfiguration()
        engine.pingInterval = .hours(24 * 365)
        session = EngineSession(sid: "s", transport: .websocket(ws), eventLoop: harness.loop, configuration: engine)
        session.handshakeToken = token
        session.delegate = SocketIOConnection(
            session: session,
            namespaces: ["/": harness.namespace],
            connectTimeout: .seconds(45),
            limits: harness.limits,
            logger: Logger(label: "test")
        )
        session.start()
    }

    /// Everything the server sent, as Socket.IO packets (the Engine.IO open packet and pings left out).
    var packets: [SocketIOPacket] {
        ws.frames.compactMap { frame in
            guard case .text(var buffer) = frame, buffer.readInteger(as: UInt8.self) == UInt8(ascii: "4") else { return nil }
            return try? SocketIOPacket.decode(buffer)
        }
    }

    /// The socket id from the CONNECT answer, nil while refused or not connected.
    var sid: String? {
        packets.last { $0.type == .connect }?.data?["sid"]?.stringValue
    }

    /// The CONNECT_ERROR message, if the connect was refused.
    var connectError: String? {
        packets.last { $0.type == .connectError }?.data?["message"]?.stringValue
    }

    /// Events received (name, arguments), in order.
    var events: [(name: String, arguments: [PacketValue])] {
        packets.compactMap { packet in
            guard packet.type == .event, case .array(let data)? = packet.data, let name = data.first?.stringValue else {
                return nil
            }
            return (name, Array(data.dropFirst()))
        }
    }

    /// The first argument of every event named `name`, in order.
    func received(_ name: String) -> [PacketValue] {
        events.filter { $0.name == name }.map { $0.arguments.first ?? .null }
    }

    /// The events received since the last call, by name.
    func newEvents() -> [String] {
        let all = events
        defer { read = all.count }
        return all.dropFirst(read).map(\.name)
    }

    /// The answer to the ack request `id`.
    func ack(_ id: Int) -> PacketValue? {
        packets.last { $0.type == .ack && $0.id == id }?.data?.arrayValue?.first
    }

    var isClosed: Bool { session.isClosed }

    func send(_ packet: String) {
        session.webSocketFrame(.text(ByteBuffer(string: "4" + packet)), from: ws)
        loop.run()
    }

    func connect(auth: String? = nil) { send("0" + (auth ?? "")) }

    /// Sends `event` with one JSON argument and no ack request.
    func emit(_ event: String, _ json: String) {
        send("2[\"\(event)\",\(json)]")
    }

    /// Sends `event` with one JSON argument and an ack request; returns the ack id.
    @discardableResult
    func emitWithAck(_ event: String, _ json: String) -> Int {
        let id = nextAck
        nextAck += 1
        send("2\(id)[\"\(event)\",\(json)]")
        return id
    }

    func join(_ room: String, as name: String) -> PacketValue? {
        ack(emitWithAck("join_room", "{\"roomName\":\"\(room)\",\"personName\":\"\(name)\"}"))
    }

    func disconnect() {
        session.close(reason: .transportClose)
        loop.run()
    }
}
