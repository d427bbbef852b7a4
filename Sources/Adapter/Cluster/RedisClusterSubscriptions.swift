/// Which shard channels a cluster client wants, and on which master each one is subscribed.
///
/// - Wanted channels are reference-counted: the first `subscribe` of a name places it on the master that owns its
///   slot (an SSUBSCRIBE there), the last `unsubscribe` removes it (a SUNSUBSCRIBE where it was placed).
/// - A channel is placed on **one** master at a time, and messages are only taken from that master (see
///   ``accepts(_:from:)``), so two subscriptions never deliver the same message, even while a move is under way.
/// - When the slot map changes (a refresh after MOVED, a SUNSUBSCRIBE pushed by Redis, a lost master), every
///   channel whose slot has a new owner moves: SUNSUBSCRIBE on the old master, SSUBSCRIBE on the new one.
///   Channels whose slot has no owner wait, unplaced, for a map that has one.
///
/// A plain value, tested without sockets; ``RedisClusterClient`` performs its actions.
struct RedisClusterSubscriptions: Sendable {
    enum Action: Sendable, Hashable {
        case subscribe(String, on: RedisClusterNode)
        case unsubscribe(String, on: RedisClusterNode)
    }

    private var wanted: [String: Int] = [:]
    private(set) var placement: [String: RedisClusterNode] = [:]
    private var map = RedisClusterSlotMap()

    var wantedChannels: Set<String> { Set(wanted.keys) }
    /// Wanted channels with no master to subscribe on (their slot has no owner in the current map).
    var unplacedCount: Int { wanted.count - placement.count }
    /// The masters that hold at least one subscription.
    var mastersInUse: Set<RedisClusterNode> { Set(placement.values) }

    mutating func subscribe(_ channels: [String]) -> [Action] {
        var actions: [Action] = []
        for channel in channels {
            let count = wanted[channel, default: 0]
            wanted[channel] = count + 1
            guard count == 0 else { continue }
            if let owner = map.master(of: channel) {
                placement[channel] = owner
                actions.append(.subscribe(channel, on: owner))
            }
        }
        return actions
    }

    mutating func unsubscribe(_ channels: [String]) -> [Action] {
        var actions: [Action] = []
        for channel in channels {
            guard let count = wanted[channel] else { continue }
            if count > 1 {
                wanted[channel] = count - 1
                continue
            }
            wanted[channel] = nil
            if let node = placement.removeValue(forKey: channel) {
                actions.append(.unsubscribe(channel, on: node))
            }
        }
        return actions
    }

    /// A new slot map: moves what changed owner, places what had none. Unsubscribes come before subscribes.
    mutating func mapChanged(_ newMap: RedisClusterSlotMap) -> [Action] {
        map = newMap
        var unsubscribes: [Action] = []
        var subscribes: [Action] = []
        for channel in wanted.keys.sorted() {
            let owner = newMap.master(of: channel)
            let current = placement[channel]
            guard owner != current else { continue }
            if let current {
                unsubscribes.append(.unsubscribe(channel, on: current))
            }
            placement[channel] = owner
            if let owner {
                subscribes.append(.subscribe(channel, on: owner))
            }
        }
        return unsubscribes + subscribes
    }

    /// Whether a message of `channel` coming from `node`'s subscriber is the one to deliver.
    func accepts(_ channel: String, from node: RedisClusterNode) -> Bool {
        placement[channel] == node
    }
}
