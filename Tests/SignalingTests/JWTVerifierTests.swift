import SocketIO
import Foundation
import Testing

@testable import Signaling

/// Issue 11, finding 11: the verifier fails closed.
@Suite("JWT verifier")
struct JWTVerifierTests {
    /// Tokens signed HS256 with "unit-secret" (made with Python's hmac).
    static let valid =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwLCJyb29tcyI6WyJhIiwiYiJdfQ.jMvecWnq1jCLW1ew1xpDg82zL-FK7iYO-w3w03-sSKs"
    /// Header `{"alg":"HS256","crit":["x"],"x":1}`.
    static let critical =
        "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsieCJdLCJ4IjoxfQ.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwfQ.c79gz8CpOiRNtc8auIj0TWWdxJLoPVvWWEQL4k04z28"
    /// Claims `{"sub":"u","exp":2000,"exp":500}`.
    static let duplicateExp =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwLCJleHAiOjUwMH0.8t5FQvXiPJyoS_0XiiOlAS8aa3fEPbX_9Z5hR2EG_Yk"

    static func verifier() throws -> JWTVerifier {
        try JWTVerifier(secret: "unit-secret", rsaPublicKeyPEM: nil)
    }

    /// The verifier's failure, or nil when `body` succeeds. (Any other error is a test bug and fails the caller's
    /// comparison.)
    static func failure(_ body: () throws -> Void) -> JWTVerifier.Failure? {
        do {
            try body()
            return nil
        } catch {
            return error as? JWTVerifier.Failure ?? .invalidClaim("unexpected error \(error)")
        }
    }

    @Test func validTokenGivesItsExpiryAndRooms() throws {
        let token = try Self.verifier().verify(Self.valid, now: 1000)
        #expect(token.expiry == 2000)
        #expect(token.rooms == ["a", "b"])
    }

    @Test func signedTokensThatMustFail() throws {
        let v = try Self.verifier()
        #expect(Self.failure { _ = try v.verify(Self.valid, now: 2006) } == .expired)
        #expect(Self.failure { _ = try v.verify(Self.critical, now: 1000) } == .unsupportedCriticalHeader)
        // a duplicate claim counts with its last value, as JSON.parse reads it
        #expect(Self.failure { _ = try v.verify(Self.duplicateExp, now: 1000) } == .expired)
        let parts = Self.valid.split(separator: ".").map(String.init)
        // base64url only: no padding, no '+' or '/'
        #expect(Self.failure { _ = try v.verify(parts[0] + "=." + parts[1] + "." + parts[2], now: 1000) } == .malformed)
        let swapped = parts[2].replacingOccurrences(of: "-", with: "+")
        #expect(Self.failure { _ = try v.verify(parts[0] + "." + parts[1] + "." + swapped, now: 1000) } == .malformed)
        #expect(Self.failure { _ = try v.verify(parts[0] + "." + parts[1] + "." + parts[2].dropLast(2) + "AA", now: 1000) } == .badSignature)
        #expect(Self.failure { _ = try v.verify(parts[0] + "." + parts[1], now: 1000) } == .malformed)
        #expect(Self.failure { _ = try v.verify(String(repeating: "a", count: 9000), now: 1000) } == .tooLong)
        let none = try JWTVerifier(secret: nil, rsaPublicKeyPEM: nil)
        #expect(Self.failure { _ = try none.verify(Self.valid, now: 1000) } == .unsupportedAlgorithm("HS256"))
    }

    @Test(arguments: [
        (#"{"exp":"3000"}"#, JWTVerifier.Failure.invalidClaim("exp")),
        (#"{"exp":"500"}"#, .invalidClaim("exp")),
        (#"{"exp":null}"#, .invalidClaim("exp")),
        (#"{"exp":true}"#, .invalidClaim("exp")),
        (#"{"exp":[3000]}"#, .invalidClaim("exp")),
        (#"{"exp":994}"#, .expired),
        (#"{"sub":"u"}"#, .missingClaim("exp")),
        (#"{"exp":3000,"nbf":"0"}"#, .invalidClaim("nbf")),
        (#"{"exp":3000,"nbf":1006}"#, .notYetValid),
        (#"{"exp":3000,"iat":"now"}"#, .invalidClaim("iat")),
        (#"{"exp":3000,"rooms":"a"}"#, .invalidClaim("rooms")),
        (#"{"exp":3000,"rooms":{"a":1}}"#, .invalidClaim("rooms")),
        (#"{"exp":3000,"rooms":["a",1]}"#, .invalidClaim("rooms")),
        (#"{"exp":3000,"rooms":null}"#, .invalidClaim("rooms")),
    ])
    func claimsThatFail(claims: String, expected: JWTVerifier.Failure) throws {
        let v = try Self.verifier()
        let parsed = try PacketValue.parseJSON(claims)
        #expect(Self.failure { _ = try v.check(parsed, now: 1000) } == expected)
    }

    @Test func claimsThatPass() throws {
        var v = try Self.verifier()
        #expect(try v.check(PacketValue.parseJSON(#"{"exp":996}"#), now: 1000).expiry == 996)  // within the leeway
        #expect(try v.check(PacketValue.parseJSON(#"{"exp":3000,"nbf":1004}"#), now: 1000).rooms == nil)
        #expect(try v.check(PacketValue.parseJSON(#"{"exp":3000,"rooms":[]}"#), now: 1000).rooms == [])
        v.requireExpiry = false
        #expect(try v.check(PacketValue.parseJSON(#"{"sub":"u"}"#), now: 1000).expiry == nil)
        v.leeway = 0
        #expect(Self.failure { _ = try v.check(PacketValue.parseJSON(#"{"exp":999}"#), now: 1000) } == .expired)
    }

    @Test func audienceAndIssuer() throws {
        var v = try Self.verifier()
        v.audience = "signal"
        v.issuer = "https://auth.example"
        func check(_ json: String) -> JWTVerifier.Failure? {
            Self.failure { _ = try v.check(PacketValue.parseJSON(json), now: 1000) }
        }
        let iss = #""iss":"https://auth.example""#
        #expect(check(#"{"exp":3000,"aud":"signal","# + iss + "}") == nil)
        #expect(check(#"{"exp":3000,"aud":["x","signal"],"# + iss + "}") == nil)
        #expect(check(#"{"exp":3000,"# + iss + "}") == .missingClaim("aud"))
        #expect(check(#"{"exp":3000,"aud":"other","# + iss + "}") == .wrongAudience)
        #expect(check(#"{"exp":3000,"aud":["a","b"],"# + iss + "}") == .wrongAudience)
        #expect(check(#"{"exp":3000,"aud":["signal",5],"# + iss + "}") == .invalidClaim("aud"))
        #expect(check(#"{"exp":3000,"aud":5,"# + iss + "}") == .invalidClaim("aud"))
        #expect(check(#"{"exp":3000,"aud":"signal"}"#) == .missingClaim("iss"))
        #expect(check(#"{"exp":3000,"aud":"signal","iss":"https://evil.example"}"#) == .wrongIssuer)
        #expect(check(#"{"exp":3000,"aud":"signal","iss":7}"#) == .invalidClaim("iss"))
    }

    @Test func turnCredentialsDoNotOutliveTheToken() {
        var ice = ICEServerConfiguration()
        ice.turnURLs = ["turn:t.example:3478"]
        ice.turnSecret = "s"
        ice.credentialLifetime = 86_400
        func expiry(_ notAfter: Double?) -> String? {
            ice.iceServers(for: "sock", notAfter: notAfter, now: 1000).arrayValue?.first?["username"]?.stringValue
        }
        #expect(expiry(nil) == "87400:sock")
        #expect(expiry(5000.7) == "5000:sock")
        #expect(expiry(1e300) == "87400:sock")
        #expect(expiry(-5) == "0:sock")
    }
}

/// More tokens that must fail, signed with Python's hmac (HS256, "unit-secret" unless said otherwise).
@Suite("JWT verifier: headers and keys")
struct JWTVerifierHeaderTests {
    /// `{"alg":"none"}`.
    static let algNone = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwfQ.D6yA8NEYy9CYzdxlAVfzPvRBIDGe8SjI0iMs4HimtBY"
    /// `{"typ":"JWT"}`: no alg at all.
    static let noAlg = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwfQ.wTZfxiiir8cM8m50JmQ-EbWPRNWbGYrV2aM2LYayyQc"
    /// Signed with "other-secret".
    static let wrongSecret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwfQ.KEnuQFUXXqGid3RffbnCMIgUu4RXdWtjaFdjuCfCzqo"
    /// Header `["HS256"]`: JSON, but not an object.
    static let headerArray = "WyJIUzI1NiJd.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwfQ.5f-bol1HkbmR55MgrUBfQVhgKM_7ZNUcuaGTKWGq7Hs"
    /// Claims `exp=2000`: not JSON.
    static let claimsNotJSON = "eyJhbGciOiJIUzI1NiJ9.ZXhwPTIwMDA.1tsw6oPVL_ESKQXo_-PMiZjENABLdr3ZoqlMamWmSIw"
    /// `{"alg":"RS256"}` with an HMAC signature: a verifier with only the shared secret must not accept it.
    static let rs256 = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwfQ.7RSw1zpPaRBRnagdRRlMlK1uvmEXdugOmavSCv8QO3g"

    @Test(arguments: [
        (algNone, JWTVerifier.Failure.unsupportedAlgorithm("none")),
        (noAlg, .unsupportedAlgorithm("none")),
        (wrongSecret, .badSignature),
        (headerArray, .malformed),
        (claimsNotJSON, .malformed),
        (rs256, .unsupportedAlgorithm("RS256")),
        ("", .malformed),
        ("..", .malformed),
        ("a.b.c.d", .malformed),
    ])
    func tokensThatFail(token: String, expected: JWTVerifier.Failure) throws {
        let v = try JWTVerifierTests.verifier()
        #expect(JWTVerifierTests.failure { _ = try v.verify(token, now: 1000) } == expected)
    }

    @Test func aTokenOfExactlyTheMaximumLengthIsRead() throws {
        var v = try JWTVerifierTests.verifier()
        v.maximumTokenLength = JWTVerifierTests.valid.utf8.count
        #expect(JWTVerifierTests.failure { _ = try v.verify(JWTVerifierTests.valid, now: 1000) } == nil)
        v.maximumTokenLength -= 1
        #expect(JWTVerifierTests.failure { _ = try v.verify(JWTVerifierTests.valid, now: 1000) } == .tooLong)
    }

    @Test func aKeyThatIsNotPEMIsRefusedAtInit() {
        #expect(throws: (any Error).self) { try JWTVerifier(secret: nil, rsaPublicKeyPEM: "not a key") }
    }

    /// A throwaway RSA-2048 public key, and a token its private key signed RS256 (Python's cryptography):
    /// `{"sub":"u","exp":2000,"rooms":["r"]}`.
    static let rsaPublicKey = """
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAndKHkd1RCyJZHBadlN8P
        3zEIt8WeWlab/Qma0RuBrJRmVupQ64gC2ryx2bAEhoQ+2B1mluOWM+V9zF2h1nzv
        o/RAOpFLrZz21PzDg2uZxm3iFM1fzwVYYJmrVrwn7TY1khoR8ZFCtFSx+KqVOXWE
        b1EwFR0sPsRxpyH8QQ9jvIpAEvTBC7CpS0Bb/HmR0eBehzK855mssEOj8zFd6CZf
        g7h8oGvHijEZEv8svCizfPjnIKK4uCrv1ccbSB2KG2OfSlSEr7Zjpd7858Q53WJj
        CPH1q3UlvK+59eTfVzhZCUcLBp6S2NLyXPnbcD/TPQ6dFlfh4v0jGZCAcs7+VdrP
        jQIDAQAB
        -----END PUBLIC KEY-----
        """
    static let rs256Valid =
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1IiwiZXhwIjoyMDAwLCJyb29tcyI6WyJyIl19.WKerBoidjM9UfXNlqeMcmPSFWAg7hB7N1GE2eZ6pRC7zKN11N412UUxis07riJ_TpfltDfrX_fX0Y6uBVK9KWyfYbnZp6L_oSRV3Zg2lpMkg5QvKPnBWvTRJCOup2BGAIWbH6r7_HOULeeQKRMR8yT9boDbLZIHs8cWdhpJa8gDHOtZAdWTC0NjmdwYQi0UEvMSoRsuXL6L-ZpwL0uwFaf2KIaKv9o9_3StY47foC6a6DDXeYpTYqipkdWaYAhuO8fMcBG3h5uUNSgEUVL09aTxdYP_itDYAxXAnmav6xzRGftan5jweJrktpkcskOQpoyNOqCn-ZZGxHEmiB1Q0Kg"

    @Test func rs256TokensAreVerifiedWithThePublicKey() throws {
        let v = try JWTVerifier(secret: nil, rsaPublicKeyPEM: Self.rsaPublicKey)
        let token = try v.verify(Self.rs256Valid, now: 1000)
        #expect(token.expiry == 2000)
        #expect(token.rooms == ["r"])
        let parts = Self.rs256Valid.split(separator: ".").map(String.init)
        let otherClaims = "eyJzdWIiOiJ1IiwiZXhwIjo5MDAwfQ"  // {"sub":"u","exp":9000} under the same signature
        #expect(JWTVerifierTests.failure { _ = try v.verify(parts[0] + "." + otherClaims + "." + parts[2], now: 1000) } == .badSignature)
        // an HS256 token is refused by a verifier that has only the RSA key, and the reverse
        #expect(JWTVerifierTests.failure { _ = try v.verify(JWTVerifierTests.valid, now: 1000) } == .unsupportedAlgorithm("HS256"))
        let hmacOnly = try JWTVerifierTests.verifier()
        #expect(JWTVerifierTests.failure { _ = try hmacOnly.verify(Self.rs256Valid, now: 1000) } == .unsupportedAlgorithm("RS256"))
    }
}
