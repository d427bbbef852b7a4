import Adapter
import ArgumentParser
import EngineIO
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Node
import Prometheus
import ServiceLifecycle
import Signaling
import SocketIO
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// `signal-node`: one node of the signaling cluster. Every option can also come from an environment variable.
@main
struct SignalNode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signal-node",
        abstract: "A Socket.IO (Engine.IO v4, Socket.IO v5) WebRTC signaling node.",
        discussion: "Every option also reads the environment variable shown in brackets; a flag wins over it."
    )

    @Option(help: "Address to listen on [SIGNAL_HOST].")
    var host: String = env("SIGNAL_HOST") ?? "0.0.0.0"

    @Option(help: "Port to listen on [SIGNAL_PORT].")
    var port: Int = env("SIGNAL_PORT").flatMap(Int.init) ?? 4000

    @Option(help: "Redis URL, e.g. redis://127.0.0.1:6379; absent = single node, in-memory rooms [SIGNAL_REDIS_URL].")
    var redis: String = env("SIGNAL_REDIS_URL") ?? ""

    @Option(help: "Redis Sentinel URLs, comma-separated (redis://host:26379,…): find the primary through them instead of --redis, which then only gives the primary's password and database [SIGNAL_REDIS_SENTINEL].")
    var redisSentinel: String = env("SIGNAL_REDIS_SENTINEL") ?? ""

    @Option(help: "The primary's name in the sentinels' configuration (sentinel monitor NAME …) [SIGNAL_REDIS_SENTINEL_MASTER].")
    var redisSentinelMaster: String = env("SIGNAL_REDIS_SENTINEL_MASTER") ?? ""

    @Option(help: "Redis Cluster seed URLs, comma-separated (redis://host:7000,…): share rooms through the cluster's sharded pub/sub, wire-compatible with Node.js createShardedAdapter (redis-adapter 8.3, dynamic mode); presence keys are routed by slot [SIGNAL_REDIS_CLUSTER].")
    var redisCluster: String = env("SIGNAL_REDIS_CLUSTER") ?? ""

    @Option(help: "With --redis-cluster: dynamic (a channel per room; socket ids through the namespace channel, as Node.js's default) or dynamic-private (socket ids get channels too, so a signal to one socket reaches only its node; every node must use the same mode) [SIGNAL_REDIS_CLUSTER_MODE].")
    var redisClusterMode: String = env("SIGNAL_REDIS_CLUSTER_MODE") ?? "dynamic"

    @Option(help: "Redis subscription mode: pattern (PSUBSCRIBE, like Node.js nodes) or per-room [SIGNAL_REDIS_MODE].")
    var redisMode: String = env("SIGNAL_REDIS_MODE") ?? "pattern"

    @Option(help: "Redis channel prefix, as the Node.js adapter's `key` [SIGNAL_REDIS_PREFIX].")
    var redisPrefix: String = env("SIGNAL_REDIS_PREFIX") ?? "socket.io"

    @Option(help: "This node's name in logs and metrics [SIGNAL_NODE_ID].")
    var nodeId: String = env("SIGNAL_NODE_ID") ?? "node-\(getpid())"

    @Option(help: "Engine.IO ping interval in ms [SIGNAL_PING_INTERVAL].")
    var pingInterval: Int = env("SIGNAL_PING_INTERVAL").flatMap(Int.init) ?? 25_000

    @Option(help: "Engine.IO ping timeout in ms [SIGNAL_PING_TIMEOUT].")
    var pingTimeout: Int = env("SIGNAL_PING_TIMEOUT").flatMap(Int.init) ?? 20_000

    @Option(help: "Largest message or polling payload in bytes [SIGNAL_MAX_PAYLOAD].")
    var maxPayload: Int = env("SIGNAL_MAX_PAYLOAD").flatMap(Int.init) ?? 1_000_000

    @Option(help: "Most Engine.IO sessions on this node [SIGNAL_MAX_CONNECTIONS].")
    var maxConnections: Int = env("SIGNAL_MAX_CONNECTIONS").flatMap(Int.init) ?? 100_000

    @Option(help: "Relayed ICE event name: both, underscore (ice_candidate) or hyphen (ice-candidate) [SIGNAL_ICE_EVENT].")
    var iceEvent: String = env("SIGNAL_ICE_EVENT") ?? "both"

    @Option(help: "Allowed browser origins, comma-separated; empty = any [SIGNAL_ALLOWED_ORIGINS].")
    var allowedOrigins: String = env("SIGNAL_ALLOWED_ORIGINS") ?? ""

    @Option(help: "Milliseconds without heartbeat after which other nodes declare a node dead and send user_left for its sockets [SIGNAL_NODE_TIMEOUT].")
    var nodeTimeout: Int = env("SIGNAL_NODE_TIMEOUT").flatMap(Int.init) ?? 10_000

    @Option(help: "Longest room name, characters [SIGNAL_MAX_ROOM_NAME].")
    var maxRoomName: Int = env("SIGNAL_MAX_ROOM_NAME").flatMap(Int.init) ?? 128

    @Option(help: "Longest person name, characters [SIGNAL_MAX_PERSON_NAME].")
    var maxPersonName: Int = env("SIGNAL_MAX_PERSON_NAME").flatMap(Int.init) ?? 64

    @Option(help: "Longest chat content, characters [SIGNAL_MAX_CONTENT].")
    var maxContent: Int = env("SIGNAL_MAX_CONTENT").flatMap(Int.init) ?? 10_000

    @Option(help: "Longest SDP, bytes [SIGNAL_MAX_SDP].")
    var maxSdp: Int = env("SIGNAL_MAX_SDP").flatMap(Int.init) ?? 100_000

    @Option(help: "Longest ICE candidate, bytes [SIGNAL_MAX_CANDIDATE].")
    var maxCandidate: Int = env("SIGNAL_MAX_CANDIDATE").flatMap(Int.init) ?? 2_048

    @Option(help: "Events per second per socket, sustained [SIGNAL_EVENT_RATE].")
    var eventRate: Double = env("SIGNAL_EVENT_RATE").flatMap(Double.init) ?? 50

    @Option(help: "Events per socket in a burst [SIGNAL_EVENT_BURST].")
    var eventBurst: Double = env("SIGNAL_EVENT_BURST").flatMap(Double.init) ?? 100

    @Option(help: "Rooms per socket [SIGNAL_MAX_ROOMS_PER_SOCKET].")
    var maxRoomsPerSocket: Int = env("SIGNAL_MAX_ROOMS_PER_SOCKET").flatMap(Int.init) ?? 16

    @Option(help: "Members per room, cluster-wide [SIGNAL_MAX_ROOM_MEMBERS].")
    var maxRoomMembers: Int = env("SIGNAL_MAX_ROOM_MEMBERS").flatMap(Int.init) ?? 50

    @Option(help: "Events per second of all the sessions of one client address; 0 = no per-address budget [SIGNAL_ADDRESS_EVENT_RATE].")
    var addressEventRate: Double = env("SIGNAL_ADDRESS_EVENT_RATE").flatMap(Double.init) ?? 2_000

    @Option(help: "Events per client address in a burst [SIGNAL_ADDRESS_EVENT_BURST].")
    var addressEventBurst: Double = env("SIGNAL_ADDRESS_EVENT_BURST").flatMap(Double.init) ?? 4_000

    @Option(help: "Events of one socket that may wait behind Redis; beyond, refused as overloaded [SIGNAL_MAX_QUEUED_EVENTS].")
    var maxQueuedEvents: Int = env("SIGNAL_MAX_QUEUED_EVENTS").flatMap(Int.init) ?? 64

    @Option(help: "Bytes the waiting events of one socket may keep [SIGNAL_MAX_QUEUED_BYTES].")
    var maxQueuedBytes: Int = env("SIGNAL_MAX_QUEUED_BYTES").flatMap(Int.init) ?? 1_000_000

    @Option(help: "Binary attachments one Socket.IO packet may announce [SIGNAL_MAX_ATTACHMENTS].")
    var maxAttachments: Int = env("SIGNAL_MAX_ATTACHMENTS").flatMap(Int.init) ?? 10

    @Option(help: "Milliseconds for a binary packet's attachments to arrive; the session closes after [SIGNAL_BINARY_TIMEOUT].")
    var binaryTimeout: Int = env("SIGNAL_BINARY_TIMEOUT").flatMap(Int.init) ?? 10_000

    @Option(help: "Milliseconds the server waits for a client's ack before forgetting it [SIGNAL_ACK_TIMEOUT].")
    var ackTimeout: Int = env("SIGNAL_ACK_TIMEOUT").flatMap(Int.init) ?? 10_000

    @Option(help: "Unanswered server acks per socket [SIGNAL_MAX_PENDING_ACKS].")
    var maxPendingAcks: Int = env("SIGNAL_MAX_PENDING_ACKS").flatMap(Int.init) ?? 32

    @Option(help: "Refused CONNECTs after which an Engine.IO session is closed [SIGNAL_MAX_FAILED_CONNECTS].")
    var maxFailedConnects: Int = env("SIGNAL_MAX_FAILED_CONNECTS").flatMap(Int.init) ?? 3

    @Option(help: "Event loop threads; 0 = one per core [SIGNAL_THREADS].")
    var threads: Int = env("SIGNAL_THREADS").flatMap(Int.init) ?? 0

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical [SIGNAL_LOG_LEVEL].")
    var logLevel: String = env("SIGNAL_LOG_LEVEL") ?? "info"

    @Option(help: "Log format: text (human-readable) or json (one object per line) [SIGNAL_LOG_FORMAT].")
    var logFormat: String = env("SIGNAL_LOG_FORMAT") ?? "text"

    @Option(help: "Longest graceful drain on SIGTERM/SIGINT, ms [SIGNAL_DRAIN_TIMEOUT].")
    var drainTimeout: Int = env("SIGNAL_DRAIN_TIMEOUT").flatMap(Int.init) ?? 10_000

    @Option(help: "Serve Prometheus metrics on /metrics: true or false [SIGNAL_METRICS].")
    var metrics: Bool = env("SIGNAL_METRICS").map { $0 != "false" && $0 != "0" } ?? true

    @Option(help: "Require a JWT signed HS256 with this secret on CONNECT [SIGNAL_JWT_SECRET].")
    var jwtSecret: String = env("SIGNAL_JWT_SECRET") ?? ""

    @Option(help: "Require a JWT signed RS256, verified with the RSA public key in this PEM file [SIGNAL_JWT_PUBLIC_KEY_FILE].")
    var jwtPublicKeyFile: String = env("SIGNAL_JWT_PUBLIC_KEY_FILE") ?? ""

    @Option(help: "Refuse JWTs without an exp claim: true or false [SIGNAL_JWT_REQUIRE_EXP].")
    var jwtRequireExp: Bool = env("SIGNAL_JWT_REQUIRE_EXP").map { $0 != "false" && $0 != "0" } ?? true

    @Option(help: "When set, a JWT's aud claim must name this audience [SIGNAL_JWT_AUDIENCE].")
    var jwtAudience: String = env("SIGNAL_JWT_AUDIENCE") ?? ""

    @Option(help: "When set, a JWT's iss claim must equal this issuer [SIGNAL_JWT_ISSUER].")
    var jwtIssuer: String = env("SIGNAL_JWT_ISSUER") ?? ""

    @Option(help: "Clock skew allowed on a JWT's exp and nbf, seconds [SIGNAL_JWT_LEEWAY].")
    var jwtLeeway: Double = env("SIGNAL_JWT_LEEWAY").flatMap(Double.init) ?? 5

    @Option(help: "STUN URLs for clients, comma-separated [SIGNAL_STUN_URLS].")
    var stunUrls: String = env("SIGNAL_STUN_URLS") ?? ""

    @Option(help: "TURN URLs for clients, comma-separated (used with --turn-secret) [SIGNAL_TURN_URLS].")
    var turnUrls: String = env("SIGNAL_TURN_URLS") ?? ""

    @Option(help: "Secret shared with the TURN server (coturn use-auth-secret) [SIGNAL_TURN_SECRET].")
    var turnSecret: String = env("SIGNAL_TURN_SECRET") ?? ""

    @Option(help: "Lifetime of TURN credentials, seconds [SIGNAL_TURN_TTL].")
    var turnTtl: Int = env("SIGNAL_TURN_TTL").flatMap(Int.init) ?? 86_400

    @Option(help: "Milliseconds an Engine.IO session has to send its Socket.IO CONNECT before it is closed [SIGNAL_CONNECT_TIMEOUT].")
    var connectTimeout: Int = env("SIGNAL_CONNECT_TIMEOUT").flatMap(Int.init) ?? 10_000

    @Option(help: "Connection state recovery: seconds a client whose transport dropped may come back within and get the same socket id, rooms and the events it missed; 0 = off. When on, every event to a socket carries an offset as its last argument (as with Node.js socket.io), which python-socketio hands its handlers as an extra argument [SIGNAL_RECOVERY_WINDOW].")
    var recoveryWindow: Int = env("SIGNAL_RECOVERY_WINDOW").flatMap(Int.init) ?? 0

    @Option(help: "With --redis and --recovery-window: entries the recovery log (a Redis stream of the namespace's broadcasts, which lets a client recover on another node after its node died) keeps; a client whose place was trimmed gets a new session [SIGNAL_RECOVERY_LOG_MAX].")
    var recoveryLogMax: Int = env("SIGNAL_RECOVERY_LOG_MAX").flatMap(Int.init) ?? 100_000

    @Option(help: "New Engine.IO sessions per second per client address (IPv6: per /64); 0 = no limit [SIGNAL_HANDSHAKE_RATE].")
    var handshakeRate: Double = env("SIGNAL_HANDSHAKE_RATE").flatMap(Double.init) ?? 20

    @Option(help: "New Engine.IO sessions per client address in a burst [SIGNAL_HANDSHAKE_BURST].")
    var handshakeBurst: Double = env("SIGNAL_HANDSHAKE_BURST").flatMap(Double.init) ?? 200

    @Option(help: "Most TCP connections on this node (HTTP and websocket) [SIGNAL_MAX_TCP_CONNECTIONS].")
    var maxTcpConnections: Int = env("SIGNAL_MAX_TCP_CONNECTIONS").flatMap(Int.init) ?? 110_000

    @Option(help: "Most TCP connections per client address; 0 = no limit [SIGNAL_MAX_TCP_CONNECTIONS_PER_ADDRESS].")
    var maxTcpConnectionsPerAddress: Int = env("SIGNAL_MAX_TCP_CONNECTIONS_PER_ADDRESS").flatMap(Int.init) ?? 1_000

    @Option(help: "Milliseconds for an HTTP request to arrive whole, from its first byte (and for a new connection's first request) [SIGNAL_HTTP_REQUEST_TIMEOUT].")
    var httpRequestTimeout: Int = env("SIGNAL_HTTP_REQUEST_TIMEOUT").flatMap(Int.init) ?? 15_000

    @Option(help: "Milliseconds a keep-alive HTTP connection may stay with no request in flight [SIGNAL_HTTP_IDLE_TIMEOUT].")
    var httpIdleTimeout: Int = env("SIGNAL_HTTP_IDLE_TIMEOUT").flatMap(Int.init) ?? 30_000

    @Option(help: "Proxies (CIDR blocks, comma-separated) whose X-Forwarded-For names the client, and with --proxy-protocol the only peers accepted [SIGNAL_TRUSTED_PROXIES].")
    var trustedProxies: String = env("SIGNAL_TRUSTED_PROXIES") ?? ""

    @Option(help: "Every connection starts with a PROXY protocol v1/v2 header (HAProxy send-proxy): true or false [SIGNAL_PROXY_PROTOCOL].")
    var proxyProtocol: Bool = env("SIGNAL_PROXY_PROTOCOL").map { $0 == "true" || $0 == "1" } ?? false

    @Option(help: "Most bytes queued for one client (polling outbox, unread websocket writes) before it is closed as a slow consumer [SIGNAL_MAX_BUFFERED_BYTES].")
    var maxBufferedBytes: Int = env("SIGNAL_MAX_BUFFERED_BYTES").flatMap(Int.init) ?? 1_000_000

    @Option(help: "Serve /metrics on this port only (0 = on the main listener) [SIGNAL_METRICS_PORT].")
    var metricsPort: Int = env("SIGNAL_METRICS_PORT").flatMap(Int.init) ?? 0

    @Option(help: "Address of the metrics listener; empty = --host [SIGNAL_METRICS_HOST].")
    var metricsHost: String = env("SIGNAL_METRICS_HOST") ?? ""

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535, got \(port)") }
        guard pingInterval > 0, pingTimeout > 0 else { throw ValidationError("ping interval and timeout must be > 0") }
        guard maxPayload >= 1024 else { throw ValidationError("--max-payload must be at least 1024 bytes") }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be > 0") }
        guard SignalingConfiguration.ICEEventName(rawValue: iceEvent) != nil else {
            throw ValidationError("--ice-event must be both, underscore or hyphen, got \(iceEvent)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard logFormat == "text" || logFormat == "json" else { throw ValidationError("--log-format must be text or json") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be >= 0") }
        guard turnTtl > 0 else { throw ValidationError("--turn-ttl must be > 0") }
        guard jwtLeeway >= 0, jwtLeeway <= 3600 else { throw ValidationError("--jwt-leeway must be 0...3600 seconds") }
        if !turnSecret.isEmpty && Self.list(turnUrls).isEmpty {
            throw ValidationError("--turn-secret needs --turn-urls")
        }
        if !jwtPublicKeyFile.isEmpty {
            guard let pem = try? String(contentsOfFile: jwtPublicKeyFile, encoding: .utf8) else {
                throw ValidationError("cannot read --jwt-public-key-file \(jwtPublicKeyFile)")
            }
            do { _ = try JWTVerifier(secret: nil, rsaPublicKeyPEM: pem) } catch {
                throw ValidationError("--jwt-public-key-file is not an RSA public key in PEM: \(error)")
            }
        }
        guard nodeTimeout >= 200 else { throw ValidationError("--node-timeout must be at least 200 ms") }
        for (name, value) in [
            ("--max-room-name", maxRoomName), ("--max-person-name", maxPersonName), ("--max-content", maxContent),
            ("--max-sdp", maxSdp), ("--max-candidate", maxCandidate), ("--max-rooms-per-socket", maxRoomsPerSocket),
            ("--max-room-members", maxRoomMembers),
        ] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
        guard addressEventRate >= 0, addressEventBurst >= 1 else {
            throw ValidationError("--address-event-rate must be >= 0 and --address-event-burst >= 1")
        }
        guard maxQueuedEvents >= 1, maxQueuedBytes >= 1024 else {
            throw ValidationError("--max-queued-events must be >= 1 and --max-queued-bytes >= 1024")
        }
        guard maxAttachments >= 1, binaryTimeout >= 1, ackTimeout >= 1, maxPendingAcks >= 1, maxFailedConnects >= 1 else {
            throw ValidationError("--max-attachments, --binary-timeout, --ack-timeout, --max-pending-acks and --max-failed-connects must be >= 1")
        }
        guard eventRate > 0, eventBurst >= 1 else { throw ValidationError("--event-rate must be > 0 and --event-burst >= 1") }
        guard threads >= 0 else { throw ValidationError("--threads must be >= 0") }
        guard connectTimeout > 0 else { throw ValidationError("--connect-timeout must be > 0") }
        guard (0...86_400).contains(recoveryWindow) else { throw ValidationError("--recovery-window must be 0...86400 seconds") }
        guard (100...100_000_000).contains(recoveryLogMax) else { throw ValidationError("--recovery-log-max must be 100...100000000") }
        guard handshakeRate >= 0, handshakeBurst >= 1 else {
            throw ValidationError("--handshake-rate must be >= 0 and --handshake-burst >= 1")
        }
        guard maxTcpConnections > 0, maxTcpConnectionsPerAddress >= 0 else {
            throw ValidationError("--max-tcp-connections must be > 0 and --max-tcp-connections-per-address >= 0")
        }
        guard httpRequestTimeout > 0, httpIdleTimeout > 0 else {
            throw ValidationError("--http-request-timeout and --http-idle-timeout must be > 0")
        }
        for block in Self.list(trustedProxies) where IPNetwork(block) == nil {
            throw ValidationError("--trusted-proxies: not an address or CIDR block: \(block)")
        }
        guard maxBufferedBytes >= 65_536 else { throw ValidationError("--max-buffered-bytes must be at least 65536") }
        guard (0...65535).contains(metricsPort) else { throw ValidationError("--metrics-port must be 0...65535") }
        if !redis.isEmpty {
            do {
                _ = try RedisConfiguration(url: redis)
            } catch {
                throw ValidationError("--redis: \(error)")
            }
        }
        if !redisSentinel.isEmpty || !redisSentinelMaster.isEmpty {
            guard !redisSentinel.isEmpty, !redisSentinelMaster.isEmpty else {
                throw ValidationError("--redis-sentinel and --redis-sentinel-master go together")
            }
            guard !redisSentinelMaster.contains(where: \.isWhitespace) else {
                throw ValidationError("--redis-sentinel-master must be a name without spaces")
            }
            do {
                _ = try RedisSentinelConfiguration(urls: redisSentinel, masterName: redisSentinelMaster)
            } catch {
                throw ValidationError("--redis-sentinel: \(error)")
            }
        }
        if !redisCluster.isEmpty {
            guard redis.isEmpty, redisSentinel.isEmpty else {
                throw ValidationError("--redis-cluster goes alone: not with --redis or --redis-sentinel")
            }
            guard redisMode == "pattern" else {
                throw ValidationError("--redis-mode is for --redis; --redis-cluster uses the sharded adapter's dynamic mode")
            }
            guard ["dynamic", "dynamic-private"].contains(redisClusterMode) else {
                throw ValidationError("--redis-cluster-mode must be dynamic or dynamic-private")
            }
            do {
                _ = try RedisClusterConfiguration(urls: redisCluster)
            } catch {
                throw ValidationError("--redis-cluster: \(error)")
            }
        }
        guard RedisAdapterConfiguration.SubscriptionMode(rawValue: redisMode) != nil else {
            throw ValidationError("--redis-mode must be pattern or per-room, got \(redisMode)")
        }
        guard !redisPrefix.isEmpty, !redisPrefix.contains("#") else {
            throw ValidationError("--redis-prefix must be non-empty and contain no '#'")
        }
    }

    /// The TCP connection limit, kept below the file descriptor limit: past that limit accept() fails, and NIO then
    /// polls the listening socket again at once (its read stays pending), so the loop spins a core; below it,
    /// connections over the limit are accepted and closed at once. The soft descriptor limit is first raised to the
    /// hard one; some descriptors stay free for Redis, the event loops and the metrics listener.
    static func fitToDescriptorLimit(_ maxTcpConnections: Int, logger: Logger) -> Int {
        #if canImport(Glibc)
        var limit = rlimit()
        let resource = Int32(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return maxTcpConnections }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        let descriptors = Int(clamping: limit.rlim_cur)
        let reserve = min(max(32, descriptors / 10), 1024)
        let fitting = max(1, descriptors - reserve)
        guard fitting < maxTcpConnections else { return maxTcpConnections }
        logger.warning(
            "--max-tcp-connections lowered to fit the file descriptor limit",
            metadata: ["descriptors": "\(descriptors)", "max.tcp.connections": "\(fitting)"]
        )
        return fitting
        #else
        return maxTcpConnections
        #endif
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "signal-node")
        logger[metadataKey: "node.id"] = "\(nodeId)"

        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.nodeID = nodeId
        configuration.engine.pingInterval = .milliseconds(Int64(pingInterval))
        configuration.engine.pingTimeout = .milliseconds(Int64(pingTimeout))
        configuration.engine.maxPayload = maxPayload
        configuration.engine.maxSessions = maxConnections
        configuration.engine.maxBufferedBytes = maxBufferedBytes
        configuration.engine.handshakeRate = handshakeRate
        configuration.engine.handshakeBurst = handshakeBurst
        configuration.connectTimeout = .milliseconds(Int64(connectTimeout))
        if recoveryWindow > 0 { configuration.recovery = RecoveryConfiguration(window: .seconds(Int64(recoveryWindow))) }
        configuration.connections.maxConnections = Self.fitToDescriptorLimit(maxTcpConnections, logger: logger)
        configuration.connections.maxConnectionsPerAddress = maxTcpConnectionsPerAddress
        configuration.connections.requestTimeout = .milliseconds(Int64(httpRequestTimeout))
        configuration.connections.idleTimeout = .milliseconds(Int64(httpIdleTimeout))
        configuration.connections.trustedProxies = Self.list(trustedProxies).compactMap { IPNetwork($0) }
        configuration.connections.proxyProtocol = proxyProtocol
        if metricsPort != 0 { configuration.metricsListener = (metricsHost.isEmpty ? host : metricsHost, metricsPort) }
        let origins = Self.list(allowedOrigins)
        configuration.engine.allowedOrigins = origins.isEmpty ? nil : origins
        configuration.signaling.iceEventName = SignalingConfiguration.ICEEventName(rawValue: iceEvent) ?? .both
        configuration.signaling.maxRoomNameLength = maxRoomName
        configuration.signaling.maxPersonNameLength = maxPersonName
        configuration.signaling.maxContentLength = maxContent
        configuration.signaling.maxSDPLength = maxSdp
        configuration.signaling.maxCandidateLength = maxCandidate
        configuration.signaling.eventsPerSecond = eventRate
        configuration.signaling.eventBurst = eventBurst
        configuration.signaling.maxRoomsPerSocket = maxRoomsPerSocket
        configuration.signaling.maxMembersPerRoom = maxRoomMembers
        configuration.signaling.maxQueuedEvents = maxQueuedEvents
        configuration.signaling.maxQueuedBytes = maxQueuedBytes
        configuration.socketIO.addressEventsPerSecond = addressEventRate
        configuration.socketIO.addressEventBurst = addressEventBurst
        configuration.socketIO.maxAttachments = maxAttachments
        configuration.socketIO.binaryTimeout = .milliseconds(Int64(binaryTimeout))
        configuration.socketIO.ackTimeout = .milliseconds(Int64(ackTimeout))
        configuration.socketIO.maxPendingAcks = maxPendingAcks
        configuration.socketIO.maxFailedConnects = maxFailedConnects
        configuration.signaling.iceServers.stunURLs = Self.list(stunUrls)
        configuration.signaling.iceServers.turnURLs = Self.list(turnUrls)
        configuration.signaling.iceServers.turnSecret = turnSecret.isEmpty ? nil : turnSecret
        configuration.signaling.iceServers.credentialLifetime = turnTtl
        if !jwtSecret.isEmpty || !jwtPublicKeyFile.isEmpty {
            let pem = jwtPublicKeyFile.isEmpty ? nil : try String(contentsOfFile: jwtPublicKeyFile, encoding: .utf8)
            var verifier = try JWTVerifier(secret: jwtSecret.isEmpty ? nil : jwtSecret, rsaPublicKeyPEM: pem)
            verifier.requireExpiry = jwtRequireExp
            verifier.audience = jwtAudience.isEmpty ? nil : jwtAudience
            verifier.issuer = jwtIssuer.isEmpty ? nil : jwtIssuer
            verifier.leeway = jwtLeeway
            configuration.signaling.jwt = verifier
            logger.info("JWT authentication required on CONNECT")
        }
        if metrics {
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            configuration.metricsText = { registry.emitToString() }
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads == 0 ? System.coreCount : threads)
        let server: SignalServer
        if !redisCluster.isEmpty {
            let cluster = try RedisClusterConfiguration(urls: redisCluster)
            logger.info("cluster mode", metadata: ["redis.cluster": "\(cluster)", "redis.adapter": "sharded (\(redisClusterMode))"])
            let presence = RedisPresenceStore(
                configuration: RedisPresenceStore.Configuration(
                    redis: cluster.seeds[0],
                    prefix: "\(redisPrefix):presence",
                    nodeTimeout: .milliseconds(Int64(nodeTimeout)),
                    nodeName: nodeId,
                    cluster: cluster
                ),
                eventLoopGroup: group,
                logger: logger
            )
            let prefix = redisPrefix
            let privateRoomChannels = redisClusterMode == "dynamic-private"
            server = SignalServer(configuration: configuration, group: group, logger: logger, presence: presence) { nsp, delivery in
                ShardedRedisAdapter(
                    nsp: nsp,
                    delivery: delivery,
                    cluster: cluster,
                    prefix: prefix,
                    privateRoomChannels: privateRoomChannels,
                    eventLoopGroup: group,
                    logger: logger,
                    metrics: RedisAdapterMetrics(labelPrefix: "signal")
                )
            }
        } else if redis.isEmpty && redisSentinel.isEmpty {
            server = SignalServer(configuration: configuration, group: group, logger: logger)
        } else {
            var redisConfiguration = redis.isEmpty ? RedisConfiguration() : try RedisConfiguration(url: redis)
            if !redisSentinel.isEmpty {
                redisConfiguration.sentinel = try RedisSentinelConfiguration(
                    urls: redisSentinel,
                    masterName: redisSentinelMaster,
                    defaults: redisConfiguration
                )
            }
            let presence = RedisPresenceStore(
                configuration: RedisPresenceStore.Configuration(
                    redis: redisConfiguration,
                    prefix: "\(redisPrefix):presence",
                    nodeTimeout: .milliseconds(Int64(nodeTimeout)),
                    nodeName: nodeId
                ),
                eventLoopGroup: group,
                logger: logger
            )
            // With recovery on, a client can come back on any node: broadcasts go through a log in Redis, and the
            // sockets' records name the presence instance of their node (its reaper then knows them).
            let ledger = recoveryWindow > 0
                ? RedisLedgerConfiguration(owner: presence.instance, window: .seconds(Int64(recoveryWindow)), maxLength: recoveryLogMax)
                : nil
            let adapterConfiguration = RedisAdapterConfiguration(
                redis: redisConfiguration,
                prefix: redisPrefix,
                mode: RedisAdapterConfiguration.SubscriptionMode(rawValue: redisMode) ?? .pattern,
                ledger: ledger
            )
            logger.info(
                "cluster mode",
                metadata: [
                    "redis": "\(adapterConfiguration.redis)", "redis.mode": "\(redisMode)",
                    "recovery": "\(ledger == nil ? "off" : "across nodes")",
                ]
            )
            server = SignalServer(configuration: configuration, group: group, logger: logger, presence: presence) { nsp, delivery in
                RedisAdapter(
                    nsp: nsp,
                    delivery: delivery,
                    configuration: adapterConfiguration,
                    eventLoopGroup: group,
                    logger: logger,
                    metrics: RedisAdapterMetrics(labelPrefix: "signal")
                )
            }
            if let ledger = server.namespace.adapter.ledger {
                presence.setRecoveryFates { sockets in ledger.fates(of: sockets) }
            }
        }

        let drain = Duration.milliseconds(drainTimeout)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: NodeService(server: server, drainTimeout: drain))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = drain + .seconds(3)
        try await ServiceGroup(configuration: groupConfiguration).run()
        try await group.shutdownGracefully()
        logger.info("stopped")
    }
}

/// The node as a service: start, serve until a graceful shutdown is asked for, then drain.
struct NodeService: Service {
    let server: SignalServer
    let drainTimeout: Duration

    func run() async throws {
        try await server.start()
        let listener = try await server.bind()
        // Serve until SIGTERM/SIGINT (or the listener dies).
        try? await gracefulShutdown()
        await server.drain(listener: listener, timeout: drainTimeout)
        await server.stop()
    }
}

/// The environment variable `name`, as the default of its option.
///
/// Defaults are shown by `--help`, so while help is asked for the environment is not read: the text would
/// otherwise print what the environment holds, secrets included (JWT and TURN secrets, a Redis URL's password),
/// into terminals and logs. Help then shows the built-in defaults.
private func env(_ name: String) -> String? {
    guard !helpRequested else { return nil }
    guard let value = getenv(name) else { return nil }
    let string = String(cString: value)
    return string.isEmpty ? nil : string
}

extension Substring {
    fileprivate func trimmingCharacters() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// Whether the command line asks for help (`-h`, `--help`, or a help dump) rather than a run.
private let helpRequested: Bool = CommandLine.arguments.dropFirst().contains {
    ["-h", "--help", "--experimental-dump-help"].contains($0)
}
