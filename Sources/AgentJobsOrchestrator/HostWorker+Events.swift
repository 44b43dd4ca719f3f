import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsTelemetry
import Foundation
import Logging
import ServiceLifecycle

// MARK: Events

extension HostWorker {
    func finish(
        _ record: inout RunRecord, _ type: RunEventType, at now: Date, exitCode: Int? = nil,
        errorSummary: String? = nil,
        reason: String? = nil
    ) {
        record.phase = .finished
        record.outcome = type
        record.finishedAt = now
        _ = record.record(
            type, hostId: identity.hostId, at: now, exitCode: exitCode,
            errorSummary: errorSummary.map { ErrorSummary.capped($0) },
            reason: reason)
    }

    func finishAndPublish(
        _ runId: String, _ type: RunEventType, exitCode: Int? = nil, errorSummary: String? = nil, reason: String? = nil
    ) async {
        let now = clock()
        await persist(runId) { record in
            guard record.phase != .finished else { return }
            finish(&record, type, at: now, exitCode: exitCode, errorSummary: errorSummary, reason: reason)
        }
        await publish(runId)
    }

    /// Changes a journal record, retrying until the change is durable (an event that is not in the
    /// journal could be lost by a crash).
    /// Stopping gives up: the driver keeps an ended agent until ``release``, so the next start finds
    /// its end again.
    func persist(_ runId: String, _ change: @escaping @Sendable (inout RunRecord) -> Void) async {
        _ = await retryUntilShutdown(every: .seconds(1)) { error in
            logger.error(
                "cannot write the run journal; retrying", metadata: ["run_id": "\(runId)", "error": "\(error)"])
        } _: {
            try await journal.update(runId, change)
        }
    }

    /// Publishes a run's unpublished events; what fails stays in the journal for the next attempt.
    func publish(_ runId: String) async {
        guard let record = await journal.record(runId), !record.unpublished.isEmpty else { return }
        let key = identity.eventKey
        do {
            let messages = try record.unpublished.map { try $0.message(signedWith: key).tracing(record.traceParent) }
            let results = await producer.sendBatch(messages)
            var published = 0
            for (event, result) in zip(record.unpublished, results) {
                guard case .success = result else { break }
                published = event.sequence
            }
            if published > 0 { try await journal.markPublished(runId: runId, upTo: published) }
            if published != record.unpublished.last?.sequence {
                logger.warning("run events not published yet; will retry", metadata: ["run_id": "\(runId)"])
            }
        } catch {
            logger.warning(
                "run events not published yet; will retry", metadata: ["run_id": "\(runId)", "error": "\(error)"])
        }
    }

    func deadLetter(_ message: IncomingMessage, reason: String) async {
        do {
            _ = try await producer.send(.deadLetter(for: message, reason: reason))
            TransportMetrics.deadLettered(from: Topic.dispatch, reason: reason)
        } catch {
            logger.error("could not dead-letter a refused dispatch message", metadata: ["error": "\(error)"])
        }
    }

    func heartbeatLoop() async {
        while !Task.isCancelled {
            let open = await journal.openRecords()
            let activeRuns = open.filter { $0.phase != .finished }.map { record in
                HostHeartbeat.ActiveRun(
                    runId: record.runId, dispatchEpoch: record.dispatch?.dispatchEpoch ?? 1,
                    status: record.phase == .launched ? .running : .queued)
            }
            let heartbeat = HostHeartbeat(
                hostId: identity.hostId, sentAt: clock(), version: configuration.version,
                managedAgents: identity.managedAgents,
                activeRuns: activeRuns, driver: configuration.driverName,
                maxConcurrentRuns: configuration.maxConcurrentRuns)
            do {
                let message = try heartbeat.message(signedWith: identity.eventKey)
                // A stop does not wait for a heartbeat the broker cannot take (delivery times out
                // after 30 s).
                let sent = await abandoningOnCancel { [producer] () -> Result<MessagePosition, any Error> in
                    do { return .success(try await producer.send(message)) } catch { return .failure(error) }
                }
                guard let sent else { return }
                _ = try sent.get()
                HostMetrics.heartbeats("sent").increment()
            } catch {
                HostMetrics.heartbeats("failed").increment()
                logger.warning("heartbeat not published", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: configuration.heartbeatInterval)
        }
    }

    /// Publishes events left unpublished (the transport failed), at the heartbeat pace. Apart from
    /// the heartbeats: a retry can wait for the transport's whole delivery timeout, and heartbeats
    /// queued behind it would make a healthy host look silent.
    func republishLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.heartbeatInterval)
            for record in await journal.openRecords() where !record.unpublished.isEmpty {
                if Task.isCancelled { return }
                await publish(record.runId)
            }
        }
    }
}
