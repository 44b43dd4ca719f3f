import Synchronization

/// A one-way flag: set once by one task, read by others (a poll loop told to stop, work waiting
/// for a start-up step).
public final class OneWayFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isSet: Bool { flag.load(ordering: .acquiring) }

    public func set() { flag.store(true, ordering: .releasing) }
}
