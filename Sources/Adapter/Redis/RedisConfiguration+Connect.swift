import NIOCore
import NIOPosix

extension RedisConfiguration {
    /// Opens one connection on `eventLoop` and runs the handshake (AUTH, SELECT).
    ///
    /// The future succeeds once the handshake is answered; the handshake gets ``connectTimeout`` too. If it fails,
    /// the channel is closed first, so a failed attempt never leaves a socket behind. `onPush` makes it a subscriber
    /// connection (see ``RedisCommandHandler``). Both callbacks run on `eventLoop`.
    func connect(
        on eventLoop: any EventLoop,
        onPush: (@Sendable (RedisPush) -> Void)? = nil,
        onUnmatchedErrorReply: (@Sendable (String) -> Void)? = nil
    ) -> EventLoopFuture<any Channel> {
        let maximumPending = self.maximumPendingCommands
        let handshake = self.handshake
        let healthCheckInterval = self.healthCheckInterval
        let connectTimeout = self.connectTimeout
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(self.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handlers = channel.pipeline.syncOperations
                    try handlers.addHandler(ByteToMessageHandler(RESPDecoder(allocator: channel.allocator)))
                    try handlers.addHandler(MessageToByteHandler(RESPCommandEncoder()))
                    if let healthCheckInterval {
                        try handlers.addHandler(RedisHealthCheckHandler(interval: healthCheckInterval))
                    }
                    try handlers.addHandler(
                        RedisCommandHandler(
                            maximumPending: maximumPending,
                            onPush: onPush,
                            onUnmatchedErrorReply: onUnmatchedErrorReply
                        )
                    )
                }
            }
        let connected: EventLoopFuture<any Channel>
        if let address = try? SocketAddress(ipAddress: self.host, port: self.port) {
            // An IP address needs no resolver: no hop to getaddrinfo's thread on every reconnect attempt.
            connected = bootstrap.connect(to: address)
        } else {
            connected = bootstrap.connect(host: self.host, port: self.port)
        }
        return connected
            .flatMap { channel in
                guard !handshake.isEmpty else { return channel.eventLoop.makeSucceededFuture(channel) }
                let replies = handshake.map { command in
                    let reply = channel.eventLoop.makePromise(of: RESPValue.self)
                    channel.write(RedisCommandHandler.Request(command: command, replyPromise: reply), promise: nil)
                    return reply.futureResult
                }
                channel.flush()
                // A server that accepts but never answers (frozen) must not hold the attempt forever.
                let timeout = channel.eventLoop.scheduleTask(in: connectTimeout) { channel.close(promise: nil) }
                return EventLoopFuture.andAllSucceed(replies, on: channel.eventLoop)
                    .always { _ in timeout.cancel() }
                    .map { channel }
                    .flatMapError { error in
                        channel.close(promise: nil)
                        return channel.closeFuture.flatMapThrowing { throw error }
                    }
            }
    }
}
