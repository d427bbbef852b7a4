import Synchronization

/// A weak reference that can be shared across threads: for callbacks handed to a connection before the object
/// that owns the connection is fully made (so the callback cannot capture it strongly, nor directly).
package final class WeakReference<Object: AnyObject>: Sendable {
    private struct Box: @unchecked Sendable {  // only read and written under the mutex
        weak var object: Object?
    }

    private let box = Mutex(Box())

    package init() {}

    package var object: Object? { box.withLock { $0.object } }

    package func set(_ object: Object) { box.withLock { $0.object = object } }
}
