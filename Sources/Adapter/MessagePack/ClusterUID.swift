/// Node identities of the classic Redis adapter: a node tells its own publishes apart by this uid, and
/// requestIds are made the same way.
public enum ClusterUID {
    /// The alphabet of `uid2`: each random byte is mapped to one of these 64 characters (byte % 64).
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// The uid the emitter uses on every message; never the uid of a node.
    public static let emitter = "emitter"

    /// A fresh random id of `length` characters from `A-Z a-z 0-9 - _`, like Node's `uid2(6)`.
    public static func random(length: Int = 6) -> String {
        var generator = SystemRandomNumberGenerator()
        return random(length: length, using: &generator)
    }

    /// A random id drawn from `generator` (tests pass a seeded one).
    public static func random(length: Int = 6, using generator: inout some RandomNumberGenerator) -> String {
        String(unsafeUninitializedCapacity: length) { characters in
            for index in 0..<length {
                characters[index] = alphabet[Int(generator.next() % 64)]
            }
            return length
        }
    }
}
