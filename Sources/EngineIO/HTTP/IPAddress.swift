

/// An IPv4 or IPv6 address, parsed from text strictly (no ports, zones, brackets or leading zeros in IPv4 parts)
/// and printed canonically (dotted quad; RFC 5952 for IPv6, with IPv4-mapped IPv6 addresses printed as IPv4).
///
/// Client addresses come from untrusted text (`X-Forwarded-For`, PROXY protocol v1), so parsing accepts only the
/// plain forms and never allocates more than the address itself.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    /// The 128 bits as two big-endian halves.
    case v6(high: UInt64, low: UInt64)

    /// Parses `1.2.3.4` or an IPv6 address (`::1`, `2001:db8::1`, `::ffff:1.2.3.4`). An IPv4-mapped IPv6 address
    /// becomes its IPv4 address, so one client has one key whichever way its proxy writes it.
    public init?(_ text: some StringProtocol) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 45 else { return nil }
        if let v4 = Self.parseV4(bytes[...]) {
            self = .v4(v4)
        } else if let v6 = Self.parseV6(bytes) {
            self = v6.mappedV4.map { .v4($0) } ?? v6
        } else {
            return nil
        }
    }

    /// From network-order bytes: 4 (IPv4) or 16 (IPv6).
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            let high = bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = bytes.dropFirst(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let address = IPAddress.v6(high: high, low: low)
            self = address.mappedV4.map { .v4($0) } ?? address
        default:
            return nil
        }
    }

    /// The IPv4 address inside `::ffff:a.b.c.d`.
    private var mappedV4: UInt32? {
        guard case .v6(let high, let low) = self, high == 0, low >> 32 == 0xFFFF else { return nil }
        return UInt32(truncatingIfNeeded: low)
    }

    /// The key that groups the addresses one client is likely to control: the address itself for IPv4, the /64
    /// for IPv6 (a single host usually gets a whole /64).
    public var clientKey: String {
        switch self {
        case .v4: description
        case .v6(let high, _): IPAddress.v6(high: high, low: 0).description + "/64"
        }
    }

    public var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        case .v6(let high, let low):
            let groups = (0..<8).map { i -> UInt16 in
                let half = i < 4 ? high : low
                return UInt16(truncatingIfNeeded: half >> (UInt64(3 - i % 4) * 16))
            }
            // The longest run of two or more zero groups becomes "::" (the first one on a tie).
            var best = (start: -1, length: 1)
            var i = 0
            while i < 8 {
                guard groups[i] == 0 else {
                    i += 1
                    continue
                }
                var j = i
                while j < 8, groups[j] == 0 { j += 1 }
                if j - i > best.length { best = (i, j - i) }
                i = j
            }
            func hex(_ range: Range<Int>) -> String {
                groups[range].map { String($0, radix: 16) }.joined(separator: ":")
            }
            guard best.start >= 0 else { return hex(0..<8) }
            return hex(0..<best.start) + "::" + hex((best.start + best.length)..<8)
        }
    }

    // MARK: parsing

    private static func parseV4(_ bytes: ArraySlice<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var part: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, parts < 3 else { return nil }
                value = value << 8 | part
                parts += 1
                part = 0
                digits = 0
                leadingZero = false
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), !leadingZero, digits < 3 else { return nil }
            if digits == 0 && byte == UInt8(ascii: "0") { leadingZero = true }
            part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
            digits += 1
            guard part <= 255 else { return nil }
        }
        guard digits > 0, parts == 3 else { return nil }
        return value << 8 | part
    }

    private static func parseV6(_ bytes: [UInt8]) -> IPAddress? {
        // Split on "::" at most once; each side is a list of groups, the last one may be an IPv4 address.
        var groups: [UInt16] = []
        var gap: Int?  // index in `groups` where "::" stands
        var index = 0
        let count = bytes.count
        if count >= 2, bytes[0] == UInt8(ascii: ":") {
            guard bytes[1] == UInt8(ascii: ":") else { return nil }
            gap = 0
            index = 2
        }
        while index < count {
            // One group: 1-4 hex digits, or a trailing IPv4 address.
            var end = index
            while end < count, bytes[end] != UInt8(ascii: ":") { end += 1 }
            let field = bytes[index..<end]
            if field.contains(UInt8(ascii: ".")) {
                guard end == count, groups.count <= 6, let v4 = parseV4(field) else { return nil }
                groups.append(UInt16(truncatingIfNeeded: v4 >> 16))
                groups.append(UInt16(truncatingIfNeeded: v4))
                index = end
                break
            }
            guard (1...4).contains(field.count), groups.count < 8 else { return nil }
            var group: UInt16 = 0
            for byte in field {
                guard let digit = hexDigit(byte) else { return nil }
                group = group << 4 | UInt16(digit)
            }
            groups.append(group)
            index = end
            guard index < count else { break }
            // At a ':'; "::" marks the gap (once), a single ':' must be followed by another group.
            index += 1
            if index < count, bytes[index] == UInt8(ascii: ":") {
                guard gap == nil else { return nil }
                gap = groups.count
                index += 1
            } else if index == count {
                return nil
            }
        }
        if let gap {
            guard groups.count < 8 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: gap)
        }
        guard groups.count == 8 else { return nil }
        let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return .v6(high: high, low: low)
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A CIDR block (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128), for `--trusted-proxies`.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let maximum = IPAddress.isV6Text(parts[0]) ? 128 : 32
        var length = maximum
        if parts.count == 2 {
            guard parts[1].utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                let given = Int(parts[1]), (0...maximum).contains(given)
            else { return nil }
            // `::ffff:10.0.0.0/104` is stored as the IPv4 network 10.0.0.0/8.
            if case .v4 = address, IPAddress.isV6Text(parts[0]) {
                guard given >= 96 else { return nil }
                length = given - 96
            } else {
                length = given
            }
        }
        self.address = address
        self.prefixLength = length
    }

    public func contains(_ other: IPAddress) -> Bool {
        switch (address, other) {
        case (.v4(let network), .v4(let value)):
            guard prefixLength > 0 else { return true }
            let mask = UInt32.max << UInt32(32 - prefixLength)
            return network & mask == value & mask
        case (.v6(let nHigh, let nLow), .v6(let high, let low)):
            func masked(_ word: UInt64, bits: Int) -> UInt64 {
                bits <= 0 ? 0 : bits >= 64 ? word : word & (UInt64.max << UInt64(64 - bits))
            }
            return masked(nHigh, bits: prefixLength) == masked(high, bits: prefixLength)
                && masked(nLow, bits: prefixLength - 64) == masked(low, bits: prefixLength - 64)
        default:
            return false
        }
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

extension IPAddress {
    fileprivate static func isV6Text(_ text: some StringProtocol) -> Bool { text.contains(":") }
}
