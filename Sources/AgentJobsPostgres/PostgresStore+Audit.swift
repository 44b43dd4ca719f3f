import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Audit log

extension PostgresStore {
    /// Appends `entry` in the caller's transaction.
    static func appendAudit(_ entry: AuditEntry, _ db: PostgresSession) async throws {
        try await db.query(
            """
            INSERT INTO audit_log (at, action, actor, actor_id, target_kind, target_id, target_name, summary)
            VALUES (\(StoredTime.ms(entry.at)), \(entry.action.rawValue), \(entry.actor?.storedForm),
                    \(entry.actor?.id), \(entry.action.targetKind), \(entry.targetId), \(entry.targetName),
                    \(entry.summary))
            """)
    }

    public func listAudit(_ filter: AuditFilter, cursor: String?, limit: Int) async throws -> AuditPage {
        let limit = max(0, limit)
        var conditions: [String] = []
        var bindings = PostgresBindings()
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            bindings.append(sequence)
            conditions.append("seq < $\(bindings.count)")
        }
        for (column, value) in [
            // An action names its target's kind too, so a filter on the action alone uses that index.
            ("target_kind", filter.targetKind ?? filter.action?.targetKind), ("action", filter.action?.rawValue),
            ("actor_id", filter.actorId),
            ("target_id", filter.targetId),
        ] {
            guard let value else { continue }
            bindings.append(value)
            conditions.append("\(column) = $\(bindings.count)")
        }
        bindings.append(limit + 1)
        let sql =
            "SELECT seq, at, action, actor, target_id, target_name, summary FROM audit_log"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY seq DESC LIMIT $\(bindings.count)"
        let query = PostgresQuery(unsafeSQL: sql, binds: bindings)
        return try await read { db in
            let rows = try await db.query(query)
            let entries = try rows.prefix(limit).map { try Self.auditEntry($0) }
            let next = rows.count > limit ? entries.last.map { PageCursor.encode($0.sequence) } : nil
            return AuditPage(entries: entries, nextCursor: next)
        }
    }

    public func deleteAuditEntries(before cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try await db.query(
                """
                DELETE FROM audit_log WHERE seq IN (
                    SELECT seq FROM audit_log WHERE at < \(StoredTime.ms(cutoff)) ORDER BY at LIMIT \(max(0, limit)))
                RETURNING seq
                """
            ).count
        }
    }

    static func auditEntry(_ row: PostgresRow) throws -> AuditEntry {
        var stored = StoredValues(row, table: "audit_log")
        let sequence = try stored.value("seq", Int64.self)
        stored = stored.identified(as: String(sequence))
        return AuditEntry(
            sequence: sequence, at: try stored.date(required: "at"),
            action: try stored.known("action"), actor: try stored.requester("actor"),
            targetId: try stored.string(required: "target_id"), targetName: try stored.string("target_name"),
            summary: try stored.string("summary"))
    }
}
