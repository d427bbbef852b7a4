import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import EngineIO

/// The first handler of every connection on an EmbeddedChannel (virtual time): connection limits, the PROXY
/// header and the HTTP timeouts (issue 11, findings 5 and 6).
@Suite struct ConnectionGuardHandlerTests {
    final class Harness {
        let channel = EmbeddedChannel()
        let handler: ConnectionGuardHandler

        init(
            configuration: ConnectionConfiguration = Harness.timeouts(),
            limiter: ConnectionLimiter = ConnectionLimiter(maximum: 100, maximumPerAddress: 0),
            peer: String = "192.0.2.10"
        ) throws {
            handler = ConnectionGuardHandler(configuration: configuration, limiter: limiter, metrics: EngineMetrics())
            try channel.pipeline.syncOperations.addHandler(handler)
            // An embedded channel's remote address is where it "connects": the client here.
            try channel.connect(to: SocketAddress(ipAddress: peer, port: 5000)).wait()
        }

        static func timeouts() -> ConnectionConfiguration {
            var configuration = ConnectionConfiguration()
            configuration.requestTimeout = .seconds(2)
            configuration.idleTimeout = .seconds(5)
            return configuration
        }

        deinit {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            try? channel.embeddedEventLoop.syncShutdownGracefully()
        }

        var loop: EmbeddedEventLoop { channel.embeddedEventLoop }
        var isOpen: Bool { channel.isActive }

        func receive(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
        }

        func forwarded() throws -> String {
            var text = ""
            while let buffer = try channel.readInbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }
    }

    @Test func aConnectionThatSendsNothingIsClosedAfterTheRequestTimeout() throws {
        let h = try Harness()
        h.loop.advanceTime(by: .milliseconds(1_999))
        #expect(h.isOpen)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!h.isOpen)
    }

    @Test func aFirstRequestTrickledInIsCutAtTheRequestTimeout() throws {
        let h = try Harness()
        for _ in 0..<19 {
            try h.receive("G")
            h.loop.advanceTime(by: .milliseconds(100))
        }
        #expect(h.isOpen)
        h.loop.advanceTime(by: .milliseconds(100))
        #expect(!h.isOpen, "bytes do not extend the deadline")
    }

    @Test func aRequestInFlightIsNeverTimedOut() throws {
        let h = try Harness()
        try h.receive("GET /socket.io/?… HTTP/1.1\r\n\r\n")
        h.handler.requestReceived()  // a held poll
        h.loop.advanceTime(by: .seconds(60))
        #expect(h.isOpen)
        h.handler.responseFinished()
        h.loop.advanceTime(by: .milliseconds(4_999))
        #expect(h.isOpen)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!h.isOpen, "idle after the response")
    }

    @Test func theNextRequestGetsTheRequestTimeoutFromItsFirstByte() throws {
        let h = try Harness()
        try h.receive("GET / HTTP/1.1\r\n\r\n")
        h.handler.requestReceived()
        h.handler.responseFinished()
        h.loop.advanceTime(by: .seconds(4))
        try h.receive("GET /")  // 4 s into the idle period: 2 s from now, not 1
        h.loop.advanceTime(by: .milliseconds(1_999))
        #expect(h.isOpen)
        h.loop.advanceTime(by: .milliseconds(1))
        #expect(!h.isOpen)
    }

    @Test func pipelinedRequestsStayInFlightUntilTheLastResponse() throws {
        let h = try Harness()
        try h.receive("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        h.handler.requestReceived()
        h.handler.requestReceived()
        h.handler.responseFinished()
        h.loop.advanceTime(by: .seconds(30))
        #expect(h.isOpen)
    }

    @Test func anUpgradedConnectionIsNotTimed() throws {
        let h = try Harness()
        try h.receive("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n")
        h.handler.upgraded()
        h.loop.advanceTime(by: .seconds(600))
        #expect(h.isOpen)
        try h.receive("frame")
        #expect(try h.forwarded().hasSuffix("frame"))
    }

    @Test func connectionsPerAddressAndPerNodeAreCounted() throws {
        let limiter = ConnectionLimiter(maximum: 3, maximumPerAddress: 2)
        let a1 = try Harness(limiter: limiter, peer: "192.0.2.1")
        let a2 = try Harness(limiter: limiter, peer: "192.0.2.1")
        let a3 = try Harness(limiter: limiter, peer: "192.0.2.1")
        #expect(a1.isOpen && a2.isOpen && !a3.isOpen)
        let b1 = try Harness(limiter: limiter, peer: "192.0.2.2")
        let b2 = try Harness(limiter: limiter, peer: "192.0.2.2")
        #expect(b1.isOpen && !b2.isOpen, "the node holds 3")
        #expect(limiter.count == 3)
        try a1.channel.close().wait()
        #expect(limiter.count == 2)
        let a4 = try Harness(limiter: limiter, peer: "192.0.2.1")
        #expect(a4.isOpen)
    }

    @Test func aTrustedProxyIsNotLimitedPerAddressButItsForwardedClientIsResolved() throws {
        var configuration = Harness.timeouts()
        configuration.trustedProxies = [IPNetwork("10.0.0.0/8")!]
        let limiter = ConnectionLimiter(maximum: 100, maximumPerAddress: 1)
        let p1 = try Harness(configuration: configuration, limiter: limiter, peer: "10.0.0.1")
        let p2 = try Harness(configuration: configuration, limiter: limiter, peer: "10.0.0.1")
        #expect(p1.isOpen && p2.isOpen)
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["X-Forwarded-For": "203.0.113.9"])
        #expect(p1.handler.clientAddress(for: head)?.description == "203.0.113.9")
        let direct = try Harness(configuration: configuration, limiter: limiter, peer: "192.0.2.7")
        #expect(direct.handler.clientAddress(for: head)?.description == "192.0.2.7")
    }

    @Test func aProxyHeaderNamesTheClientAndTheRestIsHTTP() throws {
        var configuration = Harness.timeouts()
        configuration.proxyProtocol = true
        let h = try Harness(configuration: configuration, peer: "127.0.0.1")
        try h.receive("PROXY TCP4 198.51.100.4 127.0.0.1 3333 4000\r")
        #expect(try h.forwarded() == "")
        try h.receive("\nGET / HTTP/1.1\r\n\r\n")
        #expect(try h.forwarded() == "GET / HTTP/1.1\r\n\r\n")
        #expect(h.handler.connectionAddress?.description == "198.51.100.4")
    }

    @Test func aConnectionWithoutAValidProxyHeaderIsClosed() throws {
        var configuration = Harness.timeouts()
        configuration.proxyProtocol = true
        let h = try Harness(configuration: configuration, peer: "127.0.0.1")
        try h.receive("GET / HTTP/1.1\r\n\r\n")
        #expect(!h.isOpen)
        #expect(try h.forwarded() == "")
    }

    @Test func withTrustedProxiesOnlyTheyMaySendAProxyHeader() throws {
        var configuration = Harness.timeouts()
        configuration.proxyProtocol = true
        configuration.trustedProxies = [IPNetwork("127.0.0.1")!]
        let h = try Harness(configuration: configuration, peer: "192.0.2.50")
        #expect(!h.isOpen)
    }
}
