extension RedisConfiguration {
    /// Reads `redis://[[username]:password@]host[:port][/db]`, keeping every other setting of `defaults`.
    ///
    /// The user name and password may be percent-encoded (`%40` for `@`). An IPv6 host goes in brackets
    /// (`redis://[::1]:6379`). The port defaults to 6379. TLS (`rediss://`) and query parameters are refused rather
    /// than ignored. Errors never echo the password.
    public init(url: String, defaults: RedisConfiguration = RedisConfiguration()) throws(RedisError) {
        self = defaults
        let redacted = Self.redact(url)
        func invalid(_ reason: String) -> RedisError { .invalidURL(redacted, reason: reason) }

        let schemeEnd = url.firstRange(of: "://")
        guard let schemeEnd else { throw invalid("expected redis://host:port") }
        switch url[..<schemeEnd.lowerBound].lowercased() {
        case "redis":
            break
        case "rediss":
            throw invalid("TLS (rediss://) is not supported")
        default:
            throw invalid("the scheme must be redis://")
        }
        let rest = url[schemeEnd.upperBound...]
        if rest.contains("?") || rest.contains("#") {
            throw invalid("query parameters and fragments are not supported")
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...]

        self.username = nil
        self.password = nil
        if let at = authority.lastIndex(of: "@") {
            let userinfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                guard let username = Self.percentDecoded(userinfo[..<colon]),
                    let password = Self.percentDecoded(userinfo[userinfo.index(after: colon)...])
                else { throw invalid("bad percent-encoding in the user info") }
                self.username = username.isEmpty ? nil : username
                self.password = password
            } else {
                // `redis://secret@host`: a lone user info is a password, as redis-cli and most clients read it.
                guard let password = Self.percentDecoded(userinfo) else {
                    throw invalid("bad percent-encoding in the user info")
                }
                self.password = password
            }
        }

        var portText: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw invalid("unclosed [ in the IPv6 host") }
            self.host = String(authority[authority.index(after: authority.startIndex)..<close])
            let afterHost = authority[authority.index(after: close)...]
            if !afterHost.isEmpty {
                guard afterHost.first == ":" else { throw invalid("expected :port after the IPv6 host") }
                portText = afterHost.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            self.host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        } else {
            self.host = String(authority)
        }
        guard !self.host.isEmpty else { throw invalid("the host is missing") }
        if let portText {
            guard let port = Int(portText), (1...65_535).contains(port) else {
                throw invalid("the port must be a number in 1...65535")
            }
            self.port = port
        } else {
            self.port = 6379
        }

        self.database = nil
        if path.count > 1 {
            guard let database = Int(path.dropFirst()), database >= 0 else {
                throw invalid("the path must be a database number (/0, /1, …)")
            }
            self.database = database
        }
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The URL with any user info replaced by `***`, for error messages and logs.
    private static func redact(_ url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + "***" + String(rest[at...])
    }
}
