

/// The PROXY protocol header (HAProxy's `send-proxy` / `send-proxy-v2`) a load balancer puts at the start of a
/// TCP connection to tell the backend who the client is.
///
/// `parse(_:)` is a pure function over the bytes received so far: it says whether they hold a complete header
/// (and how long it is), need more bytes, or can never become a valid header. It is strict (exact v1 syntax,
/// v2 signature, version and command, address lengths) and bounded: a v1 header is at most 107 bytes and a v2
/// header at most `maximumV2Length`, so a peer cannot make the server buffer more.
public enum ProxyProtocol {
    /// The longest v1 header, CRLF included (the specification's limit).
    public static let maximumV1Length = 107
    /// The longest v2 header accepted: the 16-byte preamble, an IPv6 address block and room for TLVs.
    public static let maximumV2Length = 16 + 2048

    static let v1Prefix: [UInt8] = Array("PROXY ".utf8)
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// An address and port of the connection the proxy accepted.
    public struct Endpoint: Sendable, Hashable {
        public var address: IPAddress
        public var port: Int

        public init(_ address: IPAddress, _ port: Int) {
            self.address = address
            self.port = port
        }
    }

    public struct Header: Sendable, Hashable {
        public var version: Int
        /// The client; nil for v1 `UNKNOWN`, v2 `LOCAL` (the proxy's own health checks) and address families other
        /// than TCP/UDP over IPv4/IPv6: the connection's peer stands for the client then.
        public var source: Endpoint?
        /// The address the client connected to.
        public var destination: Endpoint?

        public init(version: Int, source: Endpoint? = nil, destination: Endpoint? = nil) {
            self.version = version
            self.source = source
            self.destination = destination
        }
    }

    public enum ParseError: Error, Sendable, Hashable {
        /// Neither a v1 nor a v2 header starts this way.
        case notProxyProtocol
        /// Longer than the limit without being complete.
        case tooLong
        /// Starts like a header but breaks the syntax.
        case malformed(String)
    }

    public enum ParseResult: Sendable, Hashable {
        /// A header of `length` bytes; the connection's own data starts after it.
        case header(Header, length: Int)
        /// Valid so far; wait for more bytes.
        case incomplete
        case invalid(ParseError)
    }

    /// Reads a v1 or v2 header at the start of `bytes` (the connection's first bytes).
    public static func parse(_ bytes: some Collection<UInt8>) -> ParseResult {
        let bytes = Array(bytes.prefix(maximumV2Length))
        if let first = bytes.first, first == v2Signature[0] {
            return parseV2(bytes)
        }
        return parseV1(bytes)
    }

    // MARK: v1

    private static func parseV1(_ bytes: [UInt8]) -> ParseResult {
        let prefixLength = min(bytes.count, v1Prefix.count)
        guard bytes[..<prefixLength].elementsEqual(v1Prefix[..<prefixLength]) else { return .invalid(.notProxyProtocol) }
        let window = bytes.prefix(maximumV1Length)
        guard let cr = window.firstIndex(of: 0x0D) else {
            if window.contains(0x0A) { return .invalid(.malformed("line feed without carriage return")) }
            return bytes.count >= maximumV1Length ? .invalid(.tooLong) : .incomplete
        }
        guard cr + 2 <= maximumV1Length else { return .invalid(.tooLong) }
        guard cr + 1 < bytes.count else { return .incomplete }
        guard bytes[cr + 1] == 0x0A else { return .invalid(.malformed("carriage return without line feed")) }
        let line = bytes[v1Prefix.count..<cr]
        guard !line.contains(0x0A) else { return .invalid(.malformed("line feed inside the header")) }
        let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        let length = cr + 2
        guard let family = fields.first else { return .invalid(.malformed("no protocol")) }
        switch String(decoding: family, as: UTF8.self) {
        case "UNKNOWN":
            // The rest of the line is ignored, as the specification says.
            return .header(Header(version: 1), length: length)
        case "TCP4", "TCP6":
            guard fields.count == 5 else { return .invalid(.malformed("expected 4 fields after the protocol")) }
            let isV4 = family.last == UInt8(ascii: "4")
            guard let source = address(fields[1], v4: isV4), let destination = address(fields[2], v4: isV4) else {
                return .invalid(.malformed("bad address"))
            }
            guard let sourcePort = port(fields[3]), let destinationPort = port(fields[4]) else {
                return .invalid(.malformed("bad port"))
            }
            return .header(Header(version: 1, source: Endpoint(source, sourcePort), destination: Endpoint(destination, destinationPort)), length: length)
        default:
            return .invalid(.malformed("unknown protocol"))
        }
    }

    private static func address(_ field: ArraySlice<UInt8>, v4: Bool) -> IPAddress? {
        guard !field.isEmpty, field.count <= 45, field.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        let text = String(decoding: field, as: UTF8.self)
        // The family must match the text: TCP4 with dotted quads, TCP6 with IPv6 text.
        guard v4 != text.contains(":"), let address = IPAddress(text) else { return nil }
        return address
    }

    /// 0...65535 in decimal, no sign and no leading zero.
    private static func port(_ field: ArraySlice<UInt8>) -> Int? {
        guard (1...5).contains(field.count), field.first != UInt8(ascii: "0") || field.count == 1 else { return nil }
        var value = 0
        for byte in field {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value <= 65535 ? value : nil
    }

    // MARK: v2

    private static func parseV2(_ bytes: [UInt8]) -> ParseResult {
        let signatureLength = min(bytes.count, v2Signature.count)
        guard bytes[..<signatureLength].elementsEqual(v2Signature[..<signatureLength]) else {
            return .invalid(.notProxyProtocol)
        }
        guard bytes.count >= 16 else { return .incomplete }
        let versionCommand = bytes[12]
        guard versionCommand >> 4 == 2 else { return .invalid(.malformed("version is not 2")) }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid(.malformed("unknown command")) }
        let familyProtocol = bytes[13]
        let bodyLength = Int(bytes[14]) << 8 | Int(bytes[15])
        let length = 16 + bodyLength
        guard length <= maximumV2Length else { return .invalid(.tooLong) }
        guard bytes.count >= length else { return .incomplete }
        let body = bytes[16..<length]
        let family = familyProtocol >> 4
        let transport = familyProtocol & 0x0F
        guard family <= 3, transport <= 2 else { return .invalid(.malformed("unknown address family or protocol")) }
        // The address block each family needs; a shorter body is an error even for LOCAL.
        let addressLength = [0, 12, 36, 216][Int(family)]
        guard body.count >= addressLength else { return .invalid(.malformed("address block too short")) }
        guard command == 1, transport != 0, family == 1 || family == 2 else {
            // LOCAL (the proxy's own connection), AF_UNSPEC or AF_UNIX: no client address to use.
            return .header(Header(version: 2), length: length)
        }
        let size = family == 1 ? 4 : 16
        let start = body.startIndex
        guard let source = IPAddress(bytes: body[start..<(start + size)]),
            let destination = IPAddress(bytes: body[(start + size)..<(start + 2 * size)])
        else { return .invalid(.malformed("bad address")) }
        let ports = start + 2 * size
        let sourcePort = Int(body[ports]) << 8 | Int(body[ports + 1])
        let destinationPort = Int(body[ports + 2]) << 8 | Int(body[ports + 3])
        return .header(Header(version: 2, source: Endpoint(source, sourcePort), destination: Endpoint(destination, destinationPort)), length: length)
    }
}
