import NIOCore
import NIOHTTP1
import NIOWebSocket
import Synchronization

/// Answers one held long-polling GET on its HTTP connection, from whatever loop the session is on.
struct ChannelPollingResponder: PollingResponder {
    let channel: any Channel
    var connection: ObjectIdentifier { ObjectIdentifier(channel) }
    let keepAlive: Bool
    let headers: HTTPHeaders

    func abort() {
        channel.close(promise: nil)
    }

    func respond(_ payload: ByteBuffer) {
        HTTPHandler.write(
            on: channel,
            status: .ok,
            headers: headers,
            contentType: "text/plain; charset=UTF-8",
            body: payload,
            keepAlive: keepAlive
        )
    }
}

/// HTTP requests of one connection: Engine.IO long-polling and CORS preflights; other paths go to the
/// application's routes (`HTTPServerContext.routes`).
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// The body was refused (too large): its remaining parts are dropped.
        case discarding
    }

    private let server: HTTPServerContext
    private let upgrader: NIOWebSocketServerUpgrader
    /// Knows the client's address and times the connection; told of each request and response.
    private let connectionGuard: ConnectionGuardHandler
    private var state = State.idle
    /// Set while a request of this connection is offered to a re-inserted upgrade handler.
    private var offeredUpgrade = false
    /// The session whose GET this connection holds, told when the connection goes away.
    private var heldSession: NIOLoopBound<EngineSession>?

    init(server: HTTPServerContext, upgrader: NIOWebSocketServerUpgrader, connectionGuard: ConnectionGuardHandler) {
        self.server = server
        self.upgrader = upgrader
        self.connectionGuard = connectionGuard
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            heldSession = nil  // a new request: the previous response was written
            if !offeredUpgrade, head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) {
                offeredUpgrade = true
                do {
                    try HTTPPipeline.reinsertUpgradeHandler(context: context, handler: self, upgrader: upgrader, head: head)
                    return
                } catch {
                    // Fall through: answered as a plain request.
                }
            }
            if let length = head.headers.first(name: "content-length").flatMap(Int.init),
                length > server.engine.configuration.maxPayload
            {
                state = .discarding
                respondPayloadTooLarge(context: context, head: head)
                return
            }
            state = .receiving(head, context.channel.allocator.buffer(capacity: 0))
        case .body(var chunk):
            guard case .receiving(let head, var body) = state else { return }
            if body.readableBytes + chunk.readableBytes > server.engine.configuration.maxPayload {
                state = .discarding
                respondPayloadTooLarge(context: context, head: head)
                return
            }
            state = .idle  // drop the reference so the write does not copy
            body.writeBuffer(&chunk)
            state = .receiving(head, body)
        case .end:
            offeredUpgrade = false
            guard case .receiving(let head, let body) = state else {
                state = .idle
                return
            }
            state = .idle
            connectionGuard.requestReceived()
            route(context: context, head: head, body: body)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let held = heldSession {
            heldSession = nil
            let connection = ObjectIdentifier(context.channel)
            held.eventLoop.execute { held.value.pollConnectionClosed(connection) }
        }
        context.fireChannelInactive()
    }

    private func respondPayloadTooLarge(context: ChannelHandlerContext, head: HTTPRequestHead) {
        // The body is not read: close after answering so the unread bytes do not become the next request.
        Self.write(
            on: context.channel,
            status: .payloadTooLarge,
            headers: server.cors.headers(for: head),
            contentType: "application/json",
            body: ByteBuffer(string: "{\"code\":3,\"message\":\"Payload too large\"}"),
            keepAlive: false
        )
    }

    // MARK: routing

    private func route(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let query = RequestQuery(target: head.uri)
        if query.path == server.engine.configuration.path || query.path + "/" == server.engine.configuration.path {
            engineRequest(context: context, head: head, query: query, body: body)
            return
        }
        // Anything else is the application's (health, metrics, pages).
        let response = server.routes.response(to: head, path: query.path, server: server)
        respond(
            context: context,
            head: head,
            status: response.status,
            headers: response.headers,
            contentType: response.contentType,
            body: response.body
        )
    }

    private func engineRequest(context: ChannelHandlerContext, head: HTTPRequestHead, query: RequestQuery, body: ByteBuffer) {
        let configuration = server.engine.configuration
        let origin = head.headers.first(name: "origin")
        if head.method == .OPTIONS {
            guard server.cors.isAllowed(origin) else { return engineError(context: context, head: head, .badRequest) }
            return respond(context: context, head: head, status: .noContent, headers: server.cors.preflightHeaders(for: head))
        }
        // The reference's order of checks: transport, origin, sid, handshake method, protocol version.
        let transport = query.transport
        guard (transport == "polling" && configuration.allowPolling) || (transport == "websocket" && configuration.allowWebSocket)
        else { return engineError(context: context, head: head, .unknownTransport) }
        guard server.cors.isAllowed(origin) else { return engineError(context: context, head: head, .badRequest) }
        if let sid = query.sid {
            guard let bound = server.engine.session(String(sid)) else {
                return engineError(context: context, head: head, .unknownSid)
            }
            guard transport == "polling" else {
                // A websocket request that was not upgraded (no Upgrade header, or refused).
                return engineError(context: context, head: head, .badRequest)
            }
            return pollingRequest(context: context, head: head, session: bound, body: body)
        }
        guard head.method == .GET else { return engineError(context: context, head: head, .badHandshakeMethod) }
        guard query.eio == "4" else { return engineError(context: context, head: head, .unsupportedProtocolVersion) }
        // Draining, or at the session limit (a websocket handshake refused for it lands here too).
        guard !server.draining.load(ordering: .relaxed), server.engine.hasCapacity else {
            if !server.engine.hasCapacity { server.metrics.refused(.sessions) }
            return engineError(context: context, head: head, .forbidden)
        }
        guard transport == "polling" else {
            // A websocket handshake the upgrade check turned down.
            if connectionGuard.refusedHandshake != nil {
                connectionGuard.refusedHandshake = nil
                return tooManyHandshakes(context: context, head: head)
            }
            return engineError(context: context, head: head, .badRequest)
        }
        let client = connectionGuard.clientAddress(for: head)
        guard server.admitHandshake(from: client) else { return tooManyHandshakes(context: context, head: head) }
        guard
            let session = server.engine.openSession(
                transport: .polling,
                on: context.eventLoop,
                token: query.token.map(String.init),
                clientAddress: client
            )
        else {
            return engineError(context: context, head: head, .forbidden)
        }
        var payload = ByteBuffer()
        payload.writeInteger(EngineFrame.PacketType.open.rawValue)
        payload.writeString(configuration.handshakeJSON(session.sid, true))
        respond(
            context: context,
            head: head,
            status: .ok,
            headers: server.cors.headers(for: head),
            contentType: "text/plain; charset=UTF-8",
            body: payload
        )
    }

    private func pollingRequest(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        session bound: NIOLoopBound<EngineSession>,
        body: ByteBuffer
    ) {
        let channel = context.channel
        let keepAlive = head.isKeepAlive
        let headers = server.cors.headers(for: head)
        switch head.method {
        case .GET:
            heldSession = bound
            let responder = ChannelPollingResponder(channel: channel, keepAlive: keepAlive, headers: headers)
            Self.onSessionLoop(bound) { session in
                switch session.pollArrived(responder) {
                case .none:
                    break
                case .overlappingPoll?:
                    // An empty 400, as the reference answers.
                    Self.write(on: channel, status: .badRequest, headers: headers, contentType: nil, body: nil, keepAlive: false)
                case .transportMismatch?, .invalidPayload?:
                    // A poll for a session that moved to its websocket.
                    Self.writeEngineError(.badRequest, on: channel, headers: headers)
                }
            }
        case .POST:
            Self.onSessionLoop(bound) { session in
                if session.postArrived(body) != nil {
                    Self.writeEngineError(.badRequest, on: channel, headers: headers)
                } else {
                    Self.write(
                        on: channel,
                        status: .ok,
                        headers: headers,
                        contentType: "text/html",
                        body: ByteBuffer(string: "ok"),
                        keepAlive: keepAlive
                    )
                }
            }
        default:
            engineError(context: context, head: head, .badRequest)
        }
    }

    private static func onSessionLoop(
        _ bound: NIOLoopBound<EngineSession>,
        _ body: @escaping @Sendable (EngineSession) -> Void
    ) {
        if bound.eventLoop.inEventLoop {
            body(bound.value)
        } else {
            bound.eventLoop.execute { body(bound.value) }
        }
    }

    // MARK: writing

    /// An Engine.IO error, and the connection closes: after a refused or malformed request the client's next
    /// bytes are not worth reading on this connection (and a flood of them costs a new connection each).
    private func engineError(context: ChannelHandlerContext, head: HTTPRequestHead, _ error: EngineError) {
        Self.write(
            on: context.channel,
            status: HTTPResponseStatus(statusCode: error.httpStatus),
            headers: server.cors.headers(for: head),
            contentType: "application/json",
            body: head.method == .HEAD ? nil : ByteBuffer(string: error.json),
            keepAlive: false
        )
    }

    /// 429 for a client address over its handshake budget; the connection closes.
    private func tooManyHandshakes(context: ChannelHandlerContext, head: HTTPRequestHead) {
        var headers = server.cors.headers(for: head)
        headers.add(name: "Retry-After", value: "1")
        Self.write(
            on: context.channel,
            status: .tooManyRequests,
            headers: headers,
            contentType: "application/json",
            body: ByteBuffer(string: "{\"code\":4,\"message\":\"Too many handshakes\"}"),
            keepAlive: false
        )
    }

    private func respond(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        status: HTTPResponseStatus,
        headers: HTTPHeaders,
        contentType: String? = nil,
        body: ByteBuffer? = nil
    ) {
        Self.write(on: context.channel, status: status, headers: headers, contentType: contentType, body: head.method == .HEAD ? nil : body, keepAlive: head.isKeepAlive)
    }

    /// An Engine.IO error on a polling request; the connection closes (see `engineError`).
    static func writeEngineError(_ error: EngineError, on channel: any Channel, headers: HTTPHeaders) {
        write(
            on: channel,
            status: HTTPResponseStatus(statusCode: error.httpStatus),
            headers: headers,
            contentType: "application/json",
            body: ByteBuffer(string: error.json),
            keepAlive: false
        )
    }

    static func write(
        on channel: any Channel,
        status: HTTPResponseStatus,
        headers: HTTPHeaders,
        contentType: String?,
        body: ByteBuffer?,
        keepAlive: Bool
    ) {
        var headers = headers
        if let contentType { headers.replaceOrAdd(name: "Content-Type", value: contentType) }
        headers.replaceOrAdd(name: "Content-Length", value: String(body?.readableBytes ?? 0))
        if contentType?.hasPrefix("text/plain") == true { headers.add(name: "Cache-Control", value: "no-store") }
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        let write = {
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
            if let body, body.readableBytes > 0 {
                channel.write(HTTPServerResponsePart.body(.byteBuffer(body)), promise: nil)
            }
            let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
            if keepAlive {
                // The connection is idle again unless another request is in flight.
                try? channel.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self).responseFinished()
            } else {
                done.whenComplete { _ in channel.close(promise: nil) }
            }
        }
        if channel.eventLoop.inEventLoop {
            write()
        } else {
            channel.eventLoop.execute(write)
        }
    }
}

@available(*, unavailable)
extension HTTPHandler: Sendable {}
