import NIOCore

/// Something that sends Redis commands: one server's ``RedisConnection``, or a ``RedisClusterClient`` that routes
/// each command to the master of its key's slot. Presence uses it so that the same code runs on both.
///
/// On a cluster, a command is routed by its first argument (the key of every single-key command), or by
/// `routingKey` for a command without a key (`TIME`): a caller that compares answers of keyless commands (clocks)
/// names the key they relate to, so every node asks the same master.
public protocol RedisCommandSender: AnyObject, Sendable {
    var eventLoop: any EventLoop { get }
    /// Whether commands can be sent right now.
    var isConnected: Bool { get }
    func start()
    func close() -> EventLoopFuture<Void>
    func send(_ command: RedisCommand, routingKey: String?) -> EventLoopFuture<RESPValue>
}

extension RedisCommandSender {
    /// Sends a command given as its arguments, routed by its key.
    public func send(_ arguments: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        send(RedisCommand(arguments), routingKey: nil)
    }
}

extension RedisConnection: RedisCommandSender {
    /// One server: the routing key does not matter.
    public func send(_ command: RedisCommand, routingKey: String?) -> EventLoopFuture<RESPValue> {
        send(command)
    }
}

extension RedisClusterClient: RedisCommandSender {}
