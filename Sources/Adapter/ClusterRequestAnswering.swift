import SocketIO

/// How a node answers another node's request, whichever wire carried it: the classic adapter's request channel
/// (``ClusterRequest``, JSON) or a sharded adapter message (``ShardedMessage``, MessagePack). Each adapter reads
/// its wire into a ``ClusterRequest`` and writes the ``ClusterResponse`` back in its own format; what is done
/// for a request, and what is answered, is written once, here.
protocol ClusterRequestAnswering: RoomRegistryAdapter {
    var uid: String { get }
    var delivery: any LocalDelivery { get }
    /// Publishes `response` where the node `requester` listens for it.
    func respond(_ response: ClusterResponse, to requester: String?)
}

extension ClusterRequestAnswering {
    /// Carries out `request` on this node's sockets and answers it. Requests this node sent itself are not
    /// answered (the classic request channel echoes them); membership changes and disconnects apply whoever sent
    /// them, as on a Node.js node.
    func answer(_ request: ClusterRequest) {
        switch request {
        case .allRooms(let requester, let requestId):
            guard requester != uid else { return }
            let rooms = registry.withLock { Array($0.allRooms) }
            respond(.allRooms(requestId: requestId, rooms: rooms), to: requester)
        case .socketsJoin(_, let options, let rooms):
            let targets = registry.withLock { $0.recipients(of: options) }
            for socket in targets { join(socket, rooms: rooms) }
        case .socketsLeave(_, let options, let rooms):
            let targets = registry.withLock { $0.recipients(of: options) }
            for socket in targets {
                for room in rooms { leave(socket, room: room) }
            }
        case .disconnectSockets(_, let options, let close):
            let targets = registry.withLock { $0.recipients(of: options) }
            if !targets.isEmpty { delivery.disconnect(targets, close: close) }
        case .fetchSockets(let requester, let requestId, let options):
            guard requester != uid else { return }
            let sockets = registry.withLock { registry in
                registry.recipients(of: options).map { id in
                    ClusterResponse.Socket(
                        id: id,
                        handshake: .object([]),
                        rooms: [id] + registry.rooms(of: id).filter { $0 != id }.sorted()
                    )
                }
            }
            respond(.fetchSockets(requestId: requestId, sockets: sockets), to: requester)
        case .serverSideEmit(let requester, let requestId, _):
            // No server-side listeners here; answer so a waiting Node node is not left to time out.
            guard requester != uid, let requestId else { return }
            respond(.serverSideEmit(requestId: requestId, data: .null), to: requester)
        case .broadcastWithAck(let requester, let requestId, let packet, let options):
            guard requester != uid else { return }
            // As a Node.js node does: the number of local recipients first, then each client's first ack argument.
            let recipients = registry.withLock { $0.recipients(of: options) }
            respond(.broadcastClientCount(requestId: requestId, clientCount: recipients.count), to: requester)
            guard !recipients.isEmpty else { return }
            delivery.deliverWithAck(packet, to: recipients) { [weak self] arguments in
                self?.respond(.broadcastAck(requestId: requestId, packet: arguments.first ?? .null), to: requester)
            }
        }
    }
}
