import NIOCore

/// Notices a Redis server that stopped answering (frozen, `SIGSTOP`ped, or behind a half-open TCP connection), which
/// TCP alone would not report for hours.
///
/// Any reply proves the server alive. After an `interval` without one, the handler sends a PING; if another
/// `interval` passes still without any reply, it fails the connection with ``RedisError/serverUnresponsive(after:)``
/// (the ``RedisCommandHandler`` fails what is in flight and closes), and the client reconnects. It sits between the
/// decoder and the command handler so that it sees every reply, and writes its PING from the channel's tail so that
/// the command handler matches the answer (`+PONG`, or `["pong", ""]` on a subscribed connection) like any other.
final class RedisHealthCheckHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias InboundOut = RESPValue

    private let interval: TimeAmount
    private var timer: Scheduled<Void>?
    private var sawReply = false
    private var pingOutstanding = false

    init(interval: TimeAmount) {
        self.interval = interval
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            self.scheduleCheck(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if self.timer == nil {
            self.scheduleCheck(context: context)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.sawReply = true
        self.pingOutstanding = false
        context.fireChannelRead(data)
    }

    private func scheduleCheck(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.interval) {
            bound.value.handler.check(context: bound.value.context)
        }
    }

    private func check(context: ChannelHandlerContext) {
        self.timer = nil
        if self.sawReply {
            self.sawReply = false
        } else if self.pingOutstanding {
            context.fireErrorCaught(RedisError.serverUnresponsive(after: self.interval * 2))
            return
        } else {
            self.pingOutstanding = true
            let reply = context.eventLoop.makePromise(of: RESPValue.self)
            context.channel.writeAndFlush(
                RedisCommandHandler.Request(command: RedisCommand(["PING"]), replyPromise: reply),
                promise: nil
            )
        }
        self.scheduleCheck(context: context)
    }
}

@available(*, unavailable)
extension RedisHealthCheckHandler: Sendable {}
