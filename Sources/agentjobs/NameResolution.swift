import AgentJobsCore
import Foundation

/// Names wherever the CLI takes an id: `agentjobs jobs run nightly-lineage`.
extension APIClient {
    /// The id of the job `reference` names: `reference` itself when it is an id (`job_…`), else the id
    /// of the one job with that name.
    /// - Throws: ``CLIError`` (``ExitStatus/notFound``) when no job has the name, (``ExitStatus/usage``)
    ///   listing the matches when several do.
    func jobId(_ reference: String) async throws -> String {
        try await resolve(reference, kind: "job", idPrefix: "job_", path: "/api/v1/jobs", key: "jobs") { job in
            "\(Output.text(job["id"])) (host \(Output.text(job["hostId"])), \(Output.text(job["agentType"])))"
        }
    }

    /// The id of the host `reference` names, as ``jobId(_:)`` does for jobs.
    func hostId(_ reference: String) async throws -> String {
        try await resolve(reference, kind: "host", idPrefix: "host_", path: "/api/v1/hosts", key: "hosts") { host in
            "\(Output.text(host["id"])) (\(Output.text(host["status"])), last seen \(Output.shortDate(host["lastSeenAt"])))"
        }
    }

    private func resolve(
        _ reference: String, kind: String, idPrefix: String, path: String, key: String,
        describe: (JSONValue) -> String
    ) async throws -> String {
        let reference = reference.trimmingCharacters(in: .whitespaces)
        guard !reference.isEmpty else {
            throw CLIError("an empty \(kind) id or name", status: ExitStatus.usage)
        }
        if reference.hasPrefix(idPrefix) { return reference }
        // The server filters by the exact name: one small answer however many there are.
        let matches = (try await send(.GET, path + "?name=" + reference.urlEncoded)[key]?.arrayValue ?? []).filter {
            $0["name"]?.stringValue == reference
        }
        switch matches.count {
        case 1:
            guard let id = matches[0]["id"]?.stringValue else { break }
            return id
        case 0:
            throw CLIError("no \(kind) with the id or name '\(reference)'", status: ExitStatus.notFound)
        default:
            throw CLIError(
                "\(matches.count) \(kind)s are named '\(reference)'; pass one of their ids:\n"
                    + matches.map { "  " + describe($0) }.joined(separator: "\n"),
                status: ExitStatus.usage)
        }
        throw CLIError("the \(kind) named '\(reference)' has no id in the server's answer")
    }
}
