import NIOCore

/// A reply that Redis sends on a subscribed connection: an acknowledgement or a message.
///
/// In RESP2 these are plain arrays whose first element names them (`subscribe`, `message`, `pmessage`, …).
enum RedisPush: Sendable, Hashable {
    /// `subscribe` / `psubscribe` / `ssubscribe`: one per name of the command; `count` is the connection's total.
    case subscribed(RedisSubscription, count: Int64)
    /// `unsubscribe` / `punsubscribe` / `sunsubscribe`. Also sent by the server on its own (a moved hash slot);
    /// `name` is `nil` when an argument-less unsubscribe found nothing to remove.
    case unsubscribed(RedisSubscriptionKind, name: String?, count: Int64)
    /// `message` / `pmessage` / `smessage`. `subscription` is what matched: the channel itself, or the pattern.
    case message(subscription: RedisSubscription, channel: String, payload: ByteBuffer)

    /// Reads a push, or returns `nil` when `value` is not one (an ordinary command reply).
    init?(_ value: RESPValue) {
        guard let elements = value.array, let kind = elements.first?.string else { return nil }
        switch (kind, elements.count) {
        case ("message", 3), ("smessage", 3):
            guard let channel = elements[1].string, case .bulkString(.some(let payload)) = elements[2] else {
                return nil
            }
            let subscription = RedisSubscription(kind == "message" ? .channel : .shardChannel, channel)
            self = .message(subscription: subscription, channel: channel, payload: payload)
        case ("pmessage", 4):
            guard let pattern = elements[1].string, let channel = elements[2].string,
                case .bulkString(.some(let payload)) = elements[3]
            else { return nil }
            self = .message(subscription: RedisSubscription(.pattern, pattern), channel: channel, payload: payload)
        case ("subscribe", 3), ("psubscribe", 3), ("ssubscribe", 3):
            guard let name = elements[1].string, let count = elements[2].integer else { return nil }
            self = .subscribed(RedisSubscription(Self.kind(of: kind), name), count: count)
        case ("unsubscribe", 3), ("punsubscribe", 3), ("sunsubscribe", 3):
            guard let count = elements[2].integer else { return nil }
            self = .unsubscribed(Self.kind(of: kind), name: elements[1].string, count: count)
        default:
            return nil
        }
    }

    /// The kind named by a (un)subscribe acknowledgement.
    private static func kind(of verb: String) -> RedisSubscriptionKind {
        switch verb {
        case "psubscribe", "punsubscribe": return .pattern
        case "ssubscribe", "sunsubscribe": return .shardChannel
        default: return .channel
        }
    }
}
