import AgentJobsCore

/// A producer for the embedded ``SQLiteMessageLog``.
///
/// A send is an append in the database's write transaction, so it returns once the message is
/// committed (fsynced with the store's default durability); concurrent sends, and the store's
/// own writes, share commits through the writer queue (group commit). A batch is appended in
/// one transaction: all of it or none. Keyed messages go to
/// ``SQLiteMessageLogConfiguration/partitionForKey`` of their key; messages without a key go to
/// the topic's partitions in turn. A topic that does not exist yet is created with
/// ``SQLiteMessageLogConfiguration/defaultPartitionCount`` partitions.
///
/// It needs no service of its own: there is no connection to keep alive and nothing to flush.
public final class SQLiteMessageProducer: MessageProducer, Sendable {
    private let log: SQLiteMessageLog

    /// Creates a producer appending to `log`; consumers of the same log instance are woken
    /// right after each commit.
    public init(log: SQLiteMessageLog) {
        self.log = log
    }

    /// Appends one message and returns its position once it is committed.
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database refused the write or is closed.
    public func send(_ message: OutgoingMessage) async throws -> MessagePosition {
        let positions = try await log.append([message])
        return positions[0]
    }

    /// Appends all `messages` in one transaction. Either every result is a position or every
    /// result is the same error.
    public func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
        do {
            return try await log.append(messages).map { .success($0) }
        } catch {
            return messages.map { _ in .failure(error) }
        }
    }
}
