import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import EngineIO

// MARK: fakes

/// Stands for the HTTP connection a GET came on.
final class FakeHTTPConnection: Sendable {}

/// A held long-polling GET: records the payloads it is answered with.
final class FakePoll: PollingResponder {
    let httpConnection: FakeHTTPConnection
    private let answers = Mutex<[String]>([])

    init(on httpConnection: FakeHTTPConnection = FakeHTTPConnection()) {
        self.httpConnection = httpConnection
    }

    var connection: ObjectIdentifier { ObjectIdentifier(httpConnection) }
    var payloads: [String] { answers.withLock { $0 } }

    func respond(_ payload: ByteBuffer) {
        answers.withLock { $0.append(String(buffer: payload)) }
    }

    /// Recorded as the pseudo-payload `<aborted>`.
    func abort() {
        answers.withLock { $0.append("<aborted>") }
    }
}

/// A websocket: records writes and closes, in order.
final class FakeWebSocket: WebSocketConnection {
    enum Event: Sendable, Hashable {
        case write([EngineFrame])
        case close
    }

    private let recorded = Mutex<[Event]>([])

    var events: [Event] { recorded.withLock { $0 } }
    var frames: [EngineFrame] {
        events.flatMap { event -> [EngineFrame] in
            if case .write(let frames) = event { return frames }
            return []
        }
    }
    var closeCount: Int { events.filter { $0 == .close }.count }

    func write(_ frames: [EngineFrame]) { recorded.withLock { $0.append(.write(frames)) } }
    func close() { recorded.withLock { $0.append(.close) } }
}

/// The layer above: records what the session reports, in order.
final class RecordingSessionDelegate: EngineSessionDelegate {
    enum Event: Hashable {
        case text(String)
        case binary([UInt8])
        case closed(EngineSession.CloseReason)
    }

    var events: [Event] = []

    var closeReasons: [EngineSession.CloseReason] {
        events.compactMap { if case .closed(let reason) = $0 { reason } else { nil } }
    }

    func engineSession(_ session: EngineSession, didReceiveText payload: ByteBuffer) {
        events.append(.text(String(buffer: payload)))
    }

    func engineSession(_ session: EngineSession, didReceiveBinary payload: ByteBuffer) {
        events.append(.binary(Array(payload.readableBytesView)))
    }

    func engineSession(_ session: EngineSession, didCloseWithReason reason: EngineSession.CloseReason) {
        events.append(.closed(reason))
    }
}

/// A started session on an embedded loop, with its delegate. The reference timings: ping every 25 s, pong
/// within 20 s, upgrade within 10 s. Tests are synchronous: the embedded loop belongs to the thread that made it.
final class SessionHarness {
    let loop = EmbeddedEventLoop()
    let delegate = RecordingSessionDelegate()
    let session: EngineSession
    private(set) var onCloseCount = 0

    init(transport: EngineSession.Transport = .polling, configuration: EngineConfiguration = EngineConfiguration()) {
        session = EngineSession(
            sid: "wZX3oN0bSVIhsaknAAAI",
            transport: transport,
            eventLoop: loop,
            configuration: configuration
        )
        session.delegate = delegate
        session.onClose = { [unowned self] _ in self.onCloseCount += 1 }
        session.start()
    }

    deinit {
        // An embedded loop must not be freed with timers pending.
        try? loop.syncShutdownGracefully()
    }

    func post(_ body: String) -> EngineSession.PollError? {
        session.postArrived(ByteBuffer(string: body))
    }

    func wsFrame(_ text: String, from ws: FakeWebSocket) {
        session.webSocketFrame(textFrame(text), from: ws)
    }

    /// A polling session that upgraded to `ws` (probe answered, `5` received).
    static func upgraded(to ws: FakeWebSocket) -> SessionHarness {
        let harness = SessionHarness()
        #expect(harness.session.webSocketConnected(ws))
        harness.wsFrame("2probe", from: ws)
        harness.wsFrame("5", from: ws)
        return harness
    }
}

// MARK: polling

@Suite("EngineSession over polling")
struct EngineSessionPollingTests {
    @Test func getWithEmptyOutboxIsHeld() {
        let h = SessionHarness()
        let poll = FakePoll()
        #expect(h.session.pollArrived(poll) == nil)
        h.loop.run()
        #expect(poll.payloads == [])
        #expect(!h.session.isClosed)
        #expect(h.session.isPolling)
    }

    @Test func sendReleasesTheHeldGetWithEverythingQueuedInTheTick() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.session.send(textFrame("4a"))
        h.session.send([textFrame("4b"), binaryFrame([1, 2, 3, 4])])
        #expect(poll.payloads == [], "the flush waits for the end of the tick")
        h.loop.run()
        #expect(poll.payloads == ["4a\u{1E}4b\u{1E}bAQIDBA=="])
        h.session.send(textFrame("4c"))
        h.loop.run()
        #expect(poll.payloads.count == 1, "a GET is answered once")
    }

    @Test func getWithQueuedPacketsIsAnsweredAtOnce() {
        let h = SessionHarness()
        h.session.send(textFrame("4x"))
        h.session.send(textFrame("4y"))
        h.loop.run()
        let poll = FakePoll()
        #expect(h.session.pollArrived(poll) == nil)
        #expect(poll.payloads == ["4x\u{1E}4y"])
        let next = FakePoll()
        _ = h.session.pollArrived(next)
        h.loop.run()
        #expect(next.payloads == [], "the outbox was emptied by the first answer")
    }

    @Test func overlappingGetClosesTheSessionAndAnswersTheHeldOneWithClose() {
        let h = SessionHarness()
        let first = FakePoll()
        let second = FakePoll()
        _ = h.session.pollArrived(first)
        #expect(h.session.pollArrived(second) == .overlappingPoll)
        #expect(first.payloads == ["1"])
        #expect(second.payloads == [])
        #expect(h.session.isClosed)
        #expect(h.delegate.events == [.closed(.transportError)])
        #expect(h.onCloseCount == 1)
    }

    @Test func getOnAClosedSessionIsAnsweredWithClose() {
        let h = SessionHarness()
        h.session.close(reason: .forcedClose)
        let poll = FakePoll()
        #expect(h.session.pollArrived(poll) == nil)
        #expect(poll.payloads == ["1"])
    }

    @Test func postDeliversEachMessageInOrder() {
        let h = SessionHarness()
        #expect(h.post("4hello\u{1E}bAQIDBA==\u{1E}6\u{1E}4\u{1E}42[\"ev\",{\"a\":1}]") == nil)
        #expect(
            h.delegate.events == [.text("hello"), .binary([1, 2, 3, 4]), .text(""), .text("2[\"ev\",{\"a\":1}]")]
        )
        #expect(!h.session.isClosed)
    }

    @Test func invalidPostBodyClosesTheSessionWithParseError() {
        let h = SessionHarness()
        #expect(h.post("4a\u{1E}\u{1E}4b") == .invalidPayload)
        #expect(h.delegate.events == [.closed(.parseError)], "nothing of an invalid payload is delivered")
        #expect(h.session.isClosed)
    }

    /// Finding 13: the GET held when the client's close packet arrives is answered with a noop, as engine.io does.
    @Test func clientCloseClosesWithTransportCloseAndDropsWhatFollows() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        #expect(h.post("4before\u{1E}1\u{1E}4after") == nil)
        #expect(h.delegate.events == [.text("before"), .closed(.transportClose)])
        #expect(poll.payloads == ["6"])
        #expect(h.session.isClosed)
        #expect(h.post("4late") == nil)
        #expect(h.delegate.events.count == 2)
    }

    static let protocolErrors: [String] = ["2", "0", "5", "2probe"]

    @Test("a packet a v4 client never sends closes the session", arguments: protocolErrors)
    func clientPingIsAProtocolError(_ body: String) {
        let h = SessionHarness()
        #expect(h.post(body) == nil)
        #expect(h.delegate.events == [.closed(.parseError)])
        #expect(h.session.isClosed)
    }

    @Test func closeAnswersTheHeldGetWithQueuedPacketsAndClose() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.session.send(textFrame("4bye"))
        h.session.close(reason: .forcedClose)
        h.loop.run()
        #expect(poll.payloads == ["4bye\u{1E}1"])
        #expect(h.delegate.events == [.closed(.forcedClose)])
        h.session.close(reason: .serverShutdown)
        #expect(h.delegate.events.count == 1, "the delegate hears of the close once")
        #expect(h.onCloseCount == 1)
        h.session.send(textFrame("4ignored"))
        let late = FakePoll()
        _ = h.session.pollArrived(late)
        #expect(late.payloads == ["1"])
    }

    @Test func pollConnectionClosedForTheHeldGetClosesTheSession() {
        let h = SessionHarness()
        let connection = FakeHTTPConnection()
        let poll = FakePoll(on: connection)
        _ = h.session.pollArrived(poll)
        h.session.pollConnectionClosed(ObjectIdentifier(connection))
        #expect(h.session.isClosed)
        #expect(h.delegate.events == [.closed(.transportClose)])
        #expect(poll.payloads == [], "a gone connection is not answered")
    }

    @Test func pollConnectionClosedForAnotherConnectionDoesNothing() {
        let h = SessionHarness()
        let poll = FakePoll()
        let other = FakeHTTPConnection()
        _ = h.session.pollArrived(poll)
        h.session.pollConnectionClosed(ObjectIdentifier(other))
        #expect(!h.session.isClosed)
        #expect(h.delegate.events == [])
        h.session.send(textFrame("4still"))
        h.loop.run()
        #expect(poll.payloads == ["4still"])
    }

    @Test func pollConnectionClosedWithoutAHeldGetDoesNothing() {
        let h = SessionHarness()
        let connection = FakeHTTPConnection()
        let poll = FakePoll(on: connection)
        h.session.send(textFrame("4x"))
        _ = h.session.pollArrived(poll)  // answered at once, nothing held
        h.session.pollConnectionClosed(ObjectIdentifier(connection))
        #expect(!h.session.isClosed)
    }
}

// MARK: heartbeat

@Suite("EngineSession buffered bytes")
struct EngineSessionBufferTests {
    static func configuration(maxBufferedBytes: Int) -> EngineConfiguration {
        var configuration = EngineConfiguration()
        configuration.maxBufferedBytes = maxBufferedBytes
        return configuration
    }

    /// Finding 7: the polling outbox is bounded; a client that does not fetch is closed as a slow consumer.
    @Test func anOutboxOverTheCapClosesTheSessionAsASlowConsumer() {
        let h = SessionHarness(configuration: Self.configuration(maxBufferedBytes: 1_000))
        let packet = EngineFrame.packet(.message, String(repeating: "x", count: 299))  // 301 bytes in a payload
        h.session.send([packet, packet, packet])
        #expect(!h.session.isClosed)
        h.session.send(packet)
        #expect(h.session.isClosed)
        #expect(h.delegate.closeReasons == [.slowConsumer])
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        #expect(poll.payloads == ["1"])
    }

    @Test func fetchedPacketsNoLongerCount() {
        let h = SessionHarness(configuration: Self.configuration(maxBufferedBytes: 1_000))
        let packet = EngineFrame.packet(.message, String(repeating: "x", count: 299))
        for _ in 0..<10 {
            h.session.send([packet, packet, packet])
            let poll = FakePoll()
            _ = h.session.pollArrived(poll)
            #expect(poll.payloads.count == 1)
        }
        #expect(!h.session.isClosed)
    }

    @Test func aHeldGetOverTheCapIsAnsweredWithCloseOnly() {
        let h = SessionHarness(configuration: Self.configuration(maxBufferedBytes: 100))
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.session.send(EngineFrame.packet(.message, String(repeating: "x", count: 200)))
        #expect(poll.payloads == ["1"])
        #expect(h.delegate.closeReasons == [.slowConsumer])
    }

    @Test func aBackedUpWebSocketClosesTheSessionAsASlowConsumer() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.session.webSocketBackedUp(FakeWebSocket())
        #expect(!h.session.isClosed, "another websocket is not this session's")
        h.session.webSocketBackedUp(ws)
        #expect(h.delegate.closeReasons == [.slowConsumer])
        #expect(ws.closeCount == 1)
    }

    @Test func aBackedUpProbeOnlyAbortsTheUpgrade() {
        let ws = FakeWebSocket()
        let h = SessionHarness()
        #expect(h.session.webSocketConnected(ws))
        h.session.webSocketBackedUp(ws)
        #expect(!h.session.isClosed)
        #expect(!h.session.isUpgrading)
        #expect(ws.closeCount == 1)
    }
}

@Suite("EngineSession heartbeat")
struct EngineSessionHeartbeatTests {
    @Test func pingIsSentAfterPingIntervalToTheHeldGet() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.loop.advanceTime(by: .milliseconds(24_999))
        #expect(poll.payloads == [])
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(poll.payloads == ["2"])
    }

    @Test func pingWaitsInTheOutboxWithoutAHeldGet() {
        let h = SessionHarness()
        h.loop.advanceTime(by: .seconds(25))
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        #expect(poll.payloads == ["2"])
    }

    @Test func noPongWithinPingTimeoutClosesWithPingTimeout() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.loop.advanceTime(by: .seconds(25))
        #expect(poll.payloads == ["2"])
        let next = FakePoll()
        _ = h.session.pollArrived(next)
        h.loop.advanceTime(by: .milliseconds(19_999))
        #expect(!h.session.isClosed)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(h.session.isClosed)
        #expect(h.delegate.events == [.closed(.pingTimeout)])
        #expect(next.payloads == ["1"])
    }

    @Test func pongKeepsTheSessionAliveAndRestartsTheInterval() {
        let h = SessionHarness()
        h.loop.advanceTime(by: .seconds(25))  // ping queued at 25 s
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        #expect(poll.payloads == ["2"])
        h.loop.advanceTime(by: .seconds(10))
        #expect(h.post("3") == nil)  // pong at 35 s
        h.loop.advanceTime(by: .seconds(15))  // 50 s: past the first pong deadline (45 s)
        #expect(!h.session.isClosed)
        #expect(h.delegate.events == [])
        let held = FakePoll()
        _ = h.session.pollArrived(held)
        h.loop.advanceTime(by: .milliseconds(9_999))
        #expect(held.payloads == [], "the next ping is due 25 s after the pong")
        h.loop.advanceTime(by: .milliseconds(1))  // 60 s
        #expect(held.payloads == ["2"])
        #expect(h.post("3") == nil)
        h.loop.advanceTime(by: .seconds(24))
        #expect(!h.session.isClosed)
    }

    @Test func timingsComeFromTheConfiguration() {
        var configuration = EngineConfiguration()
        configuration.pingInterval = .milliseconds(300)
        configuration.pingTimeout = .milliseconds(200)
        let h = SessionHarness(configuration: configuration)
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.loop.advanceTime(by: .milliseconds(300))
        #expect(poll.payloads == ["2"])
        h.loop.advanceTime(by: .milliseconds(199))
        #expect(!h.session.isClosed)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(h.delegate.closeReasons == [.pingTimeout])
    }

    /// Finding 7: a pong the client sends before it has received the ping (it never GETs) does not count.
    @Test func aPongBeforeThePingIsFetchedIsIgnored() {
        let h = SessionHarness()
        h.loop.advanceTime(by: .seconds(25))  // ping queued, nobody fetches it
        #expect(h.post("3") == nil)
        h.loop.advanceTime(by: .seconds(10))
        #expect(h.post("3") == nil)
        h.loop.advanceTime(by: .seconds(10))  // 45 s: ping timeout, whatever the blind pongs
        #expect(h.delegate.closeReasons == [.pingTimeout])
    }

    @Test func anUnsolicitedPongDoesNotPostponeThePing() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.loop.advanceTime(by: .seconds(20))
        #expect(h.post("3") == nil)
        h.loop.advanceTime(by: .seconds(5))
        #expect(poll.payloads == ["2"], "the ping is still due 25 s after the start")
    }

    @Test func aPongOnTheWebSocketBeforeAnyPingIsIgnored() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.loop.advanceTime(by: .seconds(10))
        h.wsFrame("3", from: ws)
        h.loop.advanceTime(by: .seconds(15))
        #expect(ws.frames.last == textFrame("2"))
        h.loop.advanceTime(by: .seconds(20))
        #expect(h.delegate.closeReasons == [.pingTimeout])
    }

    @Test func aPingQueuedDuringTheUpgradeCanBeAnsweredOnTheWebSocket() {
        let ws = FakeWebSocket()
        let h = SessionHarness()
        h.loop.advanceTime(by: .seconds(25))  // ping queued in the polling outbox
        #expect(h.session.webSocketConnected(ws))
        h.wsFrame("2probe", from: ws)
        h.wsFrame("5", from: ws)  // the outbox (with the ping) goes to the websocket
        h.wsFrame("3", from: ws)
        h.loop.advanceTime(by: .seconds(24))
        #expect(!h.session.isClosed)
    }

    @Test func closedSessionsStopPinging() {
        let h = SessionHarness()
        h.session.close(reason: .forcedClose)
        h.loop.advanceTime(by: .seconds(120))
        #expect(h.delegate.events == [.closed(.forcedClose)])
    }
}

// MARK: upgrade

@Suite("EngineSession upgrade")
struct EngineSessionUpgradeTests {
    @Test func probeIsAnsweredAndTheHeldGetReleasedWithNoop() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        let ws = FakeWebSocket()
        #expect(h.session.webSocketConnected(ws))
        #expect(h.session.isUpgrading)
        #expect(ws.events == [])
        h.wsFrame("2probe", from: ws)
        #expect(ws.events == [.write([textFrame("3probe")])])
        #expect(poll.payloads == ["6"])
        #expect(h.session.isPolling, "still polling until `5`")
    }

    @Test func getDuringAnAnsweredProbeIsReleasedWithNoopAtOnce() {
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.wsFrame("2probe", from: ws)
        let poll = FakePoll()
        #expect(h.session.pollArrived(poll) == nil)
        #expect(poll.payloads == ["6"])
    }

    @Test func upgradeCompletesOnUpgradePacketAndLaterSendsUseTheWebSocket() {
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.wsFrame("2probe", from: ws)
        h.session.send(textFrame("4queued"))
        h.session.send(binaryFrame([7]))
        h.loop.run()
        h.wsFrame("5", from: ws)
        #expect(!h.session.isPolling)
        #expect(!h.session.isUpgrading)
        #expect(ws.events == [.write([textFrame("3probe")]), .write([textFrame("4queued"), binaryFrame([7])])])
        h.session.send(textFrame("4after"))
        #expect(ws.frames.last == textFrame("4after"), "a websocket send needs no loop tick")
        #expect(h.session.pollArrived(FakePoll()) == .transportMismatch)
        #expect(h.post("4x") == .transportMismatch)
        #expect(h.delegate.events == [])
    }

    @Test func upgradeReleasesAGetHeldWhileProbing() {
        // The GET arrived before the websocket probed: `2probe` releases it, `5` finds none.
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.wsFrame("2probe", from: ws)
        h.wsFrame("5", from: ws)
        #expect(poll.payloads == ["6"])
    }

    @Test func framesOnTheUpgradedWebSocketReachTheDelegate() {
        let ws = FakeWebSocket()
        let h = SessionHarness.upgraded(to: ws)
        h.wsFrame("4hello", from: ws)
        h.session.webSocketFrame(binaryFrame([1, 2]), from: ws)
        h.wsFrame("6", from: ws)
        h.wsFrame("4bye", from: FakeWebSocket())  // not this session's websocket
        #expect(h.delegate.events == [.text("hello"), .binary([1, 2])])
    }

    @Test func heartbeatMovesToTheWebSocket() {
        let ws = FakeWebSocket()
        let h = SessionHarness.upgraded(to: ws)
        h.loop.advanceTime(by: .seconds(25))
        #expect(ws.frames.last == textFrame("2"))
        h.wsFrame("3", from: ws)
        h.loop.advanceTime(by: .seconds(20))
        #expect(!h.session.isClosed)
    }

    @Test func upgradeTimeoutClosesTheProbeAndTheSessionStaysOnPolling() {
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.wsFrame("2probe", from: ws)
        h.loop.advanceTime(by: .milliseconds(9_999))
        #expect(ws.closeCount == 0)
        #expect(h.session.isUpgrading)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(ws.closeCount == 1)
        #expect(!h.session.isUpgrading)
        #expect(h.session.isPolling)
        #expect(!h.session.isClosed)
        #expect(h.delegate.events == [])

        h.wsFrame("5", from: ws)  // too late
        #expect(h.session.isPolling)
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        #expect(poll.payloads == [], "no longer released with noop")
        h.session.send(textFrame("4polling"))
        h.loop.run()
        #expect(poll.payloads == ["4polling"])
        #expect(ws.frames == [textFrame("3probe")])
    }

    @Test func upgradeTimeoutCountsFromTheConfiguration() {
        var configuration = EngineConfiguration()
        configuration.upgradeTimeout = .milliseconds(50)
        let h = SessionHarness(configuration: configuration)
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.loop.advanceTime(by: .milliseconds(49))
        #expect(ws.closeCount == 0)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(ws.closeCount == 1)
    }

    @Test func completedUpgradeIsNotUndoneByTheTimeout() {
        let ws = FakeWebSocket()
        let h = SessionHarness.upgraded(to: ws)
        h.loop.advanceTime(by: .seconds(11))
        #expect(ws.closeCount == 0)
        #expect(!h.session.isPolling)
    }

    static let probeBreakers: [EngineFrame] = [
        textFrame("4hello"), textFrame("5"), textFrame("2"), textFrame("3probe"), textFrame("2probe "),
        binaryFrame([1]),
    ]

    @Test("a packet other than 2probe/5 aborts the upgrade", arguments: probeBreakers)
    func nonProbePacketAbortsTheUpgrade(_ frame: EngineFrame) {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.session.webSocketFrame(frame, from: ws)
        #expect(ws.events == [.close])
        #expect(!h.session.isUpgrading)
        #expect(h.session.isPolling)
        #expect(!h.session.isClosed)
        #expect(h.delegate.events == [], "nothing on the probe reaches the layer above")
        #expect(poll.payloads == [])
    }

    @Test func aSecondProbeAbortsTheUpgrade() {
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.wsFrame("2probe", from: ws)
        h.wsFrame("2probe", from: ws)
        #expect(ws.events == [.write([textFrame("3probe")]), .close])
        #expect(h.session.isPolling)
        #expect(!h.session.isUpgrading)
    }

    @Test func aSecondWebSocketWhileProbingIsRefused() {
        let h = SessionHarness()
        #expect(h.session.webSocketConnected(FakeWebSocket()))
        #expect(!h.session.webSocketConnected(FakeWebSocket()))
    }

    @Test func webSocketIsRefusedWhenNotAllowed() {
        var configuration = EngineConfiguration()
        configuration.allowWebSocket = false
        let h = SessionHarness(configuration: configuration)
        #expect(!h.session.webSocketConnected(FakeWebSocket()))
        #expect(!h.session.isUpgrading)
    }

    @Test func probeWebSocketClosingEndsTheUpgradeButNotTheSession() {
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.wsFrame("2probe", from: ws)
        h.session.webSocketClosed(ws)
        #expect(!h.session.isUpgrading)
        #expect(h.session.isPolling)
        #expect(!h.session.isClosed)
        #expect(ws.closeCount == 0)
        h.loop.advanceTime(by: .seconds(10))
        #expect(ws.closeCount == 0, "the cancelled timeout does not fire")
        #expect(h.session.webSocketConnected(FakeWebSocket()), "a new probe may start")
    }

    @Test func closingWhileProbingClosesTheProbe() {
        let h = SessionHarness()
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.session.close(reason: .serverShutdown)
        #expect(ws.events == [.close])
        #expect(h.delegate.events == [.closed(.serverShutdown)])
        h.loop.advanceTime(by: .seconds(10))
        #expect(ws.closeCount == 1)
    }

    @Test func pollConnectionClosingWhileUpgradingKeepsTheSession() {
        let h = SessionHarness()
        let connection = FakeHTTPConnection()
        _ = h.session.pollArrived(FakePoll(on: connection))
        let ws = FakeWebSocket()
        _ = h.session.webSocketConnected(ws)
        h.session.pollConnectionClosed(ObjectIdentifier(connection))
        #expect(!h.session.isClosed)
        h.wsFrame("2probe", from: ws)
        h.wsFrame("5", from: ws)
        #expect(!h.session.isPolling)
    }
}

// MARK: websocket sessions

@Suite("EngineSession over websocket")
struct EngineSessionWebSocketTests {
    @Test func startWritesTheOpenPacket() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        #expect(
            ws.events == [
                .write([
                    textFrame(
                        #"0{"sid":"wZX3oN0bSVIhsaknAAAI","upgrades":[],"#
                            + #""pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
                    )
                ])
            ]
        )
        #expect(!h.session.isPolling)
    }

    @Test func sendWritesToTheWebSocketAtOnce() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.session.send([textFrame("451-[\"b\",{\"_placeholder\":true,\"num\":0}]"), binaryFrame([1, 2, 3, 4])])
        #expect(
            ws.events.last
                == .write([textFrame("451-[\"b\",{\"_placeholder\":true,\"num\":0}]"), binaryFrame([1, 2, 3, 4])])
        )
    }

    @Test func webSocketClosedClosesTheSessionAndTellsTheDelegateOnce() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.session.webSocketClosed(ws)
        #expect(h.session.isClosed)
        #expect(h.delegate.events == [.closed(.transportClose)])
        h.session.webSocketClosed(ws)
        #expect(h.delegate.events == [.closed(.transportClose)])
        #expect(h.onCloseCount == 1)
        #expect(ws.closeCount == 1)
        #expect(!ws.frames.contains(textFrame("1")), "no close packet on a closed transport")
    }

    @Test func anotherWebSocketClosingDoesNothing() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.session.webSocketClosed(FakeWebSocket())
        #expect(!h.session.isClosed)
    }

    @Test func forcedCloseSendsACloseInBandFirst() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.session.close(reason: .forcedClose)
        #expect(ws.events.suffix(2) == [.write([textFrame("1")]), .close])
        #expect(h.delegate.events == [.closed(.forcedClose)])
    }

    @Test func shutdownClosesTheWebSocketWithoutAClosePacketSoTheClientReconnects() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.session.close(reason: .serverShutdown)
        #expect(ws.events.last == .close)
        #expect(!ws.frames.contains(textFrame("1")))
        #expect(h.delegate.events == [.closed(.serverShutdown)])
    }

    @Test func shutdownDropsAHeldPollWithoutAnAnswer() {
        let h = SessionHarness()
        let poll = FakePoll()
        _ = h.session.pollArrived(poll)
        h.session.close(reason: .serverShutdown)
        #expect(poll.payloads == ["<aborted>"])
    }

    @Test func pingTimeoutClosesTheWebSocket() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.loop.advanceTime(by: .seconds(25))
        #expect(ws.events.last == .write([textFrame("2")]))
        h.loop.advanceTime(by: .seconds(20))
        #expect(h.delegate.events == [.closed(.pingTimeout)])
        #expect(ws.events.last == .close)
    }

    @Test func pongOnTheWebSocketKeepsTheSessionAlive() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.loop.advanceTime(by: .seconds(25))
        h.wsFrame("3", from: ws)
        h.loop.advanceTime(by: .seconds(24))
        #expect(!h.session.isClosed)
        h.loop.advanceTime(by: .seconds(1))
        #expect(ws.frames.filter { $0 == textFrame("2") }.count == 2)
    }

    @Test func clientCloseOnTheWebSocketClosesWithTransportClose() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        h.wsFrame("4hi", from: ws)
        h.wsFrame("1", from: ws)
        h.wsFrame("4late", from: ws)
        #expect(h.delegate.events == [.text("hi"), .closed(.transportClose)])
    }

    @Test func aWebSocketSessionCannotBeProbedOrPolled() {
        let ws = FakeWebSocket()
        let h = SessionHarness(transport: .websocket(ws))
        #expect(!h.session.webSocketConnected(FakeWebSocket()))
        #expect(h.session.pollArrived(FakePoll()) == .transportMismatch)
        #expect(h.post("4x") == .transportMismatch)
    }
}
