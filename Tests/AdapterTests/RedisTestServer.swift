import Adapter
import Foundation
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A real `redis-server` on a free loopback port, owned by one test.
///
/// `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no`: no files are written. ``stop()`` and
/// ``restart()`` wait until the process has exited, so the port is free again for the restart.
///
/// ``stop()`` kills the server with SIGKILL: the test process hands its children a signal mask that blocks SIGTERM
/// and SIGINT (seen on Linux with swift-corelibs-foundation), so `terminate()` would never be delivered. For the
/// client a killed server and a restarted one look the same: the socket closes.
final class RedisTestServer {
    let port: Int
    private let extraArguments: [String]
    private var process: Process?

    static let executable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return (path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"])
            .map { $0 + "/redis-server" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    private init(port: Int, extraArguments: [String]) {
        self.port = port
        self.extraArguments = extraArguments
    }

    var url: String { "redis://127.0.0.1:\(self.port)" }

    /// A configuration for this server with a fast reconnect, for tests.
    func configuration(
        password: String? = nil,
        database: Int? = nil,
        healthCheckInterval: TimeAmount? = .seconds(5)
    ) -> RedisConfiguration {
        RedisConfiguration(
            host: "127.0.0.1",
            port: self.port,
            password: password,
            database: database,
            connectTimeout: .seconds(2),
            backoff: RedisBackoff(base: .milliseconds(20), maximum: .milliseconds(200), jitter: 0.5),
            healthCheckInterval: healthCheckInterval
        )
    }

    /// Starts a server and waits until it answers PING; runs `body`; stops the server whether `body` threw or not.
    static func withServer<Result>(
        arguments: [String] = [],
        password: String? = nil,
        _ body: (RedisTestServer) async throws -> Result
    ) async throws -> Result {
        let server = RedisTestServer(port: try await Self.freePort(), extraArguments: arguments)
        do {
            try await server.start(password: password)
            let result = try await body(server)
            try await server.stop()
            return result
        } catch {
            try? await server.stop()
            throw error
        }
    }

    func start(password: String? = nil) async throws {
        guard let executable = Self.executable else {
            throw TestFailure("redis-server is not installed (apt-get install redis-server)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments =
            ["--port", "\(self.port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"] + self.extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        try await self.waitUntilAnswersPing(password: password)
    }

    func stop() async throws {
        guard let process = self.process else { return }
        self.process = nil
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            kill(process.processIdentifier, SIGCONT)  // in case it was paused
        }
        try await eventually(timeout: .seconds(10), "redis-server on port \(self.port) exits") { !process.isRunning }
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and the kernel still accepts connections, but nothing
    /// answers.
    func pause() {
        if let process = self.process { kill(process.processIdentifier, SIGSTOP) }
    }

    /// Thaws a ``pause()``d server (SIGCONT).
    func resume() {
        if let process = self.process { kill(process.processIdentifier, SIGCONT) }
    }

    func restart(password: String? = nil) async throws {
        try await self.stop()
        try await self.start(password: password)
    }

    private func waitUntilAnswersPing(password: String?) async throws {
        let configuration = self.configuration(password: password)
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            if let process = self.process, !process.isRunning {
                throw TestFailure("redis-server exited at start (port \(self.port) taken?)")
            }
            do {
                let connection = try await value(
                    of: RedisConnection.connect(
                        configuration: configuration,
                        eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                        // "connection refused" is expected here until the server listens.
                        logger: Logger(label: "redis-test-server", factory: { _ in SwiftLogNoOpLogHandler() })
                    )
                )
                let reply = try await value(of: connection.send(["PING"]))
                try await value(of: connection.close())
                if reply == .simpleString("PONG") { return }
            } catch {
                if ContinuousClock.now > deadline { throw TestFailure("redis-server did not answer PING: \(error)") }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// A port nothing listens on right now: bind to port 0, read the port, close.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else { throw TestFailure("no local port") }
        return port
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 10 ms until it holds, failing after `timeout`.
func eventually(
    timeout: Duration = .seconds(10),
    _ what: String,
    _ condition: () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while await !condition() {
        if ContinuousClock.now > deadline { throw TestFailure("timed out waiting until \(what)") }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Awaits `future`, failing after `timeout`.
func value<Value: Sendable>(
    of future: EventLoopFuture<Value>,
    timeout: TimeAmount = .seconds(10)
) async throws -> Value {
    let promise = future.eventLoop.makePromise(of: Value.self)
    future.cascade(to: promise)
    let timer = future.eventLoop.scheduleTask(in: timeout) {
        promise.fail(TestFailure("timed out after \(timeout)"))
    }
    defer { timer.cancel() }
    return try await promise.futureResult.get()
}
