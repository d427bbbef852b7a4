import NIOCore

/// Matches replies to commands: Redis answers in order, so the oldest waiting promise gets the next reply.
///
/// On a subscriber connection, replies that are pub/sub pushes go to `onPush` instead, and the (P|S)(UN)SUBSCRIBE
/// commands are written without a promise (their answers are pushes); if Redis refuses one of those, the error
/// reply has no promise to go to and is handed to `onUnmatchedErrorReply`. When the connection fails or closes,
/// every waiting promise fails, and so does every later write.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = Request
    typealias OutboundOut = RedisCommand

    /// A command and the promise for its reply (`nil` when the reply comes as a push).
    struct Request: Sendable {
        var command: RedisCommand
        var replyPromise: EventLoopPromise<RESPValue>?
    }

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>(initialCapacity: 16)
    private let maximumPending: Int
    private let onPush: ((RedisPush) -> Void)?
    private let onUnmatchedErrorReply: ((String) -> Void)?
    /// Set once the connection cannot be used any more; later writes fail with it.
    private var failure: RedisError?

    init(
        maximumPending: Int,
        onPush: ((RedisPush) -> Void)? = nil,
        onUnmatchedErrorReply: ((String) -> Void)? = nil
    ) {
        self.maximumPending = maximumPending
        self.onPush = onPush
        self.onUnmatchedErrorReply = onUnmatchedErrorReply
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = self.unwrapOutboundIn(data)
        if let failure = self.failure {
            request.replyPromise?.fail(failure)
            promise?.fail(failure)
            return
        }
        if let replyPromise = request.replyPromise {
            guard self.waiting.count < self.maximumPending else {
                let error = RedisError.tooManyPendingCommands(limit: self.maximumPending)
                replyPromise.fail(error)
                promise?.fail(error)
                return
            }
            self.waiting.append(replyPromise)
        }
        context.write(self.wrapOutboundOut(request.command), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = self.unwrapInboundIn(data)
        if let onPush = self.onPush, let push = RedisPush(value) {
            onPush(push)
            return
        }
        guard let promise = self.waiting.popFirst() else {
            if case .error(let message) = value, let onUnmatchedErrorReply = self.onUnmatchedErrorReply {
                onUnmatchedErrorReply(message)
                return
            }
            self.fail(context: context, error: .protocolError("unexpected reply with no command waiting: \(value)"))
            return
        }
        if case .error(let message) = value {
            promise.fail(RedisError.errorReply(message))
        } else {
            promise.succeed(value)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Decoder errors are RedisErrors; anything else (a reset socket, a failed write) means the link is gone.
        self.fail(context: context, error: error as? RedisError ?? .connectionClosed)
    }

    private func fail(context: ChannelHandlerContext, error: RedisError) {
        self.failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if self.failure == nil {
            self.failure = error
        }
        while let promise = self.waiting.popFirst() {
            promise.fail(error)
        }
    }
}

@available(*, unavailable)
extension RedisCommandHandler: Sendable {}
