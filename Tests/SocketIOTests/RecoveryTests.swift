import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import EngineIO
@testable import SocketIO

/// Connection state recovery on one node: a socket whose transport dropped is suspended and restored whole, or
/// its client gets a new session; never a partial replay.
@Suite("Connection state recovery")
struct RecoveryTests {
    /// Saves `{"n": name}`; refuses a restore whose auth says `deny`; records ends.
    final class Handler: NamespaceHandler, @unchecked Sendable {
        // Touched only on the embedded loop's thread (the test's).
        var ended: [SocketID] = []
        var suspended: [SocketID] = []
        var disconnected: [SocketID] = []
        var restoredNames: [String] = []

        func socketWillConnect(_ socket: Socket, auth: PacketValue?) throws(ConnectRefusal) -> String {
            auth?["name"]?.stringValue ?? "anon"
        }
        func socketConnected(_ socket: Socket, state: String) { socket.join("room") }
        func socket(_ socket: Socket, state: String, event: String, arguments: [PacketValue], ack: Ack?) {}
        func socketDisconnected(_ socket: Socket, state: String, reason: String) { disconnected.append(socket.id) }
        func recoveryState(_ socket: Socket, state: String) -> PacketValue? { .object([("n", .string(state))]) }
        func socketSuspended(_ socket: Socket, state: String) { suspended.append(socket.id) }
        func socketWillRecover(_ socket: Socket, auth: PacketValue?, saved: PacketValue) throws(ConnectRefusal) -> String {
            if auth?["deny"] != nil { throw ConnectRefusal("Authentication error") }
            let name = saved["n"]?.stringValue ?? "?"
            restoredNames.append(name)
            return name
        }
        func suspendedSocketEnded(_ socket: SocketID, saved: PacketValue, namespace: Namespace, eventLoop: any EventLoop) {
            ended.append(socket)
        }
        var filteredEvents: Set<String> { ["filtered"] }
        func shouldDeliver(_ packet: BroadcastPacket, to socket: Socket, state: String) -> Bool { false }
    }

    typealias Client = FakeSocketIOClient

    /// The in-memory adapter with a continuity the test changes (what a Redis restart does to the Redis adapter).
    final class GappyAdapter: Adapter {
        let inner: InMemoryAdapter
        let epoch = Atomic<UInt64>(0)
        init(nsp: String, delivery: any LocalDelivery) { inner = InMemoryAdapter(nsp: nsp, delivery: delivery) }
        var nsp: String { inner.nsp }
        func join(_ socket: SocketID, rooms: [Room]) { inner.join(socket, rooms: rooms) }
        func leave(_ socket: SocketID, room: Room) { inner.leave(socket, room: room) }
        func leaveAll(_ socket: SocketID) { inner.leaveAll(socket) }
        func rooms(of socket: SocketID) -> Set<Room> { inner.rooms(of: socket) }
        func localSockets(in rooms: Set<Room>) -> Set<SocketID> { inner.localSockets(in: rooms) }
        func broadcast(_ packet: BroadcastPacket, options: BroadcastOptions) { inner.broadcast(packet, options: options) }
        var localRoomCount: Int { inner.localRoomCount }
        var continuity: UInt64 { epoch.load(ordering: .relaxed) }
    }

    struct Fixture {
        let loop = EmbeddedEventLoop()
        let handler = Handler()
        let namespace: Namespace
        init(_ configuration: RecoveryConfiguration? = RecoveryConfiguration(window: .seconds(60))) {
            let metrics = SocketIOMetrics(knownEvents: [])
            namespace = Namespace(name: "/", handler: handler, logger: Logger(label: "test"), metrics: metrics, recovery: configuration) {
                GappyAdapter(nsp: $0, delivery: $1)
            }
        }
        func client() -> Client { Client(namespace, loop: loop) }
        func emit(_ n: Int) {
            namespace.emit("m", [.number(Double(n))], to: ["room"])
            loop.run()
        }
        /// `{pid, offset}` as socket.io-client 4.8.1 sends it (no offset key when it has none).
        static func auth(_ pid: String, _ offset: String?, extra: String = "") -> String {
            let offsetField = offset.map { #","offset":"\#($0)""# } ?? ""
            return #"0{"pid":"\#(pid)"\#(offsetField)\#(extra)}"#
        }
    }

    static func numbers(_ events: [String]) -> [Int] {
        events.compactMap { text in
            guard let value = try? PacketValue.parseJSON(String(text.dropFirst(2))), case .array(let args) = value,
                args.first == "m", case .number(let n)? = args.dropFirst().first
            else { return nil }
            return Int(n)
        }
    }

    @Test func offTheConnectAnswerHasNoPidAndEventsNoOffset() {
        let f = Fixture(nil)
        let a = f.client()
        a.send("0")
        #expect(a.pid == nil)
        f.emit(1)
        #expect(a.events == [#"42["m",1]"#])
        a.drop()
        #expect(f.handler.disconnected.count == 1)
    }

    @Test func transportDropThenRestoreGivesSameIDAndEveryMissedEventOnceInOrder() throws {
        let f = Fixture()
        let a = f.client()
        a.send(#"0{"name":"ann"}"#)
        let sid = try #require(a.sid)
        let pid = try #require(a.pid)
        #expect(pid.count >= 22)  // ≥ 128 bits
        f.emit(1)
        f.emit(2)
        let offset = try #require(a.lastOffset)
        a.drop()
        #expect(f.handler.suspended == [sid])
        #expect(f.handler.disconnected.isEmpty)
        for n in 3...7 { f.emit(n) }
        f.namespace.emit("filtered", [], to: ["room"])  // the handler refuses it: not replayed
        f.loop.run()

        let b = f.client()
        b.send(Fixture.auth(pid, offset))
        #expect(b.sid == sid)
        #expect(b.pid == pid)
        #expect(Self.numbers(b.events) == [3, 4, 5, 6, 7])
        #expect(f.handler.restoredNames == ["ann"])
        f.emit(8)
        #expect(Self.numbers(b.events) == [3, 4, 5, 6, 7, 8])
        // Offsets keep counting across the restore, so a second drop is recovered as well.
        let offsets = b.events.map { $0.split(separator: ",").last!.dropLast() }
        #expect(Set(offsets).count == offsets.count)
        #expect(f.handler.ended.isEmpty)
        #expect(f.namespace.recoveryStore?.count == 0)
    }

    @Test func eventsWrittenToTheDyingTransportAreReplayedFromTheClientsOffset() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        let offset = try #require(a.lastOffset)
        f.emit(2)  // written, but the client (say) never got it
        f.emit(3)
        a.drop()
        f.emit(4)
        let b = f.client()
        b.send(Fixture.auth(pid, offset))
        #expect(b.sid == a.sid)
        #expect(Self.numbers(b.events) == [2, 3, 4])
    }

    @Test func aClientThatSawNoEventGetsTheWholeHistory() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        a.drop()
        let b = f.client()
        b.send(Fixture.auth(pid, nil))
        #expect(b.sid == a.sid)
        #expect(Self.numbers(b.events) == [1])
    }

    @Test(arguments: [
        #""not-an-offset""#, #""zzzzzzzz-1""#, #""""#, "1", "{}", #"["x-1"]"#,
    ])
    func anOffsetNotOursGivesANewSessionAndEndsTheOldOne(offset: String) throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        a.drop()
        let b = f.client()
        b.send(#"0{"pid":"\#(pid)","offset":\#(offset)}"#)
        #expect(b.sid != nil && b.sid != a.sid)
        #expect(b.pid != nil && b.pid != pid)
        #expect(f.handler.ended == [a.sid!])
        #expect(f.namespace.recoveryStore?.count == 0)
    }

    @Test func anOffsetNeverSentOrOlderThanTheHistoryIsUnknown() throws {
        let f = Fixture(RecoveryConfiguration(window: .seconds(60), historyEvents: 2))
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        let first = try #require(a.lastOffset)
        for n in 2...4 { f.emit(n) }  // the history keeps 3 and 4
        a.drop()
        let tag = first.split(separator: "-").first!
        let b = f.client()
        b.send(Fixture.auth(pid, "\(tag)-99"))
        #expect(b.sid != a.sid)

        let c = f.client()
        c.send("0")
        let pid2 = try #require(c.pid)
        f.emit(5)
        let old = try #require(c.lastOffset)
        for n in 6...8 { f.emit(n) }
        c.drop()
        let d = f.client()
        d.send(Fixture.auth(pid2, old))
        #expect(d.sid != c.sid)
    }

    @Test func unknownPidGivesANewSession() {
        let f = Fixture()
        let a = f.client()
        a.send(Fixture.auth("AAAAAAAAAAAAAAAAAAAAAAAA", "x-1"))
        #expect(a.sid != nil)
        #expect(f.handler.restoredNames.isEmpty)
    }

    @Test func missedEventsPastTheBoundAreNotReplayedInPart() throws {
        let f = Fixture(RecoveryConfiguration(window: .seconds(60), maxEvents: 5))
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        let offset = try #require(a.lastOffset)
        a.drop()
        for n in 2...10 { f.emit(n) }
        let b = f.client()
        b.send(Fixture.auth(pid, offset))
        #expect(b.sid != a.sid)
        #expect(b.events.isEmpty)
        #expect(f.handler.ended == [a.sid!])
    }

    @Test func theNodeWideByteBoundLosesTheSessionThatPassesIt() throws {
        let f = Fixture(RecoveryConfiguration(window: .seconds(60), maxTotalBytes: 200))
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        a.drop()
        for n in 1...5 { f.emit(n) }  // about 10 bytes each
        #expect(f.namespace.recoveryStore?.bytes ?? 0 > 0)
        for n in 6...40 { f.emit(n) }
        #expect(f.namespace.recoveryStore?.bytes == 0)
        let b = f.client()
        b.send(Fixture.auth(pid, nil))
        #expect(b.sid != a.sid)
        #expect(f.namespace.recoveryStore?.count == 0)
    }

    @Test func theWindowClosingEndsTheSocketOnceAndItCannotBeRestoredAfter() throws {
        let f = Fixture(RecoveryConfiguration(window: .seconds(5)))
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        a.drop()
        f.loop.advanceTime(by: .seconds(4))
        #expect(f.handler.ended.isEmpty)
        f.loop.advanceTime(by: .seconds(2))
        #expect(f.handler.ended == [a.sid!])
        #expect(f.namespace.adapter.localSockets(in: ["room"]).isEmpty)
        let b = f.client()
        b.send(Fixture.auth(pid, nil))
        #expect(b.sid != a.sid)
        f.loop.advanceTime(by: .seconds(60))  // (b's own session times out meanwhile: it is suspended and ends)
        #expect(f.handler.ended.filter { $0 == a.sid } == [a.sid!])
    }

    @Test func anEarlierWindowDoesNotEndALaterSuspension() throws {
        let f = Fixture(RecoveryConfiguration(window: .seconds(5)))
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        a.drop()
        f.loop.advanceTime(by: .seconds(3))
        let b = f.client()
        b.send(Fixture.auth(pid, nil))
        #expect(b.sid == a.sid)
        b.drop()
        f.loop.advanceTime(by: .seconds(3))  // the first window closes here: not this one's
        #expect(f.handler.ended.isEmpty)
        f.loop.advanceTime(by: .seconds(3))
        #expect(f.handler.ended == [a.sid!])
    }

    @Test func aRefusedRestoreLeavesTheSessionSuspended() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        a.drop()
        let b = f.client()
        b.send(Fixture.auth(pid, nil, extra: #","deny":true"#))
        #expect(b.sent.last == #"44{"message":"Authentication error"}"#)
        let c = f.client()
        c.send(Fixture.auth(pid, nil))
        #expect(c.sid == a.sid)
    }

    @Test func eventsTheClientSurelyHasLeaveTheHistoryAtItsPongs() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        let first = try #require(a.lastOffset)
        f.emit(2)
        func pong() {
            f.loop.advanceTime(by: .seconds(25))  // the ping
            a.session.webSocketFrame(textFrame("3"), from: a.ws)
        }
        pong()
        f.emit(3)
        pong()  // 1 and 2 were written before this ping: delivered
        a.drop()
        let b = f.client()
        b.send(Fixture.auth(pid, first))  // the client cannot be there: unknown
        #expect(b.sid != a.sid)

        let c = f.client()
        c.send("0")
        let pid2 = try #require(c.pid)
        f.emit(4)
        let seen = try #require(c.lastOffset)
        c.drop()
        let d = f.client()
        d.send(Fixture.auth(pid2, seen))
        #expect(d.sid == c.sid)
    }

    @Test func aClusterGapDuringTheSuspensionGivesANewSession() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        a.drop()
        f.emit(1)
        (f.namespace.adapter as! GappyAdapter).epoch.add(1, ordering: .relaxed)  // Redis restarted meanwhile
        let b = f.client()
        b.send(Fixture.auth(pid, nil))
        #expect(b.sid != a.sid)
        #expect(b.events.isEmpty)
        #expect(f.handler.ended == [a.sid!])
    }

    @Test func aClientBackBeforeItsDropWasNoticedTakesItsSocketOver() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        f.emit(1)
        let offset = try #require(a.lastOffset)
        f.emit(2)  // lost with the old transport, which the server still thinks is there
        let b = f.client()
        b.send(Fixture.auth(pid, offset))
        f.loop.run()
        #expect(a.session.isClosed)
        #expect(b.sid == a.sid)
        #expect(b.pid == pid)
        #expect(Self.numbers(b.events) == [2])
        #expect(f.handler.ended.isEmpty && f.handler.disconnected.isEmpty)
        f.emit(3)
        #expect(Self.numbers(b.events) == [2, 3])
        #expect(Self.numbers(a.events) == [1, 2])
    }

    @Test func aClusterDisconnectEndsASuspendedSocket() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        let pid = try #require(a.pid)
        let sid = try #require(a.sid)
        a.drop()
        f.namespace.localSockets.disconnect([sid], close: false)
        f.loop.run()
        #expect(f.handler.ended == [sid])
        #expect(f.namespace.adapter.localSockets(in: ["room"]).isEmpty)
        let b = f.client()
        b.send(Fixture.auth(pid, nil))
        #expect(b.sid != sid)
    }

    @Test func onlyATransportDropSuspends() throws {
        let f = Fixture()
        let a = f.client()
        a.send("0")
        a.send("1")  // the client's own disconnect
        #expect(f.handler.disconnected.count == 1)
        let b = f.client()
        b.send("0")
        b.session.close(reason: .serverShutdown)
        #expect(f.handler.disconnected.count == 2)
        #expect(f.handler.suspended.isEmpty)
    }

    @Test func theOffsetIsTheLastArgumentOfTheEncodedEvent() {
        var log = RecoveryLog(pid: "p", tag: "T")
        let frames = SocketIOPacket(type: .event, nsp: "/chat", data: ["m", .object([("a", 1)])]).engineFrames()
        let stamped = log.stamp(frames, historyEvents: 4, historyBytes: 1 << 16)
        #expect(stamped == [textFrame(#"42/chat,["m",{"a":1},"T-1"]"#)])
        #expect(log.parse("T-1") == 1)
        #expect(log.parse("T-01") == nil)
        #expect(log.parse("U-1") == nil)
        #expect(log.events(after: "T-1") == [])
        #expect(log.events(after: "T-2") == nil)
    }
}
