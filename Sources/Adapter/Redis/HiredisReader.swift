import CHiredis
import NIOCore

/// One hiredis `redisReader`: the RESP2 parser, fed with whatever bytes the socket delivered.
///
/// hiredis keeps its own copy of unparsed bytes, so a reply split across reads (or many replies in one read) needs
/// nothing from the caller but `feed` then `nextReply` until it returns `nil`. Not thread-safe: the owning
/// ``RESPDecoder`` confines it to its channel's event loop.
package final class HiredisReader {
    private let reader: UnsafeMutablePointer<redisReader>
    private let allocator: ByteBufferAllocator

    /// Most elements one array reply may announce (hiredis allocates the element pointers when it reads the
    /// header, so a 13-byte `*2147483647` would cost 16 GB). The largest legitimate reply (a presence HGETALL)
    /// is far smaller.
    package static let maximumArrayElements = Int(CHIREDIS_MAX_ARRAY_ELEMENTS)

    package init(allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        guard let reader = chiredis_reader_create() else {
            fatalError("hiredis: out of memory creating a reader")
        }
        self.reader = reader
        self.allocator = allocator
    }

    deinit {
        chiredis_reader_free(self.reader)
    }

    /// Hands bytes to hiredis (which copies them).
    package func feed(_ buffer: ByteBuffer) throws(RedisError) {
        let status = buffer.withUnsafeReadableBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return REDIS_OK }
            return redisReaderFeed(self.reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK {
            throw self.currentError()
        }
    }

    /// The next complete reply, or `nil` when more bytes are needed. After a thrown protocol error the reader is
    /// unusable: the connection must be closed.
    package func nextReply() throws(RedisError) -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(self.reader, &raw) == REDIS_OK else {
            throw self.currentError()
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return self.value(of: raw.assumingMemoryBound(to: redisReply.self))
    }

    private func currentError() -> RedisError {
        guard let message = chiredis_reader_error(self.reader) else {
            return .protocolError("hiredis reader failed")
        }
        return .protocolError(String(cString: message))
    }

    private func value(of reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let reply = reply.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .bulkString(self.buffer(reply.str, count: reply.len))
        case REDIS_REPLY_STATUS:
            return .simpleString(Self.string(reply.str, count: reply.len))
        case REDIS_REPLY_ERROR:
            return .error(Self.string(reply.str, count: reply.len))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_NIL:
            return .bulkString(nil)
        case CHIREDIS_REPLY_NIL_ARRAY:
            return .array(nil)
        case REDIS_REPLY_ARRAY:
            var elements: [RESPValue] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                guard let element = reply.element?[index] else {
                    preconditionFailure("hiredis returned an array with a missing element")
                }
                elements.append(self.value(of: element))
            }
            return .array(elements)
        default:
            preconditionFailure("hiredis returned unknown reply type \(reply.type)")
        }
    }

    private func buffer(_ pointer: UnsafeMutablePointer<CChar>?, count: Int) -> ByteBuffer {
        var buffer = self.allocator.buffer(capacity: count)
        if let pointer, count > 0 {
            buffer.writeBytes(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        return buffer
    }

    private static func string(_ pointer: UnsafeMutablePointer<CChar>?, count: Int) -> String {
        guard let pointer, count > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
}

@available(*, unavailable)
extension HiredisReader: Sendable {}
