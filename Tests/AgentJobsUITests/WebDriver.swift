import AgentJobsCore
import AgentJobsTestSupport
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A failure reported by the WebDriver server (`{"value": {"error", "message"}}`) or by this client.
struct WebDriverError: Error, CustomStringConvertible {
    var code: String
    var message: String
    var description: String { "WebDriver \(code): \(message)" }
}

/// An element reference of a WebDriver session.
struct WebElement: Sendable {
    /// The W3C element reference key.
    static let key = "element-6066-11e4-a52e-4f735466cecf"
    let id: String
    var json: JSONValue { .object([Self.key: .string(id)]) }
}

/// A minimal W3C WebDriver client (https://www.w3.org/TR/webdriver2/) over AsyncHTTPClient: just the
/// commands the console tests use. One instance is one browser session.
final class WebDriverSession: Sendable {
    let baseURL: String
    let sessionId: String
    private let client: HTTPClient

    private init(baseURL: String, sessionId: String, client: HTTPClient) {
        self.baseURL = baseURL
        self.sessionId = sessionId
        self.client = client
    }

    /// Starts headless Chromium through the driver at `driverURL`.
    /// - Parameters:
    ///   - chromium: The browser binary (Debian installs it as `/usr/bin/chromium`).
    ///   - width, height: The window size, in CSS pixels.
    static func start(driverURL: String, chromium: String, width: Int, height: Int) async throws -> WebDriverSession {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let arguments: [String] = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--force-color-profile=srgb",
            "--lang=en-US", "--window-size=\(width),\(height)", "--force-device-scale-factor=1",
        ]
        let capabilities: JSONValue = .object([
            "capabilities": .object([
                "alwaysMatch": .object([
                    "browserName": .string("chrome"),
                    "goog:chromeOptions": .object([
                        "binary": .string(chromium), "args": .array(arguments.map { .string($0) }),
                    ]),
                    "unhandledPromptBehavior": .string("dismiss"),
                    "goog:loggingPrefs": .object(["browser": .string("ALL")]),
                ])
            ])
        ])
        do {
            let value = try await send(client, .POST, driverURL + "/session", body: capabilities)
            guard let id = value["sessionId"]?.string else {
                throw WebDriverError(code: "no session", message: "the driver answered without a session id: \(value)")
            }
            return WebDriverSession(baseURL: driverURL + "/session/" + id, sessionId: id, client: client)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// Ends the session (the driver quits the browser) and releases the HTTP client.
    func quit() async {
        _ = try? await command(.DELETE, "")
        try? await client.shutdown()
    }

    // MARK: Commands

    func navigate(to url: String) async throws {
        _ = try await command(.POST, "/url", ["url": .string(url)])
    }

    func currentURL() async throws -> String {
        try await command(.GET, "/url").string ?? ""
    }

    func title() async throws -> String {
        try await command(.GET, "/title").string ?? ""
    }

    func refresh() async throws {
        _ = try await command(.POST, "/refresh", [:])
    }

    func back() async throws {
        _ = try await command(.POST, "/back", [:])
    }

    /// The first element matching a CSS selector.
    /// - Throws: ``WebDriverError`` `no such element` when nothing matches.
    func find(_ selector: String) async throws -> WebElement {
        let value = try await command(
            .POST, "/element", ["using": .string("css selector"), "value": .string(selector)])
        return try Self.element(value)
    }

    func findAll(_ selector: String) async throws -> [WebElement] {
        let value = try await command(
            .POST, "/elements", ["using": .string("css selector"), "value": .string(selector)])
        guard case .array(let items) = value else { return [] }
        return try items.map(Self.element)
    }

    /// Clicks like a user: the element is scrolled to the middle of the viewport first, so that the
    /// sticky header never covers it.
    func click(_ element: WebElement) async throws {
        _ = try await execute("arguments[0].scrollIntoView({block: 'center', inline: 'nearest'});", [element.json])
        _ = try await command(.POST, "/element/\(element.id)/click", [:])
    }

    func clear(_ element: WebElement) async throws {
        _ = try await command(.POST, "/element/\(element.id)/clear", [:])
    }

    /// Types text into an element (keys are sent, so input events fire as for a user).
    func type(_ element: WebElement, _ text: String) async throws {
        _ = try await command(.POST, "/element/\(element.id)/value", ["text": .string(text)])
    }

    func text(_ element: WebElement) async throws -> String {
        try await command(.GET, "/element/\(element.id)/text").string ?? ""
    }

    func attribute(_ element: WebElement, _ name: String) async throws -> String? {
        try await command(.GET, "/element/\(element.id)/attribute/\(name)").string
    }

    func property(_ element: WebElement, _ name: String) async throws -> JSONValue {
        try await command(.GET, "/element/\(element.id)/property/\(name)")
    }

    func isEnabled(_ element: WebElement) async throws -> Bool {
        if case .bool(let enabled) = try await command(.GET, "/element/\(element.id)/enabled") { return enabled }
        return false
    }

    func isDisplayed(_ element: WebElement) async throws -> Bool {
        if case .bool(let shown) = try await command(.GET, "/element/\(element.id)/displayed") { return shown }
        return false
    }

    /// Runs a synchronous script in the page; `arguments` are available as `arguments[i]`.
    func execute(_ script: String, _ arguments: [JSONValue] = []) async throws -> JSONValue {
        try await command(.POST, "/execute/sync", ["script": .string(script), "args": .array(arguments)])
    }

    /// A PNG of the viewport.
    func screenshot() async throws -> Data {
        guard let base64 = try await command(.GET, "/screenshot").string, let data = Data(base64Encoded: base64) else {
            throw WebDriverError(code: "screenshot", message: "the driver returned no image")
        }
        return data
    }

    /// The browser console's messages since the last call (chromedriver's log extension, not W3C).
    func consoleMessages() async throws -> [(level: String, message: String)] {
        let value = try await command(.POST, "/se/log", ["type": .string("browser")])
        return value.array.map { ($0["level"]?.string ?? "", $0["message"]?.string ?? "") }
    }

    /// Makes the page see `prefers-color-scheme: scheme` (`light` or `dark`), through chromedriver's
    /// DevTools passthrough (not W3C).
    func emulateColorScheme(_ scheme: String) async throws {
        _ = try await command(
            .POST, "/goog/cdp/execute",
            [
                "cmd": .string("Emulation.setEmulatedMedia"),
                "params": .object([
                    "features": .array([
                        .object(["name": .string("prefers-color-scheme"), "value": .string(scheme)])
                    ])
                ]),
            ])
    }

    func setWindowSize(width: Int, height: Int) async throws {
        _ = try await command(
            .POST, "/window/rect", ["width": .number(Double(width)), "height": .number(Double(height))])
    }

    // MARK: Transport

    private func command(_ method: HTTPMethod, _ path: String, _ body: [String: JSONValue]? = nil) async throws
        -> JSONValue
    {
        try await Self.send(client, method, baseURL + path, body: body.map { JSONValue.object($0) })
    }

    private static func send(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, body: JSONValue?) async throws
        -> JSONValue
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await client.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))) ?? .null
        let value = json["value"] ?? .null
        guard response.status.code < 300 else {
            throw WebDriverError(
                code: value["error"]?.string ?? "HTTP \(response.status.code)",
                message: value["message"]?.string.map { String($0.prefix(600)) } ?? "\(json)")
        }
        return value
    }

    private static func element(_ value: JSONValue) throws -> WebElement {
        guard let id = value[WebElement.key]?.string else {
            throw WebDriverError(code: "no element", message: "expected an element reference, got \(value)")
        }
        return WebElement(id: id)
    }
}
