/// Redis Cluster's key → hash slot function: `CRC16(key) mod 16384`, where the CRC is CRC-16/XMODEM (polynomial
/// 0x1021, initial value 0, no reflection), and only the *hash tag* is hashed when the key has one: the bytes
/// between the first `{` and the first `}` after it, if there is at least one byte between them. So `{room}:a`
/// and `{room}:b` share a slot, `{}x` is hashed whole, and `a{b}{c}` hashes `b`.
///
/// A shard channel (SSUBSCRIBE/SPUBLISH) is routed the same way as a key.
public enum RedisClusterSlot {
    /// The number of hash slots of a Redis Cluster.
    public static let count = 16384

    /// The slot of `key`.
    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of(bytes: $0) }
    }

    /// The slot of a key given as bytes.
    public static func of(bytes key: UnsafeBufferPointer<UInt8>) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
            close > open + 1
        {
            hashed = key[(open + 1)..<close]
        }
        return Int(crc16(hashed) & 0x3FFF)
    }

    /// CRC-16/XMODEM of `bytes` (the check value of "123456789" is 0x31C3).
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// The CRC of each byte value, shifted through the polynomial bit by bit.
    private static let table: [UInt16] = (0..<256).map { index in
        var value = UInt16(index) << 8
        for _ in 0..<8 {
            value = value & 0x8000 != 0 ? (value << 1) ^ 0x1021 : value << 1
        }
        return value
    }
}
