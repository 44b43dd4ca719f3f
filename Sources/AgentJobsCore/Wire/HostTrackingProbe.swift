#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A probe host tracking publishes into one partition of `agentjobs.host-events` and reads back, to
/// know how far it has read that partition (``HostTrackingWatermark``).
///
/// Signed with HMAC-SHA256 under a secret the tracker replicas share through the database, so a
/// host (which may publish to the topic) cannot forge one to make tracking look current while it is
/// behind. Downstream consumers of the topic may ignore it.
public struct HostTrackingProbe: WireBody, Hashable {
    public static let type = "agentjobs.tracking.probe"
    public static let version = 1
    /// The source attribute of probes.
    public static let source = "agentjobs://control-plane/host-tracking"

    /// The replica that sent it (for logs).
    public var trackerId: String
    /// The partition it was published to; a probe read from another partition is refused.
    public var partition: Int32
    /// When it was published (the tracker's clock).
    public var sentAt: Date

    public init(trackerId: String, partition: Int32, sentAt: Date) {
        self.trackerId = trackerId
        self.partition = partition
        self.sentAt = sentAt
    }

    /// The signed message, keyed with `key` (a key that the topic's partitioner maps to ``partition``).
    public func message(key: String, signedWith secret: HostEventKey) throws -> OutgoingMessage {
        let millis = Int64((sentAt.timeIntervalSince1970 * 1000).rounded())
        let envelope = WireEnvelope(
            id: "probe:\(trackerId):\(partition):\(millis)", source: Self.source, type: Self.versionedType,
            time: sentAt, subject: "partition-\(partition)", key: key)
        return secret.signedMessage(topic: Topic.hostEvents, envelope: envelope, body: try WireJSON.encode(self))
    }

    /// For each partition of a topic with `partitionCount` partitions, a key that `partitioner` maps to it.
    public static func keys(partitionCount: Int32, partitioner: PartitionForKey) -> [Int32: String] {
        var keys: [Int32: String] = [:]
        var candidate = 0
        while keys.count < partitionCount {
            let key = "host-tracking-probe-\(candidate)"
            let partition = partitioner(Array(key.utf8), partitionCount)
            if keys[partition] == nil { keys[partition] = key }
            candidate += 1
        }
        return keys
    }
}
