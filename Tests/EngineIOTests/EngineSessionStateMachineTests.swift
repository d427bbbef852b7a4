import NIOCore
import Testing

@testable import EngineIO

/// A held GET in the machine's tests: `id` names its HTTP connection.
struct Get: Identifiable, Equatable, CustomStringConvertible {
    let id: String
    init(_ id: String) { self.id = id }
    var description: String { "GET(\(id))" }
}

/// The machine with plain values: GETs are `Get`, websockets are their names. No channel, no loop, no clock:
/// time is the `now` each event is given.
typealias Machine = EngineSessionStateMachine<Get, String>

/// The reference timings (ping 25 s, pong 20 s, upgrade 10 s) and a start time.
let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
let g1 = Get("c1")
let g2 = Get("c2")

func closeAction(
    _ reason: EngineSession.CloseReason,
    _ transport: Machine.CloseAction.Transport = .none,
    probe: String? = nil
) -> Machine.Action {
    .close(Machine.CloseAction(reason: reason, transport: transport, probe: probe))
}

// MARK: every state × every input

@Suite("Engine session state machine: every state × every input")
struct EngineSessionStateMachineTableTests {
    /// The states a session can be in, built by events from a fresh machine.
    enum Start: String, CaseIterable, CustomStringConvertible {
        case polling, pollingWithGet, probing, probingWithGet, awaitingUpgrade, webSocket, closed
        var description: String { rawValue }

        var machine: Machine {
            var m = Machine(webSocket: self == .webSocket ? "ws" : nil, configuration: EngineConfiguration())
            _ = m.start(now: t0)
            switch self {
            case .polling, .webSocket:
                break
            case .pollingWithGet:
                _ = m.pollArrived(g1)
            case .probing:
                _ = m.webSocketConnected("probe", now: t0)
            case .probingWithGet:
                _ = m.pollArrived(g1)
                _ = m.webSocketConnected("probe", now: t0)
            case .awaitingUpgrade:
                _ = m.webSocketConnected("probe", now: t0)
                _ = m.packetReceived(textFrame("2probe"), from: .webSocket("probe"), now: t0)
            case .closed:
                _ = m.close(reason: .forcedClose)
            }
            return m
        }

        /// Where the client's packets come from in this state.
        var transport: Machine.Source { self == .webSocket ? .webSocket("ws") : .polling }
    }

    enum Input: String, CaseIterable, CustomStringConvertible {
        case get, send, message, pong, clientClose, pingTimer, pongTimeout, upgradeTimer, webSocketConnects
        case probe, upgrade, probeCloses, transportWebSocketCloses, serverClose, heldGetConnectionCloses
        case probeBackedUp, transportBackedUp
        var description: String { rawValue }

        func apply(to m: inout Machine, transport: Machine.Source) -> Machine.Action {
            switch self {
            case .get: m.pollArrived(g2)
            case .send: m.send([textFrame("4x")])
            case .message: m.packetReceived(textFrame("4hi"), from: transport, now: t0)
            case .pong: m.packetReceived(textFrame("3"), from: transport, now: t0)
            case .clientClose: m.packetReceived(textFrame("1"), from: transport, now: t0)
            case .pingTimer: m.pingTimerFired(now: t0)
            case .pongTimeout: m.pongTimeoutFired()
            case .upgradeTimer: m.upgradeTimerFired()
            case .webSocketConnects: m.webSocketConnected("other", now: t0)
            case .probe: m.packetReceived(textFrame("2probe"), from: .webSocket("probe"), now: t0)
            case .upgrade: m.packetReceived(textFrame("5"), from: .webSocket("probe"), now: t0)
            case .probeCloses: m.webSocketClosed("probe")
            case .transportWebSocketCloses: m.webSocketClosed("ws")
            case .serverClose: m.close(reason: .forcedClose)
            case .heldGetConnectionCloses: m.pollConnectionClosed("c1")
            case .probeBackedUp: m.webSocketBackedUp("probe")
            case .transportBackedUp: m.webSocketBackedUp("ws")
            }
        }
    }

    typealias State = Machine.State
    static let pongTimeout = t0 + .seconds(20)
    static let upgradeTimeout = t0 + .seconds(10)
    static var closedByClient: State { .closed(.transportClose, wasPolling: true) }
    static var closedByServer: State { .closed(.forcedClose, wasPolling: true) }

    /// Expected action and the state after it (nil: unchanged); built by appending, which type-checks fast.
    static var table: [(Start, Input, Machine.Action, State?)] {
        var rows: [(Start, Input, Machine.Action, State?)] = []
        // Long-polling, no GET held.
        rows.append((.polling, .get, .doNothing, .polling(get: g2)))
        rows.append((.polling, .send, .doNothing, nil))
        rows.append((.polling, .message, .deliverText(ByteBuffer(string: "hi")), nil))
        rows.append((.polling, .pong, .doNothing, nil))
        rows.append((.polling, .clientClose, closeAction(.transportClose), closedByClient))
        rows.append((.polling, .pingTimer, .queuePing(scheduleFlush: false, pongTimeoutAt: pongTimeout), nil))
        rows.append((.polling, .pongTimeout, .doNothing, nil))
        rows.append((.polling, .upgradeTimer, .doNothing, nil))
        rows.append(
            (
                .polling, .webSocketConnects, .armUpgradeTimer(at: upgradeTimeout),
                .upgrading(probe: "other", .awaitingProbe(get: nil))
            ))
        rows.append((.polling, .probe, .doNothing, nil))
        rows.append((.polling, .upgrade, .doNothing, nil))
        rows.append((.polling, .probeCloses, .doNothing, nil))
        rows.append((.polling, .transportWebSocketCloses, .doNothing, nil))
        rows.append((.polling, .serverClose, closeAction(.forcedClose), closedByServer))
        rows.append((.polling, .heldGetConnectionCloses, .doNothing, nil))
        rows.append((.polling, .probeBackedUp, .doNothing, nil))
        rows.append((.polling, .transportBackedUp, .doNothing, nil))

        // Long-polling with GET c1 held.
        rows.append(
            (
                .pollingWithGet, .get,
                .rejectAndClose(.overlappingPoll, .init(reason: .transportError, transport: .answerPoll(g1, [.close]))),
                .closed(.transportError, wasPolling: true)
            ))
        rows.append((.pollingWithGet, .send, .scheduleFlush, nil))
        rows.append((.pollingWithGet, .message, .deliverText(ByteBuffer(string: "hi")), nil))
        rows.append((.pollingWithGet, .pong, .doNothing, nil))
        rows.append(
            (.pollingWithGet, .clientClose, closeAction(.transportClose, .answerPoll(g1, [.noop])), closedByClient))
        rows.append((.pollingWithGet, .pingTimer, .queuePing(scheduleFlush: true, pongTimeoutAt: pongTimeout), nil))
        rows.append((.pollingWithGet, .pongTimeout, .doNothing, nil))
        rows.append((.pollingWithGet, .upgradeTimer, .doNothing, nil))
        rows.append(
            (
                .pollingWithGet, .webSocketConnects, .armUpgradeTimer(at: upgradeTimeout),
                .upgrading(probe: "other", .awaitingProbe(get: g1))
            ))
        rows.append((.pollingWithGet, .probe, .doNothing, nil))
        rows.append((.pollingWithGet, .upgrade, .doNothing, nil))
        rows.append((.pollingWithGet, .probeCloses, .doNothing, nil))
        rows.append((.pollingWithGet, .transportWebSocketCloses, .doNothing, nil))
        rows.append(
            (.pollingWithGet, .serverClose, closeAction(.forcedClose, .answerPoll(g1, [.close])), closedByServer))
        rows.append((.pollingWithGet, .heldGetConnectionCloses, closeAction(.transportClose), closedByClient))
        rows.append((.pollingWithGet, .probeBackedUp, .doNothing, nil))
        rows.append((.pollingWithGet, .transportBackedUp, .doNothing, nil))

        // A websocket probes, no GET held.
        rows.append((.probing, .get, .doNothing, .upgrading(probe: "probe", .awaitingProbe(get: g2))))
        rows.append((.probing, .send, .doNothing, nil))
        rows.append((.probing, .message, .deliverText(ByteBuffer(string: "hi")), nil))
        rows.append((.probing, .pong, .doNothing, nil))
        rows.append((.probing, .clientClose, closeAction(.transportClose, probe: "probe"), closedByClient))
        rows.append((.probing, .pingTimer, .queuePing(scheduleFlush: false, pongTimeoutAt: pongTimeout), nil))
        rows.append((.probing, .pongTimeout, .doNothing, nil))
        rows.append((.probing, .upgradeTimer, .abortUpgrade("probe"), .polling(get: nil)))
        rows.append((.probing, .webSocketConnects, .refuseWebSocket, nil))
        rows.append(
            (.probing, .probe, .answerProbe("probe", releasing: nil), .upgrading(probe: "probe", .awaitingUpgrade)))
        rows.append((.probing, .upgrade, .abortUpgrade("probe"), .polling(get: nil)))
        rows.append((.probing, .probeCloses, .cancelUpgradeTimer, .polling(get: nil)))
        rows.append((.probing, .transportWebSocketCloses, .doNothing, nil))
        rows.append((.probing, .serverClose, closeAction(.forcedClose, probe: "probe"), closedByServer))
        rows.append((.probing, .heldGetConnectionCloses, .doNothing, nil))
        rows.append((.probing, .probeBackedUp, .abortUpgrade("probe"), .polling(get: nil)))
        rows.append((.probing, .transportBackedUp, .doNothing, nil))

        // A websocket probes while GET c1 is held.
        rows.append(
            (
                .probingWithGet, .get,
                .rejectAndClose(
                    .overlappingPoll,
                    .init(reason: .transportError, transport: .answerPoll(g1, [.close]), probe: "probe")),
                .closed(.transportError, wasPolling: true)
            ))
        rows.append((.probingWithGet, .send, .scheduleFlush, nil))
        rows.append((.probingWithGet, .message, .deliverText(ByteBuffer(string: "hi")), nil))
        rows.append((.probingWithGet, .pong, .doNothing, nil))
        rows.append(
            (
                .probingWithGet, .clientClose, closeAction(.transportClose, .answerPoll(g1, [.noop]), probe: "probe"),
                closedByClient
            ))
        rows.append((.probingWithGet, .pingTimer, .queuePing(scheduleFlush: true, pongTimeoutAt: pongTimeout), nil))
        rows.append((.probingWithGet, .pongTimeout, .doNothing, nil))
        rows.append((.probingWithGet, .upgradeTimer, .abortUpgrade("probe"), .polling(get: g1)))
        rows.append((.probingWithGet, .webSocketConnects, .refuseWebSocket, nil))
        rows.append(
            (
                .probingWithGet, .probe, .answerProbe("probe", releasing: g1),
                .upgrading(probe: "probe", .awaitingUpgrade)
            ))
        rows.append((.probingWithGet, .upgrade, .abortUpgrade("probe"), .polling(get: g1)))
        rows.append((.probingWithGet, .probeCloses, .cancelUpgradeTimer, .polling(get: g1)))
        rows.append((.probingWithGet, .transportWebSocketCloses, .doNothing, nil))
        rows.append(
            (
                .probingWithGet, .serverClose, closeAction(.forcedClose, .answerPoll(g1, [.close]), probe: "probe"),
                closedByServer
            ))
        rows.append(
            (
                .probingWithGet, .heldGetConnectionCloses, .doNothing,
                .upgrading(probe: "probe", .awaitingProbe(get: nil))
            ))
        rows.append((.probingWithGet, .probeBackedUp, .abortUpgrade("probe"), .polling(get: g1)))
        rows.append((.probingWithGet, .transportBackedUp, .doNothing, nil))

        // `3probe` sent, waiting for `5`.
        rows.append((.awaitingUpgrade, .get, .answerPoll(g2, [.noop]), nil))
        rows.append((.awaitingUpgrade, .send, .doNothing, nil))
        rows.append((.awaitingUpgrade, .message, .deliverText(ByteBuffer(string: "hi")), nil))
        rows.append((.awaitingUpgrade, .pong, .doNothing, nil))
        rows.append((.awaitingUpgrade, .clientClose, closeAction(.transportClose, probe: "probe"), closedByClient))
        rows.append((.awaitingUpgrade, .pingTimer, .queuePing(scheduleFlush: false, pongTimeoutAt: pongTimeout), nil))
        rows.append((.awaitingUpgrade, .pongTimeout, .doNothing, nil))
        rows.append((.awaitingUpgrade, .upgradeTimer, .abortUpgrade("probe"), .polling(get: nil)))
        rows.append((.awaitingUpgrade, .webSocketConnects, .refuseWebSocket, nil))
        rows.append((.awaitingUpgrade, .probe, .abortUpgrade("probe"), .polling(get: nil)))
        rows.append((.awaitingUpgrade, .upgrade, .completeUpgrade("probe", flushing: []), .webSocket("probe")))
        rows.append((.awaitingUpgrade, .probeCloses, .cancelUpgradeTimer, .polling(get: nil)))
        rows.append((.awaitingUpgrade, .transportWebSocketCloses, .doNothing, nil))
        rows.append((.awaitingUpgrade, .serverClose, closeAction(.forcedClose, probe: "probe"), closedByServer))
        rows.append((.awaitingUpgrade, .heldGetConnectionCloses, .doNothing, nil))
        rows.append((.awaitingUpgrade, .probeBackedUp, .abortUpgrade("probe"), .polling(get: nil)))
        rows.append((.awaitingUpgrade, .transportBackedUp, .doNothing, nil))

        // On the websocket "ws".
        rows.append((.webSocket, .get, .reject(.transportMismatch), nil))
        rows.append((.webSocket, .send, .write("ws", [textFrame("4x")]), nil))
        rows.append((.webSocket, .message, .deliverText(ByteBuffer(string: "hi")), nil))
        rows.append((.webSocket, .pong, .doNothing, nil))
        rows.append(
            (
                .webSocket, .clientClose,
                closeAction(.transportClose, .closeWebSocket("ws", sendingClosePacket: false)),
                .closed(.transportClose, wasPolling: false)
            ))
        rows.append((.webSocket, .pingTimer, .writePing("ws", pongTimeoutAt: pongTimeout), nil))
        rows.append((.webSocket, .pongTimeout, .doNothing, nil))
        rows.append((.webSocket, .upgradeTimer, .doNothing, nil))
        rows.append((.webSocket, .webSocketConnects, .refuseWebSocket, nil))
        rows.append((.webSocket, .probe, .doNothing, nil))
        rows.append((.webSocket, .upgrade, .doNothing, nil))
        rows.append((.webSocket, .probeCloses, .doNothing, nil))
        rows.append(
            (
                .webSocket, .transportWebSocketCloses,
                closeAction(.transportClose, .closeWebSocket("ws", sendingClosePacket: false)),
                .closed(.transportClose, wasPolling: false)
            ))
        rows.append(
            (
                .webSocket, .serverClose, closeAction(.forcedClose, .closeWebSocket("ws", sendingClosePacket: true)),
                .closed(.forcedClose, wasPolling: false)
            ))
        rows.append((.webSocket, .heldGetConnectionCloses, .doNothing, nil))
        rows.append((.webSocket, .probeBackedUp, .doNothing, nil))
        rows.append(
            (
                .webSocket, .transportBackedUp,
                closeAction(.slowConsumer, .closeWebSocket("ws", sendingClosePacket: false)),
                .closed(.slowConsumer, wasPolling: false)
            ))

        // Closed rows.append((by the server)): a late GET learns it; everything else is ignored.
        rows.append((.closed, .get, .answerPoll(g2, [.close]), nil))
        rows.append((.closed, .send, .doNothing, nil))
        rows.append((.closed, .message, .doNothing, nil))
        rows.append((.closed, .pong, .doNothing, nil))
        rows.append((.closed, .clientClose, .doNothing, nil))
        rows.append((.closed, .pingTimer, .doNothing, nil))
        rows.append((.closed, .pongTimeout, .doNothing, nil))
        rows.append((.closed, .upgradeTimer, .doNothing, nil))
        rows.append((.closed, .webSocketConnects, .refuseWebSocket, nil))
        rows.append((.closed, .probe, .doNothing, nil))
        rows.append((.closed, .upgrade, .doNothing, nil))
        rows.append((.closed, .probeCloses, .doNothing, nil))
        rows.append((.closed, .transportWebSocketCloses, .doNothing, nil))
        rows.append((.closed, .serverClose, .doNothing, nil))
        rows.append((.closed, .heldGetConnectionCloses, .doNothing, nil))
        rows.append((.closed, .probeBackedUp, .doNothing, nil))
        rows.append((.closed, .transportBackedUp, .doNothing, nil))
        return rows
    }

    @Test func theTableCoversEveryStateAndInputOnce() {
        let covered = Self.table.map { "\($0.0)×\($0.1)" }
        let all = Start.allCases.flatMap { s in Input.allCases.map { "\(s)×\($0)" } }
        #expect(covered.sorted() == all.sorted())
    }

    @Test func everyStateAndInput() {
        for (start, input, action, after) in Self.table {
            var m = start.machine
            let before = m.state
            #expect(input.apply(to: &m, transport: start.transport) == action, "\(start) × \(input)")
            #expect(m.state == (after ?? before), "\(start) × \(input): state after")
        }
    }

    @Test func thePostAnswerInEveryState() {
        for start in Start.allCases {
            let expected: Machine.PostAction =
                switch start {
                case .webSocket: .reject(.transportMismatch)
                case .closed: .ignore
                default: .accept
                }
            #expect(start.machine.postArrived() == expected, "\(start)")
        }
    }
}

// MARK: scenarios

extension Machine {
    /// A started machine on long-polling (or on the websocket `ws`).
    static func started(webSocket: String? = nil, configuration: EngineConfiguration = EngineConfiguration()) -> Machine
    {
        var m = Machine(webSocket: webSocket, configuration: configuration)
        #expect(m.start(now: t0) == .armPingTimer(at: t0 + .seconds(25)))
        return m
    }

    mutating func post(_ text: String, at now: NIODeadline = t0) -> Action {
        packetReceived(textFrame(text), from: .polling, now: now)
    }

    mutating func ws(_ text: String, from ws: String, at now: NIODeadline = t0) -> Action {
        packetReceived(textFrame(text), from: .webSocket(ws), now: now)
    }
}

@Suite("Engine session state machine: heartbeat")
struct EngineSessionStateMachineHeartbeatTests {
    @Test func aPingWaitsForAGetAndItsPongRestartsTheInterval() {
        var m = Machine.started()
        let ping = t0 + .seconds(25)
        #expect(m.pingTimerFired(now: ping) == .queuePing(scheduleFlush: false, pongTimeoutAt: ping + .seconds(20)))
        #expect(m.ping == .queued)
        #expect(m.post("3", at: ping + .seconds(1)) == .doNothing, "a pong for a ping the client has not fetched")
        #expect(m.pollArrived(g1) == .answerPoll(g1, [.ping]))
        #expect(m.ping == .sent)
        let pong = ping + .seconds(3)
        #expect(m.post("3", at: pong) == .restartHeartbeat(pingAt: pong + .seconds(25)))
        #expect(m.ping == .none)
        #expect(m.post("3", at: pong) == .doNothing, "one pong per ping")
        #expect(m.pongTimeoutFired() == .doNothing, "a stale pong timeout does nothing")
        #expect(!m.isClosed)
    }

    @Test func aPingToAHeldGetIsFlushedAtTheEndOfTheTick() {
        var m = Machine.started()
        #expect(m.pollArrived(g1) == .doNothing)
        #expect(m.pingTimerFired(now: t0) == .queuePing(scheduleFlush: true, pongTimeoutAt: t0 + .seconds(20)))
        #expect(m.flushTick() == .answerPoll(g1, [.ping]))
        #expect(m.ping == .sent)
    }

    @Test func aPingNeverFetchedStillTimesOut() {
        var m = Machine.started()
        _ = m.pingTimerFired(now: t0)
        _ = m.post("3")
        #expect(m.pongTimeoutFired() == closeAction(.pingTimeout))
        #expect(m.closeReason == .pingTimeout)
    }

    @Test func theTimingsComeFromTheConfiguration() {
        var configuration = EngineConfiguration()
        configuration.pingInterval = .milliseconds(300)
        configuration.pingTimeout = .milliseconds(200)
        configuration.upgradeTimeout = .milliseconds(50)
        var m = Machine(webSocket: nil, configuration: configuration)
        #expect(m.start(now: t0) == .armPingTimer(at: t0 + .milliseconds(300)))
        #expect(m.pingTimerFired(now: t0) == .queuePing(scheduleFlush: false, pongTimeoutAt: t0 + .milliseconds(200)))
        #expect(m.webSocketConnected("p", now: t0) == .armUpgradeTimer(at: t0 + .milliseconds(50)))
    }

    @Test func pingTimeoutDuringTheUpgradeClosesTheProbeAndAnswersTheGet() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        _ = m.pingTimerFired(now: t0)
        #expect(m.flushTick() == .answerPoll(g1, [.ping]))
        _ = m.pollArrived(g2)
        #expect(m.webSocketConnected("probe", now: t0) == .armUpgradeTimer(at: t0 + .seconds(10)))
        #expect(m.pongTimeoutFired() == closeAction(.pingTimeout, .answerPoll(g2, [.close]), probe: "probe"))
        #expect(m.state == .closed(.pingTimeout, wasPolling: true))
    }

    @Test func pingTimeoutWhileWaitingForTheUpgradePacket() {
        var m = Machine.started()
        _ = m.pingTimerFired(now: t0)
        _ = m.webSocketConnected("probe", now: t0)
        _ = m.ws("2probe", from: "probe")
        #expect(m.pongTimeoutFired() == closeAction(.pingTimeout, probe: "probe"))
    }

    @Test func aPingQueuedDuringTheUpgradeLeavesOnTheWebSocketAndItsPongCounts() {
        var m = Machine.started()
        _ = m.webSocketConnected("probe", now: t0)
        _ = m.ws("2probe", from: "probe")
        _ = m.pingTimerFired(now: t0)
        #expect(m.ping == .queued)
        #expect(m.ws("5", from: "probe") == .completeUpgrade("probe", flushing: [.ping]))
        #expect(m.ping == .sent)
        #expect(m.ws("3", from: "probe", at: t0 + .seconds(1)) == .restartHeartbeat(pingAt: t0 + .seconds(26)))
    }

    @Test func aPongOnTheWebSocketBeforeAnyPingIsIgnored() {
        var m = Machine.started(webSocket: "ws")
        #expect(m.ws("3", from: "ws") == .doNothing)
        #expect(m.pingTimerFired(now: t0) == .writePing("ws", pongTimeoutAt: t0 + .seconds(20)))
        #expect(m.ws("3", from: "other") == .doNothing, "not this session's websocket")
        #expect(m.ws("3", from: "ws") == .restartHeartbeat(pingAt: t0 + .seconds(25)))
    }

    @Test func aPingIntoAFullOutboxClosesAsASlowConsumer() {
        var configuration = EngineConfiguration()
        configuration.maxBufferedBytes = 9
        var m = Machine.started(configuration: configuration)
        #expect(m.send([textFrame("4123456")]) == .doNothing)  // 8 bytes in a payload, the ping 2 more
        #expect(m.pingTimerFired(now: t0) == closeAction(.slowConsumer))
        #expect(m.ping == .none)
    }
}

@Suite("Engine session state machine: polling")
struct EngineSessionStateMachinePollingTests {
    @Test func packetsSentInOneTickLeaveInOneResponse() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        #expect(m.send([textFrame("4a")]) == .scheduleFlush)
        #expect(m.send([textFrame("4b"), binaryFrame([1])]) == .doNothing, "one flush per tick")
        #expect(m.flushTick() == .answerPoll(g1, [textFrame("4a"), textFrame("4b"), binaryFrame([1])]))
        #expect(m.state == .polling(get: nil))
        #expect(m.outboxBytes == 0)
        #expect(m.flushTick() == .doNothing)
    }

    @Test func aGetFindingQueuedPacketsIsAnsweredAtOnce() {
        var m = Machine.started()
        _ = m.send([textFrame("4x")])
        _ = m.send([textFrame("4y")])
        #expect(m.pollArrived(g1) == .answerPoll(g1, [textFrame("4x"), textFrame("4y")]))
        #expect(m.pollArrived(g2) == .doNothing, "the outbox is empty again: held")
    }

    @Test func aFlushWhoseGetWasAnsweredMeanwhileDoesNothing() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        #expect(m.send([textFrame("4x")]) == .scheduleFlush)
        #expect(m.close(reason: .forcedClose) == closeAction(.forcedClose, .answerPoll(g1, [textFrame("4x"), .close])))
        #expect(m.flushTick() == .doNothing)
    }

    @Test func theOutboxIsBoundedAndAHeldGetThenGetsOnlyClose() {
        var configuration = EngineConfiguration()
        configuration.maxBufferedBytes = 1_000
        var m = Machine.started(configuration: configuration)
        let packet = EngineFrame.packet(.message, String(repeating: "x", count: 299))  // 301 bytes
        #expect(m.send([packet, packet, packet]) == .doNothing)
        #expect(m.outboxBytes == 903)
        #expect(m.pollArrived(g1) == .answerPoll(g1, [packet, packet, packet]), "fetched packets no longer count")
        #expect(m.pollArrived(g2) == .doNothing)
        #expect(m.send([packet, packet, packet]) == .scheduleFlush)
        #expect(m.send([packet]) == closeAction(.slowConsumer, .answerPoll(g2, [.close])))
    }

    @Test func closeAnswersTheHeldGetWithWhatWasQueuedAndClose() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        _ = m.send([textFrame("4bye")])
        #expect(
            m.close(reason: .forcedClose) == closeAction(.forcedClose, .answerPoll(g1, [textFrame("4bye"), .close])))
        #expect(m.close(reason: .serverShutdown) == .doNothing, "closed once")
        #expect(m.closeReason == .forcedClose)
    }

    @Test func shutdownDropsTheHeldGetAndLaterOnes() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        #expect(m.close(reason: .serverShutdown) == closeAction(.serverShutdown, .abortPoll(g1)))
        #expect(m.pollArrived(g2) == .abortPoll(g2))
    }

    @Test func aPostAfterCloseIsIgnored() {
        var m = Machine.started()
        _ = m.close(reason: .forcedClose)
        #expect(m.postArrived() == .ignore)
        #expect(m.post("4late") == .doNothing)
        #expect(m.postWasInvalid() == .doNothing)
    }

    @Test func anInvalidPostClosesWithParseError() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        #expect(m.postWasInvalid() == closeAction(.parseError, .answerPoll(g1, [.close])))
    }

    static let protocolErrors = ["2", "0", "5", "2probe", "9", "x"]

    @Test("a packet a v4 client never sends closes the session", arguments: protocolErrors)
    func protocolError(_ text: String) {
        var m = Machine.started()
        #expect(m.post(text) == closeAction(.parseError))
    }

    @Test func anEmptyTextPacketIsAParseError() {
        var m = Machine.started(webSocket: "ws")
        #expect(
            m.packetReceived(.text(ByteBuffer()), from: .webSocket("ws"), now: t0)
                == closeAction(.parseError, .closeWebSocket("ws", sendingClosePacket: false))
        )
    }

    @Test func messagesNoopsAndBinaryOnTheTransport() {
        var m = Machine.started()
        #expect(m.post("4") == .deliverText(ByteBuffer()))
        #expect(m.post("42[\"ev\"]") == .deliverText(ByteBuffer(string: "2[\"ev\"]")))
        #expect(m.post("6") == .doNothing)
        #expect(
            m.packetReceived(binaryFrame([1, 2]), from: .polling, now: t0) == .deliverBinary(ByteBuffer(bytes: [1, 2])))
    }

    @Test func theGetConnectionOfAnotherRequestClosingDoesNothing() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        #expect(m.pollConnectionClosed("c2") == .doNothing)
        #expect(m.state == .polling(get: g1))
    }
}

@Suite("Engine session state machine: upgrade")
struct EngineSessionStateMachineUpgradeTests {
    @Test func theWholeUpgradeWithAGetHeldAndPacketsQueued() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        #expect(m.webSocketConnected("probe", now: t0) == .armUpgradeTimer(at: t0 + .seconds(10)))
        #expect(m.isUpgrading && m.isPolling)
        #expect(m.ws("2probe", from: "probe") == .answerProbe("probe", releasing: g1))
        #expect(m.send([textFrame("4queued")]) == .doNothing, "no GET is held while waiting for 5")
        #expect(m.pollArrived(g2) == .answerPoll(g2, [.noop]), "a GET while waiting for 5 drains at once")
        #expect(m.ws("5", from: "probe") == .completeUpgrade("probe", flushing: [textFrame("4queued")]))
        #expect(m.state == .webSocket("probe"))
        #expect(!m.isPolling)
        #expect(m.send([textFrame("4after")]) == .write("probe", [textFrame("4after")]))
        #expect(m.pollArrived(g2) == .reject(.transportMismatch))
        #expect(m.postArrived() == .reject(.transportMismatch))
        #expect(m.upgradeTimerFired() == .doNothing, "a completed upgrade is not undone by the timeout")
    }

    static let probeBreakers: [EngineFrame] = [
        textFrame("4hello"), textFrame("5"), textFrame("2"), textFrame("3probe"), textFrame("2probe "),
        binaryFrame([1]),
    ]

    @Test("a packet other than 2probe/5 aborts the upgrade and reaches nobody", arguments: probeBreakers)
    func aPacketOtherThanTheProbeAbortsTheUpgrade(_ frame: EngineFrame) {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        _ = m.webSocketConnected("probe", now: t0)
        #expect(m.packetReceived(frame, from: .webSocket("probe"), now: t0) == .abortUpgrade("probe"))
        #expect(m.state == .polling(get: g1), "the held GET stays held")
    }

    @Test func afterAnAbortedUpgradeANewProbeMayStart() {
        var m = Machine.started()
        _ = m.webSocketConnected("probe", now: t0)
        _ = m.upgradeTimerFired()
        #expect(m.ws("5", from: "probe") == .doNothing, "too late")
        #expect(m.webSocketConnected("probe2", now: t0 + .seconds(11)) == .armUpgradeTimer(at: t0 + .seconds(21)))
    }

    @Test func theHeldGetConnectionClosingWhileProbingKeepsTheSession() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        _ = m.webSocketConnected("probe", now: t0)
        #expect(m.pollConnectionClosed("c1") == .doNothing)
        #expect(m.ws("2probe", from: "probe") == .answerProbe("probe", releasing: nil))
        #expect(m.ws("5", from: "probe") == .completeUpgrade("probe", flushing: []))
    }

    @Test func aClientCloseByPostWhileProbingReleasesTheGetAndClosesTheProbe() {
        var m = Machine.started()
        _ = m.pollArrived(g1)
        _ = m.send([textFrame("4dropped")])
        _ = m.webSocketConnected("probe", now: t0)
        #expect(m.post("1") == closeAction(.transportClose, .answerPoll(g1, [.noop]), probe: "probe"))
    }

    @Test func webSocketsAreRefusedWhenNotAllowed() {
        var configuration = EngineConfiguration()
        configuration.allowWebSocket = false
        var m = Machine.started(configuration: configuration)
        #expect(m.webSocketConnected("probe", now: t0) == .refuseWebSocket)
        #expect(!m.isUpgrading)
    }

    @Test func anUpgradedSessionClosedByTheClientWasNotPolling() {
        var m = Machine.started()
        _ = m.webSocketConnected("probe", now: t0)
        _ = m.ws("2probe", from: "probe")
        _ = m.ws("5", from: "probe")
        #expect(
            m.ws("1", from: "probe")
                == closeAction(.transportClose, .closeWebSocket("probe", sendingClosePacket: false)))
        #expect(!m.isPolling)
        #expect(m.ws("4late", from: "probe") == .doNothing)
    }
}

// MARK: random interleavings

/// Long random sequences of events (seeded, so a failure replays), checked against what must hold whatever the
/// order: every GET is settled at most once (answered, aborted, rejected, or released with a noop), a GET is only
/// left unsettled while it is held or after its connection went away, the session closes at most once and does
/// nothing after it, and packets leave in the order they were sent, each at most once.
@Suite("Engine session state machine: random interleavings")
struct EngineSessionStateMachineRandomTests {
    /// SplitMix64: small, deterministic, good enough to pick events.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    struct Run {
        var machine: Machine
        var random: Generator
        var nextGet = 0
        var nextPacket = 0
        var nextWebSocket = 0
        var pendingFlushes = 0
        /// GET ids given to the machine and not yet settled.
        var open: Set<String> = []
        /// GETs whose connection went away.
        var gone: Set<String> = []
        var settled: Set<String> = []
        var closes = 0
        var delivered: [Int] = []
        var webSockets: [String] = ["ws0"]
        var issues: [String] = []

        init(seed: UInt64, startOnWebSocket: Bool) {
            random = Generator(state: seed)
            var configuration = EngineConfiguration()
            configuration.maxBufferedBytes = 60  // small, so the slow-consumer close happens too
            machine = Machine(webSocket: startOnWebSocket ? "ws0" : nil, configuration: configuration)
            _ = machine.start(now: t0)
        }

        mutating func settle(_ get: Get, _ why: String) {
            if settled.contains(get.id) { issues.append("\(get) settled twice (\(why))") }
            if !open.contains(get.id) && !gone.contains(get.id) { issues.append("\(get) settled but never given") }
            open.remove(get.id)
            settled.insert(get.id)
        }

        mutating func packets(_ frames: [EngineFrame]) {
            for case .text(let buffer) in frames {
                let text = String(buffer: buffer)
                guard text.hasPrefix("4"), let n = Int(text.dropFirst()) else { continue }
                if let last = delivered.last, n <= last { issues.append("packet \(n) after \(last)") }
                delivered.append(n)
            }
        }

        mutating func check(_ action: Machine.Action, wasClosed: Bool, event: String) {
            switch action {
            case .doNothing, .reject, .armPingTimer, .restartHeartbeat, .writePing, .armUpgradeTimer,
                .refuseWebSocket, .abortUpgrade, .cancelUpgradeTimer, .queuePing:
                if case .queuePing(true, _) = action { pendingFlushes += 1 }
            case .scheduleFlush:
                pendingFlushes += 1
            case .write(_, let frames):
                packets(frames)
            case .answerPoll(let get, let frames):
                settle(get, event)
                if !wasClosed { packets(frames) }
            case .abortPoll(let get):
                settle(get, event)
            case .rejectAndClose(_, let close):
                checkClose(close, event: event)
            case .deliverText, .deliverBinary:
                break
            case .answerProbe(_, let get):
                if let get { settle(get, event) }
            case .completeUpgrade(_, let frames):
                packets(frames)
            case .close(let close):
                checkClose(close, event: event)
            }
            if wasClosed {
                switch action {
                case .doNothing, .refuseWebSocket, .answerPoll(_, [.close]), .abortPoll: break
                default: issues.append("\(action) after close (\(event))")
                }
            }
        }

        mutating func checkClose(_ close: Machine.CloseAction, event: String) {
            closes += 1
            if closes > 1 { issues.append("closed twice (\(event))") }
            switch close.transport {
            case .answerPoll(let get, let frames):
                settle(get, event)
                packets(frames)
            case .abortPoll(let get):
                settle(get, event)
            case .none, .closeWebSocket:
                break
            }
        }

        mutating func step() {
            let wasClosed = machine.isClosed
            let now = t0
            var event = ""
            let action: Machine.Action
            switch Int.random(in: 0..<16, using: &random) {
            case 0, 1:
                nextGet += 1
                let get = Get("c\(nextGet)")
                event = "GET \(get.id)"
                open.insert(get.id)
                action = machine.pollArrived(get)
                if case .reject = action { settle(get, event) }
                if case .rejectAndClose = action { settle(get, event) }
            case 2, 3:
                nextPacket += 1
                event = "send \(nextPacket)"
                action = machine.send([textFrame("4\(nextPacket)")])
            case 4:
                event = "flush tick"
                if pendingFlushes > 0 {
                    pendingFlushes -= 1
                    action = machine.flushTick()
                } else {
                    action = .doNothing
                }
            case 5:
                event = "pong"
                action = machine.packetReceived(textFrame("3"), from: source(), now: now)
            case 6:
                event = "ping timer"
                action = machine.pingTimerFired(now: now)
            case 7:
                event = "pong timeout"
                action = Int.random(in: 0..<4, using: &random) == 0 ? machine.pongTimeoutFired() : .doNothing
            case 8:
                nextWebSocket += 1
                let ws = "ws\(nextWebSocket)"
                webSockets.append(ws)
                event = "\(ws) connects"
                action = machine.webSocketConnected(ws, now: now)
            case 9:
                let ws = webSockets.randomElement(using: &random)!
                event = "2probe on \(ws)"
                action = machine.packetReceived(textFrame("2probe"), from: .webSocket(ws), now: now)
            case 10:
                let ws = webSockets.randomElement(using: &random)!
                event = "5 on \(ws)"
                action = machine.packetReceived(textFrame("5"), from: .webSocket(ws), now: now)
            case 11:
                let ws = webSockets.randomElement(using: &random)!
                event = "\(ws) closes"
                action = machine.webSocketClosed(ws)
            case 12:
                event = "upgrade timer"
                action = machine.upgradeTimerFired()
            case 13:
                let id = "c\(Int.random(in: 0...max(nextGet, 1), using: &random))"
                event = "connection \(id) gone"
                if open.contains(id) {
                    open.remove(id)
                    gone.insert(id)
                }
                action = machine.pollConnectionClosed(id)
            case 14:
                event = "message"
                action = machine.packetReceived(textFrame("4m"), from: source(), now: now)
            default:
                event = "rare"
                switch Int.random(in: 0..<8, using: &random) {
                case 0: action = machine.close(reason: .forcedClose)
                case 1: action = machine.packetReceived(textFrame("1"), from: source(), now: now)
                case 2: action = machine.webSocketBackedUp(webSockets.randomElement(using: &random)!)
                default: action = .doNothing
                }
            }
            check(action, wasClosed: wasClosed, event: event)
        }

        /// Where the client's packets come from now: a POST, or the session's websocket.
        mutating func source() -> Machine.Source {
            if case .webSocket(let ws) = machine.state { return .webSocket(ws) }
            return .polling
        }

        /// A GET still open must be the held one.
        var heldGet: String? {
            switch machine.state {
            case .polling(let get), .upgrading(_, .awaitingProbe(let get)): get?.id
            default: nil
            }
        }
    }

    @Test(arguments: [false, true])
    func invariantsHoldOverRandomSequences(startOnWebSocket: Bool) {
        var failures: [String] = []
        for seed in 1...300 {
            var run = Run(seed: UInt64(seed), startOnWebSocket: startOnWebSocket)
            for _ in 0..<60 { run.step() }
            let unsettled = run.open.subtracting(run.heldGet.map { [$0] } ?? [])
            if !unsettled.isEmpty { run.issues.append("GETs never answered: \(unsettled.sorted())") }
            if run.machine.isClosed != (run.closes == 1) { run.issues.append("closed state and close actions differ") }
            if !run.issues.isEmpty { failures.append("seed \(seed): \(run.issues.prefix(3))") }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }
}
