import NIOCore

/// The logic of one Engine.IO v4 session as a plain value: events in, actions out.
///
/// Why a value: a session is driven by up to four things at once (a held long-polling GET, a POST, a websocket
/// probe, three timers), and their interleavings (a close while a GET is held, a probe while a GET is held, a
/// ping timeout during the upgrade) are where the bugs live. Here they are all in one `switch` per event, and the
/// tests feed events and compare actions without a channel, a loop or a clock. ``EngineSession`` owns one machine,
/// feeds it on the session's event loop and performs what it returns: writes, answers, timers, callbacks.
///
/// States (``State``):
///
///     polling(get: nil) ─a GET, nothing queued─▶ polling(get: GET) ─packets queued: answered─▶ polling(get: nil)
///        │ a websocket with the sid connects (from either)
///        ▼
///     upgrading(probe, .awaitingProbe(get:)) ─2probe─▶ upgrading(probe, .awaitingUpgrade) ─5─▶ webSocket
///        └─ any other packet, the probe closing or backing up, the upgrade timeout: back to polling(get:)
///
///     every state ──client close packet, ping timeout, transport gone, parse error, slow consumer,
///                   server close, a second GET──▶ closed
///
/// Alongside the state: the polling outbox (packets for the next GET, bounded by `maxBufferedBytes`) and the
/// heartbeat (`Ping`: a pong counts only for a ping the client has received). Closing is immediate: ``close(_:)``
/// says once what to do with the transport (answer the held GET, close the websocket) and the state is `closed`.
///
/// Timers: the machine returns deadlines (`armPingTimer(at:)`, `writePing(_:pongTimeoutAt:)`, …) computed from the
/// `now` it is given; the driver schedules them and calls the matching `…Fired()` event. The driver cancels a
/// timer where an action says so and all of them when the session closes; a timer firing in a state where it
/// means nothing is ignored, so a late one does no harm.
///
/// `Poll` stands for a held GET (`id`: its HTTP connection) and `WebSocket` for a websocket; tests use plain values.
struct EngineSessionStateMachine<Poll: Identifiable & Equatable, WebSocket: Equatable> {
    typealias CloseReason = EngineSession.CloseReason
    typealias PollError = EngineSession.PollError

    enum State: Equatable {
        /// Long-polling; `get` is the held GET, if any.
        case polling(get: Poll?)
        /// Long-polling while `probe`, a websocket with this sid, tries to take over.
        case upgrading(probe: WebSocket, Probe)
        /// Upgraded, or a websocket session from the start.
        case webSocket(WebSocket)
        /// Closed; `wasPolling` for the metrics.
        case closed(CloseReason, wasPolling: Bool)
    }

    enum Probe: Equatable {
        /// Waiting for `2probe`; GETs are still held and answered as usual.
        case awaitingProbe(get: Poll?)
        /// `3probe` sent, waiting for `5`. No GET is held: each one is answered with a noop at once, so the client's
        /// polling loop drains.
        case awaitingUpgrade
    }

    /// Where the last ping is: a pong is accepted only once the ping has reached a transport.
    enum Ping: Equatable {
        /// The ping timer runs (or the session is closed).
        case none
        /// In the polling outbox, not yet fetched by a GET.
        case queued
        /// Written to the client; the pong timeout runs.
        case sent
    }

    /// Where a received packet came from.
    enum Source: Equatable {
        /// A long-polling POST (its packets one by one, after ``postArrived()`` accepted it).
        case polling
        case webSocket(WebSocket)
    }

    /// What to do with the transport when the session closes. The driver also cancels every timer, closes `probe`
    /// if there is one, and tells the layer above (once).
    struct CloseAction: Equatable {
        enum Transport: Equatable {
            /// No GET is held: nothing to answer.
            case none
            /// Answer the held GET with these packets (what was queued and a close packet, or a noop).
            case answerPoll(Poll, [EngineFrame])
            /// Drop the held GET without an answer (the server is going away; the client reconnects elsewhere).
            case abortPoll(Poll)
            /// Close the websocket, after a close packet when `sendingClosePacket`.
            case closeWebSocket(WebSocket, sendingClosePacket: Bool)
        }

        var reason: CloseReason
        var transport: Transport
        /// A websocket probing to upgrade, to close.
        var probe: WebSocket?
    }

    enum Action: Equatable {
        case doNothing
        /// Write these packets on the websocket now.
        case write(WebSocket, [EngineFrame])
        /// A GET is held and packets were queued: call ``flushTick()`` at the end of this loop tick, so that the
        /// packets queued in the same tick leave in one response.
        case scheduleFlush
        /// Answer this GET (200) with these packets.
        case answerPoll(Poll, [EngineFrame])
        /// Drop this GET without an answer.
        case abortPoll(Poll)
        /// Refuse the request with this error; the session is unchanged.
        case reject(PollError)
        /// Refuse the request, and close the session (a second concurrent GET).
        case rejectAndClose(PollError, CloseAction)
        /// Hand a text message (without its type digit) to the layer above.
        case deliverText(ByteBuffer)
        /// Hand a binary message to the layer above.
        case deliverBinary(ByteBuffer)
        /// Schedule the ping timer.
        case armPingTimer(at: NIODeadline)
        /// The pong arrived: cancel the pong timeout and schedule the next ping.
        case restartHeartbeat(pingAt: NIODeadline)
        /// Write a ping on the websocket and arm the pong timeout.
        case writePing(WebSocket, pongTimeoutAt: NIODeadline)
        /// The ping waits in the polling outbox (schedule a flush first when `scheduleFlush`); arm the pong timeout.
        case queuePing(scheduleFlush: Bool, pongTimeoutAt: NIODeadline)
        /// A websocket became the upgrade probe: arm the upgrade timeout.
        case armUpgradeTimer(at: NIODeadline)
        /// Refuse a websocket (close it): the session cannot take it.
        case refuseWebSocket
        /// Answer the probe with `3probe`, and the GET (if any) with a noop.
        case answerProbe(WebSocket, releasing: Poll?)
        /// The upgrade is done: cancel the upgrade timeout and write what was queued (if anything) on the websocket.
        case completeUpgrade(WebSocket, flushing: [EngineFrame])
        /// The upgrade failed: cancel the upgrade timeout and close the probe. The session stays on polling.
        case abortUpgrade(WebSocket)
        /// The probe went away: cancel the upgrade timeout. The session stays on polling.
        case cancelUpgradeTimer
        /// Close the session.
        case close(CloseAction)
    }

    private(set) var state: State
    private var outbox: [EngineFrame] = []
    /// What the outbox would take in a polling payload.
    private(set) var outboxBytes = 0
    private var flushScheduled = false
    private(set) var ping = Ping.none

    private let pingInterval: TimeAmount
    private let pingTimeout: TimeAmount
    private let upgradeTimeout: TimeAmount
    private let maxBufferedBytes: Int
    private let allowWebSocket: Bool

    /// A session on long-polling (`webSocket` nil: the open packet was the handshake's answer) or on a websocket.
    init(webSocket: WebSocket?, configuration: EngineConfiguration) {
        self.state = webSocket.map { .webSocket($0) } ?? .polling(get: nil)
        self.pingInterval = configuration.pingInterval
        self.pingTimeout = configuration.pingTimeout
        self.upgradeTimeout = configuration.upgradeTimeout
        self.maxBufferedBytes = configuration.maxBufferedBytes
        self.allowWebSocket = configuration.allowWebSocket
    }

    var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    var closeReason: CloseReason? {
        if case .closed(let reason, _) = state { return reason }
        return nil
    }

    /// On long-polling (upgrading included); for a closed session, whether it was.
    var isPolling: Bool {
        switch state {
        case .polling, .upgrading: true
        case .webSocket: false
        case .closed(_, let wasPolling): wasPolling
        }
    }

    var isUpgrading: Bool {
        if case .upgrading = state { return true }
        return false
    }

    // MARK: heartbeat

    /// The session is open (the open packet is on its way): the heartbeat starts.
    mutating func start(now: NIODeadline) -> Action {
        guard !isClosed else { return .doNothing }
        return .armPingTimer(at: now + pingInterval)
    }

    mutating func pingTimerFired(now: NIODeadline) -> Action {
        switch state {
        case .closed:
            return .doNothing
        case .webSocket(let ws):
            ping = .sent
            return .writePing(ws, pongTimeoutAt: now + pingTimeout)
        case .polling, .upgrading:
            ping = .queued
            switch enqueue([.ping]) {
            case .close(let close):
                return .close(close)
            case .scheduleFlush:
                return .queuePing(scheduleFlush: true, pongTimeoutAt: now + pingTimeout)
            default:
                return .queuePing(scheduleFlush: false, pongTimeoutAt: now + pingTimeout)
            }
        }
    }

    mutating func pongTimeoutFired() -> Action {
        guard !isClosed, ping != .none else { return .doNothing }
        return .close(close(.pingTimeout))
    }

    // MARK: sending

    /// Packets for the client, in order.
    mutating func send(_ frames: [EngineFrame]) -> Action {
        switch state {
        case .closed:
            return .doNothing
        case .webSocket(let ws):
            return .write(ws, frames)
        case .polling, .upgrading:
            return enqueue(frames)
        }
    }

    private mutating func enqueue(_ frames: [EngineFrame]) -> Action {
        outbox.append(contentsOf: frames)
        for frame in frames { outboxBytes += frame.pollingSize }
        guard outboxBytes <= maxBufferedBytes else {
            // The client does not fetch what it is sent: drop it rather than hold its backlog.
            return .close(close(.slowConsumer))
        }
        guard heldGet != nil, !flushScheduled else { return .doNothing }
        flushScheduled = true
        return .scheduleFlush
    }

    /// The flush asked for by `scheduleFlush`: the held GET takes the whole outbox.
    mutating func flushTick() -> Action {
        flushScheduled = false
        guard let get = heldGet, !outbox.isEmpty else { return .doNothing }
        setHeldGet(nil)
        return .answerPoll(get, takeOutbox())
    }

    // MARK: polling

    /// A long-polling GET: answered at once when packets wait (or with a noop while upgrading), else held.
    mutating func pollArrived(_ get: Poll) -> Action {
        switch state {
        case .closed(let reason, _):
            // A server going away wants the client back (elsewhere): no close packet, which would stop it.
            return reason == .serverShutdown ? .abortPoll(get) : .answerPoll(get, [.close])
        case .webSocket:
            return .reject(.transportMismatch)
        case .polling(get: .some), .upgrading(_, .awaitingProbe(get: .some)):
            // The reference answers the pending GET with a close packet and closes the session.
            return .rejectAndClose(.overlappingPoll, close(.transportError))
        case .upgrading(_, .awaitingUpgrade):
            // The client is upgrading: release this GET at once so the old transport drains.
            return .answerPoll(get, [.noop])
        case .polling(get: .none), .upgrading(_, .awaitingProbe(get: .none)):
            if outbox.isEmpty {
                setHeldGet(get)
                return .doNothing
            }
            return .answerPoll(get, takeOutbox())
        }
    }

    /// A long-polling POST arrived; when it is accepted, its packets follow through
    /// ``packetReceived(_:from:now:)`` with source `.polling` (or ``postWasInvalid()`` if the body does not parse).
    enum PostAction: Equatable {
        /// Read the packets.
        case accept
        /// The session is closed: answer `ok` and drop the packets.
        case ignore
        case reject(PollError)
    }

    func postArrived() -> PostAction {
        switch state {
        case .closed: .ignore
        case .webSocket: .reject(.transportMismatch)
        case .polling, .upgrading: .accept
        }
    }

    /// The POST body is not a valid payload.
    mutating func postWasInvalid() -> Action {
        guard !isClosed else { return .doNothing }
        return .close(close(.parseError))
    }

    /// The HTTP connection `connection` went away. If it held the GET, the session closes, unless a websocket is
    /// probing (the client stopped polling to upgrade).
    mutating func pollConnectionClosed(_ connection: Poll.ID) -> Action {
        guard let get = heldGet, get.id == connection else { return .doNothing }
        setHeldGet(nil)
        if isUpgrading { return .doNothing }
        return .close(close(.transportClose))
    }

    // MARK: websocket

    /// A websocket with this session's sid connected: it becomes the upgrade probe, or is refused.
    mutating func webSocketConnected(_ ws: WebSocket, now: NIODeadline) -> Action {
        guard allowWebSocket, case .polling(let get) = state else { return .refuseWebSocket }
        state = .upgrading(probe: ws, .awaitingProbe(get: get))
        return .armUpgradeTimer(at: now + upgradeTimeout)
    }

    mutating func upgradeTimerFired() -> Action {
        guard case .upgrading(let probe, _) = state else { return .doNothing }
        return abortUpgrade(probe)
    }

    /// The websocket's client does not read (its channel is being closed).
    mutating func webSocketBackedUp(_ ws: WebSocket) -> Action {
        switch state {
        case .upgrading(let probe, _) where probe == ws:
            return abortUpgrade(probe)
        case .webSocket(let current) where current == ws:
            return .close(close(.slowConsumer))
        default:
            return .doNothing
        }
    }

    /// A websocket closed (by the client, or on error).
    mutating func webSocketClosed(_ ws: WebSocket) -> Action {
        switch state {
        case .upgrading(let probe, let stage) where probe == ws:
            state = .polling(get: stage.get)
            return .cancelUpgradeTimer
        case .webSocket(let current) where current == ws:
            return .close(close(.transportClose))
        default:
            return .doNothing
        }
    }

    private mutating func abortUpgrade(_ probe: WebSocket) -> Action {
        guard case .upgrading(_, let stage) = state else { return .doNothing }
        state = .polling(get: stage.get)
        return .abortUpgrade(probe)
    }

    // MARK: receiving

    /// One packet from the client: from a POST, the session's websocket or the probe.
    mutating func packetReceived(_ frame: EngineFrame, from source: Source, now: NIODeadline) -> Action {
        switch (state, source) {
        case (.closed, _):
            return .doNothing
        case (.upgrading(let probe, let stage), .webSocket(let ws)) where probe == ws:
            return probePacketReceived(frame, probe: probe, stage: stage)
        case (.webSocket(let current), .webSocket(let ws)) where current == ws:
            return transportPacketReceived(frame, now: now)
        case (_, .webSocket):
            // Not this session's websocket (any more).
            return .doNothing
        case (_, .polling):
            return transportPacketReceived(frame, now: now)
        }
    }

    private mutating func probePacketReceived(_ frame: EngineFrame, probe: WebSocket, stage: Probe) -> Action {
        guard case .text(let buffer) = frame else { return abortUpgrade(probe) }
        switch stage {
        case .awaitingProbe(let get) where buffer.readableBytesView.elementsEqual("2probe".utf8):
            state = .upgrading(probe: probe, .awaitingUpgrade)
            return .answerProbe(probe, releasing: get)
        case .awaitingUpgrade where buffer.readableBytesView.elementsEqual("5".utf8):
            state = .webSocket(probe)
            return .completeUpgrade(probe, flushing: takeOutbox())
        default:
            // Anything else than `2probe` then `5` aborts the upgrade; nothing on a probe reaches the layer above.
            return abortUpgrade(probe)
        }
    }

    private mutating func transportPacketReceived(_ frame: EngineFrame, now: NIODeadline) -> Action {
        let buffer: ByteBuffer
        switch frame {
        case .binary(let payload):
            return .deliverBinary(payload)
        case .text(let text):
            buffer = text
        }
        var payload = buffer
        guard let typeByte = payload.readInteger(as: UInt8.self), let type = EngineFrame.PacketType(rawValue: typeByte)
        else { return .close(close(.parseError)) }
        switch type {
        case .message:
            return .deliverText(payload)
        case .pong:
            // Only the answer to a ping the client has received counts: a client that never fetches its packets
            // cannot keep the session alive with blind pongs. Others are ignored.
            guard ping == .sent else { return .doNothing }
            ping = .none
            return .restartHeartbeat(pingAt: now + pingInterval)
        case .close:
            // As engine.io: a GET waiting on the session gets a noop, so the client's poll loop ends cleanly.
            let get = heldGet
            setHeldGet(nil)
            var action = close(.transportClose)
            if let get { action.transport = .answerPoll(get, [.noop]) }
            return .close(action)
        case .noop:
            return .doNothing
        case .ping, .open, .upgrade:
            // v4 clients never ping; anything else out of place is a protocol error.
            return .close(close(.parseError))
        }
    }

    // MARK: closing

    /// The server closes the session (forced, shutdown). Nil when it is already closed.
    mutating func close(reason: CloseReason) -> Action {
        guard !isClosed else { return .doNothing }
        return .close(close(reason))
    }

    /// Moves to `closed` and says what to do with the transport: the client is told (close packet) where a
    /// transport can still carry it. Must not be called on a closed session.
    private mutating func close(_ reason: CloseReason) -> CloseAction {
        var action = CloseAction(reason: reason, transport: .none, probe: nil)
        switch state {
        case .closed:
            preconditionFailure("EngineSessionStateMachine: close(\(reason)) in state \(state)")
        case .webSocket(let ws):
            // A close packet tells the client not to come back; on shutdown we want it to reconnect (to another
            // node), so the socket just closes, as the reference server does.
            action.transport = .closeWebSocket(ws, sendingClosePacket: reason == .forcedClose)
        case .polling, .upgrading:
            if case .upgrading(let probe, _) = state { action.probe = probe }
            if let get = heldGet {
                switch reason {
                case .serverShutdown: action.transport = .abortPoll(get)
                case .slowConsumer: action.transport = .answerPoll(get, [.close])
                default: action.transport = .answerPoll(get, outbox + [.close])
                }
            }
        }
        state = .closed(reason, wasPolling: isPolling)
        outbox = []
        outboxBytes = 0
        flushScheduled = false
        ping = .none
        return action
    }

    // MARK: helpers

    /// The GET held on the polling transport.
    private var heldGet: Poll? {
        switch state {
        case .polling(let get), .upgrading(_, .awaitingProbe(let get)): get
        case .upgrading(_, .awaitingUpgrade), .webSocket, .closed: nil
        }
    }

    private mutating func setHeldGet(_ get: Poll?) {
        switch state {
        case .polling: state = .polling(get: get)
        case .upgrading(let probe, .awaitingProbe): state = .upgrading(probe: probe, .awaitingProbe(get: get))
        case .upgrading(_, .awaitingUpgrade), .webSocket, .closed:
            precondition(get == nil, "EngineSessionStateMachine: a GET cannot be held in state \(state)")
        }
    }

    /// Empties the outbox for a transport; a ping in it is then on its way to the client.
    private mutating func takeOutbox() -> [EngineFrame] {
        let frames = outbox
        outbox = []
        outboxBytes = 0
        if ping == .queued, !frames.isEmpty { ping = .sent }
        return frames
    }
}

extension EngineSessionStateMachine.Probe {
    fileprivate var get: Poll? {
        if case .awaitingProbe(let get) = self { return get }
        return nil
    }
}
