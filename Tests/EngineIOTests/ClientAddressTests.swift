import NIOCore
import Testing

@testable import EngineIO

@Suite("IPAddress and IPNetwork")
struct IPAddressTests {
    @Test(arguments: [
        ("1.2.3.4", "1.2.3.4"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
        ("::1", "::1"), ("::", "::"), ("2001:DB8::1", "2001:db8::1"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"), ("::ffff:10.1.2.3", "10.1.2.3"), ("fe80::1:2.3.4.5", "fe80::1:203:405"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    ])
    func parsesAndPrintsCanonically(text: String, canonical: String) {
        #expect(IPAddress(text)?.description == canonical)
    }

    @Test(arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1..2.3", "1.2.3.", "a.b.c.d",
        ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "::1:2:3:4:5:6:7:8", "1:", ":1", "g::", "1.2.3.4::",
        "[::1]", "::1%eth0", "1:2:3:4:5:6:7:1.2.3.4", "-1.2.3.4", "+1.2.3.4",
    ])
    func refusesAnythingElse(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func ipv6ClientsAreKeyedByTheir64() {
        #expect(IPAddress("2001:db8:1:2:aaaa::1")?.clientKey == "2001:db8:1:2::/64")
        #expect(IPAddress("2001:db8:1:2:bbbb::9")?.clientKey == "2001:db8:1:2::/64")
        #expect(IPAddress("10.0.0.1")?.clientKey == "10.0.0.1")
    }

    @Test func networksContainTheirAddresses() throws {
        let ten = try #require(IPNetwork("10.0.0.0/8"))
        #expect(ten.contains(IPAddress("10.255.1.2")!))
        #expect(!ten.contains(IPAddress("11.0.0.1")!))
        #expect(!ten.contains(IPAddress("::1")!))
        let one = try #require(IPNetwork("127.0.0.1"))
        #expect(one.prefixLength == 32 && one.contains(IPAddress("127.0.0.1")!) && !one.contains(IPAddress("127.0.0.2")!))
        let v6 = try #require(IPNetwork("2001:db8::/32"))
        #expect(v6.contains(IPAddress("2001:db8:ffff::1")!))
        #expect(!v6.contains(IPAddress("2001:db9::1")!))
        #expect(IPNetwork("0.0.0.0/0")!.contains(IPAddress("8.8.8.8")!))
        #expect(IPNetwork("::ffff:10.0.0.0/104")?.description == "10.0.0.0/8")
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "::/129", "x/8", "10.0.0.0/8/8"] {
            #expect(IPNetwork(bad) == nil, "\(bad)")
        }
    }

    @Test func forwardedForIsReadFromTheRightSkippingTrustedHops() {
        var configuration = ConnectionConfiguration()
        configuration.trustedProxies = [IPNetwork("127.0.0.1")!, IPNetwork("10.0.0.0/8")!]
        let proxy = IPAddress("127.0.0.1")
        func client(_ peer: IPAddress?, _ header: [String]) -> String? {
            configuration.clientAddress(connection: peer, forwardedFor: header)?.description
        }
        #expect(client(proxy, ["203.0.113.1"]) == "203.0.113.1")
        #expect(client(proxy, ["1.1.1.1, 203.0.113.1, 10.1.1.1"]) == "203.0.113.1")
        #expect(client(proxy, ["1.1.1.1", "203.0.113.1"]) == "203.0.113.1")
        #expect(client(proxy, ["10.2.2.2, 10.1.1.1"]) == "10.2.2.2", "all trusted: the farthest hop")
        #expect(client(proxy, ["garbage, 10.1.1.1"]) == "10.1.1.1", "a malformed hop stops the walk")
        #expect(client(proxy, []) == "127.0.0.1")
        #expect(client(IPAddress("192.0.2.5"), ["203.0.113.1"]) == "192.0.2.5", "an untrusted peer is the client")
        #expect(client(nil, ["203.0.113.1"]) == nil)
    }
}

@Suite("ProxyProtocol")
struct ProxyProtocolTests {
    static func v2(command: UInt8 = 1, family: UInt8 = 0x11, body: [UInt8]) -> [UInt8] {
        ProxyProtocol.v2Signature + [0x20 | command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    @Test func v1TCP4() {
        let bytes = Array("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n".utf8)
        let header = ProxyProtocol.Header(
            version: 1,
            source: .init(IPAddress("192.0.2.1")!, 56324),
            destination: .init(IPAddress("198.51.100.2")!, 443)
        )
        #expect(ProxyProtocol.parse(bytes) == .header(header, length: 45))
    }

    @Test func v1TCP6AndUnknown() {
        let tcp6 = ProxyProtocol.parse(Array("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n".utf8))
        guard case .header(let header, _) = tcp6 else { Issue.record("\(tcp6)"); return }
        #expect(header.source?.address.description == "2001:db8::1")
        #expect(header.destination?.port == 65535)
        #expect(ProxyProtocol.parse(Array("PROXY UNKNOWN ffff::1 whatever\r\n".utf8)) == .header(.init(version: 1), length: 32))
    }

    @Test func partialHeadersWaitForMore() {
        let full = Array("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".utf8)
        for end in 0..<full.count {
            #expect(ProxyProtocol.parse(full[..<end]) == .incomplete, "\(end) bytes")
        }
        let v2 = Self.v2(body: [192, 0, 2, 1, 127, 0, 0, 1, 0x1F, 0x90, 0x0F, 0xA0])
        for end in 0..<v2.count {
            #expect(ProxyProtocol.parse(v2[..<end]) == .incomplete, "\(end) bytes")
        }
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    ])
    func malformedV1IsRefused(text: String) {
        guard case .invalid = ProxyProtocol.parse(Array(text.utf8)) else {
            Issue.record("accepted \(text.debugDescription)")
            return
        }
    }

    @Test func v1IsBoundedTo107Bytes() {
        let long = Array("PROXY UNKNOWN ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200)
        #expect(ProxyProtocol.parse(long) == .invalid(.tooLong))
        let exactly = Array("PROXY UNKNOWN ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 107 - 16) + Array("\r\n".utf8)
        #expect(exactly.count == 107)
        #expect(ProxyProtocol.parse(exactly) == .header(.init(version: 1), length: 107))
        let over = Array("PROXY UNKNOWN ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 107 - 15) + Array("\r\n".utf8)
        #expect(ProxyProtocol.parse(over) == .invalid(.tooLong))
    }

    @Test func v2ProxyTCP4WithTLVs() {
        let body: [UInt8] = [192, 0, 2, 1, 127, 0, 0, 1, 0x1F, 0x90, 0x0F, 0xA0, 0x04, 0x00, 0x01, 0x00]
        let bytes = Self.v2(body: body) + Array("GET".utf8)
        let header = ProxyProtocol.Header(
            version: 2,
            source: .init(IPAddress("192.0.2.1")!, 8080),
            destination: .init(IPAddress("127.0.0.1")!, 4000)
        )
        #expect(ProxyProtocol.parse(bytes) == .header(header, length: 16 + body.count))
    }

    @Test func v2ProxyTCP6() {
        var body = [UInt8](repeating: 0, count: 36)
        body[0] = 0x20
        body[1] = 0x01
        body[15] = 1
        body[31] = 1
        let result = ProxyProtocol.parse(Self.v2(family: 0x21, body: body))
        guard case .header(let header, _) = result else { Issue.record("\(result)"); return }
        #expect(header.source?.address.description == "2001::1")
    }

    @Test func v2LocalAndUnspecHaveNoSource() {
        #expect(ProxyProtocol.parse(Self.v2(command: 0, family: 0, body: [])) == .header(.init(version: 2), length: 16))
        #expect(ProxyProtocol.parse(Self.v2(command: 1, family: 0, body: [])) == .header(.init(version: 2), length: 16))
        let unix = Self.v2(command: 1, family: 0x31, body: [UInt8](repeating: 0, count: 216))
        #expect(ProxyProtocol.parse(unix) == .header(.init(version: 2), length: 16 + 216))
    }

    @Test func malformedV2IsRefused() {
        var badVersion = Self.v2(body: [UInt8](repeating: 0, count: 12))
        badVersion[12] = 0x11
        #expect(ProxyProtocol.parse(badVersion) == .invalid(.malformed("version is not 2")))
        #expect(ProxyProtocol.parse(Self.v2(command: 2, body: [])) == .invalid(.malformed("unknown command")))
        #expect(ProxyProtocol.parse(Self.v2(family: 0x41, body: [])) == .invalid(.malformed("unknown address family or protocol")))
        #expect(ProxyProtocol.parse(Self.v2(body: [1, 2, 3])) == .invalid(.malformed("address block too short")))
        var badSignature = Self.v2(body: [])
        badSignature[5] = 0
        #expect(ProxyProtocol.parse(badSignature) == .invalid(.notProxyProtocol))
        let huge = ProxyProtocol.v2Signature + [0x21, 0x11, 0xFF, 0xFF]
        #expect(ProxyProtocol.parse(huge) == .invalid(.tooLong))
    }
}

@Suite("AddressRateLimiter")
struct AddressRateLimiterTests {
    @Test func eachAddressHasItsOwnBucket() {
        let limiter = AddressRateLimiter(rate: 1, burst: 2)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(limiter.allow("a", now: t0))
        #expect(limiter.allow("a", now: t0))
        #expect(!limiter.allow("a", now: t0))
        #expect(limiter.allow("b", now: t0))
        #expect(!limiter.allow("a", now: t0 + .milliseconds(999)))
        #expect(limiter.allow("a", now: t0 + .milliseconds(1_999)))
    }

    @Test func theTableStaysBounded() {
        let limiter = AddressRateLimiter(rate: 1, burst: 5, maximumEntries: 64)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for i in 0..<10_000 {
            #expect(limiter.allow("addr-\(i)", now: t0))
            #expect(limiter.count <= 64)
        }
    }

    @Test func refilledBucketsAreForgottenFirst() {
        let limiter = AddressRateLimiter(rate: 1, burst: 2, maximumEntries: 4)
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = limiter.allow("busy", now: t0 + .seconds(10))
        _ = limiter.allow("busy", now: t0 + .seconds(10))
        for i in 0..<3 { _ = limiter.allow("old-\(i)", now: t0) }
        // At the limit: the old buckets have refilled by now and go; the busy one stays empty.
        #expect(limiter.allow("new", now: t0 + .seconds(10)))
        #expect(!limiter.allow("busy", now: t0 + .seconds(10)))
    }
}
