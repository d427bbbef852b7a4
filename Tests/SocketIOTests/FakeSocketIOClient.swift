import Logging
import NIOCore
import NIOEmbedded

@testable import EngineIO
@testable import SocketIO

/// A Socket.IO client over a ``FakeWebSocket``, driven on an embedded loop: what the server sends it, decoded
/// as far as the tests read it. Shared by the Socket.IO layer's tests.
final class FakeSocketIOClient {
    let ws = FakeWebSocket()
    let session: EngineSession
    init(_ namespace: Namespace, loop: EmbeddedEventLoop) {
        session = EngineSession(sid: "s", transport: .websocket(ws), eventLoop: loop, configuration: EngineConfiguration())
        session.delegate = SocketIOConnection(
            session: session,
            namespaces: ["/": namespace],
            connectTimeout: .seconds(45),
            logger: Logger(label: "test")
        )
        session.start()
    }
    /// Sends a Socket.IO packet (`"0"` is a CONNECT, `"2[...]"` an event) as an Engine.IO message.
    func send(_ packet: String) { session.webSocketFrame(textFrame("4" + packet), from: ws) }
    var sent: [String] { ws.frames.compactMap { if case .text(let b) = $0 { String(buffer: b) } else { nil } } }
    var events: [String] { sent.filter { $0.hasPrefix("42") } }
    /// The CONNECT answer, decoded.
    var connect: PacketValue? {
        guard let text = sent.first(where: { $0.hasPrefix("40") }) else { return nil }
        return try? PacketValue.parseJSON(String(text.dropFirst(2)))
    }
    var sid: String? { connect?["sid"]?.stringValue }
    var pid: String? { connect?["pid"]?.stringValue }
    /// The last argument of the last event: the offset the official client would remember.
    var lastOffset: String? {
        guard let last = events.last, let value = try? PacketValue.parseJSON(String(last.dropFirst(2))),
            case .array(let args) = value
        else { return nil }
        return args.last?.stringValue
    }
    /// The transport closes under the session (a dropped connection).
    func drop() { session.webSocketClosed(ws) }
}
