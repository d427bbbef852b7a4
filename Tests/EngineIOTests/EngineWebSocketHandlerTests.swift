import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import EngineIO

/// The websocket handler on an EmbeddedChannel: a direct websocket session, messages in fragments, and the limits.
@Suite struct EngineWebSocketHandlerTests {
    /// The session's delegate, reachable from the engine's attach closure (all on the embedded loop's thread).
    final class Recorder: @unchecked Sendable {
        let delegate = RecordingSessionDelegate()
    }

    final class Harness {
        let channel = EmbeddedChannel()
        let recorder = Recorder()

        /// `encodeFrames`: frames leave as bytes through NIO's encoder, as on a real channel (whose pending bytes the
        /// handler asks for when the channel is unwritable).
        init(maxPayload: Int = 64, encodeFrames: Bool = false) throws {
            var configuration = EngineConfiguration()
            configuration.maxPayload = maxPayload
            let recorder = self.recorder
            let engine = EngineServer(configuration: configuration, logger: Logger(label: "test"), metrics: EngineMetrics()) {
                $0.delegate = recorder.delegate
            }
            if encodeFrames { try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder()) }
            try channel.pipeline.syncOperations.addHandler(
                EngineWebSocketHandler(engine: engine, sid: nil, token: nil, maxPayload: maxPayload)
            )
            channel.embeddedEventLoop.run()
        }

        deinit {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            try? channel.embeddedEventLoop.syncShutdownGracefully()
        }

        func send(_ text: String, opcode: WebSocketOpcode, fin: Bool) throws {
            try channel.writeInbound(WebSocketFrame(fin: fin, opcode: opcode, data: ByteBuffer(string: text)))
            channel.embeddedEventLoop.run()
        }

        /// Text of the frames the server wrote, in order.
        func written() throws -> [(WebSocketOpcode, String)] {
            var frames: [(WebSocketOpcode, String)] = []
            while let frame = try channel.readOutbound(as: WebSocketFrame.self) {
                frames.append((frame.opcode, String(buffer: frame.data)))
            }
            return frames
        }
    }

    @Test func aDirectWebSocketSessionStartsWithTheOpenPacket() throws {
        let h = try Harness()
        let frames = try h.written()
        #expect(frames.count == 1)
        #expect(frames.first?.0 == .text)
        #expect(frames.first?.1.hasPrefix("0{\"sid\":\"") == true)
        #expect(frames.first?.1.contains("\"upgrades\":[]") == true)
    }

    @Test func aMessageInFragmentsArrivesWhole() throws {
        let h = try Harness()
        try h.send("4he", opcode: .text, fin: false)
        try h.send("ll", opcode: .continuation, fin: false)
        try h.send("o", opcode: .continuation, fin: true)
        try h.send("4again", opcode: .text, fin: true)
        #expect(h.recorder.delegate.events == [.text("hello"), .text("again")])
    }

    @Test func fragmentsBeyondMaxPayloadCloseTheConnectionWithTooBig() throws {
        let h = try Harness(maxPayload: 8)
        _ = try h.written()
        try h.send("4abcd", opcode: .text, fin: false)
        try h.send("efghij", opcode: .continuation, fin: true)
        let frames = try h.written()
        #expect(frames.last?.0 == .connectionClose)
        #expect(!h.channel.isActive)
        #expect(h.recorder.delegate.events == [.closed(.transportClose)])
    }

    @Test func aContinuationWithoutAStartIsAProtocolError() throws {
        let h = try Harness()
        _ = try h.written()
        try h.send("orphan", opcode: .continuation, fin: true)
        #expect(try h.written().last?.0 == .connectionClose)
        #expect(h.recorder.delegate.events == [.closed(.transportClose)])
    }

    @Test func aNewMessageInsideAFragmentedOneIsAProtocolError() throws {
        let h = try Harness()
        _ = try h.written()
        try h.send("4par", opcode: .text, fin: false)
        try h.send("4other", opcode: .text, fin: true)
        #expect(try h.written().last?.0 == .connectionClose)
        #expect(h.recorder.delegate.events == [.closed(.transportClose)])
    }
}

extension EngineWebSocketHandlerTests {
    /// Finding 7: a channel that stays over its high water mark (the client does not read) for the grace period is
    /// closed as a slow consumer; the session closes with that reason.
    @Test func aChannelUnwritableForTheGracePeriodIsClosedAsASlowConsumer() throws {
        let h = try Harness(encodeFrames: true)
        try h.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(h.channel.isActive)
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_999))
        #expect(h.channel.isActive)
        #expect(h.recorder.delegate.closeReasons == [])
        h.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(h.recorder.delegate.closeReasons == [.slowConsumer])
        #expect(!h.channel.isActive)
    }

    @Test func aClientThatCatchesUpIsKept() throws {
        let h = try Harness(encodeFrames: true)
        try h.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        h.channel.isWritable = false
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(h.channel.isActive)
        #expect(h.recorder.delegate.closeReasons == [])
    }
}

/// The handler as the upgrade probe of a polling session on the same loop: it feeds the session (and so its
/// state machine) and writes what comes back.
@Suite struct EngineWebSocketHandlerUpgradeTests {
    final class Harness {
        let channel = EmbeddedChannel()
        let recorder = EngineWebSocketHandlerTests.Recorder()
        let engine: EngineServer
        let session: EngineSession

        init() throws {
            let recorder = self.recorder
            engine = EngineServer(configuration: EngineConfiguration(), logger: Logger(label: "test"), metrics: EngineMetrics()) {
                $0.delegate = recorder.delegate
            }
            session = try #require(engine.openSession(transport: .polling, on: channel.embeddedEventLoop))
            try channel.pipeline.syncOperations.addHandler(
                EngineWebSocketHandler(engine: engine, sid: session.sid, token: nil, maxPayload: 1_000)
            )
            channel.embeddedEventLoop.run()
        }

        deinit {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            try? channel.embeddedEventLoop.syncShutdownGracefully()
        }

        func send(_ text: String) throws {
            try channel.writeInbound(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
            channel.embeddedEventLoop.run()
        }

        func written() throws -> [String] {
            var frames: [String] = []
            while let frame = try channel.readOutbound(as: WebSocketFrame.self) {
                frames.append(frame.opcode == .connectionClose ? "<close>" : String(buffer: frame.data))
            }
            return frames
        }
    }

    @Test func probeThenUpgradeMovesTheSessionToTheWebSocket() throws {
        let h = try Harness()
        let poll = FakePoll()
        #expect(h.session.pollArrived(poll) == nil)
        #expect(h.session.isUpgrading)
        try h.send("2probe")
        #expect(try h.written() == ["3probe"])
        #expect(poll.payloads == ["6"], "the held GET is released with a noop")
        h.session.send(textFrame("4queued"))
        try h.send("5")
        #expect(!h.session.isPolling)
        #expect(try h.written() == ["4queued"])
        try h.send("4hello")
        #expect(h.recorder.delegate.events == [.text("hello")])
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(25))
        #expect(try h.written() == ["2"], "the heartbeat moved to the websocket")
    }

    @Test func aProbeThatSendsSomethingElseIsClosedAndTheSessionStaysOnPolling() throws {
        let h = try Harness()
        try h.send("4hello")
        #expect(try h.written() == ["<close>"])
        #expect(h.session.isPolling)
        #expect(!h.session.isUpgrading)
        #expect(!h.session.isClosed)
        #expect(h.recorder.delegate.events == [])
    }

    @Test func theUpgradeTimeoutClosesTheProbe() throws {
        let h = try Harness()
        try h.send("2probe")
        _ = try h.written()
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(10))
        #expect(try h.written() == ["<close>"])
        #expect(h.session.isPolling)
        #expect(!h.session.isClosed)
    }
}
