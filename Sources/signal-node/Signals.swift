import Dispatch
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// SIGINT/SIGTERM handling on a dispatch queue (not on an event loop).
final class DispatchQueueSignals {
    private let sources: [any DispatchSourceSignal]

    init(logger: Logger, onSignal: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "signal-node.signals")
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                logger.info("stopping", metadata: ["signal": "\(number)"])
                onSignal()
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
    }
}
