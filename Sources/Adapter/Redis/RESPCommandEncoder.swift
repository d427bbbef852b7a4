import CHiredis
import NIOCore

/// Writes ``RedisCommand``s as RESP arrays of bulk strings, formatted by hiredis' `redisFormatCommandArgv`.
///
/// The arguments are first laid out one after the other in one scratch array, so that the `argv` pointers hiredis
/// reads all point into memory that stays put for the call.
struct RESPCommandEncoder: MessageToByteEncoder {
    typealias OutboundIn = RedisCommand

    func encode(data command: RedisCommand, out: inout ByteBuffer) throws {
        try Self.format(command, into: &out)
    }

    static func format(_ command: RedisCommand, into out: inout ByteBuffer) throws(RedisError) {
        let arguments = command.arguments
        var lengths = [Int]()
        lengths.reserveCapacity(arguments.count)
        var storage = [UInt8]()
        // One extra byte so the storage is never empty and always has a base address (all arguments may be "").
        storage.reserveCapacity(arguments.reduce(1) { $0 + $1.byteCount })
        for argument in arguments {
            switch argument {
            case .string(let string):
                storage.append(contentsOf: string.utf8)
            case .bytes(let bytes):
                storage.append(contentsOf: bytes)
            case .buffer(let buffer):
                storage.append(contentsOf: buffer.readableBytesView)
            }
            lengths.append(argument.byteCount)
        }
        storage.append(0)

        let written = storage.withUnsafeBufferPointer { bytes -> Int32 in
            bytes.withMemoryRebound(to: CChar.self) { chars -> Int32 in
                let base = chars.baseAddress!
                var offset = 0
                var argv = [UnsafePointer<CChar>?]()
                argv.reserveCapacity(lengths.count)
                for length in lengths {
                    argv.append(base + offset)
                    offset += length
                }
                var target: UnsafeMutablePointer<CChar>?
                let count = redisFormatCommandArgv(&target, Int32(lengths.count), &argv, lengths)
                guard count >= 0, let target else { return -1 }
                defer { redisFreeCommand(target) }
                out.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(count)))
                return count
            }
        }
        if written < 0 {
            throw .protocolError("hiredis could not format \(command)")
        }
    }
}

@available(*, unavailable)
extension RESPCommandEncoder: Sendable {}
