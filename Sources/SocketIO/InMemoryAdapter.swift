import Synchronization

/// The single-node adapter: rooms live in this process only. The embedded default when no Redis is configured.
public final class InMemoryAdapter: Adapter {
    public let nsp: String
    private let registry = Mutex(RoomRegistry())
    private let delivery: any LocalDelivery

    public init(nsp: String = "/", delivery: any LocalDelivery) {
        self.nsp = nsp
        self.delivery = delivery
    }

    public func join(_ socket: SocketID, rooms: [Room]) {
        registry.withLock { registry in
            for room in rooms { registry.join(socket, room: room) }
        }
    }

    public func leave(_ socket: SocketID, room: Room) {
        registry.withLock { _ = $0.leave(socket, room: room) }
    }

    public func leaveAll(_ socket: SocketID) {
        registry.withLock { _ = $0.leaveAll(socket) }
    }

    public func rooms(of socket: SocketID) -> Set<Room> {
        registry.withLock { $0.rooms(of: socket) }
    }

    public func localSockets(in rooms: Set<Room>) -> Set<SocketID> {
        registry.withLock { $0.localSockets(in: rooms) }
    }

    public var localRoomCount: Int { registry.withLock { $0.allRooms.count } }

    public func broadcast(_ packet: BroadcastPacket, options: BroadcastOptions) {
        // Compute recipients under the lock, deliver after it: no lock is held while writing to channels.
        let recipients = registry.withLock { $0.recipients(of: options) }
        if !recipients.isEmpty { delivery.deliver(packet, to: recipients) }
    }
}
