import Synchronization

/// The single-node adapter: rooms live in this process only. The embedded default when no Redis is configured.
public final class InMemoryAdapter: RoomRegistryAdapter {
    public let nsp: String
    public let registry = LockedRoomRegistry()
    private let delivery: any LocalDelivery

    public init(nsp: String = "/", delivery: any LocalDelivery) {
        self.nsp = nsp
        self.delivery = delivery
    }

    public func roomsChanged(_ changes: [RoomRegistry.Change]) {}

    public func broadcast(_ packet: BroadcastPacket, options: BroadcastOptions) {
        // Compute recipients under the lock, deliver after it: no lock is held while writing to channels.
        let recipients = registry.withLock { $0.recipients(of: options) }
        if !recipients.isEmpty { delivery.deliver(packet, to: recipients) }
    }
}
