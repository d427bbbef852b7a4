import Testing

@testable import Signaling

@Suite("HTTPDate")
struct HTTPDateTests {
    static let vectors: [(seconds: Int, text: String)] = [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (86_399, "Thu, 01 Jan 1970 23:59:59 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
        (1_730_466_309, "Fri, 01 Nov 2024 13:05:09 GMT"),
        (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
        (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
    ]

    @Test("writes Date.prototype.toUTCString()", arguments: vectors)
    func writesUTCString(_ vector: (seconds: Int, text: String)) {
        #expect(HTTPDate.utcString(secondsSince1970: vector.seconds) == vector.text)
    }

    @Test func nowHasTheFixedShape() {
        let now = HTTPDate.now()
        #expect(now.utf8.count == 29)
        #expect(now.hasSuffix(" GMT"))
        #expect(now.dropFirst(3).hasPrefix(", "))
    }
}
