import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO
@testable import SocketIO

/// A namespace handler that records what it is told and keeps the sockets it saw (as work finishing later would).
final class KeepingHandler: NamespaceHandler, @unchecked Sendable {
    // Touched only on the embedded loop's thread (the test's).
    var connected: [Socket] = []
    var disconnected: [(Socket, String)] = []
    var events: [(String, [PacketValue])] = []
    var refuse: String?

    func socketWillConnect(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) {
        if let refuse { throw ConnectRefusal(refuse) }
    }
    func socketConnected(_ socket: Socket, state: Void) { connected.append(socket) }
    func socket(_ socket: Socket, state: Void, event: String, arguments: [PacketValue], ack: Ack?) {
        events.append((event, arguments))
    }
    func socketDisconnected(_ socket: Socket, state: Void, reason: String) { disconnected.append((socket, reason)) }
}

/// A websocket session with the Socket.IO layer on an embedded loop.
final class SocketIOHarness {
    let loop = EmbeddedEventLoop()
    let ws = FakeWebSocket()
    let handler = KeepingHandler()
    let namespace: Namespace
    var session: EngineSession?

    init(limits: SocketIOLimits = SocketIOLimits(), connectTimeout: TimeAmount = .seconds(45)) {
        namespace = Namespace(name: "/", handler: handler, logger: Logger(label: "test"), metrics: SocketIOMetrics(knownEvents: [])) {
            InMemoryAdapter(nsp: $0, delivery: $1)
        }
        let session = EngineSession(sid: "s", transport: .websocket(ws), eventLoop: loop, configuration: EngineConfiguration())
        session.delegate = SocketIOConnection(
            session: session,
            namespaces: ["/": namespace],
            connectTimeout: connectTimeout,
            limits: limits,
            logger: Logger(label: "test")
        )
        session.start()
        self.session = session
    }

    deinit { try? loop.syncShutdownGracefully() }

    func text(_ packet: String) { session?.webSocketFrame(textFrame("4" + packet), from: ws) }
    func binary(_ bytes: Int) { session?.webSocketFrame(.binary(ByteBuffer(repeating: 7, count: bytes)), from: ws) }
    var sent: [String] {
        ws.frames.compactMap { if case .text(let b) = $0 { String(buffer: b) } else { nil } }
    }
    var closeReason: EngineSession.CloseReason? { session?.closeReason }
}

@Suite("Socket lifetime and Socket.IO limits")
struct SocketLifetimeTests {
    @Test func socketOutlivingItsSessionIsInertAndSafe() throws {
        let h = SocketIOHarness()
        h.text("0")
        let socket = try #require(h.handler.connected.first)
        #expect(socket.isConnected)
        h.session?.close(reason: .transportClose)
        h.session = nil  // the engine's table let go: the connection is freed with the session
        #expect(!socket.isConnected)
        #expect(h.handler.disconnected.count == 1)
        // Work finishing late (a Redis answer, a timer) may still hold the socket: all of this is a no-op.
        socket.join("late-room")
        socket.emit("x", [])
        socket.emit("x", [], ack: { _ in Issue.record("ack of a gone socket") })
        socket.closeSession()
        socket.disconnect()
        #expect(socket.rooms.isEmpty)
        #expect(h.namespace.localSockets.count == 0)
        #expect(socket.eventLoop === h.loop)
    }

    @Test func joinAfterNamespaceDisconnectDoesNothing() throws {
        let h = SocketIOHarness()
        h.text("0")
        let first = try #require(h.handler.connected.first)
        h.text("1")  // 41: leaves the namespace, the session stays
        #expect(!first.isConnected)
        first.join("r")
        #expect(first.rooms.isEmpty)
        h.text("0")
        #expect(h.handler.connected.count == 2)
        #expect(h.closeReason == nil)
    }

    @Test func connectSpendsTheSessionBudget() {
        var limits = SocketIOLimits()
        limits.eventsPerSecond = 0.001
        limits.eventBurst = 3
        limits.maxFailedConnects = 2
        let h = SocketIOHarness(limits: limits)
        for _ in 0..<3 {
            h.text("0")
            h.text("1")
        }
        #expect(h.handler.connected.count == 3)
        h.text("0")
        #expect(h.sent.last?.hasPrefix("44{\"message\":") == true)
        #expect(h.closeReason == nil)
        h.text("0")
        #expect(h.closeReason == .forcedClose)
        #expect(h.handler.connected.count == 3)
    }

    @Test func socketsOfOneSessionShareOneBudget() throws {
        var limits = SocketIOLimits()
        limits.eventsPerSecond = 0.001
        limits.eventBurst = 5
        let h = SocketIOHarness(limits: limits)
        h.text("0")
        let first = try #require(h.handler.connected.first)
        #expect(first.budget.take())
        #expect(first.budget.take())
        h.text("1")
        h.text("0")
        let second = try #require(h.handler.connected.last)
        #expect(second !== first)
        #expect(second.budget === first.budget)
        #expect(second.budget.take())
        #expect(!second.budget.take())  // 2 CONNECTs + 3 events: the burst is spent
    }

    @Test func tooManyAttachmentsIsAProtocolError() {
        var limits = SocketIOLimits()
        limits.maxAttachments = 4
        let h = SocketIOHarness(limits: limits)
        h.text("0")
        h.text("55-[\"m\",{\"_placeholder\":true,\"num\":0}]")
        #expect(h.closeReason == .parseError)
    }

    @Test func attachmentsAreBoundedTogether() {
        var limits = SocketIOLimits()
        limits.maxAttachmentBytes = 1000
        let h = SocketIOHarness(limits: limits)
        h.text("0")
        h.text("53-[\"m\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":2}]")
        h.binary(600)
        #expect(h.closeReason == nil)
        h.binary(600)
        #expect(h.closeReason == .parseError)
    }

    @Test func incompleteBinaryPacketTimesOut() {
        var limits = SocketIOLimits()
        limits.binaryTimeout = .seconds(2)
        let h = SocketIOHarness(limits: limits)
        h.text("0")
        h.text("52-[\"m\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]")
        h.binary(10)
        h.loop.advanceTime(by: .seconds(1))
        #expect(h.closeReason == nil)
        h.loop.advanceTime(by: .seconds(2))
        #expect(h.closeReason == .parseError)
    }

    @Test func completeBinaryPacketIsDeliveredAndDisarmsTheTimeout() {
        var limits = SocketIOLimits()
        limits.binaryTimeout = .seconds(2)
        let h = SocketIOHarness(limits: limits)
        h.text("0")
        h.text("51-[\"m\",{\"_placeholder\":true,\"num\":0}]")
        h.binary(10)
        h.loop.advanceTime(by: .seconds(5))
        #expect(h.closeReason == nil)
        #expect(h.handler.events.count == 1)
    }

    @Test func unansweredAcksTimeOutAndAreBounded() throws {
        var limits = SocketIOLimits()
        limits.ackTimeout = .seconds(1)
        limits.maxPendingAcks = 2
        let h = SocketIOHarness(limits: limits)
        h.text("0")
        let socket = try #require(h.handler.connected.first)
        var answers: [[PacketValue]] = []
        socket.emit("q", [], ack: { answers.append($0) })  // id 0
        socket.emit("q", [], ack: { answers.append($0) })  // id 1
        socket.emit("q", [], ack: { answers.append($0) })  // beyond the bound: not asked
        #expect(h.sent.filter { $0.hasPrefix("42") }.count == 2)
        h.text("30[\"a\"]")
        #expect(answers == [["a"]])
        h.loop.advanceTime(by: .seconds(2))
        h.text("31[\"late\"]")  // timed out: forgotten
        #expect(answers == [["a"]])
        socket.emit("q", [], ack: { answers.append($0) })  // room again
        #expect(h.sent.filter { $0.hasPrefix("42") }.count == 3)
    }
}
