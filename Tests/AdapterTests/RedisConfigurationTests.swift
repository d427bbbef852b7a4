import NIOCore
import Testing

@testable import Adapter

@Suite("Redis configuration and backoff")
struct RedisConfigurationTests {
    @Test func readsHostAndPort() throws {
        let configuration = try RedisConfiguration(url: "redis://redis.internal:6380")
        #expect(configuration.host == "redis.internal")
        #expect(configuration.port == 6380)
        #expect(configuration.password == nil)
        #expect(configuration.username == nil)
        #expect(configuration.database == nil)
        #expect(configuration.handshake == [RedisCommand(["PING"])])
    }

    @Test func portDefaultsTo6379() throws {
        #expect(try RedisConfiguration(url: "redis://localhost").port == 6379)
        #expect(try RedisConfiguration(url: "redis://localhost/").database == nil)
    }

    @Test func readsPasswordAndDatabaseAndSendsAuthAndSelect() throws {
        let configuration = try RedisConfiguration(url: "redis://:s3cr%40t@127.0.0.1:7000/3")
        #expect(configuration.password == "s3cr@t")
        #expect(configuration.username == nil)
        #expect(configuration.database == 3)
        #expect(
            configuration.handshake == [
                RedisCommand(["AUTH", "s3cr@t"]),
                RedisCommand(["SELECT", "3"]),
                RedisCommand(["PING"]),
            ]
        )
    }

    @Test func readsUsernameForACLAuth() throws {
        let configuration = try RedisConfiguration(url: "redis://app:pw@h:1")
        #expect(configuration.username == "app")
        #expect(configuration.handshake == [RedisCommand(["AUTH", "app", "pw"]), RedisCommand(["PING"])])
    }

    @Test func aLoneUserInfoIsThePassword() throws {
        #expect(try RedisConfiguration(url: "redis://pw@h").password == "pw")
    }

    @Test func readsBracketedIPv6Hosts() throws {
        let configuration = try RedisConfiguration(url: "redis://[::1]:6390/0")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 6390)
        #expect(configuration.database == 0)
    }

    @Test func keepsOtherSettingsFromDefaults() throws {
        let defaults = RedisConfiguration(connectTimeout: .milliseconds(250), maximumPendingCommands: 10)
        let configuration = try RedisConfiguration(url: "redis://h:1", defaults: defaults)
        #expect(configuration.connectTimeout == .milliseconds(250))
        #expect(configuration.maximumPendingCommands == 10)
    }

    @Test(arguments: [
        "localhost:6379", "http://h:1", "rediss://h:1", "redis://", "redis://:pw@", "redis://h:0", "redis://h:70000",
        "redis://h:port", "redis://h/db", "redis://h/-1", "redis://h?db=1", "redis://[::1", "redis://:%zz@h",
    ])
    func rejectsBadURLs(_ url: String) {
        #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
    }

    @Test func errorsAndDescriptionsNeverShowThePassword() throws {
        #expect {
            try RedisConfiguration(url: "redis://:topsecret@h:notaport")
        } throws: { error in
            "\(error)".contains("***") && !"\(error)".contains("topsecret")
        }
        let configuration = try RedisConfiguration(url: "redis://:topsecret@h:1/2")
        #expect(configuration.description == "redis://:***@h:1/2")
    }

    // The backoff schedule: RedisReconnectScheduleTests.
}
