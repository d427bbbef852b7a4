import EngineIO
import Signaling
import SocketIO

/// The node's metrics, through swift-metrics (the executable bootstraps the Prometheus backend): the Engine.IO
/// layer's and the Socket.IO layer's, named `signal_…`, the latter with the signaling events as its known event
/// names.
public final class SignalMetrics: Sendable {
    public let engine: EngineMetrics
    public let socketIO: SocketIOMetrics

    public init() {
        self.engine = EngineMetrics(labelPrefix: "signal")
        self.socketIO = SocketIOMetrics(labelPrefix: "signal", knownEvents: SignalingApplication.knownEvents)
    }
}
