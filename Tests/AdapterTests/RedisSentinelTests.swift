import NIOCore
import Testing

@testable import Adapter

/// The Sentinel configuration and the replies the client reads from sentinels (no sockets).
@Suite("Redis Sentinel configuration and replies")
struct RedisSentinelTests {
    @Test func readsACommaSeparatedListOfSentinels() throws {
        let sentinel = try RedisSentinelConfiguration(
            urls: "redis://10.0.0.1:26379, redis://:pw@10.0.0.2:26380 ,redis://[::1]",
            masterName: "mymaster"
        )
        #expect(sentinel.masterName == "mymaster")
        #expect(sentinel.sentinels.map(\.host) == ["10.0.0.1", "10.0.0.2", "::1"])
        #expect(sentinel.sentinels.map(\.port) == [26379, 26380, 6379])
        #expect(sentinel.sentinels.map(\.password) == [nil, "pw", nil])
        #expect(sentinel.sentinels.allSatisfy { $0.sentinel == nil && $0.database == nil })
    }

    @Test func sentinelsKeepTheDefaultsButNotThePrimarysPasswordOrDatabase() throws {
        let primary = RedisConfiguration(password: "primary-secret", database: 2, connectTimeout: .milliseconds(300))
        let sentinel = try RedisSentinelConfiguration(urls: "redis://h:1", masterName: "m", defaults: primary)
        #expect(sentinel.sentinels[0].password == nil)
        #expect(sentinel.sentinels[0].database == nil)
        #expect(sentinel.sentinels[0].connectTimeout == .milliseconds(300))
    }

    @Test(arguments: ["", ",", "redis://h:1,", "redis://h:1,,redis://h:2", "h:1", "redis://h:1/3", "redis://h:port"])
    func rejectsBadSentinelLists(_ urls: String) {
        #expect(throws: RedisError.self) { try RedisSentinelConfiguration(urls: urls, masterName: "m") }
    }

    @Test(arguments: ["", "my master", "m\n"])
    func rejectsBadMasterNames(_ name: String) {
        #expect(throws: RedisError.self) { try RedisSentinelConfiguration(urls: "redis://h:1", masterName: name) }
    }

    @Test func copiesShareOneMonitorAndCompareByValue() throws {
        let a = try RedisSentinelConfiguration(urls: "redis://h:1", masterName: "m")
        let b = a
        #expect(a.monitor === b.monitor)
        let c = try RedisSentinelConfiguration(urls: "redis://h:1", masterName: "m")
        #expect(a == c)
        #expect(a.hashValue == c.hashValue)
        #expect(a != (try RedisSentinelConfiguration(urls: "redis://h:1", masterName: "other")))
    }

    @Test func theDescriptionNamesTheMasterAndSentinelsButNoPassword() throws {
        var configuration = try RedisConfiguration(url: "redis://:secret@ignored:1/4")
        configuration.sentinel = try RedisSentinelConfiguration(
            urls: "redis://:sentinel-secret@s1:26379,redis://s2:26379", masterName: "mymaster")
        let text = configuration.description
        #expect(text.contains("mymaster") && text.contains("s1:26379") && text.contains("s2:26379") && text.contains("db 4"))
        #expect(!text.contains("secret@") && !text.contains(":secret") && !text.contains("sentinel-secret"))
    }

    static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    @Test func readsGetMasterAddrByName() {
        #expect(
            RedisSentinelMonitor.primaryAddress(fromReply: .array([Self.bulk("127.0.0.1"), Self.bulk("6380")]))
                == RedisAddress(host: "127.0.0.1", port: 6380)
        )
        // An unknown master name: a nil array.
        #expect(RedisSentinelMonitor.primaryAddress(fromReply: .array(nil)) == nil)
        #expect(RedisSentinelMonitor.primaryAddress(fromReply: .array([Self.bulk("h")])) == nil)
        #expect(RedisSentinelMonitor.primaryAddress(fromReply: .array([Self.bulk("h"), Self.bulk("0")])) == nil)
        #expect(RedisSentinelMonitor.primaryAddress(fromReply: .array([Self.bulk(""), Self.bulk("1")])) == nil)
        #expect(RedisSentinelMonitor.primaryAddress(fromReply: .error("ERR")) == nil)
    }

    @Test func readsTheRole() {
        let master = RESPValue.array([Self.bulk("master"), .integer(3129659), .array([])])
        #expect(RedisSentinelMonitor.role(fromReply: master) == "master")
        let replica = RESPValue.array([Self.bulk("slave"), Self.bulk("127.0.0.1"), .integer(9999), Self.bulk("connected"), .integer(1)])
        #expect(RedisSentinelMonitor.role(fromReply: replica) == "slave")
        #expect(RedisSentinelMonitor.role(fromReply: .simpleString("OK")) == nil)
    }

    @Test func readsSwitchMasterForOurMasterOnly() {
        #expect(
            RedisSentinelMonitor.switchedPrimary(fromMessage: "mymaster 127.0.0.1 6379 127.0.0.1 6380", masterName: "mymaster")
                == RedisAddress(host: "127.0.0.1", port: 6380)
        )
        #expect(RedisSentinelMonitor.switchedPrimary(fromMessage: "other 1.1.1.1 1 2.2.2.2 2", masterName: "mymaster") == nil)
        #expect(RedisSentinelMonitor.switchedPrimary(fromMessage: "mymaster 1.1.1.1 1 2.2.2.2", masterName: "mymaster") == nil)
        #expect(RedisSentinelMonitor.switchedPrimary(fromMessage: "mymaster 1.1.1.1 1 2.2.2.2 x", masterName: "mymaster") == nil)
    }

    @Test func addressesPrintIPv6InBrackets() {
        #expect(RedisAddress(host: "::1", port: 1).description == "[::1]:1")
        #expect(RedisAddress(host: "h", port: 2).description == "h:2")
    }
}

@Suite("Redis Sentinel lookup sharing")
struct RedisSentinelLookupTests {
    typealias Lookup = RedisSentinelLookup<String>
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func aLookupInFlightIsSharedHoweverLongItTakes() {
        var lookup = Lookup(reuse: .milliseconds(100))
        #expect(lookup.answer(now: Self.t0) == nil)
        _ = lookup.start("first", now: Self.t0)
        #expect(lookup.answer(now: Self.t0 + .milliseconds(1)) == "first")
        #expect(lookup.answer(now: Self.t0 + .seconds(5)) == "first")
    }

    @Test func anAnswerIsReusedForTheReuseTimeAfterItCame() {
        var lookup = Lookup(reuse: .milliseconds(100))
        let generation = lookup.start("first", now: Self.t0)
        lookup.finished(generation, now: Self.t0 + .milliseconds(10))
        #expect(lookup.answer(now: Self.t0 + .milliseconds(109)) == "first")
        #expect(lookup.answer(now: Self.t0 + .milliseconds(110)) == nil)
    }

    @Test func aSwitchEndsTheReuseAtOnceAndALateFinishDoesNotRevive() {
        var lookup = Lookup(reuse: .milliseconds(100))
        let first = lookup.start("first", now: Self.t0)
        lookup.invalidate()
        #expect(lookup.answer(now: Self.t0) == nil)
        lookup.finished(first, now: Self.t0 + .milliseconds(1))
        #expect(lookup.answer(now: Self.t0 + .milliseconds(2)) == nil)
        let second = lookup.start("second", now: Self.t0 + .milliseconds(3))
        lookup.finished(first, now: Self.t0 + .milliseconds(4))  // stale: the second is still in flight
        #expect(lookup.answer(now: Self.t0 + .seconds(1)) == "second")
        lookup.finished(second, now: Self.t0 + .seconds(1))
        #expect(lookup.answer(now: Self.t0 + .seconds(1) + .milliseconds(50)) == "second")
    }
}
