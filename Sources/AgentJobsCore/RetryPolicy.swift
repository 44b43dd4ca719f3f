#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// How a job retries a run that failed or timed out: each retry is a new run of the same definition
/// (``Run/attempt``, ``Run/retryOf``), written by the control plane in the transaction that records
/// the previous attempt's end, and dispatched once its delay has passed.
///
/// Never retried: a canceled run, a run someone asked to cancel, a dispatch its host rejected, and a
/// run given up as "host lost" (its agent may still be running on a host that is only unreachable).
public struct RetryPolicy: Sendable, Hashable, Codable {
    /// Runs in the chain, the first included (2 or more: a job without retries has no policy).
    public var maxAttempts: Int
    /// Delay before the second attempt.
    public var initialDelaySeconds: Int
    /// Each further delay is the previous one times this.
    public var backoffFactor: Double
    /// No delay is longer than this.
    public var maxDelaySeconds: Int
    /// The ends that are retried.
    public var on: [RetryCondition]

    public init(
        maxAttempts: Int, initialDelaySeconds: Int = RetryPolicy.defaultInitialDelaySeconds,
        backoffFactor: Double = RetryPolicy.defaultBackoffFactor,
        maxDelaySeconds: Int = RetryPolicy.defaultMaxDelaySeconds, on: [RetryCondition] = RetryCondition.allCases
    ) {
        self.maxAttempts = maxAttempts
        self.initialDelaySeconds = initialDelaySeconds
        self.backoffFactor = backoffFactor
        self.maxDelaySeconds = maxDelaySeconds
        self.on = on
    }

    public static let maxAttemptsRange = 2...10
    public static let delayRange = 0...86_400
    public static let backoffFactorRange = 1.0...10.0
    public static let defaultInitialDelaySeconds = 60
    public static let defaultBackoffFactor = 2.0
    public static let defaultMaxDelaySeconds = 3600

    /// The wait before attempt `attempt` (2 or more), in seconds: the first delay grown by the
    /// factor once per earlier retry, capped at ``maxDelaySeconds``.
    public func delaySeconds(beforeAttempt attempt: Int) -> Int {
        var grown = Double(initialDelaySeconds)
        for _ in 0..<max(0, attempt - 2) where grown < Double(maxDelaySeconds) { grown *= backoffFactor }
        return grown >= Double(maxDelaySeconds) ? maxDelaySeconds : Int(grown.rounded())
    }

    /// Whether a run that ended as `status` is retried under this policy.
    public func retries(_ status: RunStatus) -> Bool {
        RetryCondition(status).map(on.contains) ?? false
    }
}

/// A run end a ``RetryPolicy`` can retry.
public enum RetryCondition: String, Sendable, Codable, CaseIterable, Hashable {
    case failed
    case timedOut = "timed_out"

    init?(_ status: RunStatus) {
        switch status {
        case .failed: self = .failed
        case .timedOut: self = .timedOut
        case .queued, .running, .succeeded, .canceled: return nil
        }
    }
}

extension RetryPolicy {
    /// Parses a `retry` object of a request, or nil for an absent or null one. With `current`, the
    /// fields present change that policy (a `PATCH`).
    /// - Throws: ``ValidationError`` naming the first bad field.
    public static func parse(_ json: JSONValue?, merging current: RetryPolicy? = nil, path: String = "retry") throws
        -> RetryPolicy?
    {
        guard let json else { return nil }
        var reader = try JSONObjectReader(json, path: path)
        var policy = current ?? RetryPolicy(maxAttempts: 0)
        if let attempts = try reader.int("maxAttempts", range: maxAttemptsRange) {
            policy.maxAttempts = attempts
        } else if current == nil {
            throw ValidationError(
                field: reader.fieldPath("maxAttempts"),
                message: "is required: the runs in a chain, the first included (2 to 10)")
        }
        if let delay = try reader.int("initialDelaySeconds", range: delayRange) { policy.initialDelaySeconds = delay }
        if let factor = reader.value("backoffFactor") {
            guard case .number(let number) = factor, backoffFactorRange.contains(number) else {
                throw ValidationError(
                    field: reader.fieldPath("backoffFactor"),
                    message:
                        "must be a number from \(Int(backoffFactorRange.lowerBound)) to \(Int(backoffFactorRange.upperBound))"
                )
            }
            policy.backoffFactor = number
        }
        if let delay = try reader.int("maxDelaySeconds", range: delayRange) { policy.maxDelaySeconds = delay }
        if let names = try reader.stringArray("on") {
            var conditions: [RetryCondition] = []
            for (index, name) in names.enumerated() {
                guard let condition = RetryCondition(rawValue: name) else {
                    throw ValidationError(
                        field: "\(reader.fieldPath("on"))[\(index)]",
                        message: "must be 'failed' or 'timed_out' (canceled and rejected runs are never retried)")
                }
                guard !conditions.contains(condition) else {
                    throw ValidationError(
                        field: "\(reader.fieldPath("on"))[\(index)]", message: "names '\(name)' a second time")
                }
                conditions.append(condition)
            }
            guard !conditions.isEmpty else {
                throw ValidationError(
                    field: reader.fieldPath("on"),
                    message: "must name at least one of 'failed', 'timed_out' (to turn retries off, set retry to null)")
            }
            policy.on = RetryCondition.allCases.filter(conditions.contains)
        }
        try reader.rejectUnknownFields()
        guard policy.maxDelaySeconds >= policy.initialDelaySeconds else {
            throw ValidationError(
                field: reader.fieldPath("maxDelaySeconds"),
                message: "must be at least initialDelaySeconds (\(policy.initialDelaySeconds))")
        }
        return policy
    }

    /// Writes the policy as its `Codable` form (keys sorted).
    public func writeJSON(into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("backoffFactor")
        writer.number(backoffFactor)
        writer.key("initialDelaySeconds")
        writer.int(initialDelaySeconds)
        writer.key("maxAttempts")
        writer.int(maxAttempts)
        writer.key("maxDelaySeconds")
        writer.int(maxDelaySeconds)
        writer.key("on")
        writer.beginArray()
        for condition in on { writer.string(condition.rawValue) }
        writer.endArray()
        writer.endObject()
    }

    /// The stored form (a `retry_policy` column): the JSON of ``writeJSON(into:)``.
    public var jsonText: String {
        var writer = JSONWriter(capacity: 128)
        writeJSON(into: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// Reads the stored form back, leniently (a field a later release added is ignored, and no range
    /// is checked again): nil only when `text` is not a policy at all.
    public static func parseStored(_ text: String) -> RetryPolicy? {
        guard case .object(let fields)? = try? JSONParser.parse(text),
            case .number(let attempts)? = fields["maxAttempts"], attempts.rounded() == attempts,
            attempts.magnitude < 1e9
        else { return nil }
        var policy = RetryPolicy(maxAttempts: Int(attempts))
        if case .number(let delay)? = fields["initialDelaySeconds"], delay.magnitude < 1e9 {
            policy.initialDelaySeconds = Int(delay)
        }
        if case .number(let factor)? = fields["backoffFactor"], factor.isFinite { policy.backoffFactor = factor }
        if case .number(let delay)? = fields["maxDelaySeconds"], delay.magnitude < 1e9 {
            policy.maxDelaySeconds = Int(delay)
        }
        if case .array(let names)? = fields["on"] {
            policy.on = RetryCondition.allCases.filter { condition in names.contains(.string(condition.rawValue)) }
        }
        return policy
    }
}

extension RunLifecycleEvent {
    /// Whether the end this event reports for `run` (the run once it applied) may be retried: a
    /// `failed` or `timed_out` whose agent the host saw end (it has an exit code), or that the host
    /// never launched. Never a rejected dispatch, nor an end whose agent the host lost track of
    /// (no exit code after a start): that agent may still be running, and a retry could run the job
    /// twice.
    public func endIsRetryable(for run: Run) -> Bool {
        guard type == .failed || type == .timedOut else { return false }
        return exitCode != nil || run.startedAt == nil
    }
}

extension Run {
    /// Whether an end the control plane decided itself (host tracking closing a run of an offline
    /// host) may be retried: only for a retry that was still held, whose dispatch never left the
    /// control plane. Any other queued run may have been launched by a host that is only
    /// unreachable, its `started` not yet read.
    public var endByControlPlaneIsRetryable: Bool { heldUntil != nil }

    /// The next attempt of this run, which has just ended: nil unless its policy retries how it
    /// ended and attempts remain.
    /// - Parameters:
    ///   - retryable: False for ends that are never retried whatever the status says (a dispatch the
    ///     host rejected, a run given up as host lost).
    ///   - now: When the control plane recorded the end (its clock, never the host's): the retry is
    ///     due its delay later.
    public func nextAttempt(retryable: Bool, now: Date) -> Run? {
        guard retryable, let policy = retryPolicy, status.isTerminal, policy.retries(status),
            attempt < policy.maxAttempts, cancelRequestedAt == nil
        else { return nil }
        let due = now.addingTimeInterval(TimeInterval(policy.delaySeconds(beforeAttempt: attempt + 1)))
        return Run(
            id: Identifier.makeTimeOrdered("run", at: now), jobId: jobId, jobName: jobName, jobVersion: jobVersion,
            hostId: hostId, agentType: agentType, parameters: parameters, timeoutSeconds: timeoutSeconds,
            queueTimeoutSeconds: queueTimeoutSeconds, trigger: trigger, scheduledAt: scheduledAt, queuedAt: due,
            rerunOf: rerunOf, triggeredBy: triggeredBy, attempt: attempt + 1, retryOf: id, retryPolicy: policy,
            heldUntil: due)
    }

    /// The most runs of this run's chain (1 without a retry policy).
    public var maxAttempts: Int { retryPolicy?.maxAttempts ?? 1 }
}
