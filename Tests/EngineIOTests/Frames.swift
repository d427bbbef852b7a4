import NIOCore

@testable import EngineIO

func textFrame(_ text: String) -> EngineFrame { .text(ByteBuffer(string: text)) }
func binaryFrame(_ bytes: [UInt8]) -> EngineFrame { .binary(ByteBuffer(bytes: bytes)) }
