import NIOCore

/// Base64, the one implementation in the tree: standard (with padding) as Engine.IO uses for binary packets on
/// long-polling and as TURN credentials are written; URL-safe without padding for ids and JSON Web Tokens.
package enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlAlphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8
    )
    private static let reverse = reverseTable(of: alphabet)
    private static let urlReverse = reverseTable(of: urlAlphabet)

    private static func reverseTable(of alphabet: [UInt8]) -> [UInt8] {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }

    package static func encode<Bytes: Collection>(_ bytes: Bytes, into out: inout ByteBuffer) where Bytes.Element == UInt8 {
        encode(bytes, alphabet: alphabet, padding: true, into: &out)
    }

    /// Standard alphabet with padding, as a string.
    package static func encode<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = ByteBuffer()
        encode(bytes, alphabet: alphabet, padding: true, into: &out)
        return String(buffer: out)
    }

    /// URL-safe alphabet without padding (ids).
    package static func encodeURLSafe<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out = ByteBuffer()
        encode(bytes, alphabet: urlAlphabet, padding: false, into: &out)
        return String(buffer: out)
    }

    private static func encode<Bytes: Collection>(
        _ bytes: Bytes,
        alphabet: [UInt8],
        padding: Bool,
        into out: inout ByteBuffer
    ) where Bytes.Element == UInt8 {
        var iterator = bytes.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next()
            let b2 = b1 == nil ? nil : iterator.next()
            out.writeInteger(alphabet[Int(b0 >> 2)])
            out.writeInteger(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            if let b1 {
                out.writeInteger(alphabet[Int((b1 & 0x0F) << 2 | (b2 ?? 0) >> 6)])
            } else if padding {
                out.writeInteger(UInt8(ascii: "="))
            }
            if let b2 {
                out.writeInteger(alphabet[Int(b2 & 0x3F)])
            } else if padding {
                out.writeInteger(UInt8(ascii: "="))
            }
        }
    }

    /// Decodes standard base64; padding optional. Nil on any invalid character.
    package static func decode<Bytes: Collection>(_ text: Bytes) -> [UInt8]? where Bytes.Element == UInt8 {
        decode(text, reverse: reverse, allowsPadding: true)
    }

    /// Decodes strict base64url (RFC 7515 §2, what JSON Web Tokens use): the URL-safe alphabet, no padding, no
    /// other character, and no length that leaves a lone character. Nil otherwise.
    package static func decodeURLSafe<Bytes: Collection>(_ text: Bytes) -> [UInt8]? where Bytes.Element == UInt8 {
        guard text.count % 4 != 1 else { return nil }
        return decode(text, reverse: urlReverse, allowsPadding: false)
    }

    private static func decode<Bytes: Collection>(
        _ text: Bytes,
        reverse: [UInt8],
        allowsPadding: Bool
    ) -> [UInt8]? where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        var accumulator: UInt32 = 0
        var bits = 0
        var sawPadding = false
        for c in text {
            if c == UInt8(ascii: "=") {
                guard allowsPadding else { return nil }
                sawPadding = true
                continue
            }
            if sawPadding { return nil }
            let v = reverse[Int(c)]
            if v == 0xFF { return nil }
            accumulator = accumulator << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return out
    }
}
