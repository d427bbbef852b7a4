import Logging
import NIOCore
import Synchronization

/// The Engine.IO sessions of this node, by sid, and the routing of requests to them.
///
/// Each session is pinned to the event loop of the connection that opened it. The table is shared by all
/// loops behind a mutex that guards only the dictionary; requests then hop to the session's loop.
public final class EngineServer: Sendable {
    public let configuration: EngineConfiguration
    let logger: Logger
    let metrics: EngineMetrics
    private let sessions = Mutex<[String: NIOLoopBound<EngineSession>]>([:])
    /// Makes the layer above for a new session (Socket.IO); called on the session's loop.
    private let attach: @Sendable (EngineSession) -> Void

    public init(
        configuration: EngineConfiguration,
        logger: Logger,
        metrics: EngineMetrics,
        attach: @escaping @Sendable (EngineSession) -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.attach = attach
    }

    public var sessionCount: Int { sessions.withLock { $0.count } }

    /// Whether a new session would be admitted now.
    var hasCapacity: Bool { sessionCount < configuration.maxSessions }

    func session(_ sid: String) -> NIOLoopBound<EngineSession>? {
        sessions.withLock { $0[sid] }
    }

    /// Creates a session on `eventLoop` (the caller's). Nil when the node holds its maximum of sessions.
    func openSession(
        transport: EngineSession.Transport,
        on eventLoop: any EventLoop,
        token: String? = nil,
        clientAddress: IPAddress? = nil
    ) -> EngineSession? {
        let session = EngineSession(
            sid: IDGenerator.next(),
            transport: transport,
            eventLoop: eventLoop,
            configuration: configuration,
            clientAddress: clientAddress
        )
        session.handshakeToken = token
        let bound = NIOLoopBound(session, eventLoop: eventLoop)
        let admitted = sessions.withLock { sessions -> Bool in
            guard sessions.count < configuration.maxSessions else { return false }
            sessions[session.sid] = bound
            return true
        }
        guard admitted else { return nil }
        metrics.transport(.opened(polling: session.isPolling))
        session.onClose = { [weak self] session in
            guard let self else { return }
            _ = self.sessions.withLock { $0.removeValue(forKey: session.sid) }
            self.metrics.transport(.closed(polling: session.isPolling))
            if session.closeReason == .slowConsumer { self.metrics.slowConsumer(polling: session.isPolling) }
        }
        session.onUpgrade = { [weak self] _ in self?.metrics.transport(.upgraded) }
        attach(session)
        session.start()
        return session
    }

    /// Closes every session (shutdown).
    public func closeAll(reason: EngineSession.CloseReason) {
        let all = sessions.withLock { Array($0.values) }
        for bound in all {
            bound.eventLoop.execute { bound.value.close(reason: reason) }
        }
    }
}
