import AgentJobsCore
import AgentJobsTestSupport
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Where the browser tools are, and whether the browser tests can run here.
///
/// Without Chromium and chromedriver the tests are skipped with the reason — except in CI
/// (`CI=true`), where a missing browser is a failure: CI must never pass by not testing the UI.
enum BrowserTools {
    static let environment = ProcessInfo.processInfo.environment

    static let chromium: String? = {
        if let path = environment["AGENTJOBS_CHROMIUM"] { return path }
        return ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }()

    static let chromedriver: String? = {
        if let path = environment["AGENTJOBS_CHROMEDRIVER"] { return path }
        return ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }()

    static var missing: [String] {
        var missing: [String] = []
        if chromium.map({ !FileManager.default.isExecutableFile(atPath: $0) }) ?? true { missing.append("chromium") }
        if chromedriver.map({ !FileManager.default.isExecutableFile(atPath: $0) }) ?? true {
            missing.append("chromedriver")
        }
        return missing
    }

    /// Run when the tools are there, and always in CI (where their absence fails the test).
    static var shouldRun: Bool { missing.isEmpty || RequiredService.isCI }

    static var skipReason: String {
        "browser tests skipped: \(missing.joined(separator: " and ")) not installed "
            + "(apt-get install -y chromium chromium-driver; with CI=true this is a failure instead)"
    }

    /// Where screenshots go when `AGENTJOBS_UI_SCREENSHOTS` names a directory (`make screenshots`).
    static var screenshotDirectory: URL? {
        environment["AGENTJOBS_UI_SCREENSHOTS"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
    }
}

/// A live console for one test: `agentjobs dev` on a free port of 127.0.0.1 with a fresh data dir,
/// chromedriver on a free loopback port, and a headless Chromium session signed in with the dev
/// admin token. ``run(width:height:signIn:_:)`` starts it all and stops it all, whatever the test does.
final class Console: Sendable {
    let browser: WebDriverSession
    let baseURL: String
    let token: String
    let dataDir: URL
    let api: APIClient

    private init(browser: WebDriverSession, baseURL: String, token: String, dataDir: URL) {
        self.browser = browser
        self.baseURL = baseURL
        self.token = token
        self.dataDir = dataDir
        self.api = APIClient(baseURL: baseURL, token: token)
    }

    /// The built `agentjobs` binary: `AGENTJOBS_BIN`, or next to the test bundle.
    static var agentjobsBinary: String {
        if let path = ProcessInfo.processInfo.environment["AGENTJOBS_BIN"] { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
            "agentjobs"
        ).path
    }

    /// Runs `body` against a fresh console.
    /// - Parameters:
    ///   - width, height: The browser window (1280×900 is the desktop layout the console is designed for).
    ///   - signIn: Whether to sign in with the admin token before `body`.
    static func run(
        width: Int = 1280, height: Int = 900, signIn: Bool = true, _ body: (Console) async throws -> Void
    ) async throws {
        guard BrowserTools.missing.isEmpty, let chromium = BrowserTools.chromium,
            let chromedriver = BrowserTools.chromedriver
        else {
            Issue.record(
                "CI=true but the browser tests cannot run: \(BrowserTools.missing.joined(separator: " and ")) not installed. Install them with 'apt-get install -y chromium chromium-driver' (make test does)."
            )
            return
        }
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-ui-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        var environment = ProcessInfo.processInfo.environment
        environment["AGENTJOBS_LOG_LEVEL"] = "warning"
        // Real runs on the local orchestrator with the sample agents; a short stop grace so a
        // cancel shows "Canceling…" briefly and then "Canceled".
        environment["AGENTJOBS_AGENTS_DIR"] =
            URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("deploy/agents").path
        environment["AGENTJOBS_STOP_GRACE_SECONDS"] = "3"
        environment["AGENTJOBS_HEARTBEAT_SECONDS"] = "1"
        let server = try ChildProcess(
            name: "agentjobs dev", executable: agentjobsBinary,
            arguments: ["dev", "--data-dir", dataDir.path, "--http-port", "0"], environment: environment)
        var driver: ChildProcess?
        var browser: WebDriverSession?
        do {
            let port = try await server.waitForOutput { number(after: "running at http://127.0.0.1:", in: $0) }
            // --port=0: chromedriver picks a free port itself and says which; it accepts only local
            // connections. It picks the port on one address family and then binds the other to the
            // same number, which another process may hold ("IPv4 port not available"): try again.
            var driverPort = 0
            for attempt in 1...5 {
                let driverProcess = try ChildProcess(
                    name: "chromedriver", executable: chromedriver, arguments: ["--port=0", "--log-level=WARNING"])
                driver = driverProcess
                do {
                    driverPort = try await driverProcess.waitForOutput {
                        number(after: "started successfully on port ", in: $0)
                    }
                    break
                } catch is ChildProcessError
                    where attempt < 5 && driverProcess.capturedOutput.contains("port not available")
                {
                    await driverProcess.stop()
                }
            }
            let session = try await WebDriverSession.start(
                driverURL: "http://127.0.0.1:\(driverPort)", chromium: chromium, width: width, height: height)
            browser = session
            let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let console = Console(browser: session, baseURL: "http://127.0.0.1:\(port)", token: token, dataDir: dataDir)
            if signIn { try await console.signIn() }
            do {
                try await body(console)
            } catch {
                await console.saveFailureScreenshot()
                throw error
            }
            // Script errors and CSP violations show up in the console even when the page looks right.
            let problems = try await console.browser.consoleMessages().filter { entry in
                entry.level == "SEVERE" && !entry.message.contains("Failed to load resource")
            }
            #expect(problems.isEmpty, "the browser console reported errors: \(problems.map(\.message))")
        } catch {
            await browser?.quit()
            await driver?.stop()
            await server.stop()
            // Agents keep running when their orchestrator stops (it re-attaches on restart); a
            // test's server does not come back, so end whatever of its runs still runs.
            ProcessTable.killAll(mentioning: dataDir.path)
            try? FileManager.default.removeItem(at: dataDir)
            throw error
        }
        await browser?.quit()
        await driver?.stop()
        await server.stop()
        let leftovers = ProcessTable.processes(mentioning: dataDir.path)
        #expect(leftovers.isEmpty, "agents of the test's runs were still running after it: \(leftovers)")
        ProcessTable.killAll(mentioning: dataDir.path)
        try? FileManager.default.removeItem(at: dataDir)
    }

    // MARK: Page helpers

    func open(_ path: String) async throws {
        try await browser.navigate(to: baseURL + path)
    }

    /// Signs in through the sign-in form with the dev admin token.
    func signIn() async throws {
        try await open("/")
        let input = try await waitFor("#token")
        try await browser.type(input, token)
        try await click("form.signin-form button[type=submit]")
        _ = try await waitFor("nav.tabs a[data-tab=jobs]")
    }

    /// The first element matching `selector`, waiting for it to appear.
    @discardableResult
    func waitFor(_ selector: String, timeout: Duration = .seconds(10)) async throws -> WebElement {
        var lastError: (any Error)?
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            do {
                return try await browser.find(selector)
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw WebDriverError(
            code: "timeout",
            message: "no element matches '\(selector)' after \(timeout) (\(lastError.map { "\($0)" } ?? ""))")
    }

    /// Waits until `condition` holds (it is retried while it throws or returns false).
    func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws
    {
        let deadline = ContinuousClock.now + timeout
        var lastError: (any Error)?
        while ContinuousClock.now < deadline {
            do {
                if try await condition() { return }
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw WebDriverError(
            code: "timeout",
            message: "\(what): not true after \(timeout)\(lastError.map { " (last error: \($0))" } ?? "")")
    }

    /// Waits until the element's visible text contains `expected`, and returns the text.
    @discardableResult
    func waitForText(_ selector: String, contains expected: String, timeout: Duration = .seconds(10)) async throws
        -> String
    {
        var seen = ""
        do {
            try await waitUntil("'\(selector)' shows '\(expected)'", timeout: timeout) {
                seen = try await browser.text(try await browser.find(selector))
                return seen.contains(expected)
            }
        } catch {
            throw WebDriverError(
                code: "timeout", message: "'\(selector)' never showed '\(expected)'; last text: '\(seen)'")
        }
        return seen
    }

    /// The first element matching `selector` (waiting for it, like ``waitFor(_:timeout:)``).
    func find(_ selector: String) async throws -> WebElement {
        try await waitFor(selector)
    }

    func text(_ selector: String) async throws -> String {
        try await fresh(selector) { try await browser.text($0) }
    }

    func click(_ selector: String) async throws {
        try await fresh(selector) { try await browser.click($0) }
    }

    /// Runs `action` on the element matching `selector`, finding it again if the page replaced it in
    /// between (pages that poll re-render their rows every 2 s, which makes references stale).
    func fresh<T>(_ selector: String, _ action: (WebElement) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await action(try await waitFor(selector))
            } catch let error as WebDriverError where error.code == "stale element reference" && attempt < 5 {
                attempt += 1
            }
        }
    }

    func fill(_ selector: String, _ text: String) async throws {
        let element = try await waitFor(selector)
        try await browser.clear(element)
        if !text.isEmpty { try await browser.type(element, text) }
    }

    /// Picks an option of a `<select>` by value, as a user would (click on the option).
    func select(_ selector: String, value: String) async throws {
        let option = try await waitFor("\(selector) option[value=\"\(value)\"]")
        try await browser.click(option)
        try await waitUntil("\(selector) has value \(value)") {
            try await browser.property(try await browser.find(selector), "value").string == value
        }
    }

    func isEnabled(_ selector: String) async throws -> Bool {
        try await fresh(selector) { try await browser.isEnabled($0) }
    }

    func path() async throws -> String {
        let url = try await browser.currentURL()
        return url.hasPrefix(baseURL) ? String(url.dropFirst(baseURL.count)) : url
    }

    /// Waits for the confirmation dialog and presses its confirm button.
    func confirmDialog(expectingTitle title: String) async throws {
        _ = try await waitForText("dialog.dialog .dialog-title", contains: title)
        try await click("dialog.dialog .dialog-actions .btn-danger, dialog.dialog .dialog-actions .btn-primary")
        try await waitUntil("the dialog closes") { try await browser.findAll("dialog.dialog").isEmpty }
    }

    /// Saves a screenshot as `<AGENTJOBS_UI_SCREENSHOTS>/<name>.png` when `make screenshots` asked for them.
    func screenshot(_ name: String) async throws {
        guard let directory = BrowserTools.screenshotDirectory else { return }
        // Let animations and pending polls settle so the picture shows a steady state.
        _ = try await browser.execute(
            "document.activeElement && document.activeElement.blur && document.activeElement.blur();")
        try await Task.sleep(for: .milliseconds(400))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try await browser.screenshot().write(to: directory.appendingPathComponent("\(name).png"))
    }

    /// What the browser showed when a test failed, in the temporary directory (never in docs/).
    func saveFailureScreenshot() async {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-ui-failures")
        let file = directory.appendingPathComponent("\(UUID().uuidString).png")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try await browser.screenshot().write(to: file)
            print("screenshot of the failed page: \(file.path) (at \(try await path()))")
        } catch {
            print("no screenshot of the failed page: \(error)")
        }
    }

    /// Screenshot of the whole page height (the window is resized to fit, then restored).
    func fullPageScreenshot(_ name: String, width: Int = 1280, minHeight: Int = 900) async throws {
        guard BrowserTools.screenshotDirectory != nil else { return }
        let height =
            try await browser.execute("return Math.ceil(document.documentElement.scrollHeight);").number
            ?? Double(minHeight)
        try await browser.setWindowSize(width: width, height: max(minHeight, Int(height) + 140))
        try await Task.sleep(for: .milliseconds(300))
        try await screenshot(name)
        try await browser.setWindowSize(width: width, height: minHeight)
    }

    /// Visible text of the current page whose contrast with the background behind it is below WCAG
    /// AA (4.5:1; 3:1 for large text), as `text (ratio, colour on background)`. The background is
    /// the first opaque one among the element and its ancestors; disabled controls are left out.
    func lowContrastText() async throws -> [String] {
        let result = try await browser.execute(
            """
            const rgba = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
            const luminance = ([r, g, b]) => {
              const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
              return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
            };
            const background = (el) => {
              for (let node = el; node; node = node.parentElement) {
                const color = rgba(getComputedStyle(node).backgroundColor);
                if (color.length === 3 || (color.length === 4 && color[3] >= 0.9)) return color.slice(0, 3);
              }
              return rgba(getComputedStyle(document.body).backgroundColor).slice(0, 3);
            };
            const failures = [];
            for (const el of document.querySelectorAll('body *')) {
              const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
              if (!own || el.closest('[disabled], .visually-hidden, .skip-link, noscript, option')) continue;
              const box = el.getBoundingClientRect();
              if (box.width < 2 || box.height < 2 || el.offsetParent === null) continue;
              const style = getComputedStyle(el);
              if (style.visibility !== 'visible' || Number(style.opacity) < 0.9) continue;
              const fg = rgba(style.color), bg = background(el);
              const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
              const ratio = (hi + 0.05) / (lo + 0.05);
              const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
              const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
              if (ratio < needed) {
                failures.push(`${el.textContent.trim().slice(0, 40)} (${ratio.toFixed(2)}, ${style.color} on rgb(${bg.join(', ')}))`);
              }
            }
            return failures;
            """)
        return result.array.compactMap(\.string)
    }

    /// Every form control of the current page that has no accessible name from a label or ARIA.
    func unlabelledControls() async throws -> [String] {
        let result = try await browser.execute(
            """
            return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
              .filter((el) => el.offsetParent !== null)
              .filter((el) => !(el.labels && el.labels.length > 0) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
              .map((el) => el.outerHTML.slice(0, 120));
            """)
        return result.array.compactMap(\.string)
    }
}

/// Plain HTTP requests, to check what the server sends (headers) rather than what the browser shows.
enum HTTPProbe {
    struct Result {
        var status: UInt
        /// Header values by lower-cased name (the first value of each).
        var headers: [String: String]
    }

    static func get(_ url: String, headers: [String: String] = [:]) async throws -> Result {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 8 << 20)
        var fields: [String: String] = [:]
        for header in response.headers where fields[header.name.lowercased()] == nil {
            fields[header.name.lowercased()] = header.value
        }
        return Result(status: response.status.code, headers: fields)
    }
}
