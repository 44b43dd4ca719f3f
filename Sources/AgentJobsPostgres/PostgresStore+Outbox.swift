import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Outbox

extension PostgresStore {
    public func outboxBacklog() async throws -> OutboxBacklog {
        try await read { db in
            let unsent =
                try await db.query("SELECT count(*) FROM outbox_unsent")
                .map { try $0.decode(Int64.self) }.first ?? 0
            let oldest = try await db.query(
                "SELECT o.created_at FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq ORDER BY u.seq LIMIT 1"
            ).map { try $0.decode(Int64.self) }.first
            return OutboxBacklog(unsent: Int(unsent), oldestWrittenAt: oldest.map(StoredTime.date))
        }
    }

    /// Unsent outbox messages of `shards` after `sequence`, in sequence order.
    ///
    /// Sequences are drawn when a row is written, and transactions may commit out of that order, so
    /// a row can appear behind a higher one already read; the relay starts every pass from the
    /// oldest unsent row, which finds it. (Rows of one run are written by transactions that follow
    /// one another, so their order holds.)
    public func pendingOutbox(after sequence: Int64, limit: Int, shards: OutboxShards) async throws -> [OutboxMessage] {
        let limit = max(0, limit)
        return try await read(limit: .relay) { db in
            switch shards {
            case .all:
                try await db.query(
                    """
                    SELECT o.seq, o.topic, o.key, o.run_id, o.type, p.payload, o.created_at, o.trace_parent
                    FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq JOIN outbox_payloads p ON p.seq = u.seq
                    WHERE u.seq > \(sequence) ORDER BY u.seq LIMIT \(limit)
                    """
                ).map { try Self.outboxMessage($0) }
            case .only(let held):
                try await db.query(
                    """
                    SELECT o.seq, o.topic, o.key, o.run_id, o.type, p.payload, o.created_at, o.trace_parent
                    FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq JOIN outbox_payloads p ON p.seq = u.seq
                    WHERE u.seq > \(sequence) AND u.shard = ANY(\(held.sorted().map { Int32($0) }))
                    ORDER BY u.seq LIMIT \(limit)
                    """
                ).map { try Self.outboxMessage($0) }
            }
        }
    }

    /// Announces `replica`, then, holding every lease row (locked in shard order, so concurrent
    /// calls take turns), renews the leases it keeps, claims expired ones up to its share, and ends
    /// the ones beyond its share within a second (so a new replica gets them without waiting for a
    /// whole lease). The database's `now()` times every lease, so the replicas' clocks do not
    /// matter. The transaction bounds its lock waits and its idle time to a few seconds: a replica
    /// that stalls while it holds the lease rows must not stop the other replicas' renewals for
    /// longer than their leases last.
    public func leaseOutboxShards(replica: String, duration: Duration) async throws -> OutboxLease {
        let ms = duration.millisecondCount
        return try await write(limit: .relay) { db in
            try await db.query("SET LOCAL lock_timeout = '2s'")
            try await db.query("SET LOCAL idle_in_transaction_session_timeout = '3s'")
            let leases = try await db.query(
                "SELECT shard, replica, expires_at > now() FROM outbox_shard_leases ORDER BY shard FOR UPDATE"
            ).map { row in
                let (shard, holder, live) = try row.decode((Int32, String?, Bool).self)
                return (shard: Int(shard), holder: holder, live: live)
            }
            try await db.query(
                """
                INSERT INTO outbox_relays (replica, expires_at) VALUES (\(replica), now() + \(ms) * interval '1 millisecond')
                ON CONFLICT (replica) DO UPDATE SET expires_at = EXCLUDED.expires_at
                """)
            try await db.query("DELETE FROM outbox_relays WHERE expires_at < now() - interval '1 hour'")
            let replicas =
                try await db.query("SELECT count(*) FROM outbox_relays WHERE expires_at > now()")
                .map { try $0.decode(Int64.self) }.first ?? 1
            let share = (leases.count + Int(max(1, replicas)) - 1) / Int(max(1, replicas))
            let kept = leases.filter { $0.live && $0.holder == replica }.map(\.shard).prefix(share)
            let claimed = leases.filter { !$0.live }.map(\.shard).prefix(max(0, share - kept.count))
            let held = Array(kept) + Array(claimed)
            let dropped = leases.filter { $0.live && $0.holder == replica }.map(\.shard).dropFirst(share)
            if !dropped.isEmpty {
                try await db.query(
                    """
                    UPDATE outbox_shard_leases SET expires_at = LEAST(expires_at, now() + interval '1 second')
                    WHERE shard = ANY(\(dropped.map { Int32($0) }))
                    """)
            }
            if !held.isEmpty {
                try await db.query(
                    """
                    UPDATE outbox_shard_leases SET replica = \(replica), expires_at = now() + \(ms) * interval '1 millisecond'
                    WHERE shard = ANY(\(held.map { Int32($0) }))
                    """)
            }
            return OutboxLease(shards: .only(Set(held)), duration: duration, replicas: Int(replicas))
        }
    }

    /// Ends `replica`'s leases now, so that the other replicas take its shards at their next renewal
    /// instead of after the leases expire.
    public func releaseOutboxShards(replica: String) async throws {
        try await write(limit: .relay) { db in
            try await db.query(
                """
                UPDATE outbox_shard_leases SET replica = NULL, expires_at = '-infinity'
                WHERE shard IN (SELECT shard FROM outbox_shard_leases WHERE replica = \(replica) ORDER BY shard FOR UPDATE)
                """)
            try await db.query("DELETE FROM outbox_relays WHERE replica = \(replica)")
        }
    }

    public func markOutboxSent(sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        try await write(limit: .relay) { db in
            try await db.query("DELETE FROM outbox_unsent WHERE seq = ANY(\(sequences.sorted()))")
        }
    }

    public func deleteSentOutbox(writtenBefore cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            // Rows are written in sequence order, so the rows written before the cutoff are those
            // before the first one written after it: the scan stops there instead of reading the
            // whole outbox. The foreign keys' `ON DELETE CASCADE` take the payloads along.
            try await db.query(
                """
                DELETE FROM outbox WHERE seq IN (
                    SELECT o.seq FROM outbox o
                    WHERE o.seq < (
                        SELECT COALESCE(MIN(seq), 9223372036854775807) FROM outbox
                        WHERE created_at >= \(StoredTime.ms(cutoff)))
                    AND NOT EXISTS (SELECT 1 FROM outbox_unsent u WHERE u.seq = o.seq)
                    ORDER BY o.seq LIMIT \(max(0, limit)))
                RETURNING seq
                """
            ).count
        }
    }
}
