import Foundation

/// A webhook receiver on 127.0.0.1 (Python's `http.server`, a child process): it answers each
/// request as `plan` says (`"200"`, `"500"`, `"302"`, or `"hang"`: no answer for a minute; the last
/// entry repeats), records every request, and checks each signature itself with Python's `hmac` —
/// an implementation independent of the one under test.
public final class WebhookReceiver: Sendable {
    /// One request as received.
    public struct Request: Sendable {
        public var deliveryId: String
        public var contentType: String
        /// Whether `AgentJobs-Signature` is the HMAC-SHA256 of `"<t>.<body>"` keyed with the secret.
        public var signatureValid: Bool
        public var body: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(bodyText.utf8)) as? [String: Any]) ?? [:]
        }
        public var bodyText: String
    }

    let directory: URL
    let process: ChildProcess
    public let port: Int

    public init(secret: String, plan: [String]) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-webhooks-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = """
            import hashlib, hmac, json, os, sys, threading, time
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            directory, secret, plan = sys.argv[1], sys.argv[2].encode(), sys.argv[3].split(",")
            lock = threading.Lock()
            count = [0]
            class Handler(BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    fields = dict(part.split("=", 1) for part in self.headers.get("AgentJobs-Signature", "").split(",") if "=" in part)
                    expected = hmac.new(secret, fields.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
                    with lock:
                        index = count[0]
                        count[0] += 1
                        record = {"deliveryId": self.headers.get("AgentJobs-Delivery", ""),
                                  "contentType": self.headers.get("Content-Type", ""),
                                  "valid": hmac.compare_digest(expected, fields.get("v1", "")),
                                  "body": body.decode()}
                        with open(os.path.join(directory, "requests.jsonl"), "a") as f:
                            f.write(json.dumps(record) + "\\n")
                    action = plan[min(index, len(plan) - 1)]
                    if action == "hang":
                        time.sleep(60)
                        return
                    self.send_response(int(action))
                    if action == "302":
                        self.send_header("Location", "http://127.0.0.2:9/elsewhere")
                    self.send_header("Content-Length", "7")
                    self.end_headers()
                    self.wfile.write(b"answer!")
                def log_message(self, *args):
                    pass
            ThreadingHTTPServer.daemon_threads = True
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            print("webhook receiver listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
            server.serve_forever()
            """
        process = try ChildProcess(
            name: "webhook receiver", executable: "/usr/bin/env",
            arguments: ["python3", "-c", script, directory.path, secret, plan.joined(separator: ",")])
        port = try await process.waitForOutput(timeout: .seconds(20)) {
            listeningPort(in: $0, line: "webhook receiver")
        }
    }

    public var url: String { "http://127.0.0.1:\(port)/hooks/agentjobs" }

    /// Every request received so far, in order.
    public func requests() -> [Request] {
        let file = directory.appendingPathComponent("requests.jsonl")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                return nil
            }
            return Request(
                deliveryId: record["deliveryId"] as? String ?? "", contentType: record["contentType"] as? String ?? "",
                signatureValid: record["valid"] as? Bool ?? false, bodyText: record["body"] as? String ?? "")
        }
    }

    /// Waits (up to `limit`) until `count` requests arrived.
    public func waitFor(_ count: Int, limit: Duration = .seconds(30)) async throws -> [Request] {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let received = requests()
            if received.count >= count { return received }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ChildProcessError(message: "the webhook receiver got \(requests().count) requests, not \(count)")
    }

    public func stop() async {
        _ = await process.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
