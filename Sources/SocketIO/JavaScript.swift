/// What JavaScript writes for numbers and dates, for the places where our output must match a JavaScript peer's
/// byte for byte: `JSON.stringify` (the Socket.IO packet codec), property names made of MessagePack map keys and
/// dates (the Redis adapter), the chat message timestamp (the signaling app) and the log timestamp.
package enum JavaScript {
    /// `Number.prototype.toString()` (`String(n)`): the shortest digits that round-trip, laid out by ECMAScript's
    /// rules (plain decimals from 1e-6 up to 1e21, else `1.5e-7`, `1e+21`); `NaN`, `Infinity`, `-Infinity`.
    package static func numberString(_ number: Double) -> String {
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Infinity" : "Infinity" }
        if number == 0 { return "0" }  // -0 included
        if number.rounded(.towardZero) == number, number.magnitude < 9_007_199_254_740_992 {
            return String(Int64(number))
        }
        // Swift's description has the same shortest round-trip digits; only their layout differs.
        let description = number.magnitude.description  // "1.5", "1e-07", "1.8446744073709552e+19"
        let parts = description.split(separator: "e", maxSplits: 1)
        let mantissa = parts[0].split(separator: ".", maxSplits: 1)
        let integerDigits = mantissa[0]
        var digits = String(integerDigits) + (mantissa.count > 1 ? String(mantissa[1]) : "")
        // The value is 0.<digits> × 10^exponent.
        var exponent = integerDigits.count + (parts.count > 1 ? Int(parts[1])! : 0)
        while digits.hasPrefix("0") {
            digits.removeFirst()
            exponent -= 1
        }
        while digits.hasSuffix("0") { digits.removeLast() }
        let count = digits.count
        var text = number < 0 ? "-" : ""
        if count <= exponent, exponent <= 21 {
            text += digits + String(repeating: "0", count: exponent - count)
        } else if 0 < exponent, exponent <= 21 {
            text += digits.prefix(exponent) + "." + digits.dropFirst(exponent)
        } else if -6 < exponent, exponent <= 0 {
            text += "0." + String(repeating: "0", count: -exponent) + digits
        } else {
            text += digits.prefix(1) + (count > 1 ? "." + digits.dropFirst() : "")
            text += "e" + (exponent - 1 < 0 ? "-" : "+") + String(abs(exponent - 1))
        }
        return text
    }

    /// `Date.prototype.toISOString()`: `YYYY-MM-DDTHH:mm:ss.sssZ`, with a signed six-digit year outside 0…9999.
    package static func isoString(millisecondsSince1970 milliseconds: Int64) -> String {
        let (days, timeOfDay) = split(milliseconds, by: 86_400_000)
        let (year, month, day) = civilDate(daysSince1970: days)
        var text = ""
        text.reserveCapacity(27)
        if (0...9999).contains(year) {
            append(year, digits: 4, to: &text)
        } else {
            text.append(year < 0 ? "-" : "+")
            append(abs(year), digits: 6, to: &text)
        }
        text.append("-")
        append(month, digits: 2, to: &text)
        text.append("-")
        append(day, digits: 2, to: &text)
        text.append("T")
        appendTime(milliseconds: timeOfDay, to: &text)
        text.append(".")
        append(timeOfDay % 1000, digits: 3, to: &text)
        text.append("Z")
        return text
    }

    /// `Date.prototype.toUTCString()`: `Fri, 01 Nov 2024 13:05:09 GMT` (the year at least four digits, signed
    /// when negative).
    package static func utcString(secondsSince1970 seconds: Int64) -> String {
        let (days, secondOfDay) = split(seconds, by: 86_400)
        let (year, month, day) = civilDate(daysSince1970: days)
        let weekday = Int((days % 7 + 11) % 7)  // 1970-01-01 was a Thursday
        var text = weekdays[weekday] + ", "
        append(day, digits: 2, to: &text)
        text += " " + months[Int(month) - 1] + " "
        if year < 0 { text.append("-") }
        append(abs(year), digits: 4, to: &text)
        text.append(" ")
        appendTime(milliseconds: secondOfDay * 1000, to: &text)
        text += " GMT"
        return text
    }

    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Floor division: the whole units and the non-negative rest.
    private static func split(_ value: Int64, by unit: Int64) -> (Int64, Int64) {
        var whole = value / unit
        var rest = value % unit
        if rest < 0 {
            whole -= 1
            rest += unit
        }
        return (whole, rest)
    }

    /// The proleptic Gregorian date of a day count from 1970-01-01, computed over 400-year eras (each exactly
    /// 146 097 days) with the year starting on March 1st, so that the leap day falls at the end of the year.
    static func civilDate(daysSince1970: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let daysPerEra: Int64 = 146_097
        let shifted = daysSince1970 + 719_468  // days from 0000-03-01 to 1970-01-01
        let era = (shifted >= 0 ? shifted : shifted - (daysPerEra - 1)) / daysPerEra
        let dayOfEra = shifted - era * daysPerEra  // 0...146096
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365  // 0...399
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // 0...365, from March 1st
        let monthFromMarch = (5 * dayOfYear + 2) / 153  // 0...11
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// `HH:mm:ss` of a time of day.
    private static func appendTime(milliseconds: Int64, to text: inout String) {
        append(milliseconds / 3_600_000, digits: 2, to: &text)
        text.append(":")
        append(milliseconds / 60_000 % 60, digits: 2, to: &text)
        text.append(":")
        append(milliseconds / 1000 % 60, digits: 2, to: &text)
    }

    private static func append(_ value: Int64, digits: Int, to text: inout String) {
        let decimal = String(value)
        if decimal.count < digits {
            text.append(String(repeating: "0", count: digits - decimal.count))
        }
        text.append(decimal)
    }
}
