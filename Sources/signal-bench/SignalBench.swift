import ArgumentParser

/// `signal-bench`: a load generator for Socket.IO signaling servers (being written).
@main
struct SignalBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "signal-bench", abstract: "Load generator for Socket.IO signaling servers.")

    func run() throws {
        print("signal-bench: not implemented yet")
    }
}
