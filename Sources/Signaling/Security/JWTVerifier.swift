import Crypto
import EngineIO
import _CryptoExtras
import Foundation
import SocketIO

/// Verifies the JSON Web Tokens that may gate the Socket.IO CONNECT: HS256 with a shared secret, RS256 with an
/// RSA public key (PEM). It fails closed: every claim it reads must have the type RFC 7519 gives it, or the token
/// is refused.
///
/// - `exp` (required unless ``requireExpiry`` is off) and `nbf` are numbers, checked with ``leeway``.
/// - `aud` (a string or an array of strings) must name ``audience`` when one is set; `iss` must equal ``issuer``.
/// - `rooms`, when present, is an array of strings: the rooms the holder may join.
/// - A `crit` header is refused (we understand no extension), and so is any `alg` but HS256/RS256 with its key.
/// - Claims are parsed by the server's JSON reader, so a duplicate claim counts with its last value, as
///   JavaScript issuers and verifiers read it.
///
/// Why not vapor/jwt-kit: we need two algorithms and six claims, about 150 lines that the fuzzers cover with
/// the rest of our parsers. jwt-kit would bring swift-certificates and swift-asn1 into every build (minutes of CI
/// on two cores) and decode claims with Foundation's `JSONDecoder`, whose duplicate-key rule is not the one the
/// rest of the server follows.
public struct JWTVerifier: Sendable {
    public enum Failure: Error, Hashable, CustomStringConvertible {
        case malformed
        case tooLong
        case unsupportedAlgorithm(String)
        case unsupportedCriticalHeader
        case badSignature
        case expired
        case notYetValid
        /// A required claim is absent.
        case missingClaim(String)
        /// A claim has the wrong type or value shape.
        case invalidClaim(String)
        case wrongAudience
        case wrongIssuer

        public var description: String {
            switch self {
            case .malformed: "malformed token"
            case .tooLong: "token too long"
            case .unsupportedAlgorithm(let alg): "unsupported algorithm \(alg)"
            case .unsupportedCriticalHeader: "unsupported crit header"
            case .badSignature: "invalid signature"
            case .expired: "token expired"
            case .notYetValid: "token not yet valid"
            case .missingClaim(let name): "the token has no \(name) claim"
            case .invalidClaim(let name): "invalid \(name) claim"
            case .wrongAudience: "token not meant for this audience"
            case .wrongIssuer: "token from another issuer"
            }
        }
    }

    /// A verified token: its claims and what the server uses of them.
    public struct Token: Sendable {
        public var claims: PacketValue
        /// `exp`, seconds since 1970; nil when the token has none (and none is required).
        public var expiry: Double?
        /// The `rooms` claim; nil allows any room.
        public var rooms: Set<String>?
    }

    private let hmacKey: SymmetricKey?
    private let rsaKey: _RSA.Signing.PublicKey?
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    public var leeway: Double = 5
    /// Whether a token without `exp` is refused.
    public var requireExpiry = true
    /// When set, `aud` must be this string or an array containing it.
    public var audience: String? = nil
    /// When set, `iss` must be this string.
    public var issuer: String? = nil
    /// Longer tokens are refused before any decoding.
    public var maximumTokenLength = 8192

    /// - Parameters:
    ///   - secret: the HS256 shared secret, if HS256 tokens are accepted.
    ///   - rsaPublicKeyPEM: the RS256 public key, if RS256 tokens are accepted.
    public init(secret: String?, rsaPublicKeyPEM: String?) throws {
        self.hmacKey = secret.map { SymmetricKey(data: Array($0.utf8)) }
        self.rsaKey = try rsaPublicKeyPEM.map { try _RSA.Signing.PublicKey(pemRepresentation: $0) }
    }

    /// The verified token, or why it is refused.
    public func verify(_ token: String, now: Double = Date().timeIntervalSince1970) throws(Failure) -> Token {
        guard token.utf8.count <= maximumTokenLength else { throw .tooLong }
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64.decodeURLSafe(parts[0]),
            let payloadBytes = Base64.decodeURLSafe(parts[1]), let signature = Base64.decodeURLSafe(parts[2]),
            let header = try? PacketValue.parseJSON(headerBytes), header.isObject,
            let claims = try? PacketValue.parseJSON(payloadBytes), claims.isObject
        else { throw .malformed }
        guard header["crit"] == nil else { throw .unsupportedCriticalHeader }
        let signedInput = Array(token.utf8.prefix(parts[0].count + 1 + parts[1].count))
        let alg = header["alg"]?.stringValue ?? ""
        switch alg {
        case "HS256":
            guard let hmacKey else { throw .unsupportedAlgorithm(alg) }
            guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signedInput, using: hmacKey) else {
                throw .badSignature
            }
        case "RS256":
            guard let rsaKey else { throw .unsupportedAlgorithm(alg) }
            let digest = SHA256.hash(data: signedInput)
            guard rsaKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: digest, padding: .insecurePKCS1v1_5)
            else { throw .badSignature }
        default:
            throw .unsupportedAlgorithm(alg.isEmpty ? "none" : alg)
        }
        return try check(claims, now: now)
    }

    /// The claim checks, after the signature.
    func check(_ claims: PacketValue, now: Double) throws(Failure) -> Token {
        let expiry = try Self.time(claims, "exp")
        if let expiry {
            guard now <= expiry + leeway else { throw .expired }
        } else if requireExpiry {
            throw .missingClaim("exp")
        }
        if let notBefore = try Self.time(claims, "nbf"), now + leeway < notBefore { throw .notYetValid }
        _ = try Self.time(claims, "iat")
        if let audience {
            switch claims["aud"] {
            case nil: throw .missingClaim("aud")
            case .string(let aud)?: guard aud == audience else { throw .wrongAudience }
            case .array(let list)?:
                var found = false
                for element in list {
                    guard let aud = element.stringValue else { throw .invalidClaim("aud") }
                    if aud == audience { found = true }
                }
                guard found else { throw .wrongAudience }
            default: throw .invalidClaim("aud")
            }
        }
        if let issuer {
            guard let iss = claims["iss"] else { throw .missingClaim("iss") }
            guard let value = iss.stringValue else { throw .invalidClaim("iss") }
            guard value == issuer else { throw .wrongIssuer }
        }
        var rooms: Set<String>? = nil
        if let claim = claims["rooms"] {
            guard case .array(let list) = claim else { throw .invalidClaim("rooms") }
            var names = Set<String>()
            for element in list {
                guard let name = element.stringValue else { throw .invalidClaim("rooms") }
                names.insert(name)
            }
            rooms = names
        }
        return Token(claims: claims, expiry: expiry, rooms: rooms)
    }

    /// A NumericDate claim: absent, or a finite number; anything else (a string, `null`, a boolean) refuses the token.
    static func time(_ claims: PacketValue, _ name: String) throws(Failure) -> Double? {
        guard let value = claims[name] else { return nil }
        guard let number = value.numberValue, number.isFinite else { throw .invalidClaim(name) }
        return number
    }
}
