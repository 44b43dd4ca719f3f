import AgentJobsCore
import AgentJobsSQLite
import AgentJobsStore
import Logging
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Importing a SQLite store

extension PostgresStore {
    /// What ``importSQLite(from:into:logger:progress:)`` copied, and what it left behind and why.
    public struct ImportSummary: Sendable, Hashable {
        /// A table copied, with the rows copied into it.
        public struct CopiedTable: Sendable, Hashable {
            public var table: String
            public var rows: Int
        }

        /// Rows of the SQLite database that were not copied, and why.
        public struct NotCopied: Sendable, Hashable {
            /// The tables (or the part of a table) left behind.
            public var what: String
            public var rows: Int
            /// One sentence: why the PostgreSQL control plane does not need them.
            public var reason: String
        }

        /// In the order they were copied (foreign keys first).
        public var copied: [CopiedTable]
        public var notCopied: [NotCopied]

        /// Every row copied.
        public var copiedRows: Int { copied.reduce(0) { $0 + $1.rows } }
    }

    /// Copies the control-plane state of a SQLite store into an empty PostgreSQL database: tokens,
    /// hosts, jobs, runs, schedule bookkeeping, the unsent outbox rows, the audit log and the shared
    /// secrets.
    ///
    /// The SQLite file is opened as ``SQLiteStore`` opens it, so an older file is first brought to
    /// this build's schema; nothing else in it changes. It is read a page at a time, so stop every
    /// process that uses it first. Everything is written in one PostgreSQL transaction with the
    /// copied tables locked: on any failure the database holds no copied row. Sequences continue
    /// after the highest value SQLite ever drew (sent and deleted outbox rows included: the outbox
    /// sequence is the id consumers deduplicate by).
    ///
    /// Not copied: the embedded message log (`log_*`) and host tracking's watermarks, which describe
    /// the embedded transport; the rows of the outbox already sent; and each host's heartbeat
    /// partition (of the embedded log), which host tracking on the new transport finds again.
    /// - Parameters:
    ///   - path: The SQLite database file; it must exist.
    ///   - configuration: The PostgreSQL database; migrated if needed, and it must hold no row in
    ///     any table this copies.
    ///   - logger: For the PostgreSQL store.
    ///   - progress: Called with a table and the rows copied into it so far: every 10,000 rows, and
    ///     once with the table's total when it is done (inside the transaction: before the commit).
    /// - Returns: What was copied and what was not.
    /// - Throws: ``StoreError``: `unavailable` when a database cannot be opened or read, when the
    ///   SQLite file is missing, is of a newer schema, or holds a table or column this build does
    ///   not know; `conflict` when the PostgreSQL database already holds rows (the message names the
    ///   table); `corrupt` when a SQLite value does not fit its PostgreSQL column (the message names
    ///   the table, column and rowid).
    public static func importSQLite(
        from path: String, into configuration: Configuration, logger: Logger,
        progress: @escaping @Sendable (_ table: String, _ rows: Int) -> Void = { _, _ in }
    ) async throws -> ImportSummary {
        // SQLiteStore would create a missing file: a mistyped path must not "import" an empty store.
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(.unavailable, "there is no SQLite database at \(path)")
        }
        let source = try SQLiteStore(path: path)
        do {
            let summary = try await importSQLite(source, into: configuration, logger: logger, progress: progress)
            await source.close()
            return summary
        } catch {
            await source.close()
            throw error
        }
    }

    private static func importSQLite(
        _ source: SQLiteStore, into configuration: Configuration, logger: Logger,
        progress: @escaping @Sendable (String, Int) -> Void
    ) async throws -> ImportSummary {
        let known = Set(SQLiteSchema.migrations.map(\.version))
        if let newer = try await source.appliedMigrations().first(where: { !known.contains($0) }) {
            throw StoreError(
                .unavailable,
                "the SQLite database \(source.path) has schema version \(newer), which this build does not know; "
                    + "use the agentjobs release that wrote it")
        }
        // Checked before PostgreSQL is touched: an unknown table stops the import, never silently stays behind.
        let notCopied = try await leftBehind(in: source)
        let target = try await connect(configuration, logger: logger)
        do {
            // The whole copy is one transaction, as long as the tables are large: no time limit.
            let copied = try await target.write(limit: .unlimited) { db in
                try await lockEmptyTables(db, target: configuration.target)
                var tables: [ImportSummary.CopiedTable] = []
                for table in importedTables {
                    tables.append(try await copy(table, from: source, into: db, progress: progress))
                }
                return tables
            }
            await target.close()
            let summary = ImportSummary(copied: copied, notCopied: notCopied)
            logger.info(
                "copied a SQLite store into PostgreSQL",
                metadata: [
                    "source": "\(source.path)", "target": "\(configuration.target)", "rows": "\(summary.copiedRows)",
                ])
            return summary
        } catch {
            await target.close()
            throw error
        }
    }

    // MARK: What is copied

    /// A table to copy.
    struct ImportedTable: Sendable {
        var name: String
        /// Which SQLite rows to copy (an SQL condition); nil for all.
        var condition: String? = nil
        /// Columns left NULL whatever SQLite holds.
        var cleared: Set<String> = []
        /// A column PostgreSQL has and SQLite does not, computed from a copied column: `sql` with `{}`
        /// standing for that column's value in the same row.
        var derived: [String: (source: String, sql: String)] = [:]
    }

    /// The tables copied, in foreign-key order (jobs after hosts, payloads and unsent marks after
    /// the outbox). Every SQLite table is either here or in ``leftBehindReasons``.
    static let importedTables: [ImportedTable] = [
        ImportedTable(name: "api_tokens"),
        ImportedTable(name: "registration_tokens"),
        // The partition a host's heartbeats came from is one of the embedded log's; until the host's
        // next heartbeat, host tracking maps its id to a partition of the new transport.
        ImportedTable(name: "hosts", cleared: ["heartbeat_partition"]),
        ImportedTable(name: "jobs"),
        ImportedTable(name: "schedule_occurrences"),
        ImportedTable(name: "runs"),
        // Sent rows are history (retention deletes them); unsent ones are commands still to publish.
        ImportedTable(name: "outbox", condition: "seq IN (SELECT seq FROM outbox_unsent)"),
        ImportedTable(name: "outbox_payloads", condition: "seq IN (SELECT seq FROM outbox_unsent)"),
        // PostgreSQL divides unsent rows into relay shards by their key, as its migration does.
        ImportedTable(
            name: "outbox_unsent",
            derived: [
                "shard": (source: "seq", sql: "(SELECT agentjobs_outbox_shard(key) FROM outbox WHERE seq = {})")
            ]),
        ImportedTable(name: "control_plane_secrets"),
        ImportedTable(name: "audit_log"),
        ImportedTable(name: "webhooks"),
        ImportedTable(name: "webhook_deliveries"),
    ]

    /// SQLite tables not copied, by name or by prefix (ending in `_`), and why.
    static let leftBehindReasons: [(table: String, reason: String)] = [
        (
            "log_",
            "the embedded message log's messages and offsets are transport state, not control-plane state; "
                + "commands not yet published are in the outbox, which is copied and published by the relay"
        ),
        (
            "host_tracking",
            "it tells how far host tracking read the embedded log; on the new transport tracking starts afresh "
                + "and every host gets a full grace period before it can be declared offline"
        ),
        (
            "run_changes",
            "it counts changes of runs for the console's live updates; on PostgreSQL the database notifies them"
        ),
    ]

    /// What of the SQLite database stays behind, grouped by reason.
    /// - Throws: ``StoreError/Code/unavailable`` for a table that is neither copied nor known to stay.
    private static func leftBehind(in source: SQLiteStore) async throws -> [ImportSummary.NotCopied] {
        let tables = try await readSQLite(source) { sqlite in
            try sqlite.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).compactMap { $0.string("name") }
        }
        let copied = Set(importedTables.map(\.name))
        var groups: [(tables: [String], reason: String)] = []
        for table in tables where !copied.contains(table) && table != "schema_migrations" {
            guard
                let reason = leftBehindReasons.first(where: {
                    $0.table.hasSuffix("_") ? table.hasPrefix($0.table) : table == $0.table
                })?.reason
            else {
                throw StoreError(
                    .unavailable,
                    "the SQLite table \(table) is not known to this build's migrate-store, so it cannot be copied; "
                        + "use the agentjobs release that wrote the database")
            }
            if let index = groups.firstIndex(where: { $0.reason == reason }) {
                groups[index].tables.append(table)
            } else {
                groups.append(([table], reason))
            }
        }
        var notCopied: [ImportSummary.NotCopied] = []
        for group in groups {
            let names = group.tables
            let rows = try await readSQLite(source) { sqlite in
                var rows = 0
                for table in names {
                    rows += try sqlite.query("SELECT count(*) AS n FROM \(Self.quoted(table))").first?.int("n") ?? 0
                }
                return rows
            }
            notCopied.append(.init(what: names.joined(separator: ", "), rows: rows, reason: group.reason))
        }
        let sent = try await readSQLite(source) { sqlite in
            try sqlite.query("SELECT count(*) AS n FROM outbox WHERE seq NOT IN (SELECT seq FROM outbox_unsent)").first?
                .int("n") ?? 0
        }
        notCopied.append(
            .init(
                what: "outbox rows already sent", rows: sent,
                reason: "they were published already; only unsent rows are pending work"))
        return notCopied
    }

    // MARK: Copying

    /// Locks the tables to copy into against other writers and refuses to go on if any holds a row.
    private static func lockEmptyTables(_ db: PostgresSession, target: String) async throws {
        let names = importedTables.map(\.name)
        try await db.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(names.joined(separator: ", ")) IN EXCLUSIVE MODE"))
        for name in names {
            let rows = try await db.query(PostgresQuery(unsafeSQL: "SELECT EXISTS (SELECT 1 FROM \(name))"))
            if try rows.first?.decode(Bool.self) == true {
                throw StoreError(
                    .conflict,
                    "the PostgreSQL database \(target) is not empty: its table \(name) holds rows; "
                        + "migrate-store copies into an empty database only, so point it at a new one")
            }
        }
    }

    /// A PostgreSQL column, as `information_schema.columns` describes it.
    private struct TargetColumn {
        enum Kind: String { case bigint, integer, boolean, text, bytea }
        var name: String
        var kind: Kind
        /// `GENERATED ALWAYS AS IDENTITY`: copied values need `OVERRIDING SYSTEM VALUE`, then the
        /// sequence moved past them.
        var identity: Bool
    }

    /// How one table's rows are written: the columns read from SQLite (in `SELECT` order, after the
    /// rowid), then the columns computed from them.
    private struct CopyPlan {
        var copied: [TargetColumn] = []
        var derived: [(column: String, source: Int, sql: String)] = []
        var identity: [String] { copied.filter(\.identity).map(\.name) }
    }

    /// Rows per `INSERT`; fewer for wide tables, under the protocol's 65,535 parameters.
    private static let batchSize = 500
    /// Rows between two progress reports of one table.
    private static let progressInterval = 10_000

    private static func copy(
        _ table: ImportedTable, from source: SQLiteStore, into db: PostgresSession,
        progress: @Sendable (String, Int) -> Void
    ) async throws -> ImportSummary.CopiedTable {
        let plan = try await planCopy(of: table, from: source, db)
        let name = table.name
        let selected = plan.copied.map { quoted($0.name) }.joined(separator: ", ")
        let filter = table.condition.map { "(" + $0 + ") AND " } ?? ""
        let select = "SELECT rowid, \(selected) FROM \(quoted(name)) WHERE \(filter)rowid > ? ORDER BY rowid LIMIT ?"
        let inserted = (plan.copied.map(\.name) + plan.derived.map(\.column)).map(quoted).joined(separator: ", ")
        // Identity columns are `GENERATED ALWAYS`: their copied values need the override.
        let insert =
            "INSERT INTO \(name) (\(inserted)) " + (plan.identity.isEmpty ? "" : "OVERRIDING SYSTEM VALUE ") + "VALUES "
        let limit = max(1, min(batchSize, 60_000 / max(1, plan.copied.count)))
        var after = Int64.min
        var count = 0
        var reported = 0
        while true {
            let cursor = after
            let rows = try await readSQLite(source) { sqlite in
                try sqlite.query(select, [.integer(cursor), .int(limit)]).map(\.values)
            }
            guard let last = rows.last else { break }
            var binds = PostgresBindings(capacity: rows.count * plan.copied.count)
            var tuples: [String] = []
            tuples.reserveCapacity(rows.count)
            for row in rows {
                guard case .integer(let rowid) = row.first else {
                    throw StoreError(.corrupt, "\(name): a row has no integer rowid")
                }
                var placeholders: [String] = []
                for (index, column) in plan.copied.enumerated() {
                    try bind(row[index + 1], to: column, of: name, rowid: rowid, &binds)
                    placeholders.append("$\(binds.count)")
                }
                let computed = plan.derived.map { $0.sql.replacing("{}", with: placeholders[$0.source]) }
                tuples.append("(" + (placeholders + computed).joined(separator: ", ") + ")")
            }
            try await db.query(PostgresQuery(unsafeSQL: insert + tuples.joined(separator: ", "), binds: binds))
            if case .integer(let lastRowid) = last.first { after = lastRowid }
            count += rows.count
            if count - reported >= progressInterval {
                progress(name, count)
                reported = count
            }
            if rows.count < limit { break }
        }
        if count != reported || count == 0 { progress(name, count) }
        for column in plan.identity {
            try await continueSequence(of: name, column: column, from: source, db)
        }
        return .init(table: name, rows: count)
    }

    /// Matches a table's SQLite columns with its PostgreSQL ones.
    /// - Throws: ``StoreError/Code/unavailable`` when the PostgreSQL table is missing, a SQLite column
    ///   has no PostgreSQL counterpart (its values would be lost), a required PostgreSQL column has
    ///   no value to take, or a column's type is not one this copies.
    private static func planCopy(
        of table: ImportedTable, from source: SQLiteStore, _ db: PostgresSession
    ) async throws -> CopyPlan {
        let name = table.name
        let sourceColumns = try await readSQLite(source) { sqlite in
            try sqlite.query("SELECT name FROM pragma_table_info(?) ORDER BY cid", [.text(name)]).compactMap {
                $0.string("name")
            }
        }
        guard !sourceColumns.isEmpty else {
            throw StoreError(.unavailable, "the SQLite database has no table \(name)")
        }
        let targetColumns = try await db.query(
            """
            SELECT column_name::text, data_type::text, is_nullable = 'YES' OR column_default IS NOT NULL,
                is_identity = 'YES'
            FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = \(name)
            ORDER BY ordinal_position
            """
        ).map { row in
            // Optional: NULL is allowed, or a default or the identity fills it.
            let (column, type, optional, identity) = try row.decode((String, String, Bool, Bool).self)
            return (column: column, type: type, optional: optional || identity, identity: identity)
        }
        guard !targetColumns.isEmpty else {
            throw StoreError(.unavailable, "the PostgreSQL database has no table \(name)")
        }
        let targetNames = Set(targetColumns.map(\.column))
        if let lost = sourceColumns.first(where: { !targetNames.contains($0) && !table.cleared.contains($0) }) {
            throw StoreError(
                .unavailable,
                "the SQLite column \(name).\(lost) has no PostgreSQL counterpart; this build cannot copy it")
        }
        var plan = CopyPlan()
        for target in targetColumns {
            if sourceColumns.contains(target.column) && !table.cleared.contains(target.column) {
                guard let kind = TargetColumn.Kind(rawValue: target.type), !target.column.contains("\"") else {
                    throw StoreError(
                        .unavailable,
                        "the PostgreSQL column \(name).\(target.column) is of type \(target.type), which migrate-store "
                            + "cannot fill")
                }
                plan.copied.append(TargetColumn(name: target.column, kind: kind, identity: target.identity))
            } else if !target.optional && table.derived[target.column] == nil {
                throw StoreError(
                    .unavailable,
                    "the PostgreSQL column \(name).\(target.column) is required and SQLite has nothing to fill it with")
            }
        }
        for (column, rule) in table.derived where targetNames.contains(column) && !sourceColumns.contains(column) {
            guard let index = plan.copied.firstIndex(where: { $0.name == rule.source }) else {
                throw StoreError(.unavailable, "\(name).\(column) is computed from \(rule.source), which is not copied")
            }
            plan.derived.append((column, index, rule.sql))
        }
        return plan
    }

    /// Appends a SQLite value as its PostgreSQL column's type.
    /// - Throws: ``StoreError/Code/corrupt`` naming the table, column and rowid when it does not fit.
    private static func bind(
        _ value: SQLiteValue, to column: TargetColumn, of table: String, rowid: Int64,
        _ binds: inout PostgresBindings
    ) throws {
        switch (value, column.kind) {
        case (.null, _):
            binds.appendNull()
        case (.integer(let integer), .bigint):
            binds.append(integer)
        case (.integer(let integer), .integer):
            guard let narrow = Int32(exactly: integer) else {
                throw StoreError(.corrupt, "\(table).\(column.name) of rowid \(rowid) is out of range: \(integer)")
            }
            binds.append(narrow)
        case (.integer(let integer), .boolean) where integer == 0 || integer == 1:
            binds.append(integer == 1)
        case (.text(let text), .text):
            // PostgreSQL text cannot hold U+0000; said here, with the row, rather than by the server.
            guard !text.utf8.contains(0) else {
                throw StoreError(.corrupt, "\(table).\(column.name) of rowid \(rowid) holds a NUL character")
            }
            binds.append(text)
        case (.blob, .bytea), (.text, .bytea):
            // The SQLite store reads a payload's bytes from either (`SQLiteValue.bytes`).
            binds.append(ByteBuffer(bytes: value.bytes ?? []))
        default:
            throw StoreError(
                .corrupt,
                "\(table).\(column.name) of rowid \(rowid) holds \(describe(value)), which does not fit its "
                    + "PostgreSQL \(column.kind.rawValue) column")
        }
    }

    private static func describe(_ value: SQLiteValue) -> String {
        switch value {
        case .null: "NULL"
        case .integer(let integer): "the integer \(integer)"
        case .real(let real): "the real number \(real)"
        case .text: "text"
        case .blob(let bytes): "a blob of \(bytes.count) bytes"
        }
    }

    /// Sets an identity column's sequence to the highest value SQLite ever drew for it (its
    /// AUTOINCREMENT counter covers deleted rows too), so that new rows continue after it.
    private static func continueSequence(
        of table: String, column: String, from source: SQLiteStore, _ db: PostgresSession
    ) async throws {
        let highest = try await readSQLite(source) { sqlite in
            let stored = try sqlite.query("SELECT max(\(Self.quoted(column))) AS n FROM \(Self.quoted(table))").first?
                .int64("n")
            let drawn = try sqlite.query("SELECT seq FROM sqlite_sequence WHERE name = ?", [.text(table)]).first?
                .int64("seq")
            return max(stored ?? 0, drawn ?? 0)
        }
        guard highest > 0 else { return }
        try await db.query("SELECT setval(pg_get_serial_sequence(\(table), \(column)), \(highest))")
    }

    // MARK: Reading SQLite

    /// Runs `body` on a reader of the SQLite database (one read transaction), naming the file in errors.
    private static func readSQLite<T: Sendable>(
        _ source: SQLiteStore, _ body: @escaping @Sendable (SQLiteConnection) throws -> T
    ) async throws -> T {
        do {
            return try await source.database.read(body)
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "cannot read the SQLite database \(source.path): \(error.message)")
        }
    }

    /// An identifier in double quotes (names come from the schemas, never from input).
    private static func quoted(_ name: String) -> String { "\"" + name + "\"" }
}
