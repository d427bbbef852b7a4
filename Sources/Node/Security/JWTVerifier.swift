import Adapter
import Crypto
import _CryptoExtras
import Foundation

/// Verifies the JSON Web Tokens that may gate the Socket.IO CONNECT: HS256 with a shared secret, RS256 with an
/// RSA public key (PEM), expiry and not-before checked. The claims go back to the caller (the `rooms` claim
/// restricts the rooms a user may join).
public struct JWTVerifier: Sendable {
    public enum Failure: Error, Hashable, CustomStringConvertible {
        case malformed
        case unsupportedAlgorithm(String)
        case badSignature
        case expired
        case notYetValid

        public var description: String {
            switch self {
            case .malformed: "malformed token"
            case .unsupportedAlgorithm(let alg): "unsupported algorithm \(alg)"
            case .badSignature: "invalid signature"
            case .expired: "token expired"
            case .notYetValid: "token not yet valid"
            }
        }
    }

    private let hmacKey: SymmetricKey?
    private let rsaKey: _RSA.Signing.PublicKey?
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    public var leeway: Double = 5

    /// - Parameters:
    ///   - secret: the HS256 shared secret, if HS256 tokens are accepted.
    ///   - rsaPublicKeyPEM: the RS256 public key, if RS256 tokens are accepted.
    public init(secret: String?, rsaPublicKeyPEM: String?) throws {
        self.hmacKey = secret.map { SymmetricKey(data: Array($0.utf8)) }
        self.rsaKey = try rsaPublicKeyPEM.map { try _RSA.Signing.PublicKey(pemRepresentation: $0) }
    }

    /// The token's claims, or why it is refused.
    public func verify(_ token: String, now: Double = Date().timeIntervalSince1970) throws(Failure) -> PacketValue {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Self.base64URLDecode(parts[0]), let payloadBytes = Self.base64URLDecode(parts[1]),
            let signature = Self.base64URLDecode(parts[2]),
            let header = try? PacketValue.parseJSON(headerBytes), let claims = try? PacketValue.parseJSON(payloadBytes),
            claims.isObject
        else { throw .malformed }
        let signedInput = Array(parts[0].utf8) + [UInt8(ascii: ".")] + Array(parts[1].utf8)
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
        if let exp = claims["exp"]?.numberValue, now > exp + leeway { throw .expired }
        if let nbf = claims["nbf"]?.numberValue, now + leeway < nbf { throw .notYetValid }
        return claims
    }

    static func base64URLDecode(_ text: Substring) -> [UInt8]? {
        var s = String(text).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map(Array.init)
    }
}
