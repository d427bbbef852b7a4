import Testing

@testable import SocketIO

/// Numbers and dates as JavaScript writes them: the vectors were checked against Node.
@Suite("JavaScript numbers and dates")
struct JavaScriptTests {
    static let numberStrings: [(Double, String)] = [
        (0, "0"), (-0.0, "0"), (1, "1"), (-7, "-7"), (1.5, "1.5"), (-0.001, "-0.001"), (3.14, "3.14"),
        (1e-6, "0.000001"), (1e-7, "1e-7"), (1.5e-10, "1.5e-10"), (123.456, "123.456"),
        (9_007_199_254_740_992, "9007199254740992"), (9_007_199_254_740_993, "9007199254740992"),
        (-9_007_199_254_740_992, "-9007199254740992"), (18_446_744_073_709_551_616, "18446744073709552000"),
        (123_456_789_012_345_680_000, "123456789012345680000"), (1e21, "1e+21"), (1.5e300, "1.5e+300"),
        (-1e100, "-1e+100"), (5e-324, "5e-324"), (.nan, "NaN"), (.infinity, "Infinity"), (-.infinity, "-Infinity"),
    ]

    @Test(arguments: numberStrings)
    func numberStringIsNumberToString(number: Double, expected: String) {
        #expect(JavaScript.numberString(number) == expected)
    }

    static let isoStrings: [(Int64, String)] = [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_730_466_309_123, "2024-11-01T13:05:09.123Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),  // 2100 is not a leap year
        (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
        (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
        (-62_167_219_200_001, "-000001-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
        (8_640_000_000_000_000, "+275760-09-13T00:00:00.000Z"),
        (-8_640_000_000_000_000, "-271821-04-20T00:00:00.000Z"),
    ]

    @Test(arguments: isoStrings)
    func isoStringIsToISOString(milliseconds: Int64, expected: String) {
        #expect(JavaScript.isoString(millisecondsSince1970: milliseconds) == expected)
    }

    static let utcStrings: [(Int64, String)] = [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (86_399, "Thu, 01 Jan 1970 23:59:59 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
        (1_730_466_309, "Fri, 01 Nov 2024 13:05:09 GMT"),
        (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
        (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
        (-61_851_600_000, "Fri, 01 Jan 0010 00:00:00 GMT"),
        (-62_198_755_200, "Fri, 01 Jan -0001 00:00:00 GMT"),
    ]

    @Test(arguments: utcStrings)
    func utcStringIsToUTCString(seconds: Int64, expected: String) {
        #expect(JavaScript.utcString(secondsSince1970: seconds) == expected)
    }
}
