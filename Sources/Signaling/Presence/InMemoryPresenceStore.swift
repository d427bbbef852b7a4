import NIOCore
import SocketIO
import Synchronization

/// Presence for a single node: everything is local, every answer immediate.
public final class InMemoryPresenceStore: PresenceStore {
    private let local = Mutex(LocalPresence())

    public init() {}

    public func join(_ entry: PresenceEntry, on eventLoop: any EventLoop) -> EventLoopFuture<(isNew: Bool, members: [PresenceEntry])> {
        let result = local.withLock { local in
            let isNew = local.join(entry)
            return (isNew: isNew, members: local.members(of: entry.room))
        }
        return eventLoop.makeSucceededFuture(result)
    }

    public func leave(room: Room, socket: SocketID, on eventLoop: any EventLoop) -> EventLoopFuture<PresenceEntry?> {
        eventLoop.makeSucceededFuture(local.withLock { $0.leave(room: room, socket: socket) })
    }

    public func count(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        eventLoop.makeSucceededFuture(local.withLock { $0.count(of: room) })
    }

    public func members(of room: Room, on eventLoop: any EventLoop) -> EventLoopFuture<[PresenceEntry]> {
        eventLoop.makeSucceededFuture(local.withLock { $0.members(of: room) })
    }

    public func isMember(_ socket: SocketID, ofAnyOf rooms: [Room], on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        eventLoop.makeSucceededFuture(local.withLock { local in rooms.contains { local.contains(room: $0, socket: socket) } })
    }
}
