import NIOCore
import Testing

@testable import EngineIO
@testable import SocketIO

/// The event budget's bucket with the time given by the test: no clock, no sleeps.
@Suite("Token bucket")
struct TokenBucketTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func after(_ milliseconds: Int64) -> NIODeadline { start + .milliseconds(milliseconds) }

    /// The answers of `bucket` to takes at these times (milliseconds after `start`).
    static func takes(_ bucket: inout TokenBucket, at times: [Int64]) -> [Bool] {
        times.map { bucket.take(now: after($0)) }
    }

    @Test func aFullBucketGivesItsCapacityAtOnceThenRefuses() {
        var bucket = TokenBucket(rate: 10, capacity: 3, now: Self.start)
        #expect(Self.takes(&bucket, at: [0, 0, 0, 0]) == [true, true, true, false])
    }

    @Test func tokensComeBackAtTheRate() {
        var bucket = TokenBucket(rate: 10, capacity: 2, now: Self.start)
        // 99 ms is 0.99 of a token; 100 ms a whole one
        #expect(Self.takes(&bucket, at: [0, 0, 99, 100, 150, 200]) == [true, true, false, true, false, true])
    }

    @Test func refillStopsAtTheCapacity() {
        var bucket = TokenBucket(rate: 100, capacity: 2, now: Self.start)
        // a minute idle is still only two tokens
        #expect(Self.takes(&bucket, at: [60_000, 60_000, 60_000]) == [true, true, false])
    }

    @Test func timeGoingBackwardsAddsNothing() {
        var bucket = TokenBucket(rate: 10, capacity: 1, now: Self.after(1_000))
        #expect(Self.takes(&bucket, at: [1_000, 0, 1_050, 1_100]) == [true, false, false, true])
    }

    @Test func refusedTakesDoNotSpendTheRefill() {
        var bucket = TokenBucket(rate: 1, capacity: 1, now: Self.start)
        // quarter seconds: exact in binary, so the refill adds up to exactly one token at 1000 ms
        #expect(Self.takes(&bucket, at: [0, 250, 500, 750, 1000, 1000]) == [true, false, false, false, true, false])
    }

    /// An address budget that allows a fixed number of takes.
    final class CountingBudget: AddressBudget, @unchecked Sendable {
        var left: Int
        var asked: [String] = []
        init(_ left: Int) { self.left = left }
        func take(_ address: String) -> Bool {
            asked.append(address)
            guard left > 0 else { return false }
            left -= 1
            return true
        }
    }

    @Test func eventBudgetNeedsTheSessionsAndTheAddresssToken() {
        let address = CountingBudget(1)
        let budget = EventBudget(rate: 0.001, burst: 2, address: (address, "192.0.2.1"))
        #expect(budget.take())
        #expect(!budget.take())  // the address has spent its budget
        #expect(!budget.take())  // and now the session's too: the address is not asked
        #expect(address.asked == ["192.0.2.1", "192.0.2.1"])
    }
}
