import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Audit log

extension SQLiteStore {
    /// Appends `entry` in the caller's transaction.
    static func appendAudit(_ entry: AuditEntry, _ db: SQLiteConnection) throws {
        try db.execute(
            """
            INSERT INTO audit_log (at, action, actor, actor_id, target_kind, target_id, target_name, summary)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .date(entry.at), .text(entry.action.rawValue), .optionalText(entry.actor?.storedForm),
                .optionalText(entry.actor?.id), .text(entry.action.targetKind), .text(entry.targetId),
                .optionalText(entry.targetName), .optionalText(entry.summary),
            ])
    }

    public func listAudit(_ filter: AuditFilter, cursor: String?, limit: Int) async throws -> AuditPage {
        let limit = max(0, limit)
        var conditions: [String] = []
        var bindings: [SQLiteValue] = []
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            conditions.append("seq < ?")
            bindings.append(.integer(sequence))
        }
        for (column, value) in [
            // An action names its target's kind too, so a filter on the action alone uses that index.
            ("target_kind", filter.targetKind ?? filter.action?.targetKind), ("action", filter.action?.rawValue),
            ("actor_id", filter.actorId),
            ("target_id", filter.targetId),
        ] {
            guard let value else { continue }
            conditions.append("\(column) = ?")
            bindings.append(.text(value))
        }
        bindings.append(.int(limit + 1))
        let sql =
            "SELECT seq, at, action, actor, target_id, target_name, summary FROM audit_log"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY seq DESC LIMIT ?"
        return try await read { [bindings] db in
            let rows = try db.query(sql, bindings)
            let page = rows.prefix(limit)
            let entries = try page.map(Self.auditEntry)
            let next = rows.count > limit ? entries.last.map { PageCursor.encode($0.sequence) } : nil
            return AuditPage(entries: entries, nextCursor: next)
        }
    }

    public func deleteAuditEntries(before cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try db.execute(
                "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)",
                [.date(cutoff), .int(max(0, limit))])
            return db.changes
        }
    }

    static func auditEntry(_ row: SQLiteRow) throws -> AuditEntry {
        let stored = try StoredRow("audit_log", id: row.string("seq"))
        return AuditEntry(
            sequence: try stored.value(row.int64("seq"), "seq"), at: try stored.value(row.date("at"), "at"),
            action: try stored.known(row.string("action"), "action"),
            actor: try stored.requester(row.string("actor"), "actor"),
            targetId: try stored.value(row.string("target_id"), "target_id"), targetName: row.string("target_name"),
            summary: row.string("summary"))
    }
}
