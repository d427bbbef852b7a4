import NIOCore
import NIOWebSocket

/// A websocket channel seen by a session. Writes hop to the channel's loop once per batch, and the flush is
/// coalesced: everything written to the channel in one loop tick leaves in one `writev`.
final class ChannelWebSocketConnection: WebSocketConnection {
    let channel: any Channel
    private let flushPending: NIOLoopBoundBox<Bool>

    /// Must be created on the channel's event loop.
    init(channel: any Channel) {
        self.channel = channel
        self.flushPending = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
    }

    func write(_ frames: [EngineFrame]) {
        let channel = self.channel
        let flushPending = self.flushPending
        let write = {
            for frame in frames {
                switch frame {
                case .text(let data):
                    channel.write(WebSocketFrame(fin: true, opcode: .text, data: data), promise: nil)
                case .binary(let data):
                    channel.write(WebSocketFrame(fin: true, opcode: .binary, data: data), promise: nil)
                }
            }
            guard !flushPending.value else { return }
            flushPending.value = true
            channel.eventLoop.execute {
                flushPending.value = false
                channel.flush()
            }
        }
        if channel.eventLoop.inEventLoop {
            write()
        } else {
            channel.eventLoop.execute(write)
        }
    }

    func close() {
        let channel = self.channel
        channel.eventLoop.execute {
            let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: channel.allocator.buffer(capacity: 0))
            channel.writeAndFlush(frame).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Websocket frames of one connection, to and from its Engine.IO session: a new session (no sid in the
/// request) or the upgrade probe of a polling session.
///
/// It also watches what the client does not read (finding 7). The channel's high water mark is a quarter of
/// `maxBufferedBytes`: a client that stays above it for `slowConsumerGrace`, or whose backlog passes
/// `maxBufferedBytes` at any time, is a slow consumer: its session closes and the connection is dropped with its
/// backlog (a close frame would only queue behind it). A reading client's bursts are absorbed meanwhile.
final class EngineWebSocketHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// How long a client may stay above the high water mark.
    static let slowConsumerGrace: TimeAmount = .seconds(2)

    /// The water marks for a `maxBufferedBytes` cap.
    static func waterMark(maxBufferedBytes: Int) -> ChannelOptions.Types.WriteBufferWaterMark {
        let high = max(maxBufferedBytes / 4, 1024)
        return .init(low: high / 2, high: high)
    }

    private let engine: EngineServer
    private let sid: String?
    private let token: String?
    private let maxPayload: Int
    private let clientAddress: IPAddress?
    private let maxBufferedBytes: Int
    private var slowConsumerTimer: Scheduled<Void>?
    /// A message arriving in fragments: its opcode, the bytes so far and the number of frames.
    private var fragments: (opcode: WebSocketOpcode, data: ByteBuffer, frames: Int)?
    private var connection: ChannelWebSocketConnection?
    private var session: NIOLoopBound<EngineSession>?

    init(engine: EngineServer, sid: String?, token: String?, maxPayload: Int, clientAddress: IPAddress? = nil) {
        self.engine = engine
        self.sid = sid
        self.token = token
        self.maxPayload = maxPayload
        self.clientAddress = clientAddress
        self.maxBufferedBytes = engine.configuration.maxBufferedBytes
    }

    /// Most fragments one message may come in.
    static let maximumFragments = 1024

    func handlerAdded(context: ChannelHandlerContext) {
        let connection = ChannelWebSocketConnection(channel: context.channel)
        self.connection = connection
        if let sid {
            guard let bound = engine.session(sid) else {
                connection.close()
                return
            }
            session = bound
            let attach = { if !bound.value.webSocketConnected(connection) { connection.close() } }
            if bound.eventLoop.inEventLoop { attach() } else { bound.eventLoop.execute(attach) }
        } else {
            guard
                let session = engine.openSession(
                    transport: .websocket(connection),
                    on: context.eventLoop,
                    token: token,
                    clientAddress: clientAddress
                )
            else {
                connection.close()
                return
            }
            self.session = NIOLoopBound(session, eventLoop: context.eventLoop)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let engineFrame: EngineFrame
        switch frame.opcode {
        case .text, .binary:
            guard fragments == nil else { return protocolError(context, .protocolError) }
            guard frame.fin else {
                fragments = (frame.opcode, frame.unmaskedData, 1)
                return
            }
            engineFrame = frame.opcode == .text ? .text(frame.unmaskedData) : .binary(frame.unmaskedData)
        case .continuation:
            guard var message = fragments else { return protocolError(context, .protocolError) }
            var more = frame.unmaskedData
            message.data.writeBuffer(&more)
            message.frames += 1
            guard message.data.readableBytes <= maxPayload, message.frames <= Self.maximumFragments else {
                fragments = nil
                return protocolError(context, .messageTooLarge)
            }
            guard frame.fin else {
                fragments = message
                return
            }
            fragments = nil
            engineFrame = message.opcode == .text ? .text(message.data) : .binary(message.data)
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
            return
        case .connectionClose:
            context.close(promise: nil)
            return
        default:
            return
        }
        guard let bound = session, let connection else { return }
        if bound.eventLoop.inEventLoop {
            bound.value.webSocketFrame(engineFrame, from: connection)
        } else {
            bound.eventLoop.execute { bound.value.webSocketFrame(engineFrame, from: connection) }
        }
    }

    private func protocolError(_ context: ChannelHandlerContext, _ code: WebSocketErrorCode) {
        var reason = context.channel.allocator.buffer(capacity: 2)
        reason.write(webSocketErrorCode: code)
        let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: reason)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: slow consumers

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard !context.channel.isWritable,
            let backlog = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes),
            backlog > maxBufferedBytes
        else { return }
        slowConsumer(context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.fireChannelWritabilityChanged()
        if context.channel.isWritable {
            slowConsumerTimer?.cancel()
            slowConsumerTimer = nil
        } else if slowConsumerTimer == nil {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let context = NIOLoopBound(context, eventLoop: context.eventLoop)
            slowConsumerTimer = context.value.eventLoop.scheduleTask(in: Self.slowConsumerGrace) {
                handler.value.slowConsumerTimer = nil
                guard !context.value.channel.isWritable else { return }
                handler.value.slowConsumer(context.value)
            }
        }
    }

    private func slowConsumer(_ context: ChannelHandlerContext) {
        slowConsumerTimer?.cancel()
        slowConsumerTimer = nil
        if let bound = session, let connection {
            if bound.eventLoop.inEventLoop {
                bound.value.webSocketBackedUp(connection)
            } else {
                bound.eventLoop.execute { bound.value.webSocketBackedUp(connection) }
            }
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        slowConsumerTimer?.cancel()
        slowConsumerTimer = nil
        if let bound = session, let connection {
            session = nil
            bound.eventLoop.execute { bound.value.webSocketClosed(connection) }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension EngineWebSocketHandler: Sendable {}
