import NIOHTTP1
import Testing

@testable import EngineIO

@Suite("CORS")
struct CORSTests {
    static func request(_ method: HTTPMethod = .GET, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(
            version: .http1_1,
            method: method,
            uri: "/socket.io/?EIO=4&transport=polling",
            headers: HTTPHeaders(headers)
        )
    }

    static func lines(_ headers: HTTPHeaders) -> [String] {
        headers.map { "\($0.name): \($0.value)" }
    }

    let any = CORS(allowedOrigins: nil)
    let restricted = CORS(allowedOrigins: ["https://app.example", "http://localhost:5173"])

    /// Finding 12: with no allowed origins configured, any origin is answered `*` and never with credentials.
    @Test func anyOriginGetsAStarWithoutCredentials() {
        let headers = any.headers(for: Self.request(.GET, [("Origin", "https://evil.example")]))
        #expect(Self.lines(headers) == ["Access-Control-Allow-Origin: *"])
    }

    @Test func withoutAnOriginEveryOriginIsAllowed() {
        #expect(Self.lines(any.headers(for: Self.request())) == ["Access-Control-Allow-Origin: *"])
        #expect(Self.lines(restricted.headers(for: Self.request())) == ["Access-Control-Allow-Origin: *"])
    }

    @Test func anAllowedOriginIsEchoed() {
        let headers = restricted.headers(for: Self.request(.POST, [("origin", "http://localhost:5173")]))
        #expect(headers.first(name: "access-control-allow-origin") == "http://localhost:5173")
        #expect(headers.first(name: "access-control-allow-credentials") == "true")
    }

    @Test func aDisallowedOriginGetsNoCORSHeaders() {
        let request = Self.request(.GET, [("Origin", "https://evil.example")])
        #expect(restricted.headers(for: request).isEmpty)
        #expect(restricted.preflightHeaders(for: Self.request(.OPTIONS, [("Origin", "https://evil.example")])).isEmpty)
        #expect(!restricted.isAllowed("https://evil.example"))
        #expect(!restricted.isAllowed("https://app.example.evil"))
        #expect(restricted.isAllowed("https://app.example"))
        #expect(restricted.isAllowed(nil))
        #expect(any.isAllowed("https://evil.example"))
    }

    @Test func preflightAllowsGetAndPostAndEchoesRequestedHeaders() {
        let request = Self.request(
            .OPTIONS,
            [
                ("Origin", "https://app.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type,x-token"),
            ]
        )
        #expect(
            Self.lines(restricted.preflightHeaders(for: request)) == [
                "Access-Control-Allow-Origin: https://app.example",
                "Access-Control-Allow-Credentials: true",
                "Vary: Origin",
                "Access-Control-Allow-Methods: GET,POST",
                "Access-Control-Allow-Headers: content-type,x-token",
                "Vary: Access-Control-Request-Headers",
                "Access-Control-Max-Age: 86400",
            ]
        )
    }

    @Test func preflightWithoutRequestedHeadersAllowsNone() {
        let request = Self.request(.OPTIONS, [("Origin", "https://app.example")])
        let headers = any.preflightHeaders(for: request)
        #expect(headers.first(name: "Access-Control-Allow-Methods") == "GET,POST")
        #expect(headers.first(name: "Access-Control-Max-Age") == "86400")
        #expect(!headers.contains(name: "Access-Control-Allow-Headers"))
        #expect(headers.first(name: "Access-Control-Allow-Origin") == "*")
        #expect(!headers.contains(name: "Access-Control-Allow-Credentials"))
        #expect(headers[canonicalForm: "Vary"] == [])
    }
}
