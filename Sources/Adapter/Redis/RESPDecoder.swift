import NIOCore

/// Turns the bytes of a Redis connection into ``RESPValue``s, with hiredis doing the parsing.
///
/// Each `decode` call hands every readable byte to the ``HiredisReader`` (which buffers partial replies itself)
/// and then fires every reply that became complete, so the `ByteToMessageHandler`'s own buffer never grows.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    private let reader: HiredisReader

    init(allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.reader = HiredisReader(allocator: allocator)
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try self.reader.feed(buffer)
        buffer.moveReaderIndex(to: buffer.writerIndex)
        while let value = try self.reader.nextReply() {
            context.fireChannelRead(self.wrapInboundOut(value))
        }
        return .needMoreData
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A reply cut off by EOF is dropped: the connection is going away and its commands fail with it.
        try self.decode(context: context, buffer: &buffer)
    }
}

@available(*, unavailable)
extension RESPDecoder: Sendable {}
