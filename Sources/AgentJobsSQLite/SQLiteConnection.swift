import CSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A value bound to or read from SQLite.
package enum SQLiteValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLiteValue {
    /// A blob's bytes, or a text's UTF-8; `nil` for other values.
    package static func date(_ date: Date) -> SQLiteValue { .integer(date.millisecondsSince1970) }
    package static func optionalDate(_ date: Date?) -> SQLiteValue { date.map(SQLiteValue.date) ?? .null }
    package static func optionalText(_ text: String?) -> SQLiteValue { text.map(SQLiteValue.text) ?? .null }
    package static func int(_ value: Int) -> SQLiteValue { .integer(Int64(value)) }

    package var bytes: [UInt8]? {
        switch self {
        case .blob(let bytes): return bytes
        case .text(let text): return Array(text.utf8)
        default: return nil
        }
    }
}

/// A failed SQLite call, with SQLite's extended result code.
package struct SQLiteError: Error, CustomStringConvertible {
    package var code: Int32
    package var message: String
    package var sql: String?

    package init(code: Int32, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// SQLITE_CONSTRAINT_UNIQUE (2067) or SQLITE_CONSTRAINT_PRIMARYKEY (1555).
    package var isUniqueViolation: Bool { code == 2067 || code == 1555 }
    package var isBusy: Bool { code & 0xff == SQLITE_BUSY || code & 0xff == SQLITE_LOCKED }

    package var description: String { "SQLite error \(code): \(message)" }
}

/// Reads the columns of one result row by index.
package protocol SQLiteColumnReader {
    func value(at column: Int) -> SQLiteValue
}

extension SQLiteColumnReader {
    package func string(at column: Int) -> String? {
        switch value(at: column) {
        case .text(let text): return text
        case .integer(let value): return String(value)
        case .blob(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    package func int(at column: Int) -> Int? {
        switch value(at: column) {
        case .integer(let value): return Int(value)
        case .real(let value): return Int(value)
        default: return nil
        }
    }

    package func date(at column: Int) -> Date? {
        if case .integer(let value) = value(at: column) { return Date(millisecondsSince1970: value) }
        return nil
    }
}

/// One row of a result, read by column name.
package struct SQLiteRow: SQLiteColumnReader {
    package let values: [SQLiteValue]
    package let columns: [String: Int]

    package subscript(_ name: String) -> SQLiteValue {
        guard let index = columns[name] else { return .null }
        return values[index]
    }

    package func value(at column: Int) -> SQLiteValue { values.indices.contains(column) ? values[column] : .null }

    package func string(_ name: String) -> String? {
        switch self[name] {
        case .text(let text): return text
        case .integer(let value): return String(value)
        case .blob(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    package func int(_ name: String) -> Int? {
        switch self[name] {
        case .integer(let value): return Int(value)
        case .real(let value): return Int(value)
        default: return nil
        }
    }

    package func int64(_ name: String) -> Int64? {
        if case .integer(let value) = self[name] { return value }
        return nil
    }

    package func date(_ name: String) -> Date? {
        int64(name).map(Date.init(millisecondsSince1970:))
    }

    package func blob(_ name: String) -> [UInt8]? { self[name].bytes }
}

extension Date {
    package init(millisecondsSince1970 ms: Int64) {
        self.init(timeIntervalSince1970: Double(ms) / 1000)
    }

    package var millisecondsSince1970: Int64 {
        Int64((timeIntervalSince1970 * 1000).rounded())
    }
}

/// A single SQLite connection. Not thread-safe: each connection is used by one thread at a time
/// (see ``SQLiteDatabase``), which is what makes the unchecked `Sendable` sound.
package final class SQLiteConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    /// Prepared statements by SQL text, each with its result columns by name.
    private var statements: [String: (statement: OpaquePointer, columns: [String: Int])] = [:]
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Opens (creating if needed) a database file.
    /// - Throws: ``SQLiteError`` when the file cannot be opened.
    package init(path: String, readOnly: Bool = false) throws {
        var handle: OpaquePointer?
        let flags =
            (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw SQLiteError(code: status, message: "cannot open \(path): \(message)")
        }
        self.handle = handle
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, 10_000)
    }

    /// The version of the SQLite library in use.
    package static var libraryVersion: String { String(cString: sqlite3_libversion()) }

    deinit {
        for prepared in statements.values { sqlite3_finalize(prepared.statement) }
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements without bindings or results (schema, pragmas, transaction control).
    package func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if status != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(errorMessage)
            throw SQLiteError(code: sqlite3_extended_errcode(handle), message: message, sql: sql)
        }
    }

    /// Runs a statement and returns its rows.
    @discardableResult
    package func query(_ sql: String, _ bindings: [SQLiteValue] = []) throws -> [SQLiteRow] {
        var rows: [SQLiteRow] = []
        try step(sql, bindings) { statement, columns in
            let count = sqlite3_column_count(statement)
            var values: [SQLiteValue] = []
            values.reserveCapacity(Int(count))
            for column in 0..<count {
                values.append(Self.read(column, of: statement))
            }
            rows.append(SQLiteRow(values: values, columns: columns))
        }
        return rows
    }

    /// Runs a statement and hands each row to `body` in place, read by column index: no row is
    /// copied and only the columns `body` reads are converted (for queries on hot paths).
    package func forEachRow(_ sql: String, _ bindings: [SQLiteValue], _ body: (SQLiteCursor) throws -> Void) throws {
        try step(sql, bindings) { statement, _ in try body(SQLiteCursor(statement: statement)) }
    }

    /// Runs a statement that returns no rows (an `INSERT`, `UPDATE` or `DELETE` with bindings).
    package func execute(_ sql: String, _ bindings: [SQLiteValue]) throws {
        try step(sql, bindings) { _, _ in }
    }

    private func step(
        _ sql: String, _ bindings: [SQLiteValue], _ row: (OpaquePointer, [String: Int]) throws -> Void
    ) throws {
        let (statement, columns) = try prepare(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, value) in bindings.enumerated() {
            try bind(value, at: Int32(index + 1), in: statement, sql: sql)
        }
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else { throw error(sql: sql) }
            try row(statement, columns)
        }
    }

    /// Rows changed by the last statement.
    package var changes: Int { Int(sqlite3_changes(handle)) }

    package var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    private func prepare(_ sql: String) throws -> (statement: OpaquePointer, columns: [String: Int]) {
        if let prepared = statements[sql] { return prepared }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK,
            let statement
        else { throw error(sql: sql) }
        var columns: [String: Int] = [:]
        for column in 0..<sqlite3_column_count(statement) {
            columns[String(cString: sqlite3_column_name(statement, column))] = Int(column)
        }
        statements[sql] = (statement, columns)
        return (statement, columns)
    }

    private func bind(_ value: SQLiteValue, at index: Int32, in statement: OpaquePointer, sql: String) throws {
        let status: Int32
        switch value {
        case .null: status = sqlite3_bind_null(statement, index)
        case .integer(let int): status = sqlite3_bind_int64(statement, index, int)
        case .real(let double): status = sqlite3_bind_double(statement, index, double)
        case .text(let text): status = sqlite3_bind_text(statement, index, text, -1, Self.transient)
        case .blob(let bytes) where bytes.isEmpty:
            // An empty array may have no base address, and binding a NULL pointer binds SQL NULL:
            // an empty blob must stay an empty blob (an empty key is not a missing key).
            status = sqlite3_bind_zeroblob(statement, index, 0)
        case .blob(let bytes):
            status = bytes.withUnsafeBytes { buffer in
                sqlite3_bind_blob(statement, index, buffer.baseAddress, Int32(buffer.count), Self.transient)
            }
        }
        guard status == SQLITE_OK else { throw error(sql: sql) }
    }

    fileprivate static func read(_ column: Int32, of statement: OpaquePointer) -> SQLiteValue {
        switch sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            // The length SQLite reports (after asking for the text, as its documentation requires)
            // instead of scanning for the terminating NUL.
            let text = sqlite3_column_text(statement, column)
            let count = Int(sqlite3_column_bytes(statement, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let pointer = sqlite3_column_blob(statement, column) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: pointer, count: count)))
        default: return .null
        }
    }

    private func error(sql: String?) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }
}

/// The row a statement is on, read in place by column index (see ``SQLiteConnection/forEachRow(_:_:_:)``).
/// Valid only inside the call that received it.
package struct SQLiteCursor: SQLiteColumnReader {
    fileprivate let statement: OpaquePointer

    package func value(at column: Int) -> SQLiteValue { SQLiteConnection.read(Int32(column), of: statement) }

    package func int64(at column: Int) -> Int64? {
        sqlite3_column_type(statement, Int32(column)) == SQLITE_INTEGER
            ? sqlite3_column_int64(statement, Int32(column)) : nil
    }

    /// The text of a column that usually holds one of a few values (a topic, a message type): the
    /// matching string of `known`, shared instead of allocated again, or else a new string.
    package func string(at column: Int, usually known: [String]) -> String? {
        guard sqlite3_column_type(statement, Int32(column)) == SQLITE_TEXT,
            let text = sqlite3_column_text(statement, Int32(column))
        else { return string(at: column) }
        let bytes = UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(statement, Int32(column))))
        for candidate in known where candidate.utf8.count == bytes.count {
            let equal = candidate.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(bytes) }
            if equal ?? candidate.utf8.elementsEqual(bytes) { return candidate }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
