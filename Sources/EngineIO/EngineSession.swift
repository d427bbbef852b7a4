import NIOCore

/// One Engine.IO v4 session: its transport (long-polling, then maybe a websocket), the write buffer, the
/// heartbeat and the upgrade probe.
///
/// A session is pinned to one event loop and every method must be called on it: polling requests that arrive
/// on other connections hop here (`HTTPHandler` does it, and `EngineWebSocketHandler` for the frames of an
/// upgraded websocket), so the session needs no lock, and the held GET, the write buffer and the timers change
/// together (Sources/SocketIO/README.md has the whole threading rule). Timers are the loop's scheduled tasks, so
/// tests drive them with an `EmbeddedEventLoop` and `advanceTime(by:)`.
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

    private enum Upgrade {
        case none
        /// A websocket is connected; `probed` once `2probe` got its `3probe`.
        case probing(any WebSocketConnection, probed: Bool, timeout: Scheduled<Void>?)
    }

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
    public private(set) var transport: Transport
    public private(set) var isClosed = false
    /// Why the session closed, once it has.
    public private(set) var closeReason: CloseReason?
    private var upgrade: Upgrade = .none
    private var outbox: [EngineFrame] = []
    /// What the outbox would take on the wire.
    private var outboxBytes = 0
    private var heldPoll: (any PollingResponder)?
    private var flushScheduled = false
    private var pingTask: Scheduled<Void>?
    private var pongDeadline: Scheduled<Void>?

    /// Where the last ping is: a pong is accepted only once the ping has reached a transport.
    private enum Ping {
        case none
        /// In the polling outbox, not yet fetched by a GET.
        case queued
        /// Written to the client.
        case sent
    }

    private var ping = Ping.none

    public init(
        sid: String,
        transport: Transport,
        eventLoop: any EventLoop,
        configuration: EngineConfiguration,
        clientAddress: IPAddress? = nil
    ) {
        self.sid = sid
        self.transport = transport
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.clientAddress = clientAddress?.description
        self.clientKey = clientAddress?.clientKey
    }

    public var isPolling: Bool {
        if case .polling = transport { return true }
        return false
    }

    public var isUpgrading: Bool {
        if case .probing = upgrade { return true }
        return false
    }

    /// Sends the open packet on a websocket transport and starts the heartbeat. For polling the server returns
    /// the open packet as the handshake response itself.
    public func start() {
        eventLoop.preconditionInEventLoop()
        if case .websocket(let ws) = transport {
            ws.write([EngineFrame.packet(.open, configuration.handshakeJSON(sid, false))])
        }
        schedulePing()
    }

    // MARK: sending

    /// Queues packets for the client, in order. They leave on the current transport at the end of this loop tick.
    public func send(_ frames: [EngineFrame]) {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return }
        switch transport {
        case .websocket(let ws):
            ws.write(frames)
        case .polling:
            outbox.append(contentsOf: frames)
            for frame in frames { outboxBytes += frame.pollingSize }
            guard outboxBytes <= configuration.maxBufferedBytes else {
                // The client does not fetch what it is sent: drop it rather than hold its backlog.
                return close(reason: .slowConsumer)
            }
            scheduleFlush()
        }
    }

    public func send(_ frame: EngineFrame) { send([frame]) }

    private func scheduleFlush() {
        guard heldPoll != nil, !flushScheduled else { return }
        flushScheduled = true
        // Packets queued in the same tick go out in one response.
        eventLoop.execute { [self] in
            flushScheduled = false
            flushPolling()
        }
    }

    private func flushPolling() {
        guard let poll = heldPoll, !outbox.isEmpty else { return }
        heldPoll = nil
        let frames = outbox
        outbox.removeAll(keepingCapacity: true)
        outboxBytes = 0
        if ping == .queued { ping = .sent }
        poll.respond(PollingPayload.encode(frames))
    }

    // MARK: polling

    public enum PollError: Error, Hashable {
        /// The request does not fit the session's transport (code 3).
        case transportMismatch
        /// A second GET while one is held (400, the session closes).
        case overlappingPoll
        /// The POST body is not a valid payload.
        case invalidPayload
    }

    /// A long-polling GET: answered at once when packets wait, else held until there are some.
    public func pollArrived(_ responder: any PollingResponder) -> PollError? {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else {
            // A server going away wants the client back (elsewhere): no close packet, which would stop it.
            if closeReason == .serverShutdown {
                responder.abort()
            } else {
                responder.respond(PollingPayload.encode([.close]))
            }
            return nil
        }
        guard isPolling else { return .transportMismatch }
        if heldPoll != nil {
            // The reference answers the pending GET with a close packet and closes the session.
            close(reason: .transportError)
            return .overlappingPoll
        }
        heldPoll = responder
        if case .probing(_, probed: true, _) = upgrade {
            // The client is upgrading: release this GET at once so the old transport drains.
            releaseHeldPollWithNoop()
        } else if !outbox.isEmpty {
            flushPolling()
        }
        return nil
    }

    /// A long-polling POST with one or more packets.
    public func postArrived(_ body: ByteBuffer) -> PollError? {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return nil }
        guard isPolling else { return .transportMismatch }
        guard let frames = try? PollingPayload.decode(body) else {
            close(reason: .parseError)
            return .invalidPayload
        }
        for frame in frames where !isClosed { receive(frame) }
        return nil
    }

    /// The connection that held a GET went away without an answer.
    public func pollConnectionClosed(_ connection: ObjectIdentifier) {
        eventLoop.preconditionInEventLoop()
        guard heldPoll?.connection == connection, !isClosed, isPolling else { return }
        heldPoll = nil
        if !isUpgrading { close(reason: .transportClose) }
    }

    private func releaseHeldPollWithNoop() {
        guard let poll = heldPoll else { return }
        heldPoll = nil
        poll.respond(PollingPayload.encode([.noop]))
    }

    // MARK: websocket

    /// A websocket with this session's sid connected: it becomes the upgrade probe.
    public func webSocketConnected(_ ws: any WebSocketConnection) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard !isClosed, isPolling, !isUpgrading, configuration.allowWebSocket else { return false }
        let timeout = eventLoop.scheduleTask(in: configuration.upgradeTimeout) { [weak self] in
            guard let self else { return }
            self.abortUpgrade()
        }
        upgrade = .probing(ws, probed: false, timeout: timeout)
        return true
    }

    private func abortUpgrade() {
        guard case .probing(let ws, _, let timeout) = upgrade else { return }
        timeout?.cancel()
        upgrade = .none
        ws.close()
    }

    /// A frame arrived on a websocket: the transport or the probe.
    public func webSocketFrame(_ frame: EngineFrame, from ws: any WebSocketConnection) {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return }
        if case .probing(let probe, let probed, let timeout) = upgrade, probe === ws {
            guard case .text(let buffer) = frame else { return abortUpgrade() }
            let text = String(buffer: buffer)
            if text == "2probe", !probed {
                upgrade = .probing(probe, probed: true, timeout: timeout)
                probe.write([.probePong])
                releaseHeldPollWithNoop()
            } else if text == "5", probed {
                timeout?.cancel()
                upgrade = .none
                completeUpgrade(to: probe)
            } else {
                abortUpgrade()
            }
            return
        }
        guard case .websocket(let current) = transport, current === ws else { return }
        receive(frame)
    }

    private func completeUpgrade(to ws: any WebSocketConnection) {
        transport = .websocket(ws)
        onUpgrade?(self)
        releaseHeldPollWithNoop()
        if !outbox.isEmpty {
            let frames = outbox
            outbox.removeAll()
            outboxBytes = 0
            if ping == .queued { ping = .sent }
            ws.write(frames)
        }
    }

    /// A websocket's client does not read: its writes went over `maxBufferedBytes` (the channel is being closed).
    public func webSocketBackedUp(_ ws: any WebSocketConnection) {
        eventLoop.preconditionInEventLoop()
        if case .probing(let probe, _, _) = upgrade, probe === ws { return abortUpgrade() }
        if case .websocket(let current) = transport, current === ws { close(reason: .slowConsumer) }
    }

    /// A websocket closed (by the client, or on error).
    public func webSocketClosed(_ ws: any WebSocketConnection) {
        eventLoop.preconditionInEventLoop()
        if case .probing(let probe, _, let timeout) = upgrade, probe === ws {
            timeout?.cancel()
            upgrade = .none
            return
        }
        if case .websocket(let current) = transport, current === ws {
            close(reason: .transportClose)
        }
    }

    // MARK: receiving

    private func receive(_ frame: EngineFrame) {
        switch frame {
        case .binary(let payload):
            delegate?.engineSession(self, didReceiveBinary: payload)
        case .text(var buffer):
            guard let typeByte = buffer.readInteger(as: UInt8.self),
                let type = EngineFrame.PacketType(rawValue: typeByte)
            else { return close(reason: .parseError) }
            switch type {
            case .message:
                delegate?.engineSession(self, didReceiveText: buffer)
            case .pong:
                // Only the answer to a ping the client has received counts: a client that never fetches its
                // packets cannot keep the session alive with blind pongs. Others are ignored.
                guard ping == .sent else { return }
                ping = .none
                pongDeadline?.cancel()
                pongDeadline = nil
                schedulePing()
            case .close:
                // As engine.io: a GET waiting on the session gets a noop, so the client's poll loop ends cleanly.
                if isPolling { releaseHeldPollWithNoop() }
                close(reason: .transportClose)
            case .noop:
                break
            case .ping, .open, .upgrade:
                // v4 clients never ping; anything else out of place is a protocol error.
                close(reason: .parseError)
            }
        }
    }

    // MARK: heartbeat

    private func schedulePing() {
        pingTask?.cancel()
        pingTask = eventLoop.scheduleTask(in: configuration.pingInterval) { [weak self] in
            guard let self, !self.isClosed else { return }
            self.ping = self.isPolling ? .queued : .sent
            self.send(.ping)
            self.pongDeadline = self.eventLoop.scheduleTask(in: self.configuration.pingTimeout) { [weak self] in
                guard let self else { return }
                self.close(reason: .pingTimeout)
            }
        }
    }

    // MARK: closing

    /// Closes the session: the client is told (close packet) where a transport can still carry it.
    public func close(reason: CloseReason) {
        eventLoop.preconditionInEventLoop()
        guard !isClosed else { return }
        isClosed = true
        closeReason = reason
        pingTask?.cancel()
        pongDeadline?.cancel()
        if case .probing(let ws, _, let timeout) = upgrade {
            timeout?.cancel()
            ws.close()
        }
        upgrade = .none
        switch transport {
        case .websocket(let ws):
            // A close packet tells the client not to come back; on shutdown we want it to reconnect (to another
            // node), so the socket just closes, as the reference server does.
            if reason == .forcedClose { ws.write([.close]) }
            ws.close()
        case .polling:
            if let poll = heldPoll {
                heldPoll = nil
                if reason == .serverShutdown {
                    poll.abort()
                } else if reason == .slowConsumer {
                    poll.respond(PollingPayload.encode([.close]))
                } else {
                    poll.respond(PollingPayload.encode(outbox + [.close]))
                }
            }
        }
        outbox.removeAll()
        outboxBytes = 0
        onClose?(self)
        onClose = nil
        let delegate = self.delegate
        self.delegate = nil
        delegate?.engineSession(self, didCloseWithReason: reason)
    }
}

@available(*, unavailable)
extension EngineSession: Sendable {}
