import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import EngineIO
@testable import SocketIO

/// The handler's per-socket state: made on connect, handed back with its type to every call about that socket.
@Suite("Socket state")
struct SocketStateTests {
    final class Counter {
        let name: String
        var events: [String] = []
        var disconnectReason: String?
        init(name: String) { self.name = name }
    }

    /// Names each socket from its auth payload; refuses those without one; delivers `filtered` only to `bob`.
    final class CountingHandler: NamespaceHandler, @unchecked Sendable {
        // Touched only on the embedded loop's thread (the test's).
        var states: [Counter] = []

        func socketWillConnect(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) -> Counter {
            guard let name = auth?["name"]?.stringValue else { throw ConnectRefusal("a name is required") }
            let state = Counter(name: name)
            states.append(state)
            return state
        }
        func socket(_ socket: Socket, state: Counter, event: String, arguments: [PacketValue], ack: Ack?) {
            state.events.append(event)
        }
        func socketDisconnected(_ socket: Socket, state: Counter, reason: String) { state.disconnectReason = reason }
        var filteredEvents: Set<String> { ["filtered"] }
        func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket, state: Counter) -> Bool { state.name == "bob" }
    }

    typealias Client = FakeSocketIOClient

    @Test func eachSocketGetsItsOwnTypedStateBack() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let handler = CountingHandler()
        let namespace = Namespace(name: "/", handler: handler, logger: Logger(label: "test"), metrics: SocketIOMetrics(knownEvents: [])) {
            InMemoryAdapter(nsp: $0, delivery: $1)
        }
        let alice = Client(namespace, loop: loop)
        let bob = Client(namespace, loop: loop)
        let nobody = Client(namespace, loop: loop)
        alice.send(#"0{"name":"alice"}"#)
        bob.send(#"0{"name":"bob"}"#)
        nobody.send("0")
        #expect(nobody.sent.last == #"44{"message":"a name is required"}"#)
        #expect(handler.states.map(\.name) == ["alice", "bob"])

        alice.send(#"2["a1"]"#)
        bob.send(#"2["b1"]"#)
        alice.send(#"2["a2"]"#)
        #expect(handler.states[0].events == ["a1", "a2"])
        #expect(handler.states[1].events == ["b1"])

        namespace.emit("filtered", [])
        namespace.emit("plain", [])
        loop.run()
        #expect(alice.sent.filter { $0.hasPrefix("42") } == [#"42["plain"]"#])
        #expect(bob.sent.filter { $0.hasPrefix("42") } == [#"42["filtered"]"#, #"42["plain"]"#])

        alice.send("1")
        #expect(handler.states[0].disconnectReason == "client namespace disconnect")
        #expect(handler.states[1].disconnectReason == nil)
    }
}
