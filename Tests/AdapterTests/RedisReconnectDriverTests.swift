import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import Adapter

/// The reconnect driver when a sentinel announces a new primary while a connect is still waiting: on a real network
/// a dead host's address stays silent until the connect timeout (seconds), so the driver gives that attempt up and
/// asks again, once per failover (the other sentinels' announcements of the same switch leave the retry alone).
@Suite("Redis reconnect driver: a primary that moves during a connect")
struct RedisReconnectDriverTests {
    final class HangingClient: RedisReconnectClient, @unchecked Sendable {
        // Touched only on the embedded loop's thread (the test's).
        let loop = EmbeddedEventLoop()
        let driver: RedisReconnectDriver<RedisConnectionStateMachine<any Channel>>
        let configuration = RedisConfiguration()
        var eventLoop: any EventLoop { loop }
        let logger = Logger(label: "test")
        var attempts: [EventLoopPromise<any Channel>] = []
        var failures: [String] = []

        init() {
            driver = RedisReconnectDriver(
                machine: RedisConnectionStateMachine(),
                backoff: RedisBackoff(),
                eventLoop: loop
            )
        }

        func openConnection() -> EventLoopFuture<any Channel> {
            let promise = loop.makePromise(of: (any Channel).self)
            attempts.append(promise)
            return promise.futureResult
        }
        func connectionOpened(_ channel: any Channel) {}
        func connectAttemptFailed(_ error: any Error, failures: Int, retryIn: TimeAmount) -> Bool {
            self.failures.append("\(error)")
            return true
        }
        func connectionLost(retryIn: TimeAmount) {}
        func shutdownFinished() {}
    }

    @Test func aConnectWaitingOnTheOldPrimaryIsAbandonedOncePerSwitch() throws {
        let client = HangingClient()
        client.driver.start(client)
        #expect(client.attempts.count == 1)
        let newPrimary = RedisAddress(host: "10.0.0.2", port: 6379)

        client.driver.dropConnection(unlessConnectedTo: newPrimary, logger: client.logger)
        #expect(client.failures == ["\(RedisError.primaryMoved)"])
        client.loop.advanceTime(by: .seconds(1))  // the backoff
        #expect(client.attempts.count == 2)

        // The other sentinels announce the same switch while the retry (which asked them since) connects.
        client.driver.dropConnection(unlessConnectedTo: newPrimary, logger: client.logger)
        client.driver.dropConnection(unlessConnectedTo: newPrimary, logger: client.logger)
        #expect(client.failures.count == 1)

        // The abandoned attempt's channel, should it come after all, is closed and changes nothing.
        let late = EmbeddedChannel(loop: client.loop)
        try late.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        #expect(late.isActive)
        client.attempts[0].succeed(late)
        client.loop.run()
        #expect(!late.isActive)
        #expect(client.failures.count == 1)

        // A second failover, to yet another primary, abandons the attempt in progress again.
        client.driver.dropConnection(unlessConnectedTo: RedisAddress(host: "10.0.0.3", port: 6379), logger: client.logger)
        #expect(client.failures.count == 2)
        _ = client.driver.close(client)
        client.loop.run()
    }
}
