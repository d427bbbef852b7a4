import CoreMetrics
import EngineIO
import Signaling
import SocketIO

/// The node's metrics, through swift-metrics (the executable bootstraps the Prometheus backend): the Engine.IO
/// layer's and the Socket.IO layer's, named `signal_…`, the latter with the signaling events as its known event
/// names, and the node's two gauges, set when `/metrics` is read. (The Redis adapter's counters are its own
/// `RedisAdapterMetrics`, made with the same prefix by the executable.)
public final class SignalMetrics: Sendable {
    public let engine: EngineMetrics
    public let socketIO: SocketIOMetrics
    /// Rooms with local members (socket-id rooms included).
    let rooms: Gauge
    /// Engine.IO sessions on this node.
    let sessions: Gauge
    /// Connection state recovery: sockets suspended now, and the bytes of the events kept for them.
    let recoverySuspended: Gauge
    let recoveryBytes: Gauge

    public init() {
        self.engine = EngineMetrics(labelPrefix: "signal")
        self.socketIO = SocketIOMetrics(labelPrefix: "signal", knownEvents: SignalingApplication.knownEvents)
        self.rooms = Gauge(label: "signal_rooms")
        self.sessions = Gauge(label: "signal_sessions")
        self.recoverySuspended = Gauge(label: "signal_recovery_suspended")
        self.recoveryBytes = Gauge(label: "signal_recovery_bytes")
    }
}
