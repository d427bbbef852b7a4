import Synchronization

@testable import EngineIO

/// A websocket that records what its session writes: the transport under the Socket.IO tests.
final class FakeWebSocket: WebSocketConnection {
    private let written = Mutex<[EngineFrame]>([])
    private let closes = Mutex(0)

    var frames: [EngineFrame] { written.withLock { $0 } }
    var closeCount: Int { closes.withLock { $0 } }

    func write(_ frames: [EngineFrame]) { written.withLock { $0.append(contentsOf: frames) } }
    func close() { closes.withLock { $0 += 1 } }
}
