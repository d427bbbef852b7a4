import NIOCore
import NIOPosix

extension RedisConfiguration {
    /// Opens one connection on `eventLoop` and runs the handshake (AUTH, SELECT).
    ///
    /// The future succeeds once the handshake is answered. If the handshake fails, the channel is closed first, so a
    /// failed attempt never leaves a socket behind. `onPush` makes it a subscriber connection (see
    /// ``RedisCommandHandler``). Both callbacks run on `eventLoop`.
    func connect(
        on eventLoop: any EventLoop,
        onPush: (@Sendable (RedisPush) -> Void)? = nil,
        onUnmatchedErrorReply: (@Sendable (String) -> Void)? = nil
    ) -> EventLoopFuture<any Channel> {
        let maximumPending = self.maximumPendingCommands
        let handshake = self.handshake
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(self.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(RESPDecoder(allocator: channel.allocator)),
                        MessageToByteHandler(RESPCommandEncoder()),
                        RedisCommandHandler(
                            maximumPending: maximumPending,
                            onPush: onPush,
                            onUnmatchedErrorReply: onUnmatchedErrorReply
                        ),
                    ])
                }
            }
            .connect(host: self.host, port: self.port)
            .flatMap { channel in
                guard !handshake.isEmpty else { return channel.eventLoop.makeSucceededFuture(channel) }
                let replies = handshake.map { command in
                    let reply = channel.eventLoop.makePromise(of: RESPValue.self)
                    channel.write(RedisCommandHandler.Request(command: command, replyPromise: reply), promise: nil)
                    return reply.futureResult
                }
                channel.flush()
                return EventLoopFuture.andAllSucceed(replies, on: channel.eventLoop)
                    .map { channel }
                    .flatMapError { error in
                        channel.close(promise: nil)
                        return channel.closeFuture.flatMapThrowing { throw error }
                    }
            }
    }
}
