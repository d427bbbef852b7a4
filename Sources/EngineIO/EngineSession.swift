import NIOCore

/// One Engine.IO v4 session: its transport (long-polling, then maybe a websocket), the write buffer, the
/// heartbeat and the upgrade probe.
///
/// The logic is ``EngineSessionStateMachine``, a value that turns each event into an action; this class is its
/// driver. It feeds the machine the events of the session's transports and timers and carries out what comes back:
/// writes on the websocket, answers to the held GET, timers on the loop, and the callbacks to the layer above.
///
/// A session is pinned to one event loop and every method must be called on it: polling requests that arrive
/// on other connections hop here (`HTTPHandler` does it, and `EngineWebSocketHandler` for the frames of an
/// upgraded websocket), so the session needs no lock, and the held GET, the write buffer and the timers change
/// together (Sources/SocketIO/README.md has the whole threading rule). Timers are the loop's scheduled tasks at the
/// deadlines the machine returns (from `eventLoop.now`), so tests drive them with an `EmbeddedEventLoop` and
/// `advanceTime(by:)`.
public final class EngineSession {
    public enum CloseReason: String, Sendable, Hashable {
        case transportClose = "transport close"
        case transportError = "transport error"
        case pingTimeout = "ping timeout"
        case parseError = "parse error"
        case forcedClose = "forced close"
        case serverShutdown = "server shutting down"
        /// More than `maxBufferedBytes` queued for a client that does not read.
        case slowConsumer = "slow consumer"
    }

    public enum Transport {
        case polling
        case websocket(any WebSocketConnection)
    }

    public enum PollError: Error, Hashable {
        /// The request does not fit the session's transport (code 3).
        case transportMismatch
        /// A second GET while one is held (400, the session closes).
        case overlappingPoll
        /// The POST body is not a valid payload.
        case invalidPayload
    }

    typealias StateMachine = EngineSessionStateMachine<HeldPoll, WebSocketHandle>

    public let sid: String
    /// The client's address as this node sees it (the TCP peer, or what a trusted proxy says), canonical text.
    public let clientAddress: String?
    /// The key for per-client limits: the address, or its /64 for IPv6 (`IPAddress.clientKey`).
    public let clientKey: String?
    public let eventLoop: any EventLoop
    public let configuration: EngineConfiguration
    /// The layer above; held strongly until the session closes (the session is what keeps it alive).
    public var delegate: (any EngineSessionDelegate)?
    /// Called once when the session closes (the server removes it from its table).
    var onClose: ((EngineSession) -> Void)?
    /// Called when the session moves from long-polling to its websocket (metrics).
    var onUpgrade: ((EngineSession) -> Void)?

    /// The `token` query parameter of the handshake request, if any.
    public var handshakeToken: String?

    private var machine: StateMachine
    private var pingTimer: Scheduled<Void>?
    private var pongTimer: Scheduled<Void>?
    private var upgradeTimer: Scheduled<Void>?

    public init(
        sid: String,
        transport: Transport,
        eventLoop: any EventLoop,
        configuration: EngineConfiguration,
        clientAddress: IPAddress? = nil
    ) {
        self.sid = sid
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.clientAddress = clientAddress?.description
        self.clientKey = clientAddress?.clientKey
        let webSocket: WebSocketHandle? =
            switch transport {
            case .polling: nil
            case .websocket(let ws): WebSocketHandle(ws)
            }
        self.machine = StateMachine(webSocket: webSocket, configuration: configuration)
    }

    /// On long-polling (also while a websocket probes); for a closed session, whether it was.
    public var isPolling: Bool { machine.isPolling }
    public var isUpgrading: Bool { machine.isUpgrading }
    public var isClosed: Bool { machine.isClosed }
    /// Why the session closed, once it has.
    public var closeReason: CloseReason? { machine.closeReason }

    /// Sends the open packet on a websocket transport and starts the heartbeat. For polling the server returns
    /// the open packet as the handshake response itself.
    public func start() {
        eventLoop.preconditionInEventLoop()
        if !machine.isPolling {
            send(EngineFrame.packet(.open, configuration.handshakeJSON(sid, false)))
        }
        perform(machine.start(now: eventLoop.now))
    }

    // MARK: events

    /// Queues packets for the client, in order. On polling they leave at the end of this loop tick (with whatever
    /// else is sent in it); on a websocket at once.
    public func send(_ frames: [EngineFrame]) {
        eventLoop.preconditionInEventLoop()
        perform(machine.send(frames))
    }

    public func send(_ frame: EngineFrame) { send([frame]) }

    /// A long-polling GET: answered at once when packets wait, else held until there are some.
    public func pollArrived(_ responder: any PollingResponder) -> PollError? {
        eventLoop.preconditionInEventLoop()
        return perform(machine.pollArrived(HeldPoll(responder)))
    }

    /// A long-polling POST with one or more packets.
    public func postArrived(_ body: ByteBuffer) -> PollError? {
        eventLoop.preconditionInEventLoop()
        switch machine.postArrived() {
        case .ignore:
            return nil
        case .reject(let error):
            return error
        case .accept:
            guard let frames = try? PollingPayload.decode(body) else {
                perform(machine.postWasInvalid())
                return .invalidPayload
            }
            // One at a time: the layer above may send or close the session while it handles a message.
            for frame in frames where !machine.isClosed {
                perform(machine.packetReceived(frame, from: .polling, now: eventLoop.now))
            }
            return nil
        }
    }

    /// The connection that held a GET went away without an answer.
    public func pollConnectionClosed(_ connection: ObjectIdentifier) {
        eventLoop.preconditionInEventLoop()
        perform(machine.pollConnectionClosed(connection))
    }

    /// A websocket with this session's sid connected: it becomes the upgrade probe. False when the session cannot
    /// take it (the caller closes it).
    public func webSocketConnected(_ ws: any WebSocketConnection) -> Bool {
        eventLoop.preconditionInEventLoop()
        let action = machine.webSocketConnected(WebSocketHandle(ws), now: eventLoop.now)
        if case .refuseWebSocket = action { return false }
        perform(action)
        return true
    }

    /// A frame arrived on a websocket: the transport or the probe.
    public func webSocketFrame(_ frame: EngineFrame, from ws: any WebSocketConnection) {
        eventLoop.preconditionInEventLoop()
        perform(machine.packetReceived(frame, from: .webSocket(WebSocketHandle(ws)), now: eventLoop.now))
    }

    /// A websocket's client does not read: its writes went over `maxBufferedBytes` (the channel is being closed).
    public func webSocketBackedUp(_ ws: any WebSocketConnection) {
        eventLoop.preconditionInEventLoop()
        perform(machine.webSocketBackedUp(WebSocketHandle(ws)))
    }

    /// A websocket closed (by the client, or on error).
    public func webSocketClosed(_ ws: any WebSocketConnection) {
        eventLoop.preconditionInEventLoop()
        perform(machine.webSocketClosed(WebSocketHandle(ws)))
    }

    /// Closes the session: the client is told (close packet) where a transport can still carry it.
    public func close(reason: CloseReason) {
        eventLoop.preconditionInEventLoop()
        perform(machine.close(reason: reason))
    }

    // MARK: actions

    @discardableResult
    private func perform(_ action: StateMachine.Action) -> PollError? {
        switch action {
        case .doNothing:
            break
        case .write(let ws, let frames):
            ws.connection.write(frames)
        case .scheduleFlush:
            // Packets queued in the same tick go out in one response.
            eventLoop.assumeIsolated().execute { [self] in
                perform(machine.flushTick())
            }
        case .answerPoll(let get, let frames):
            get.responder.respond(PollingPayload.encode(frames))
        case .abortPoll(let get):
            get.responder.abort()
        case .reject(let error):
            return error
        case .rejectAndClose(let error, let close):
            performClose(close)
            return error
        case .deliverText(let payload):
            delegate?.engineSession(self, didReceiveText: payload)
        case .deliverBinary(let payload):
            delegate?.engineSession(self, didReceiveBinary: payload)
        case .armPingTimer(let deadline):
            armPingTimer(at: deadline)
        case .restartHeartbeat(let deadline):
            pongTimer?.cancel()
            pongTimer = nil
            armPingTimer(at: deadline)
            delegate?.engineSessionDidReceivePong(self)
        case .writePing(let ws, let deadline):
            ws.connection.write([.ping])
            armPongTimer(at: deadline)
        case .queuePing(let scheduleFlush, let deadline):
            if scheduleFlush { perform(.scheduleFlush) }
            armPongTimer(at: deadline)
        case .armUpgradeTimer(let deadline):
            upgradeTimer?.cancel()
            upgradeTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
                guard let self else { return }
                self.upgradeTimer = nil
                self.perform(self.machine.upgradeTimerFired())
            }
        case .refuseWebSocket:
            break  // webSocketConnected answers false
        case .answerProbe(let probe, let get):
            probe.connection.write([.probePong])
            get?.responder.respond(PollingPayload.encode([.noop]))
        case .completeUpgrade(let ws, let frames):
            cancelUpgradeTimer()
            onUpgrade?(self)
            if !frames.isEmpty { ws.connection.write(frames) }
        case .abortUpgrade(let probe):
            cancelUpgradeTimer()
            probe.connection.close()
        case .cancelUpgradeTimer:
            cancelUpgradeTimer()
        case .close(let close):
            performClose(close)
        }
        return nil
    }

    private func armPingTimer(at deadline: NIODeadline) {
        pingTimer?.cancel()
        pingTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.pingTimer = nil
            self.perform(self.machine.pingTimerFired(now: self.eventLoop.now))
        }
    }

    private func armPongTimer(at deadline: NIODeadline) {
        pongTimer?.cancel()
        pongTimer = eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.pongTimer = nil
            self.perform(self.machine.pongTimeoutFired())
        }
    }

    private func cancelUpgradeTimer() {
        upgradeTimer?.cancel()
        upgradeTimer = nil
    }

    private func performClose(_ close: StateMachine.CloseAction) {
        pingTimer?.cancel()
        pongTimer?.cancel()
        cancelUpgradeTimer()
        pingTimer = nil
        pongTimer = nil
        close.probe?.connection.close()
        switch close.transport {
        case .none:
            break
        case .answerPoll(let get, let frames):
            get.responder.respond(PollingPayload.encode(frames))
        case .abortPoll(let get):
            get.responder.abort()
        case .closeWebSocket(let ws, let sendingClosePacket):
            if sendingClosePacket { ws.connection.write([.close]) }
            ws.connection.close()
        }
        onClose?(self)
        onClose = nil
        let delegate = self.delegate
        self.delegate = nil
        delegate?.engineSession(self, didCloseWithReason: close.reason)
    }
}

extension EngineSession {
    /// A held GET as the state machine sees it: identified by its HTTP connection.
    struct HeldPoll: Identifiable, Equatable {
        let responder: any PollingResponder

        init(_ responder: any PollingResponder) { self.responder = responder }

        var id: ObjectIdentifier { responder.connection }

        static func == (lhs: Self, rhs: Self) -> Bool { lhs.id == rhs.id }
    }

    /// A websocket as the state machine sees it: compared by identity.
    struct WebSocketHandle: Equatable {
        let connection: any WebSocketConnection

        init(_ connection: any WebSocketConnection) { self.connection = connection }

        static func == (lhs: Self, rhs: Self) -> Bool { lhs.connection === rhs.connection }
    }
}

@available(*, unavailable)
extension EngineSession: Sendable {}
