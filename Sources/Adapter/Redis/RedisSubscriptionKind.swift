/// The three pub/sub flavours of Redis, each with its own commands and pushes.
enum RedisSubscriptionKind: Sendable, Hashable, CaseIterable {
    /// SUBSCRIBE / UNSUBSCRIBE; delivers `message`.
    case channel
    /// PSUBSCRIBE / PUNSUBSCRIBE (glob patterns); delivers `pmessage`.
    case pattern
    /// SSUBSCRIBE / SUNSUBSCRIBE (sharded pub/sub, Redis ≥ 7); delivers `smessage`.
    case shardChannel

    var subscribeCommand: String {
        switch self {
        case .channel: return "SUBSCRIBE"
        case .pattern: return "PSUBSCRIBE"
        case .shardChannel: return "SSUBSCRIBE"
        }
    }

    var unsubscribeCommand: String {
        switch self {
        case .channel: return "UNSUBSCRIBE"
        case .pattern: return "PUNSUBSCRIBE"
        case .shardChannel: return "SUNSUBSCRIBE"
        }
    }
}

/// One wanted subscription: a channel, a pattern or a shard channel.
struct RedisSubscription: Sendable, Hashable {
    var kind: RedisSubscriptionKind
    var name: String

    init(_ kind: RedisSubscriptionKind, _ name: String) {
        self.kind = kind
        self.name = name
    }
}

/// A (P|S)(UN)SUBSCRIBE to write on the subscriber connection. Its replies come back as pushes, one per name.
struct RedisSubscriptionCommand: Sendable, Hashable {
    enum Verb: Sendable, Hashable {
        case subscribe
        case unsubscribe
    }

    var verb: Verb
    var kind: RedisSubscriptionKind
    var names: [String]

    var command: RedisCommand {
        let name = self.verb == .subscribe ? self.kind.subscribeCommand : self.kind.unsubscribeCommand
        return RedisCommand([.string(name)] + self.names.map { .string($0) })
    }
}
