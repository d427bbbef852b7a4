/// The life of a reconnecting Redis client: at most one connection at a time, a pause between attempts, and a
/// shutdown that waits for the connection to be closed.
///
/// A plain value: the owner feeds it events and performs the returned actions. `Connection` is the channel in
/// the client and anything (a `String`) in tests. A new connection is only ever started from `waiting` or `idle`,
/// that is after the previous one reported `connectionClosed`, so two connections never overlap.
struct RedisConnectionStateMachine<Connection> {
    private enum State {
        case idle
        /// A connect (TCP + AUTH/SELECT) is in progress; `failures` counts the failures since the last success.
        case connecting(failures: Int)
        case connected(Connection)
        /// A reconnect timer is scheduled.
        case waitingToReconnect(failures: Int)
        /// Shutdown was asked while a connect was in progress: its result decides what to close.
        case shuttingDownWhileConnecting
        /// Shutdown was asked while connected: the connection is being closed.
        case shuttingDownClosingConnection
        case closed
    }

    private var state: State = .idle
    /// Connections established after the first one.
    private(set) var reconnectCount = 0
    private var hasConnected = false

    var connection: Connection? {
        if case .connected(let connection) = self.state { return connection }
        return nil
    }

    var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    enum ConnectAction {
        case connect
        case doNothing
    }

    mutating func start() -> ConnectAction {
        switch self.state {
        case .idle:
            self.state = .connecting(failures: 0)
            return .connect
        case .connecting, .connected, .waitingToReconnect, .shuttingDownWhileConnecting,
            .shuttingDownClosingConnection, .closed:
            return .doNothing
        }
    }

    mutating func reconnectTimerFired() -> ConnectAction {
        switch self.state {
        case .waitingToReconnect(let failures):
            self.state = .connecting(failures: failures)
            return .connect
        case .idle, .connecting, .connected, .shuttingDownWhileConnecting, .shuttingDownClosingConnection, .closed:
            // A timer that raced with shutdown.
            return .doNothing
        }
    }

    enum ConnectSucceededAction {
        /// Use the connection; `isReconnect` is false for the first one.
        case useConnection(Connection, isReconnect: Bool)
        /// Shutdown came first: close it (then report `connectionClosed`).
        case closeConnection(Connection)
    }

    mutating func connectSucceeded(_ connection: Connection) -> ConnectSucceededAction {
        switch self.state {
        case .connecting:
            let isReconnect = self.hasConnected
            self.hasConnected = true
            if isReconnect {
                self.reconnectCount += 1
            }
            self.state = .connected(connection)
            return .useConnection(connection, isReconnect: isReconnect)
        case .shuttingDownWhileConnecting:
            self.state = .shuttingDownClosingConnection
            return .closeConnection(connection)
        case .idle, .connected, .waitingToReconnect, .shuttingDownClosingConnection, .closed:
            self.invalidTransition(#function)
        }
    }

    enum RetryAction: Equatable {
        /// Wait ``RedisBackoff/delay(forAttempt:)`` of `failures`, then report `reconnectTimerFired`.
        case scheduleReconnect(failures: Int)
        /// Shutdown is complete.
        case finishShutdown
    }

    mutating func connectFailed() -> RetryAction {
        switch self.state {
        case .connecting(let failures):
            self.state = .waitingToReconnect(failures: failures + 1)
            return .scheduleReconnect(failures: failures + 1)
        case .shuttingDownWhileConnecting:
            self.state = .closed
            return .finishShutdown
        case .idle, .connected, .waitingToReconnect, .shuttingDownClosingConnection, .closed:
            self.invalidTransition(#function)
        }
    }

    /// The established connection closed (the server went away, or we closed it).
    mutating func connectionClosed() -> RetryAction {
        switch self.state {
        case .connected:
            self.state = .waitingToReconnect(failures: 1)
            return .scheduleReconnect(failures: 1)
        case .shuttingDownClosingConnection:
            self.state = .closed
            return .finishShutdown
        case .idle, .connecting, .waitingToReconnect, .shuttingDownWhileConnecting, .closed:
            self.invalidTransition(#function)
        }
    }

    enum ShutdownAction {
        case closeConnection(Connection)
        case cancelReconnectTimerAndFinish
        case finishShutdown
        /// A connect is in progress (its outcome finishes the shutdown) or shutdown is already under way.
        case waitForShutdown
    }

    mutating func shutdown() -> ShutdownAction {
        switch self.state {
        case .idle:
            self.state = .closed
            return .finishShutdown
        case .connecting:
            self.state = .shuttingDownWhileConnecting
            return .waitForShutdown
        case .connected(let connection):
            self.state = .shuttingDownClosingConnection
            return .closeConnection(connection)
        case .waitingToReconnect:
            self.state = .closed
            return .cancelReconnectTimerAndFinish
        case .shuttingDownWhileConnecting, .shuttingDownClosingConnection:
            return .waitForShutdown
        case .closed:
            return .finishShutdown
        }
    }

    private func invalidTransition(_ function: String) -> Never {
        preconditionFailure("RedisConnectionStateMachine: \(function) is invalid in state \(self.state)")
    }
}

extension RedisConnectionStateMachine.ConnectSucceededAction: Equatable where Connection: Equatable {}
extension RedisConnectionStateMachine.ShutdownAction: Equatable where Connection: Equatable {}
