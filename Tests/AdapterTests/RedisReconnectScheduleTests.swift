import NIOCore
import Testing

@testable import Adapter

/// The reconnect schedule: ``RedisBackoff`` on its own, and walked through ``RedisConnectionStateMachine`` on a
/// simulated clock (no sockets, no sleeps) to bound how long after Redis is back the client finds it again.
@Suite("Redis reconnect schedule")
struct RedisReconnectScheduleTests {
    static let ms = 1_000_000

    @Test func theFirstAttemptIsAtOnceThenQuickRetriesDoubleUpToTheCap() {
        let backoff = RedisBackoff()
        #expect(backoff.delay(forAttempt: 1, random: 0) == .zero)
        let withoutJitter = (2...7).map { backoff.delay(forAttempt: $0, random: 0) }
        #expect(withoutJitter == [25, 50, 100, 100, 100, 100].map { .milliseconds($0) })
        #expect(backoff.delay(forAttempt: 1_000_000, random: 0) == .milliseconds(100))
        #expect(backoff.delay(forAttempt: Int.max, random: 0) == .milliseconds(100))
    }

    @Test func theFirstAttemptIsSpreadOverTheInitialSpreadOnly() {
        let backoff = RedisBackoff()
        #expect(backoff.delay(forAttempt: 1, random: 0.5) == .milliseconds(5))
        #expect(backoff.delay(forAttempt: 1, random: 0.999_999) <= .milliseconds(10))
        for _ in 0..<200 {
            let delay = backoff.delay(forAttempt: 1)
            #expect(delay >= .zero && delay <= .milliseconds(10))
        }
        #expect(RedisBackoff(initialSpread: .zero).delay(forAttempt: 1, random: 0.9) == .zero)
    }

    @Test func jitterTakesOffAtMostItsShareOfLaterAttempts() {
        let backoff = RedisBackoff()
        #expect(backoff.delay(forAttempt: 4, random: 0.5) == .milliseconds(75))
        #expect(backoff.delay(forAttempt: 4, random: 0.999_999) > .milliseconds(50))
        for _ in 0..<200 {
            let delay = backoff.delay(forAttempt: 9)
            #expect(delay >= .milliseconds(50) && delay <= .milliseconds(100))
        }
        let steady = RedisBackoff(jitter: 0)
        #expect(steady.delay(forAttempt: 9, random: 0.7) == .milliseconds(100))
    }

    @Test func aLongerCapStillDoublesFromTheBase() {
        let backoff = RedisBackoff(initialSpread: .milliseconds(50), base: .milliseconds(100), maximum: .seconds(1))
        let withoutJitter = (2...7).map { backoff.delay(forAttempt: $0, random: 0) }
        #expect(withoutJitter == [100, 200, 400, 800, 1000, 1000].map { .milliseconds($0) })
        #expect(backoff.delay(forAttempt: 1, random: 0.5) == .milliseconds(25))
    }

    /// A client connected at time 0 loses Redis, which accepts connections again at `back` (ns); refused
    /// connects fail at once. Returns when the client connects again, following the machine's actions and the
    /// backoff with `random` for every draw.
    static func reconnectTime(backAt back: Int64, backoff: RedisBackoff, random: Double) -> (at: Int64, attempts: Int) {
        var machine = RedisConnectionStateMachine<String>()
        #expect(machine.start() == .connect)
        _ = machine.connectSucceeded("c1")
        var now: Int64 = 0
        var retry = machine.connectionClosed()
        var attempts = 0
        while true {
            guard case .scheduleReconnect(let failures) = retry else {
                Issue.record("unexpected \(retry)")
                return (now, attempts)
            }
            now += backoff.delay(forAttempt: failures, random: random).nanoseconds
            guard machine.reconnectTimerFired() == .connect else {
                Issue.record("the reconnect timer did not lead to a connect")
                return (now, attempts)
            }
            attempts += 1
            if now >= back {
                #expect(machine.connectSucceeded("c2") == .useConnection("c2", isReconnect: true))
                return (now, attempts)
            }
            retry = machine.connectFailed()
        }
    }

    @Test(arguments: [0.0, 0.5, 0.999_999])
    func aRestartedRedisIsFoundWithinTheCapHoweverLongItWasDown(random: Double) {
        let backoff = RedisBackoff()
        var worst: Int64 = 0
        // Outages from 0 to 20 s, in uneven steps that land in every phase of the schedule.
        var back: Int64 = 0
        while back <= 20_000 * Int64(Self.ms) {
            let (at, _) = Self.reconnectTime(backAt: back, backoff: backoff, random: random)
            #expect(at >= back)
            worst = max(worst, at - back)
            back += 3 * Int64(Self.ms) + 731_017
        }
        #expect(worst <= backoff.maximum.nanoseconds)
        #expect(worst > 0)
    }

    @Test func aDroppedConnectionIsReplacedWithinTheInitialSpread() {
        let (at, attempts) = Self.reconnectTime(backAt: 0, backoff: RedisBackoff(), random: 0.999_999)
        #expect(attempts == 1)
        #expect(at <= 10 * Int64(Self.ms))
    }

    @Test func theRetriesKeepAModestPaceDuringALongOutage() {
        // Refused connects are cheap, but a node must not spin: over a 10 s outage a connection makes at most
        // one attempt per half the cap (the shortest jittered delay), about 200, and at least 100.
        for random in [0.0, 0.999_999] {
            let (_, attempts) = Self.reconnectTime(backAt: 10_000 * Int64(Self.ms), backoff: RedisBackoff(), random: random)
            #expect(attempts >= 100 && attempts <= 205, "random \(random): \(attempts) attempts")
        }
    }

    @Test func theOldScheduleLeftSecondsAfterARestart() {
        // Roughly the schedule before issue 16 (0.1 s doubling to 10 s): a Redis back after 1.6 s was found again
        // only at the next attempt, well over a second later. The same walk as above, so that its bound is seen
        // to fail on a schedule that is too slow.
        let old = RedisBackoff(initialSpread: .milliseconds(100), base: .milliseconds(200), maximum: .seconds(10))
        let back = 1_600 * Int64(Self.ms)
        let (at, _) = Self.reconnectTime(backAt: back, backoff: old, random: 0)
        #expect(at - back > 1_000 * Int64(Self.ms))
    }
}
