import NIOCore
import SocketIO

extension PacketValue {
    /// An object with only the fields named in `keys` (in their order in the object); anything else as it is.
    /// What an event keeps while it waits: the fields it uses, not what a client padded it with.
    func keeping(_ keys: Set<String>) -> PacketValue {
        guard case .object(let fields) = self else { return self }
        return .object(fields.filter { keys.contains($0.key) })
    }

    /// About how many bytes this value keeps alive (strings and binary by their length, containers by their
    /// elements): what a queued event costs, for the queue's byte bound.
    var approximateSize: Int {
        switch self {
        case .string(let string): return 16 + string.utf8.count
        case .binary(let bytes): return 16 + bytes.readableBytes
        case .array(let elements): return 16 + elements.reduce(0) { $0 + $1.approximateSize }
        case .object(let fields): return 16 + fields.reduce(0) { $0 + 16 + $1.key.utf8.count + $1.value.approximateSize }
        default: return 8
        }
    }
}
