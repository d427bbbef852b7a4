import Synchronization

/// Counts the TCP connections of a node, in total and per client key, against their limits. Shared by all event
/// loops. The per-address table only holds addresses with open connections, so it is bounded by `maximum`.
final class ConnectionLimiter: Sendable {
    let maximum: Int
    /// 0: no per-address limit.
    let maximumPerAddress: Int
    private let total = Atomic<Int>(0)
    private let perAddress = Mutex<[String: Int]>([:])

    init(maximum: Int, maximumPerAddress: Int) {
        self.maximum = maximum
        self.maximumPerAddress = maximumPerAddress
    }

    var count: Int { total.load(ordering: .relaxed) }

    /// Takes a slot for a new connection; false (and nothing taken) at the limit.
    func acquire() -> Bool {
        let now = total.wrappingAdd(1, ordering: .relaxed).newValue
        guard now <= maximum else {
            total.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func release() {
        total.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Takes a slot for one more connection from `key`; always true without a per-address limit.
    func acquire(address key: String) -> Bool {
        guard maximumPerAddress > 0 else { return true }
        return perAddress.withLock { table in
            let count = table[key, default: 0]
            guard count < maximumPerAddress else { return false }
            table[key] = count + 1
            return true
        }
    }

    func release(address key: String) {
        guard maximumPerAddress > 0 else { return }
        perAddress.withLock { table in
            guard let count = table[key] else { return }
            table[key] = count > 1 ? count - 1 : nil
        }
    }
}
