import CoreMetrics
import EngineIO
import Logging
import NIOCore
import NIOPosix
import Signaling
import SocketIO
import Synchronization

/// Settings of a node.
public struct ServerConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 4000
    public var nodeID = "node"
    public var engine = EngineConfiguration()
    public var signaling = SignalingConfiguration()
    /// Time allowed to join a namespace after the Engine.IO handshake (a session that sends no CONNECT in time
    /// is closed, so handshakes alone cannot fill the session table for long).
    public var connectTimeout: TimeAmount = .seconds(10)
    /// TCP connection limits, HTTP timeouts and trusted proxies.
    public var connections = ConnectionConfiguration()
    /// Limits of the Socket.IO layer (binary packets, acks, failed CONNECTs). Its event rate and the attachment
    /// bytes are taken from `signaling` and `engine` when the server starts.
    public var socketIO = SocketIOLimits()
    /// Connection state recovery (a client whose transport dropped comes back with the same socket); nil = off.
    public var recovery: RecoveryConfiguration? = nil
    /// The metrics backend's text for `/metrics` (Prometheus); nil serves 404.
    public var metricsText: (@Sendable () -> String)? = nil
    /// A listener of its own for `/metrics` (host, port); the main listener then answers 404 there.
    public var metricsListener: (host: String, port: Int)? = nil

    public init() {}
}

/// A signaling node: the HTTP/WebSocket listener, the Engine.IO sessions, the Socket.IO namespace `/` with the
/// seed's signaling events, and the adapter that shares its rooms.
public final class SignalServer: Sendable {
    public let configuration: ServerConfiguration
    public let namespace: Namespace
    public let engine: EngineServer
    public let presence: any PresenceStore
    public let metrics: SignalMetrics
    let logger: Logger
    private let group: any EventLoopGroup
    private let context: ServerContext

    public init(
        configuration: ServerConfiguration,
        group: any EventLoopGroup,
        logger: Logger,
        presence: any PresenceStore = InMemoryPresenceStore(),
        makeAdapter: (String, any LocalDelivery) -> any Adapter = { InMemoryAdapter(nsp: $0, delivery: $1) }
    ) {
        self.presence = presence
        // Read the demo files now, not on an event loop at the first request.
        _ = DemoPage.files
        let metrics = SignalMetrics()
        self.metrics = metrics
        self.configuration = configuration
        self.group = group
        var logger = logger
        logger[metadataKey: "node.id"] = "\(configuration.nodeID)"
        self.logger = logger
        let namespace = Namespace(
            name: "/",
            handler: SignalingApplication(configuration: configuration.signaling, presence: presence),
            logger: logger,
            metrics: metrics.socketIO,
            recovery: configuration.recovery,
            makeAdapter: makeAdapter
        )
        self.namespace = namespace
        let namespaces = ["/": namespace]
        let connectTimeout = configuration.connectTimeout
        var limits = configuration.socketIO
        limits.eventsPerSecond = configuration.signaling.eventsPerSecond
        limits.eventBurst = configuration.signaling.eventBurst
        limits.maxAttachmentBytes = configuration.engine.maxPayload
        let sessionLimits = limits
        let addressBudget: (any AddressBudget)? =
            limits.addressEventsPerSecond > 0
            ? AddressRateLimiter(rate: limits.addressEventsPerSecond, burst: max(1, limits.addressEventBurst)) : nil
        let sessionLogger = logger
        self.engine = EngineServer(configuration: configuration.engine, logger: logger, metrics: metrics.engine) { session in
            let connection = SocketIOConnection(
                session: session,
                namespaces: namespaces,
                connectTimeout: connectTimeout,
                limits: sessionLimits,
                addressBudget: addressBudget,
                logger: sessionLogger
            )
            session.delegate = connection
        }
        let adapter = namespace.adapter
        let metricsText = configuration.metricsText
        let engineForMetrics = engine
        self.context = ServerContext(
            engine: engine,
            connections: configuration.connections,
            servesMetrics: configuration.metricsListener == nil,
            isReady: { adapter.isReady && presence.isReady },
            readinessDetails: { adapter.readinessDetails + ["presence: \(presence.isReady ? "ready" : "not ready")"] },
            metricsText: {
                guard let metricsText else { return nil }
                // The gauges are read when scraped; every metric is then rendered by the backend.
                metrics.rooms.record(adapter.localRoomCount)
                metrics.sessions.record(engineForMetrics.sessionCount)
                if namespace.adapter.ledger != nil {
                    metrics.recoverySuspended.record(namespace.localSockets.ledgerSuspendedCount)
                } else if let store = namespace.recoveryStore {
                    metrics.recoverySuspended.record(store.count)
                    metrics.recoveryBytes.record(store.bytes)
                }
                return metricsText()
            }
        )
    }

    /// Binds the listener. The returned channel's close future completes when the server stops.
    public func bind() async throws -> any Channel {
        let context = self.context
        let upgrader = HTTPPipeline.makeUpgrader(context: context.http)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            // After an accept error (no descriptor or memory left) wait a little before accepting again. NIO only
            // gets here once an accept succeeded in the same read, so the node also keeps its TCP connection limit
            // below the descriptor limit (`signal-node` does), and accepts and closes what is over it.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { _ in .milliseconds(250) }
                    )
                }
            }
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Idle connections are most connections: start reads at 512 bytes, not NIO's 2 KB (about 1.5 KB of
            // RSS per idle websocket); the allocator still grows to 64 KB for busy ones.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try HTTPPipeline.configure(channel: channel, context: context.http, upgrader: upgrader)
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        logger.info("listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        if let (host, port) = configuration.metricsListener {
            let metrics = try await MetricsListener.bind(host: host, port: port, group: group, text: context.metricsText)
            logger.info("metrics listening", metadata: ["address": "\(metrics.localAddress.map { "\($0)" } ?? "?")"])
            // It lives as long as the main listener.
            channel.closeFuture.whenComplete { _ in metrics.close(promise: nil) }
        }
        return channel
    }

    /// Starts the adapter and presence (connections to Redis, heartbeats).
    public func start() async throws {
        try await namespace.adapter.start()
        let namespace = self.namespace
        try await presence.start { entries in SignalingApplication.nodeLost(entries, namespace: namespace) }
    }

    /// Stops the adapter and presence.
    public func stop() async {
        await presence.shutdown()
        await namespace.adapter.shutdown()
    }

    public func shutdown() {
        engine.closeAll(reason: .serverShutdown)
    }

    /// Graceful drain: report not-ready, stop accepting, tell every client to reconnect (an Engine.IO close, so
    /// clients reconnect and the load balancer sends them to another node; their `user_left` goes out through
    /// the usual disconnect path), and wait for the sessions to go, at most `timeout`.
    public func drain(listener: any Channel, timeout: Duration) async {
        context.http.draining.store(true, ordering: .relaxed)
        let sessions = engine.sessionCount
        logger.info("draining", metadata: ["sessions": "\(sessions)", "timeout.ms": "\(timeout.components.seconds * 1000)"])
        try? await listener.close()
        engine.closeAll(reason: .serverShutdown)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while engine.sessionCount > 0, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        // Let the last user_left publishes reach Redis before the connections close.
        let remaining = deadline - clock.now
        if remaining > .zero { try? await Task.sleep(for: min(.milliseconds(200), remaining)) }
        logger.info("drained", metadata: ["sessions.left": "\(engine.sessionCount)"])
    }
}
