/// Why a store operation was refused or failed. `code` is stable: the HTTP layer maps it to a status.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: String, Sendable, Equatable {
        /// The resource does not exist.
        case notFound = "not_found"
        /// The job already has a queued or running run (`activeRunId`).
        case activeRun = "active_run"
        /// The run already ended; it cannot be canceled.
        case runFinished = "run_finished"
        /// The registration token is unknown, used, expired or revoked.
        case invalidRegistrationToken = "invalid_registration_token"
        /// The record changed since it was read (optimistic concurrency; read it again and retry), or
        /// its state forbids the operation (a used registration token cannot be revoked).
        case conflict = "conflict"
        /// The database cannot be reached or refused the operation.
        case unavailable = "unavailable"
        /// A stored value is missing or cannot be read; the message names the table and column.
        case corrupt = "corrupt"
    }

    public var code: Code
    public var message: String
    /// For ``Code/activeRun``: the run that blocks the operation.
    public var activeRunId: String?

    public init(_ code: Code, _ message: String, activeRunId: String? = nil) {
        self.code = code
        self.message = message
        self.activeRunId = activeRunId
    }

    public var description: String { "\(code.rawValue): \(message)" }

    static func activeRun(jobId: String, runId: String) -> StoreError {
        StoreError(
            .activeRun,
            "job \(jobId) already has an active run (\(runId)); wait for it to finish or cancel it first",
            activeRunId: runId)
    }
}
