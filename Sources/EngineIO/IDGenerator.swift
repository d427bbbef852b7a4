import Synchronization

/// Engine.IO session ids and Socket.IO socket ids, made the way the reference server makes them: 15 bytes
/// (12 random, then the low 3 bytes of a per-process counter), URL-safe base64 without padding: 20 characters.
public enum IDGenerator {
    private static let counter = Atomic<UInt32>(0)

    public static func next() -> String {
        var bytes = [UInt8](repeating: 0, count: 15)
        var rng = SystemRandomNumberGenerator()
        for i in stride(from: 0, to: 12, by: 4) {
            let r: UInt32 = rng.next()
            bytes[i] = UInt8(truncatingIfNeeded: r)
            bytes[i + 1] = UInt8(truncatingIfNeeded: r >> 8)
            bytes[i + 2] = UInt8(truncatingIfNeeded: r >> 16)
            bytes[i + 3] = UInt8(truncatingIfNeeded: r >> 24)
        }
        let n = counter.add(1, ordering: .relaxed).oldValue
        bytes[12] = UInt8(truncatingIfNeeded: n >> 16)
        bytes[13] = UInt8(truncatingIfNeeded: n >> 8)
        bytes[14] = UInt8(truncatingIfNeeded: n)
        return Base64.encodeURLSafe(bytes)
    }
}
