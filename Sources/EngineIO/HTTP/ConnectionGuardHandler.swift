import NIOCore
import NIOHTTP1

/// The first handler of every accepted connection: it counts the connection against the node's and the client
/// address's limits, reads the PROXY protocol header when one is expected, knows the client's address, and closes
/// HTTP connections that are too slow to send a request or that sit idle.
///
/// Timing, until the websocket upgrade (after it the Engine.IO heartbeat takes over):
/// - a new connection must send a whole first request within `requestTimeout`;
/// - once a request's first byte arrives on an idle connection, the whole request (head and body) must arrive
///   within `requestTimeout`;
/// - with no request in flight (answered, or none yet on a kept-alive connection) the connection may stay idle for
///   `idleTimeout`. A held long-polling GET is a request in flight: it is never timed out here.
///
/// `HTTPHandler` reports each complete request and each finished response; one scheduled task follows the current
/// deadline (moved without rescheduling when it only gets later).
final class ConnectionGuardHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Why a handshake on this connection was refused before it reached `HTTPHandler` (the upgrade check).
    enum HandshakeRefusal { case rateLimited }

    private enum Phase {
        /// Waiting for the PROXY header; the bytes so far.
        case proxyHeader(ByteBuffer)
        case http
        /// A websocket now: no more HTTP timing.
        case upgraded
        case closed
    }

    private let configuration: ConnectionConfiguration
    private let limiter: ConnectionLimiter
    private let metrics: EngineMetrics
    private var phase = Phase.http
    private var peer: IPAddress?
    /// The client as far as the connection tells: the peer, or the PROXY header's source.
    private(set) var connectionAddress: IPAddress?
    private var countedConnection = false
    private var countedAddress: String?
    /// Requests received whole and not yet answered.
    private var inFlight = 0
    /// Bytes of a request arrived while none was in flight: the request deadline runs.
    private var readingRequest = false
    private var deadline: NIODeadline?
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    var refusedHandshake: HandshakeRefusal?

    init(configuration: ConnectionConfiguration, limiter: ConnectionLimiter, metrics: EngineMetrics) {
        self.configuration = configuration
        self.limiter = limiter
        self.metrics = metrics
    }

    /// The client behind a request on this connection (see `ConnectionConfiguration.clientAddress`).
    func clientAddress(for head: HTTPRequestHead) -> IPAddress? {
        configuration.clientAddress(connection: connectionAddress, forwardedFor: head.headers["x-forwarded-for"])
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        timer?.cancel()
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        guard limiter.acquire() else {
            metrics.refused(.tcpConnections)
            return close(context)
        }
        countedConnection = true
        peer = context.channel.remoteAddress?.ipAddress.flatMap { IPAddress($0) }
        if configuration.proxyProtocol {
            // Only the proxies may speak to a node that expects the PROXY protocol.
            if !configuration.trustedProxies.isEmpty, !configuration.isTrusted(peer) {
                metrics.refused(.proxyProtocol)
                return close(context)
            }
            phase = .proxyHeader(context.channel.allocator.buffer(capacity: 0))
        } else {
            connectionAddress = peer
            guard admitAddress(context) else { return }
        }
        // A new connection's first request must be complete within the request timeout from the start.
        readingRequest = true
        setDeadline(context.eventLoop.now + configuration.requestTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        timer?.cancel()
        timer = nil
        if countedConnection {
            countedConnection = false
            limiter.release()
        }
        if let key = countedAddress {
            countedAddress = nil
            limiter.release(address: key)
        }
        context.fireChannelInactive()
    }

    /// Counts the connection for its client address; closes it when that address has too many.
    private func admitAddress(_ context: ChannelHandlerContext) -> Bool {
        // A proxy's connections carry many clients, known only per request (X-Forwarded-For): not counted.
        guard let address = connectionAddress, configuration.proxyProtocol || !configuration.isTrusted(address) else {
            return true
        }
        let key = address.clientKey
        guard limiter.acquire(address: key) else {
            metrics.refused(.tcpConnectionsPerAddress)
            close(context)
            return false
        }
        countedAddress = key
        return true
    }

    // MARK: reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .proxyHeader(var buffer):
            var bytes = unwrapInboundIn(data)
            buffer.writeBuffer(&bytes)
            switch ProxyProtocol.parse(buffer.readableBytesView) {
            case .incomplete:
                phase = .proxyHeader(buffer)
            case .invalid:
                metrics.refused(.proxyProtocol)
                close(context)
            case .header(let header, let length):
                buffer.moveReaderIndex(forwardBy: length)
                phase = .http
                connectionAddress = header.source?.address ?? peer
                guard admitAddress(context) else { return }
                context.fireChannelActive()
                if buffer.readableBytes > 0 {
                    requestBytesArrived()
                    context.fireChannelRead(wrapInboundOut(buffer))
                }
            }
        case .http:
            requestBytesArrived()
            context.fireChannelRead(data)
        case .upgraded:
            context.fireChannelRead(data)
        case .closed:
            break
        }
    }

    private func requestBytesArrived() {
        guard inFlight == 0, !readingRequest, let context else { return }
        readingRequest = true
        setDeadline(context.eventLoop.now + configuration.requestTimeout)
    }

    // MARK: what HTTPHandler reports

    /// A request arrived whole: it is in flight until its response ends.
    func requestReceived() {
        guard case .http = phase else { return }
        inFlight += 1
        readingRequest = false
        setDeadline(nil)
    }

    /// A response ended and the connection stays open.
    func responseFinished() {
        guard case .http = phase, inFlight > 0 else { return }
        inFlight -= 1
        if inFlight == 0, let context {
            readingRequest = false
            setDeadline(context.eventLoop.now + configuration.idleTimeout)
        }
    }

    /// The connection is a websocket now.
    func upgraded() {
        guard case .http = phase else { return }
        phase = .upgraded
        setDeadline(nil)
        timer?.cancel()
        timer = nil
    }

    // MARK: timer

    private func setDeadline(_ newDeadline: NIODeadline?) {
        deadline = newDeadline
        guard let newDeadline, let context else { return }
        if timer != nil, let scheduledFor, scheduledFor <= newDeadline { return }
        schedule(at: newDeadline, context: context)
    }

    private var scheduledFor: NIODeadline?

    private func schedule(at when: NIODeadline, context: ChannelHandlerContext) {
        timer?.cancel()
        scheduledFor = when
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: when) {
            handler.value.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        scheduledFor = nil
        guard let deadline, let context else { return }
        if deadline <= context.eventLoop.now {
            metrics.refused(.httpTimeout)
            close(context)
        } else {
            schedule(at: deadline, context: context)
        }
    }

    private func close(_ context: ChannelHandlerContext) {
        phase = .closed
        deadline = nil
        timer?.cancel()
        timer = nil
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ConnectionGuardHandler: Sendable {}
