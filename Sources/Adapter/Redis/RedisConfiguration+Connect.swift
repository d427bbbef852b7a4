import NIOCore
import NIOPosix

extension RedisConfiguration {
    /// Opens one connection on `eventLoop` and runs the handshake (AUTH, SELECT).
    ///
    /// The future succeeds once the handshake is answered; the handshake gets ``connectTimeout`` too. If it fails,
    /// the channel is closed first, so a failed attempt never leaves a socket behind. `onPush` makes it a subscriber
    /// connection (see ``RedisCommandHandler``). Both callbacks run on `eventLoop`.
    ///
    /// With ``sentinel``, the sentinels are asked for the primary first, and the handshake ends with `ROLE`: the
    /// attempt fails with ``RedisError/notPrimary(role:)`` unless the server is a primary.
    func connect(
        on eventLoop: any EventLoop,
        onPush: (@Sendable (RedisPush) -> Void)? = nil,
        onUnmatchedErrorReply: (@Sendable (String) -> Void)? = nil
    ) -> EventLoopFuture<any Channel> {
        guard let sentinel = self.sentinel else {
            return self.connect(
                to: RedisAddress(host: self.host, port: self.port),
                requirePrimary: false,
                on: eventLoop,
                onPush: onPush,
                onUnmatchedErrorReply: onUnmatchedErrorReply
            )
        }
        return sentinel.monitor.primaryAddress(on: eventLoop).flatMap { primary in
            self.connect(
                to: primary,
                requirePrimary: true,
                on: eventLoop,
                onPush: onPush,
                onUnmatchedErrorReply: onUnmatchedErrorReply
            )
        }
    }

    private func connect(
        to address: RedisAddress,
        requirePrimary: Bool,
        on eventLoop: any EventLoop,
        onPush: (@Sendable (RedisPush) -> Void)?,
        onUnmatchedErrorReply: (@Sendable (String) -> Void)?
    ) -> EventLoopFuture<any Channel> {
        let maximumPending = self.maximumPendingCommands
        let handshake = requirePrimary ? self.handshake + [RedisCommand(["ROLE"])] : self.handshake
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
        if let socketAddress = try? SocketAddress(ipAddress: address.host, port: address.port) {
            // An IP address needs no resolver: no hop to getaddrinfo's thread on every reconnect attempt.
            connected = bootstrap.connect(to: socketAddress)
        } else {
            connected = bootstrap.connect(host: address.host, port: address.port)
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
                return EventLoopFuture.whenAllSucceed(replies, on: channel.eventLoop)
                    .always { _ in timeout.cancel() }
                    .flatMapThrowing { replies in
                        if requirePrimary, let reply = replies.last {
                            let role = RedisSentinelMonitor.role(fromReply: reply) ?? "\(reply)"
                            guard role == "master" else { throw RedisError.notPrimary(role: role) }
                        }
                        return channel
                    }
                    .flatMapError { error in
                        channel.close(promise: nil)
                        return channel.closeFuture.flatMapThrowing { throw error }
                    }
            }
    }
}
