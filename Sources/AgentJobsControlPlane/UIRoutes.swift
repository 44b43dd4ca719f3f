import Foundation
import Hummingbird
import NIOCore

/// The web console: static HTML, JavaScript and CSS shipped in `Resources/ui`, served at `/` (the app
/// shell), `/settings/**` (the app's own paths, so a reload or a shared link opens the same page) and
/// `/ui/<file>` (assets).
///
/// The console talks only to the public API, so these routes are not API routes: they need no token
/// and are deliberately kept out of ``ControlPlaneAPI/routes`` (which must match the OpenAPI document).
public enum UIRoutes {
    /// One file of the console, loaded once at start-up.
    struct Asset: Sendable {
        var bytes: ByteBuffer
        var contentType: String
        /// A strong validator of the content, so browsers revalidate cheaply (`304 Not Modified`).
        var eTag: String
    }

    /// Adds the console's routes to a router.
    ///
    /// Assets are read from the module's resource bundle here, once, so requests never touch the disk.
    /// A missing or unreadable `ui` directory leaves the console answering 503 with a clear message
    /// rather than stopping the API.
    public static func register(on router: Router<AgentJobsRequestContext>) {
        let assets = loadAssets()
        let shell = assets["index.html"]
        let serveShell: @Sendable (Request, AgentJobsRequestContext) async throws -> Response = { request, _ in
            guard let shell else { return missingConsole() }
            return respond(with: shell, to: request, cacheControl: "no-cache")
        }
        router.get("/", use: serveShell)
        router.get("/settings", use: serveShell)
        router.get("/settings/**", use: serveShell)
        router.get("/ui/:file") { request, context -> Response in
            let name = context.parameters.get("file") ?? ""
            guard name != "index.html", let asset = assets[name] else {
                return plain(.notFound, "no such console file: /ui/\(name)")
            }
            // Asset names are not fingerprinted, so every load revalidates against the ETag: after an
            // upgrade the browser gets the new files at once, and otherwise a 304 costs one round trip.
            return respond(with: asset, to: request, cacheControl: "no-cache")
        }
    }

    /// Reads every file of `Resources/ui` (one level; the console has no subdirectories).
    static func loadAssets() -> [String: Asset] {
        guard let directory = ResourceDirectory.url?.appendingPathComponent("ui"),
            let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path)
        else { return [:] }
        var assets: [String: Asset] = [:]
        for name in names {
            guard let type = contentType(ofFileNamed: name),
                let data = try? Data(contentsOf: directory.appendingPathComponent(name))
            else { continue }
            assets[name] = Asset(bytes: ByteBuffer(bytes: data), contentType: type, eTag: "\"\(fingerprint(data))\"")
        }
        return assets
    }

    /// The media type of a console file, or nil for files the console does not serve.
    static func contentType(ofFileNamed name: String) -> String? {
        guard let dot = name.lastIndex(of: "."), !name.hasPrefix(".") else { return nil }
        switch name[name.index(after: dot)...].lowercased() {
        case "html": return "text/html; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "ico": return "image/x-icon"
        case "json": return "application/json"
        case "woff2": return "font/woff2"
        default: return nil
        }
    }

    /// FNV-1a over the content: enough to tell versions of a file apart, which is all an ETag needs.
    static func fingerprint(_ data: Data) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16) + "-" + String(data.count, radix: 16)
    }

    static func respond(with asset: Asset, to request: Request, cacheControl: String) -> Response {
        var headers = securityHeaders()
        headers[.eTag] = asset.eTag
        headers[.cacheControl] = cacheControl
        if let validators = request.headers[.ifNoneMatch],
            validators.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.eTag })
        {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = asset.contentType
        headers[.contentLength] = String(asset.bytes.readableBytes)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.bytes))
    }

    /// Headers every console response carries: the page may load only its own scripts and styles and
    /// talk only to its own origin, may not be framed, and sends no referrer (URLs can hold run ids).
    static func securityHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentSecurityPolicy] =
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        headers[.xContentTypeOptions] = "nosniff"
        if let referrerPolicy = HTTPFields.Element.Name("Referrer-Policy") { headers[referrerPolicy] = "no-referrer" }
        return headers
    }

    static func missingConsole() -> Response {
        plain(
            .serviceUnavailable,
            "the web console's files are missing: install \(ResourceDirectory.bundleName) next to the agentjobs binary (expected at \(ResourceDirectory.expectedLocation)); the API at /api/v1 still works"
        )
    }

    static func plain(_ status: HTTPResponse.Status, _ text: String) -> Response {
        var headers = securityHeaders()
        headers[.contentType] = "text/plain; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
    }
}
