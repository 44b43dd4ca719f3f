import AsyncHTTPClient
import Foundation
import Testing

/// The binary as an image or a package installs it: copied with its resource bundle into a
/// directory of its own and started through a symlink (`/usr/bin/agentjobs` →
/// `/usr/lib/agentjobs/agentjobs`, as deploy/Dockerfile lays it out).
@Suite("Install layout")
struct InstallLayoutTests {
    static let bundleName = "agentjobs_AgentJobsControlPlane.resources"

    @Test(
        "installed with its resource bundle and started through a symlink, it serves the console and the API document")
    func bundleNextToTheBinary() async throws {
        try await Self.installed(withBundle: true) { base in
            let shell = try await Self.get(base + "/")
            #expect(shell.status == 200)
            #expect(shell.body.contains("<html"))
            let document = try await Self.get(base + "/api/v1/openapi.json")
            #expect(document.status == 200)
            #expect(document.body.contains(#""/api/v1/runs""#), "the real document, not the stand-in")
        }
    }

    @Test("installed without its resource bundle, it still serves the API; the console says what is missing")
    func bundleMissing() async throws {
        try await Self.installed(withBundle: false) { base in
            let shell = try await Self.get(base + "/")
            #expect(shell.status == 503)
            #expect(shell.body.contains(Self.bundleName))
            #expect(try await Self.get(base + "/healthz").status == 200)
            #expect(try await Self.get(base + "/api/v1/openapi.json").status == 200)
        }
    }

    /// Copies the binary (and the bundle) to `<tmp>/lib/agentjobs/`, links `<tmp>/bin/agentjobs`
    /// to it and runs `agentjobs dev` through the link.
    static func installed(withBundle: Bool, _ body: (String) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-install-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        let lib = root.appendingPathComponent("lib/agentjobs")
        let bin = root.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: lib, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let built = AgentJobsProcess.binary.resolvingSymlinksInPath()
        try FileManager.default.copyItem(at: built, to: lib.appendingPathComponent("agentjobs"))
        if withBundle {
            try FileManager.default.copyItem(
                at: built.deletingLastPathComponent().appendingPathComponent(bundleName),
                to: lib.appendingPathComponent(bundleName))
        }
        let link = bin.appendingPathComponent("agentjobs")
        try FileManager.default.createSymbolicLink(
            at: link, withDestinationURL: lib.appendingPathComponent("agentjobs"))
        let server = try await AgentJobsProcess(dataDir: root.appendingPathComponent("data"), executable: link)
        do {
            try await body("http://127.0.0.1:\(server.port)")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    static func get(_ url: String) async throws -> (status: UInt, body: String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 8 << 20)
        return (response.status.code, body.getString(at: body.readerIndex, length: body.readableBytes) ?? "")
    }
}
