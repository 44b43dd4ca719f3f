import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// The web console, driven in headless Chromium against a live `agentjobs dev`.
///
/// Serialized: each test starts its own server, chromedriver and browser, and two Chromiums at once
/// would only slow each other down on a small machine.
@Suite(
    "Web console in headless Chromium", .serialized,
    .enabled(if: BrowserTools.shouldRun, Comment(rawValue: BrowserTools.skipReason)))
struct ConsoleTests {
    @Test("sign-in keeps the token in sessionStorage, out of the URL, and rejects an unknown token next to the field")
    func signIn() async throws {
        try await Console.run(signIn: false) { console in
            try await console.open("/settings/agents/runs?status=queued")
            let input = try await console.waitFor("#token")
            try await console.screenshot("sign-in")
            try await console.browser.type(input, "ajt_not-a-real-token")
            try await console.click("form.signin-form button[type=submit]")
            try await console.waitForText("#token-error", contains: "not valid")
            #expect(try await console.browser.attribute(input, "aria-invalid") == "true")

            try await console.fill("#token", console.token)
            try await console.click("form.signin-form button[type=submit]")
            // Signing in keeps the page that was asked for, filters included.
            try await console.waitFor("tr[data-run-id], .empty-state")
            #expect(try await console.path() == "/settings/agents/runs?status=queued")
            let url = try await console.browser.currentURL()
            #expect(!url.contains(console.token))
            let stored = try await console.browser.execute("return sessionStorage.getItem('agentjobs.apiToken');")
            #expect(stored.string == console.token)
            let local = try await console.browser.execute("return Object.keys(localStorage).length;")
            #expect(local.number == 0, "the token must not outlive the tab in localStorage")

            try await console.click("button.signout")
            try await console.waitFor("#token")
            #expect(try await console.browser.execute("return sessionStorage.getItem('agentjobs.apiToken');") == .null)
        }
    }

    @Test("the Hosts tab lists each host with its status, last contact, managed agents and version")
    func hostsTab() async throws {
        try await Console.run { console in
            try await console.api.registerHost(name: "edge-eu-1", managedAgents: ["datahealth", "data-source"])
            try await console.click("nav.tabs a[data-tab=hosts]")
            try await console.waitForText("main h1", contains: "Hosts")
            let rows = try await console.browser.findAll("table.table-hosts tbody tr")
            #expect(rows.count == 2)
            let table = try await console.text("table.table-hosts")
            #expect(table.contains("local"))
            #expect(table.contains("edge-eu-1"))
            #expect(table.contains("Lineage+"))
            #expect(table.contains("External Monitors"))
            #expect(table.contains("Data Source"))
            #expect(table.contains("never heard from"))
            #expect(table.contains("Offline"))
            #expect(table.contains("not reported"))
            #expect(
                try await console.browser.execute(
                    "return document.querySelector('a[data-tab=hosts]').getAttribute('aria-current');")
                    == .string("page"))
            try await console.screenshot("hosts-tab")
        }
    }

    @Test(
        "create a job through the form: host list follows the agent type, the API's 422 shows next to the field, the cron preview lists fire times"
    )
    func createJobThroughTheForm() async throws {
        try await Console.run { console in
            try await console.api.registerHost(name: "edge-eu-1", managedAgents: ["datahealth"])
            try await console.open("/settings/agents/jobs")
            try await console.click("a.btn-primary[href='/settings/agents/jobs/new']")
            try await console.waitForText("main h1", contains: "Create job")

            // Lineage+: only `local` manages it, and the form says why edge-eu-1 is missing.
            try await console.select("#job-agent-type", value: "lineage-plus")
            let hostOptions = try await console.browser.execute(
                "return [...document.querySelectorAll('#job-host option')].map(o => o.textContent);")
            #expect(hostOptions.array.compactMap(\.string).map { $0.hasPrefix("local") } == [true])
            let hostHint = try await console.text("#job-host-hint")
            #expect(hostHint.contains("Not listed"))
            #expect(hostHint.contains("edge-eu-1 — manages DataHealth"))
            #expect(
                try await console.browser.findAll("#job-file-name").isEmpty,
                "DataHealth's field is not shown for Lineage+")

            try await console.fill("#job-name", "nightly-lineage")
            try await console.fill("#job-connector-types", "-snowflake")
            try await console.click("form.job-form button[type=submit]")
            // The API refuses the value; its message appears next to the field, and the field is marked invalid.
            let error = try await console.waitForText("#job-connector-types-error", contains: "must not start with '-'")
            #expect(error.contains("-snowflake"))
            #expect(
                try await console.browser.attribute(try await console.find("#job-connector-types"), "aria-invalid")
                    == "true")
            #expect(try await console.text("#job-form-alert").contains("Connector types"))
            let focused = try await console.browser.execute("return document.activeElement.id;")
            #expect(focused.string == "job-connector-types", "focus moves to the field at fault")
            #expect(try await console.path() == "/settings/agents/jobs/new")
            try await console.screenshot("job-form-error")

            // DataHealth shows its own field, and edge-eu-1 becomes selectable.
            try await console.select("#job-agent-type", value: "datahealth")
            _ = try await console.waitFor("#job-file-name")
            #expect(try await console.browser.findAll("#job-connector-types").isEmpty)
            let dataHealthHosts = try await console.browser.execute(
                "return [...document.querySelectorAll('#job-host option')].map(o => o.textContent);")
            #expect(dataHealthHosts.array.count == 2)
            try await console.select("#job-agent-type", value: "lineage-plus")
            try await console.fill("#job-connector-types", "snowflake, bigquery")
            #expect(try await console.browser.findAll("#job-connector-types-error:not([hidden])").isEmpty)
            #expect(try await console.text("#job-form-alert").isEmpty, "the summary goes once the field is fixed")
            try await console.fill("#job-connection-name", "warehouse-prod")

            // Schedule: an invalid cron is reported by the preview next to the field; a valid one lists fire times.
            try await console.click("#job-schedule-enabled")
            try await console.fill("#job-cron", "61 * * * *")
            try await console.fill("#job-timezone", "Europe/Berlin")
            _ = try await console.waitFor("#job-cron-error:not([hidden])")
            try await console.fill("#job-cron", "30 2 * * *")
            try await console.waitUntil("the preview lists 5 fire times") {
                try await console.browser.findAll("#job-schedule-preview ol.preview-times li").count == 5
            }
            #expect(try await console.text("#job-schedule-preview").contains("Europe/Berlin"))
            #expect(try await console.browser.findAll("#job-cron-error:not([hidden])").isEmpty)
            try await console.fullPageScreenshot("job-form")

            try await console.click("form.job-form button[type=submit]")
            try await console.waitForText("main h1", contains: "nightly-lineage")
            let path = try await console.path()
            #expect(path.hasPrefix("/settings/agents/jobs/job_"))
            let definition = try await console.text("section[aria-labelledby=job-definition]")
            #expect(definition.contains("snowflake, bigquery"))
            #expect(definition.contains("warehouse-prod"))

            let jobId = String(path.dropFirst("/settings/agents/jobs/".count))
            let job = try await console.api.call(.GET, "/jobs/\(jobId)", expect: 200)
            #expect(job["agentType"]?.string == "lineage-plus")
            #expect(job["parameters"]?["connectorTypes"]?.array.compactMap(\.string) == ["snowflake", "bigquery"])
            #expect(job["schedule"]?["cron"]?.string == "30 2 * * *")
            #expect(job["schedule"]?["timezone"]?.string == "Europe/Berlin")
            #expect(try await console.text("section[aria-labelledby=job-schedule]").contains("Next fire times"))
        }
    }

    @Test(
        "with more hosts than the console lists at once, jobs show their host's name, and the job form finds hosts by name through the API"
    )
    func hostPickerOfABigFleet() async throws {
        try await Console.run { console in
            // 205 hosts after `local`: more than the 200 the console lists at once; rack-204 is last.
            var ids: [String: String] = [:]
            try await withThrowingTaskGroup(of: (String, String).self) { group in
                for index in 0..<205 {
                    let name = "rack-\(String(format: "%03d", index))"
                    group.addTask {
                        (name, try await console.api.registerHost(name: name, managedAgents: ["datahealth"]))
                    }
                    if index >= 8, let (name, id) = try await group.next() { ids[name] = id }
                }
                for try await (name, id) in group { ids[name] = id }
            }
            let last = try #require(ids["rack-204"])
            let jobId = try await console.api.createJob(name: "far-away", hostId: last)

            try await console.open("/settings/agents/jobs")
            try await console.waitForText("tr[data-job-id='\(jobId)']", contains: "rack-204")
            try await console.open("/settings/agents/jobs/\(jobId)/edit")
            try await console.waitForText("main h1", contains: "Edit far-away")
            try await console.waitForText("#job-host-hint", contains: "the first 200 by name are listed")
            #expect(try await console.browser.property(try await console.find("#job-host"), "value").string == last)
            func options() async throws -> [String] {
                try await console.browser.execute(
                    "return [...document.querySelectorAll('#job-host option')].map(o => o.textContent);"
                ).array.compactMap(\.string)
            }
            try await console.fill("#job-host-search", "rack-20")
            try await console.waitUntil("the five hosts named rack-20…") { try await options().count == 5 }
            #expect(try await options().map { String($0.prefix(8)) } == (200...204).map { "rack-\($0)" })
            try await console.waitForText("#job-host-hint", contains: "5 hosts manage DataHealth with a name starting")
            try await console.select("#job-host", value: try #require(ids["rack-201"]))
            try await console.fill("#job-host-search", "rack-00")
            try await console.waitUntil("rack-00… and the chosen host") { try await options().count == 11 }
            #expect(try await options().first?.hasPrefix("rack-201") == true)
            try await console.click("form.job-form button[type=submit]")
            try await console.waitForText("main h1", contains: "far-away")
            let job = try await console.api.call(.GET, "/jobs/\(jobId)", expect: 200)
            #expect(job["hostId"]?.string == ids["rack-201"])
        }
    }

    @Test("editing a job through the form saves a new version and keeps the schedule")
    func editJob() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let jobId = try await console.api.createJob(
                name: "health-checks", hostId: host, schedule: #"{"cron":"0 6 * * 1","timezone":"UTC"}"#)
            try await console.open("/settings/agents/jobs/\(jobId)")
            try await console.click("a[data-action=edit]")
            try await console.waitForText("main h1", contains: "Edit health-checks")
            #expect(
                try await console.browser.property(try await console.find("#job-file-name"), "value").string
                    == "checks.yaml")
            try await console.fill("#job-file-name", "checks-v2.yaml")
            try await console.fill("#job-timeout", "many")
            try await console.click("form.job-form button[type=submit]")
            try await console.waitForText("#job-timeout-error", contains: "whole number")
            try await console.fill("#job-timeout", "1800")
            // Retries: off until turned on; the hint lists the delays the policy gives.
            #expect(try await console.browser.findAll("#job-retry-fields:not([hidden])").isEmpty)
            try await console.click("#job-retry-enabled")
            try await console.fill("#job-retry-max-attempts", "4")
            try await console.waitForText("#job-retry-delays", contains: "1 minute, 2 minutes, 4 minutes")
            try await console.click("#job-retry-on-timed-out")
            try await console.click("form.job-form button[type=submit]")
            try await console.waitForText("main h1", contains: "health-checks")
            #expect(
                try await console.text("section[aria-labelledby=job-definition]").contains("Up to 4 attempts"))
            let job = try await console.api.call(.GET, "/jobs/\(jobId)", expect: 200)
            #expect(job["retry"]?["maxAttempts"]?.number == 4)
            #expect(job["retry"]?["on"]?.array.compactMap(\.string) == ["failed"])
            #expect(job["version"]?.number == 2)
            #expect(job["parameters"]?["fileName"]?.string == "checks-v2.yaml")
            #expect(job["timeoutSeconds"]?.number == 1800)
            #expect(job["schedule"]?["cron"]?.string == "0 6 * * 1")
            #expect(try await console.text("main").contains("The next run uses version 2"))
        }
    }

    @Test(
        "Run now queues a run, is disabled with the reason while it is active, a 409 from a race is a clear message, and the run is followed to succeeded"
    )
    func runNow() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            // The sample datahealth agent sleeps for "sleep-N": the run stays active for a while.
            let jobId = try await console.api.createJob(
                name: "nightly-health", hostId: host, parameters: #"{"fileName":"sleep-3"}"#)
            let offline = try await console.api.registerHost(name: "edge-offline", managedAgents: ["datahealth"])
            try await console.api.createJob(
                name: "lineage-snowflake", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["snowflake"]}"#,
                schedule: #"{"cron":"30 2 * * *","timezone":"Europe/Berlin"}"#)
            try await console.api.createJob(
                name: "monitors-weekly", hostId: host, agentType: "external-monitors",
                parameters: #"{"connectorTypes":["bigquery","tableau"]}"#,
                schedule: #"{"cron":"0 6 * * 1","timezone":"UTC","paused":true}"#)
            try await console.open("/settings/agents/jobs")
            let button = "tr[data-job-id=\"\(jobId)\"] button[data-action=run-now]"
            #expect(try await console.isEnabled(button))
            try await console.click(button)
            try await console.waitUntil("Run now is disabled while the run is queued") {
                try await !console.isEnabled(button)
            }
            let reason = try await console.text("#run-now-reason-\(jobId)")
            // Queued or already running: the local orchestrator starts the agent within milliseconds.
            #expect(reason.contains("queued") || reason.contains("in progress"), "\(reason)")
            try await console.waitUntil("the row shows the active run") {
                let row = try await console.text("tr[data-job-id=\"\(jobId)\"]")
                return row.contains("Queued") || row.contains("Running")
            }
            let runs = try await console.api.call(.GET, "/runs?jobId=\(jobId)", expect: 200)
            #expect(runs["runs"]?.array.count == 1)
            #expect(runs["runs"]?.array.first?["trigger"]?.string == "manual")
            #expect(try await console.text("#toasts").contains("Run queued"))
            try await console.waitForText("table.table-jobs", contains: "Every day at 02:30")
            #expect(try await console.text("table.table-jobs").contains("Paused"))
            try await console.screenshot("jobs-tab")

            // A race: another client triggers the job after the page last refreshed. The page polls every
            // 2 s, so the trigger-and-click pair is retried on a fresh job if a refresh slipped in between.
            var sawMessage = false
            for attempt in 1...3 where !sawMessage {
                // On a host with no orchestrator running, the run stays queued.
                let racing = try await console.api.createJob(name: "race-\(attempt)", hostId: offline)
                try await console.open("/settings/agents/jobs")
                let racingButton = try await console.waitFor(
                    "tr[data-job-id=\"\(racing)\"] button[data-action=run-now]")
                _ = try await console.api.trigger(racing)
                // A refresh that slipped in replaced (stale) or disabled the button: try again.
                guard (try? await console.browser.isEnabled(racingButton)) == true else { continue }
                guard (try? await console.browser.click(racingButton)) != nil else { continue }
                let message = try? await console.waitForText(
                    "tr.row-message", contains: "already has an active run", timeout: .seconds(5))
                sawMessage = message != nil
                if let message { #expect(message.contains("run_") || message.contains("…")) }
            }
            #expect(sawMessage, "a 409 active_run from a race is shown as a message in the job's row")
            #expect(try await console.browser.findAll(".alert-error").isEmpty, "a race is not an error page")

            // Run it again and follow the run to its page: the local orchestrator runs the agent and
            // the page follows it live to Succeeded; then Run now is offered again.
            try await console.open("/settings/agents/jobs")
            try await console.waitUntil("the first run ended", timeout: .seconds(15)) {
                try await console.isEnabled(button)
            }
            try await console.click(button)
            try await console.waitFor("tr[data-job-id=\"\(jobId)\"] a.badge-link")
            try await console.waitUntil("the row links the new run", timeout: .seconds(8)) {
                let row = try await console.text("tr[data-job-id=\"\(jobId)\"]")
                return row.contains("Queued") || row.contains("Running")
            }
            try await console.click("tr[data-job-id=\"\(jobId)\"] a.badge-link")
            try await console.waitForText("main .title-badge", contains: "Running", timeout: .seconds(8))
            try await console.waitForText("main .title-badge", contains: "Succeeded", timeout: .seconds(12))
            #expect(try await console.text("section[aria-labelledby=run-timeline]").contains("exit code 0"))
            #expect(
                try await console.browser.findAll("section[aria-labelledby=run-error-summary]:not([hidden])").isEmpty)
            try await console.open("/settings/agents/jobs")
            try await console.waitUntil("Run now is offered again") { try await console.isEnabled(button) }
            #expect(try await console.browser.findAll("#run-now-reason-\(jobId)").isEmpty)
        }
    }

    @Test(
        "the Runs tab filters by host, job type and status in the URL, pages with the API's cursor, and shows new runs live"
    )
    func runsTabFiltersAndPages() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let offline = try await console.api.registerHost(name: "edge-offline", managedAgents: ["datahealth"])
            let health = try await console.api.createJob(name: "nightly-health", hostId: host)
            let lineage = try await console.api.createJob(
                name: "lineage-snowflake", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["snowflake"]}"#)
            let broken = try await console.api.createJob(
                name: "lineage-broken", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["fail-postgres"]}"#)
            let longScan = try await console.api.createJob(
                name: "lineage-full-scan", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["sleep-120"]}"#)
            let waiting = try await console.api.createJob(name: "edge-health", hostId: offline)
            let waitingToo = try await console.api.createJob(name: "edge-health-2", hostId: offline)
            // 27 finished runs of nightly-health, run one after the other by the local orchestrator …
            for _ in 0..<27 {
                let run = try await console.api.trigger(health)
                try await console.api.waitForRun(run) { $0["status"]?.string == "succeeded" }
            }
            // … one succeeded and one failed lineage-plus run, one running, and one waiting for its host.
            let succeeded = try await console.api.trigger(lineage)
            try await console.api.waitForRun(succeeded) { $0["status"]?.string == "succeeded" }
            let failed = try await console.api.trigger(broken)
            try await console.api.waitForRun(failed) { $0["status"]?.string == "failed" }
            let running = try await console.api.trigger(longScan)
            try await console.api.waitForRun(running) { $0["status"]?.string == "running" }
            let queued = try await console.api.trigger(waiting)

            try await console.open("/settings/agents/runs")
            try await console.waitUntil("the first page shows 25 runs") {
                try await console.browser.findAll("table.table-runs tbody tr[data-run-id]").count == 25
            }
            #expect(try await console.text("table.table-runs tbody tr:first-child").contains("Waiting for host"))
            try await console.screenshot("runs-tab")

            // Pages follow the API's cursor.
            try await console.click(".pager button[data-action=older]")
            try await console.waitUntil("the second page shows the remaining 6 runs") {
                try await console.browser.findAll("table.table-runs tbody tr[data-run-id]").count == 6
            }
            #expect(try await console.path().contains("cursor="))
            #expect(try await !console.isEnabled(".pager button[data-action=older]"))
            try await console.click(".pager button[data-action=newer]")
            try await console.waitUntil("back on the first page") {
                try await console.browser.findAll("table.table-runs tbody tr[data-run-id]").count == 25
            }

            // Filters go into the URL.
            try await console.select("#filter-status", value: "queued")
            try await console.waitUntil("only the queued run is listed") {
                let rows = try await console.browser.findAll("table.table-runs tbody tr[data-run-id]")
                guard rows.count == 1 else { return false }
                return try await console.browser.attribute(rows[0], "data-run-id") == queued
            }
            #expect(try await console.path() == "/settings/agents/runs?status=queued")
            try await console.select("#filter-status", value: "")
            try await console.select("#filter-agentType", value: "lineage-plus")
            try await console.waitUntil("only the lineage-plus runs are listed") {
                try await console.browser.findAll("table.table-runs tbody tr[data-run-id]").count == 3
            }
            try await console.select("#filter-status", value: "running")
            try await console.select("#filter-hostId", value: host)
            try await console.waitUntil("one running lineage-plus run on local") {
                let rows = try await console.browser.findAll("table.table-runs tbody tr[data-run-id]")
                guard rows.count == 1 else { return false }
                return try await console.browser.attribute(rows[0], "data-run-id") == running
            }
            let filtered = try await console.path()
            #expect(filtered.contains("agentType=lineage-plus"))
            #expect(filtered.contains("status=running"))
            #expect(filtered.contains("hostId=\(host)"))

            // A reload keeps the filters (they live in the URL), and Back returns to the previous filter.
            try await console.browser.refresh()
            try await console.waitUntil("the reloaded page applies the filters from the URL") {
                let status = try await console.browser.property(
                    try await console.browser.find("#filter-status"), "value")
                let rows = try await console.browser.findAll("table.table-runs tbody tr[data-run-id]")
                return status.string == "running" && rows.count == 1
            }
            try await console.browser.back()
            try await console.waitUntil("Back restores the previous filter") {
                let status = try await console.browser.property(
                    try await console.browser.find("#filter-status"), "value")
                let host = try await console.browser.property(try await console.browser.find("#filter-hostId"), "value")
                return status.string == "running" && host.string == ""
            }

            // Live: a run canceled elsewhere leaves the running filter once its host confirms …
            try await console.open("/settings/agents/runs?status=running")
            _ = try await console.waitFor("tr[data-run-id=\"\(running)\"]")
            try await console.api.call(.POST, "/runs/\(running)/cancel", expect: 202)
            try await console.waitUntil("the canceled run leaves the running filter", timeout: .seconds(10)) {
                try await console.browser.findAll("tr[data-run-id=\"\(running)\"]").isEmpty
            }
            #expect(try await console.api.call(.GET, "/runs/\(running)", expect: 200)["status"]?.string == "canceled")
            // … and a run triggered elsewhere appears without a reload.
            try await console.open("/settings/agents/runs?status=queued")
            _ = try await console.waitFor("tr[data-run-id=\"\(queued)\"]")
            let fresh = try await console.api.trigger(waitingToo)
            _ = try await console.waitFor("tr[data-run-id=\"\(fresh)\"]", timeout: .seconds(8))
            try await console.waitForText("#announcer", contains: "new run", timeout: .seconds(5))
        }
    }

    @Test("Cancel on the Runs tab shows Canceling… until the host confirms, then Canceled, without a reload")
    func cancelFromRunsTab() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let offline = try await console.api.registerHost(name: "edge-offline", managedAgents: ["datahealth"])
            // "ignore-term": the sample agent ignores SIGTERM, so it stops only at SIGKILL after the
            // stop grace (3 s here) and "Canceling…" stays visible until then.
            let longJob = try await console.api.createJob(
                name: "health-stubborn", hostId: host, parameters: #"{"fileName":"ignore-term"}"#)
            let running = try await console.api.trigger(longJob)
            try await console.api.waitForRun(running) { $0["status"]?.string == "running" }
            let queuedJob = try await console.api.createJob(name: "edge-health", hostId: offline)
            let queued = try await console.api.trigger(queuedJob)

            try await console.open("/settings/agents/runs")
            let row = "tr[data-run-id=\"\(running)\"]"
            try await console.waitForText(row, contains: "Running")
            try await console.click("\(row) button[data-action=cancel]")
            try await console.confirmDialog(expectingTitle: "Cancel this run?")
            try await console.waitForText(row, contains: "Canceling…")
            #expect(try await !console.isEnabled("\(row) button[data-action=cancel]"))
            let requested = try await console.api.call(.GET, "/runs/\(running)", expect: 200)
            #expect(requested["status"]?.string == "running")
            #expect(requested["cancelRequestedAt"]?.string != nil)
            try await console.screenshot("runs-tab-canceling")

            // The host confirms the agent stopped (SIGKILL after the grace): the row turns Canceled.
            try await console.waitUntil("the row shows Canceled", timeout: .seconds(15)) {
                try await console.browser.attribute(try await console.find(row), "data-status") == "canceled"
            }
            #expect(try await console.browser.findAll("\(row) button[data-action=cancel]").isEmpty)
            try await console.waitForText("#announcer", contains: "canceled", timeout: .seconds(5))

            // A queued run of a host that is offline: Canceling… until that host confirms (or the
            // queue deadline passes), because the host may already have it.
            let queuedRow = "tr[data-run-id=\"\(queued)\"]"
            try await console.click("\(queuedRow) button[data-action=cancel]")
            try await console.confirmDialog(expectingTitle: "Cancel this run?")
            try await console.waitForText(queuedRow, contains: "Canceling…")
            let pending = try await console.api.call(.GET, "/runs/\(queued)", expect: 200)
            #expect(pending["status"]?.string == "queued")
            #expect(pending["cancelRequestedAt"]?.string != nil)
        }
    }

    @Test(
        "the Runs tab follows run changes through the change feed without polling, and polls every 2 s when the feed fails"
    )
    func runsFollowTheChangeFeed() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let job = try await console.api.createJob(name: "health-live", hostId: host)
            try await console.open("/settings/agents/runs")
            try await console.waitFor(".live[data-feed=changes]")
            _ = try await console.browser.execute("performance.setResourceTimingBufferSize(100000); return 0;")
            /// How many times the page has fetched the runs list.
            func listFetches() async throws -> Int {
                let count = try await console.browser.execute(
                    """
                    return performance.getEntriesByType('resource')
                      .filter((entry) => new URL(entry.name).pathname === '/api/v1/runs').length;
                    """)
                return Int(try #require(count.number))
            }

            // A run started elsewhere shows up and is followed to its end.
            let first = try await console.api.trigger(job)
            let row = "tr[data-run-id=\"\(first)\"]"
            try await console.waitUntil("the run is listed as succeeded", timeout: .seconds(20)) {
                try await console.browser.attribute(try await console.browser.find(row), "data-status") == "succeeded"
            }

            // Nothing changes: the page waits on the feed and fetches the list at most once (the
            // 15 s backstop) in 6 s, where polling every 2 s fetches it 3 times.
            try await Task.sleep(for: .seconds(1))
            let before = try await listFetches()
            try await Task.sleep(for: .seconds(6))
            let quiet = try await listFetches() - before
            #expect(quiet <= 1, "the list was fetched \(quiet) times in 6 s while nothing changed")
            #expect(try await console.browser.attribute(try await console.find(".live"), "data-feed") == "changes")

            // The feed fails (every later poll is refused by the network): the page says so in
            // `data-feed` and polls every 2 s, and runs still show up.
            _ = try await console.browser.execute(
                """
                const original = window.fetch;
                window.fetch = (input, init) => String(input).includes('/runs/changes')
                  ? Promise.reject(new TypeError('feed blocked by the test')) : original(input, init);
                return 0;
                """)
            let second = try await console.api.trigger(job)
            try await console.waitUntil("the page falls back to polling", timeout: .seconds(20)) {
                try await console.browser.attribute(try await console.find(".live"), "data-feed") == "polling"
            }
            try await console.waitUntil("the second run is listed as succeeded", timeout: .seconds(20)) {
                try await console.browser.attribute(
                    try await console.browser.find("tr[data-run-id=\"\(second)\"]"), "data-status")
                    == "succeeded"
            }
            let pollingFrom = try await listFetches()
            try await Task.sleep(for: .seconds(6))
            #expect(try await listFetches() - pollingFrom >= 2, "polling every 2 s fetches the list in 6 s")
        }
    }

    @Test(
        "a host's page shows its status, agents, jobs and recent runs from the Hosts tab, and an admin revokes its credential there"
    )
    func hostDetail() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let jobId = try await console.api.createJob(name: "datahealth-nightly", hostId: host)
            let runId = try await console.api.trigger(jobId)
            try await console.api.waitForRun(runId) { $0["status"]?.string == "succeeded" }
            let edge = try await console.api.registerHost(name: "edge-eu-1", managedAgents: ["datahealth"])

            // From the list: the host's name leads to its page.
            try await console.click("nav.tabs a[data-tab=hosts]")
            try await console.click("tr[data-host-id='\(host)'] a")
            try await console.waitForText("section[aria-labelledby=host-runs]", contains: "datahealth-nightly")
            #expect(try await console.path() == "/settings/agents/hosts/\(host)")
            #expect(try await console.text("main h1").contains("local"))
            let summary = try await console.text("section[aria-labelledby=host-summary]")
            #expect(summary.contains("Online"))
            #expect(summary.contains("DataHealth"))
            #expect(summary.contains("Active"))
            let jobs = try await console.text("section[aria-labelledby=host-jobs]")
            #expect(jobs.contains("datahealth-nightly"))
            #expect(jobs.contains("Succeeded"))
            #expect(
                try await console.browser.findAll("section[aria-labelledby=host-runs] tr[data-run-id='\(runId)']").count
                    == 1)
            try await console.screenshot("host-detail")

            // A host never heard from says so, and has no jobs or runs yet.
            try await console.open("/settings/agents/hosts/\(edge)")
            try await console.waitForText("section[aria-labelledby=host-summary]", contains: "never heard from")
            #expect(try await console.text("section[aria-labelledby=host-jobs]").contains("No jobs on this host"))
            try await console.click("button[data-action=revoke]")
            try await console.confirmDialog(expectingTitle: "Revoke the credential of edge-eu-1?")
            try await console.waitForText("section[aria-labelledby=host-summary]", contains: "Revoked")
            #expect(try await console.browser.findAll("button[data-action=revoke]").isEmpty)
            let revoked = try await console.api.call(.GET, "/hosts/\(edge)", expect: 200)
            #expect(revoked["revokedAt"]?.string != nil, "the API does not show the revocation: \(revoked)")
            // The local host was not touched.
            #expect(try await console.api.call(.GET, "/hosts/\(host)", expect: 200)["revokedAt"]?.string == nil)
        }
    }

    @Test(
        "the Access tab creates an API token shown once and revokes it, and creates a registration token with the command that registers a host"
    )
    func accessTab() async throws {
        try await Console.run { console in
            try await console.click("nav.tabs a[data-tab=access]")
            try await console.waitFor("section[aria-labelledby=api-tokens] tr[data-token-id]")
            #expect(try await console.path() == "/settings/agents/access")

            // An API token: created with a scope, its secret shown once, working at once.
            try await console.click("button[data-action=create-token]")
            try await console.waitForText("[data-field=token-name] .field-error", contains: "Enter a name")
            try await console.fill("#token-name", "ci-deploy")
            try await console.select("#token-scope", value: "read")
            try await console.click("button[data-action=create-token]")
            let secret = try await console.text("code[data-secret=api]")
            #expect(secret.hasPrefix("ajt_"), "not an API token: \(secret)")
            let reader = APIClient(baseURL: console.baseURL, token: secret)
            try await reader.call(.GET, "/jobs", expect: 200)
            try await reader.call(.POST, "/tokens", body: #"{"name":"x","scope":"admin"}"#, expect: 403)
            let listed = try await console.api.call(.GET, "/tokens", expect: 200)
            guard
                let tokenId = listed["tokens"]?.array.first(where: { $0["name"]?.string == "ci-deploy" })?["id"]?.string
            else {
                Issue.record("ci-deploy is not listed: \(listed)")
                return
            }
            #expect(listed["tokens"]?.array.first { $0["id"]?.string == tokenId }?["scope"]?.string == "read")
            try await console.waitForText("tr[data-token-id='\(tokenId)']", contains: "ci-deploy")
            // The secret is not kept: it is gone once dismissed and after a reload.
            try await console.click("button[data-action=dismiss-secret]")
            #expect(try await console.browser.findAll("code[data-secret]").isEmpty)
            try await console.browser.refresh()
            try await console.waitFor("tr[data-token-id='\(tokenId)']")
            #expect(try await console.browser.findAll("code[data-secret]").isEmpty)
            let page = try await console.text("main")
            #expect(!page.contains(secret), "the secret is still on the page after a reload")

            try await console.click("tr[data-token-id='\(tokenId)'] button[data-action=revoke-token]")
            try await console.confirmDialog(expectingTitle: "Revoke the API token ci-deploy?")
            try await console.waitForText("tr[data-token-id='\(tokenId)']", contains: "Revoked")
            try await reader.call(.GET, "/jobs", expect: 401)

            // A registration token: shown once with the command; a host registers with it.
            try await console.select("#registration-lifetime", value: "3600")
            try await console.click("button[data-action=create-registration-token]")
            let registration = try await console.text("code[data-secret=registration]")
            let command = try await console.text("pre[data-command=register]")
            #expect(command.contains("agentjobs host register --control-plane \(console.baseURL)"), "\(command)")
            #expect(command.contains("read -rs AGENTJOBS_REGISTRATION_TOKEN"), "\(command)")
            #expect(!command.contains(registration), "the command line carries the token: \(command)")
            // The panel with the secret keeps its contrast too.
            let low = try await console.lowContrastText()
            #expect(low.isEmpty, "text below 4.5:1 contrast: \(low)")
            let tokens = try await console.api.call(.GET, "/registration-tokens", expect: 200)
            guard let created = tokens["registrationTokens"]?.array.first(where: { $0["state"]?.string == "active" }),
                let registrationId = created["id"]?.string, let expiresAt = created["expiresAt"]?.string,
                let createdAt = created["createdAt"]?.string,
                let expiry = ISO8601.parse(expiresAt), let start = ISO8601.parse(createdAt)
            else {
                Issue.record("no active registration token listed: \(tokens)")
                return
            }
            #expect(abs(expiry.timeIntervalSince(start) - 3600) < 5, "expires \(expiresAt), created \(createdAt)")
            _ = try await console.browser.execute("window.scrollTo(0, 0);")
            try await console.fullPageScreenshot("access")
            let edge = try await console.api.registerHost(
                name: "edge-eu-1", managedAgents: ["datahealth"], registrationToken: registration)
            try await console.browser.refresh()
            try await console.waitForText("tr[data-registration-token-id='\(registrationId)']", contains: "Used")
            #expect(try await console.text("tr[data-registration-token-id='\(registrationId)']").contains(edge))

            // Another one, revoked before use.
            try await console.click("button[data-action=create-registration-token]")
            try await console.waitFor("tr[data-registration-token-id][data-state=active]")
            try await console.click("tr[data-state=active] button[data-action=revoke-registration-token]")
            try await console.confirmDialog(expectingTitle: "Revoke this registration token?")
            try await console.waitUntil("no registration token is active") {
                try await console.browser.findAll("tr[data-registration-token-id][data-state=active]").isEmpty
            }
            #expect(try await console.browser.findAll("tr[data-state=revoked]").count == 1)

            // Without the admin scope the page says what is needed.
            let viewer = try await console.api.call(
                .POST, "/tokens", body: #"{"name":"viewer","scope":"write"}"#, expect: 201)
            try await console.click("button.signout")
            try await console.fill("#token", viewer["secret"]?.string ?? "")
            try await console.click("form.signin-form button[type=submit]")
            try await console.click("nav.tabs a[data-tab=access]")
            try await console.waitForText("main", contains: "Managing tokens needs an admin token")
            #expect(try await console.browser.findAll("button[data-action=create-token]").isEmpty)
        }
    }

    @Test("the Hosts and Jobs tabs page 50 at a time, and search and filter through the API")
    func hostsAndJobsPaged() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            for index in 0..<52 {
                _ = try await console.api.registerHost(
                    name: "edge-\(String(format: "%02d", index))", managedAgents: ["datahealth"])
            }
            for index in 0..<51 {
                _ = try await console.api.createJob(name: "fleet-job-\(String(format: "%02d", index))", hostId: host)
            }
            func rows(_ selector: String) async throws -> Int { try await console.browser.findAll(selector).count }

            try await console.click("nav.tabs a[data-tab=hosts]")
            try await console.waitUntil("50 hosts on the first page") { try await rows("tr[data-host-id]") == 50 }
            #expect(try await console.text("main .page-subtitle").contains("53 hosts"))
            try await console.click("nav.pager button[data-action=next]")
            try await console.waitUntil("3 hosts on the second page") { try await rows("tr[data-host-id]") == 3 }
            #expect(try await console.path().contains("cursor="))
            try await console.click("nav.pager button[data-action=previous]")
            try await console.waitUntil("the first page again") { try await rows("tr[data-host-id]") == 50 }
            try await console.fill("#filter-namePrefix", "edge-4")
            try await console.waitUntil("the hosts named edge-4…") { try await rows("tr[data-host-id]") == 10 }
            #expect(try await console.path() == "/settings/agents/hosts?namePrefix=edge-4")
            try await console.waitForText("#hosts-summary", contains: "Showing 10 of 53 hosts")
            try await console.fill("#filter-namePrefix", "")
            try await console.select("#filter-status", value: "online")
            try await console.waitUntil("only the local host is online") { try await rows("tr[data-host-id]") == 1 }
            #expect(try await console.text("tr[data-host-id]").contains("local"))

            try await console.click("nav.tabs a[data-tab=jobs]")
            try await console.waitUntil("50 jobs on the first page") { try await rows("tr[data-job-id]") == 50 }
            #expect(try await console.text("tr[data-job-id]").contains("fleet-job-50"), "newest first")
            try await console.click("nav.pager button[data-action=older]")
            try await console.waitUntil("1 job on the second page") { try await rows("tr[data-job-id]") == 1 }
            #expect(try await console.text("tr[data-job-id]").contains("fleet-job-00"))
            try await console.fill("#filter-q", "JOB-1")
            try await console.waitUntil("the ten jobs fleet-job-1…") { try await rows("tr[data-job-id]") == 10 }
            #expect(try await console.path() == "/settings/agents/jobs?q=JOB-1")
        }
    }

    @Test(
        "the Audit tab lists who changed what, filters to one job's history, and a job's page shows its changes to an admin only"
    )
    func auditTab() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let jobId = try await console.api.createJob(name: "audited-nightly", hostId: host)
            try await console.api.call(.PATCH, "/jobs/\(jobId)", body: #"{"timeoutSeconds":900}"#, expect: 200)
            let runId = try await console.api.trigger(jobId)
            try await console.api.call(.POST, "/runs/\(runId)/cancel", expect: 202)
            let writer = try await console.api.call(
                .POST, "/tokens", body: #"{"name":"ci-writer","scope":"write"}"#, expect: 201)

            try await console.click("nav.tabs a[data-tab=audit]")
            try await console.waitFor("table.table-audit tr[data-action='job.updated']")
            #expect(try await console.path() == "/settings/agents/audit")
            let edit = try await console.text("table.table-audit tr[data-action='job.updated']")
            #expect(edit.contains("Edited the job") && edit.contains("audited-nightly"), "\(edit)")
            #expect(edit.contains("version 2: timeoutSeconds"), "\(edit)")
            #expect(edit.contains("admin"), "the actor is not named: \(edit)")
            try await console.waitFor("table.table-audit tr[data-action='api_token.created']")

            // Only runs: the trigger and the cancel, linked to the run.
            try await console.select("#filter-kind", value: "run")
            try await console.waitFor("table.table-audit tr[data-action='run.cancel_requested']")
            #expect(try await console.browser.findAll("table.table-audit tr[data-action='job.updated']").isEmpty)
            #expect(try await console.path().contains("kind=run"))
            try await console.click("table.table-audit tr[data-action='run.triggered'] a[href*='/runs/']")
            try await console.waitFor("main [data-run-id], main h1")
            #expect(try await console.path() == "/settings/agents/runs/\(runId)")

            // One job's history, from its page: the Changes card, and the link to the audit log.
            try await console.open("/settings/agents/jobs/\(jobId)")
            try await console.waitForText("section[aria-labelledby=job-changes]", contains: "version 2: timeoutSeconds")
            let changes = try await console.text("section[aria-labelledby=job-changes]")
            #expect(changes.contains("Created") && changes.contains("Edited"), "\(changes)")
            try await console.click("section[aria-labelledby=job-changes] a[href*='/settings/agents/audit']")
            try await console.waitFor("table.table-audit tr[data-action='job.created']")
            let rows = try await console.browser.findAll("table.table-audit tbody tr")
            #expect(rows.count == 2, "the job's history holds \(rows.count) rows")
            try await console.fullPageScreenshot("audit")

            // A token without the admin scope is told, and the job page has no Changes card.
            guard let secret = writer["secret"]?.string else {
                Issue.record("no secret in \(writer)")
                return
            }
            try await console.click("button.signout")
            try await console.fill("#token", secret)
            try await console.click("form.signin-form button[type=submit]")
            try await console.click("nav.tabs a[data-tab=audit]")
            try await console.waitForText("main", contains: "Reading the audit log needs an admin token")
            try await console.open("/settings/agents/jobs/\(jobId)")
            try await console.waitFor("#job-runs")
            #expect(try await console.browser.findAll("#job-changes").isEmpty)
        }
    }

    @Test(
        "the Jobs tab searches by name and filters by agent type, host and last status from the URL, and a job's page charts its runs' durations"
    )
    func jobsSearchFiltersAndChart() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let nightly = try await console.api.createJob(name: "datahealth-nightly", hostId: host)
            let failing = try await console.api.createJob(
                name: "lineage-snowflake", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["fail-snowflake"]}"#)
            let weekly = try await console.api.createJob(name: "datahealth-weekly", hostId: host)
            for _ in 0..<2 {
                let run = try await console.api.trigger(nightly)
                try await console.api.waitForRun(run) { $0["status"]?.string == "succeeded" }
            }
            let failed = try await console.api.trigger(failing)
            try await console.api.waitForRun(failed) { $0["status"]?.string == "failed" }

            func shown() async throws -> Set<String> {
                var ids: Set<String> = []
                for row in try await console.browser.findAll("tr[data-job-id]") {
                    if let id = try await console.browser.attribute(row, "data-job-id") { ids.insert(id) }
                }
                return ids
            }
            func waitForShown(_ expected: Set<String>) async throws {
                try await console.waitUntil("the jobs shown are \(expected)") { try await shown() == expected }
            }
            try await console.click("nav.tabs a[data-tab=jobs]")
            try await waitForShown([nightly, failing, weekly])
            try await console.fill("#filter-q", "NIGHT")
            try await waitForShown([nightly])
            #expect(try await console.path() == "/settings/agents/jobs?q=NIGHT")
            #expect(try await console.text("#jobs-summary").contains("Showing 1 of 3 jobs"))
            try await console.fill("#filter-q", "")
            try await console.select("#filter-lastStatus", value: "failed")
            try await waitForShown([failing])
            try await console.select("#filter-lastStatus", value: "never")
            try await waitForShown([weekly])
            try await console.select("#filter-lastStatus", value: "")
            try await console.select("#filter-agentType", value: "lineage-plus")
            try await waitForShown([failing])
            try await console.select("#filter-hostId", value: host)
            try await waitForShown([failing])
            // A shared link opens the same view, with the controls showing the filters.
            try await console.open("/settings/agents/jobs?agentType=datahealth&q=weekly")
            try await waitForShown([weekly])
            #expect(try await console.browser.property(try await console.find("#filter-q"), "value").string == "weekly")
            try await console.open("/settings/agents/jobs?q=nothing-like-this")
            try await console.waitForText(".empty-state", contains: "No jobs match these filters")
            try await console.click("a[data-action=clear-filters]")
            try await waitForShown([nightly, failing, weekly])

            // The job's page: one bar per run, coloured by outcome, with the figures in words.
            try await console.open("/settings/agents/jobs/\(nightly)")
            try await console.waitForText(
                "figure[data-chart=durations] figcaption", contains: "2 recent runs: 2 succeeded")
            #expect(
                try await console.browser.findAll("figure[data-chart=durations] rect[data-status=succeeded]").count == 2
            )
            _ = try await console.browser.execute(
                "document.getElementById('job-durations').scrollIntoView({ block: 'start' });")
            try await console.screenshot("job-detail-chart")
            try await console.open("/settings/agents/jobs/\(failing)")
            try await console.waitFor("figure[data-chart=durations] rect[data-status=failed][data-run-id='\(failed)']")
            try await console.open("/settings/agents/jobs/\(weekly)")
            try await console.waitForText("section[aria-labelledby=job-durations]", contains: "No runs yet")
        }
    }

    @Test(
        "the Runs tab filters by the time runs were queued, in the URL, and refuses a range that ends before it starts")
    func runsDateRange() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let job = try await console.api.createJob(name: "datahealth-nightly", hostId: host)
            let run = try await console.api.trigger(job)
            try await console.api.waitForRun(run) { $0["status"]?.string == "succeeded" }
            // The range inputs take local date-times, applied when the field is left.
            func setRange(_ name: String, hoursFromNow: Double) async throws {
                _ = try await console.browser.execute(
                    """
                    const input = document.getElementById('filter-' + arguments[0]);
                    input.focus();
                    const date = new Date(Date.now() + arguments[1] * 3600000);
                    const pad = (n) => String(n).padStart(2, '0');
                    input.value = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
                    input.dispatchEvent(new Event('input', { bubbles: true }));
                    input.dispatchEvent(new Event('change', { bubbles: true }));
                    """, [.string(name), .number(hoursFromNow)])
                _ = try await console.browser.execute(
                    "document.getElementById('filter-' + arguments[0]).blur();", [.string(name)])
            }
            try await console.click("nav.tabs a[data-tab=runs]")
            try await console.waitFor("tr[data-run-id='\(run)']")
            try await setRange("since", hoursFromNow: 1)
            try await console.waitForText(".empty-state", contains: "No runs match these filters")
            #expect(try await console.path().contains("since="))
            try await setRange("since", hoursFromNow: -1)
            try await console.waitFor("tr[data-run-id='\(run)']")
            try await setRange("until", hoursFromNow: -2)
            try await console.waitForText("#filter-range-error", contains: "must be after its start")
            try await setRange("until", hoursFromNow: 1)
            try await console.waitFor("tr[data-run-id='\(run)']")
            let path = try await console.path()
            #expect(path.contains("since=") && path.contains("until="), "\(path)")
            #expect(try await console.text("#runs-summary").contains("queued from"))
            // The page reloads with the same range in its inputs.
            try await console.browser.refresh()
            try await console.waitFor("tr[data-run-id='\(run)']")
            let since = try await console.browser.property(try await console.find("#filter-since"), "value").string
            #expect(since?.count == 16, "the range is not back in its input: \(since ?? "nil")")
            try await setRange("until", hoursFromNow: -0.5)
            try await console.waitForText(".empty-state", contains: "No runs match these filters")
        }
    }

    @Test("Run again on an ended run starts a new run of its job that links back; a deleted job's runs do not offer it")
    func runAgain() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let job = try await console.api.createJob(name: "datahealth-nightly", hostId: host)
            let first = try await console.api.trigger(job)
            try await console.api.waitForRun(first) { $0["status"]?.string == "succeeded" }

            try await console.open("/settings/agents/runs/\(first)")
            try await console.click("button[data-action=run-again]")
            try await console.waitUntil("the new run's page opens") {
                let path = try await console.path()
                return path.hasPrefix("/settings/agents/runs/run_") && !path.hasSuffix(first)
            }
            let again = String(try await console.path().dropFirst("/settings/agents/runs/".count))
            try await console.waitForText("section[aria-labelledby=run-details]", contains: "Rerun of")
            let details = try await console.text("section[aria-labelledby=run-details]")
            #expect(details.contains(first) && details.contains("Run again"), "\(details)")
            // Who asked: the console's token, by name ("dev admin" is agentjobs dev's admin token).
            #expect(details.contains("Triggered by") && details.contains("API token dev admin"), "\(details)")
            let run = try await console.api.waitForRun(again) { $0["status"]?.string == "succeeded" }
            #expect(run["rerunOf"]?.string == first && run["trigger"]?.string == "rerun")
            // The link leads back to the run it repeats.
            try await console.click("section[aria-labelledby=run-details] a[href='/settings/agents/runs/\(first)']")
            try await console.waitFor("button[data-action=run-again]")
            #expect(try await console.path() == "/settings/agents/runs/\(first)")

            try await console.api.call(.DELETE, "/jobs/\(job)", expect: 204)
            try await console.browser.refresh()
            try await console.waitForText("section[aria-labelledby=run-details]", contains: "deleted")
            #expect(try await console.browser.findAll("button[data-action=run-again]").isEmpty)
        }
    }

    @Test("run detail shows the timeline live, the definition snapshot, and Cancel")
    func runDetailLive() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            // A run of a host with no orchestrator running waits to start.
            let offline = try await console.api.registerHost(name: "edge-offline", managedAgents: ["lineage-plus"])
            let waitingJob = try await console.api.createJob(
                name: "lineage-snowflake", hostId: offline, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["snowflake","bigquery"],"connectionName":"warehouse-prod"}"#)
            let waiting = try await console.api.trigger(waitingJob)
            try await console.open("/settings/agents/runs/\(waiting)")
            try await console.waitForText("section[aria-labelledby=run-timeline]", contains: "Waiting to start")
            #expect(try await console.text("main h1").contains(waiting))
            let snapshot = try await console.text("section[aria-labelledby=run-snapshot]")
            #expect(snapshot.contains("snowflake, bigquery"))
            #expect(snapshot.contains("warehouse-prod"))

            // The local host runs one: the page follows it without a reload.
            let jobId = try await console.api.createJob(
                name: "health-stubborn", hostId: host, parameters: #"{"fileName":"ignore-term"}"#)
            let runId = try await console.api.trigger(jobId)
            try await console.open("/settings/agents/runs/\(runId)")
            try await console.waitForText("main .title-badge", contains: "Running", timeout: .seconds(8))
            let timeline = try await console.text("section[aria-labelledby=run-timeline]")
            #expect(timeline.contains("Started"))
            #expect(timeline.contains("Stopped and timed out if still running"))
            try await console.screenshot("run-detail")

            try await console.click("button[data-action=cancel]")
            try await console.confirmDialog(expectingTitle: "Cancel this run?")
            try await console.waitForText("main .title-badge", contains: "Canceling…")
            #expect(try await console.text("section[aria-labelledby=run-timeline]").contains("Cancel requested"))
            try await console.waitForText("main .title-badge", contains: "Canceled", timeout: .seconds(15))
            #expect(try await console.browser.findAll("button[data-action=cancel]").isEmpty)
            try await console.waitForText(".live", contains: "Final status: Canceled")
        }
    }

    @Test(
        "a failed lineage-plus run shows each failed connection's error lines, its host log path and the command to read it"
    )
    func failedRunSummary() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            // The sample lineage-plus agent fails every connector type named "fail-…": it writes
            // repeated error lines into that connection's log (<type>-connection.log) and exits 1.
            let jobId = try await console.api.createJob(
                name: "lineage-warehouse", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["snowflake","fail-snowflake-prod","fail-tableau-online"]}"#)
            let runId = try await console.api.trigger(jobId)
            // The job is edited after the run was triggered: the run keeps the definition it ran with.
            try await console.api.call(
                .PATCH, "/jobs/\(jobId)", body: #"{"parameters":{"connectorTypes":["snowflake"]}}"#, expect: 200)
            try await console.api.waitForRun(runId) { $0["status"]?.string == "failed" }
            let runDirectory = console.dataDir.appendingPathComponent("host/runs/\(runId)").standardizedFileURL.path

            try await console.open("/settings/agents/runs/\(runId)")
            try await console.waitForText("main .title-badge", contains: "Failed")
            let card = "section[aria-labelledby=run-error-summary]"
            let text = try await console.text(card)
            #expect(text.contains("2 of 3 connections failed."), "\(text)")
            #expect(text.contains("fail-snowflake-prod"))
            #expect(text.contains("does not exist"))
            #expect(text.contains("×3"), "repeated lines that differ only in times and ids count as one")
            #expect(text.contains("fail-tableau-online"))
            #expect(text.contains("authentication failed"))
            #expect(text.contains("\(runDirectory)/fail-snowflake-prod-connection.log"))
            #expect(try await console.browser.findAll("\(card) li.connection").count == 2)
            let commands = try await console.text("\(card) pre.command")
            #expect(commands.contains("less +G \(runDirectory)/fail-snowflake-prod-connection.log"))
            #expect(commands.contains("fail-tableau-online-connection.log"))
            #expect(text.contains("agentjobs runs show \(runId)"))

            let timeline = try await console.text("section[aria-labelledby=run-timeline]")
            #expect(timeline.contains("Queued"))
            #expect(timeline.contains("Started"))
            #expect(timeline.contains("Failed"))
            #expect(timeline.contains("exit code 1"))
            let snapshot = try await console.text("section[aria-labelledby=run-snapshot]")
            #expect(
                snapshot.contains("snowflake, fail-snowflake-prod, fail-tableau-online"),
                "the run shows the definition it ran with, not the edited job")
            #expect(snapshot.contains("now version 2"))
            #expect(try await console.text(".live").contains("Final status: Failed"))
            try await console.fullPageScreenshot("run-detail-failed")
        }
    }

    @Test(
        "delete is blocked with an explanation while a run is active; a 409 race is a message; a deleted job's runs stay"
    )
    func deleteJob() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let jobId = try await console.api.createJob(
                name: "lineage-snowflake", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["sleep-120"]}"#,
                schedule: #"{"cron":"30 2 * * *","timezone":"Europe/Berlin"}"#)
            let runId = try await console.api.trigger(jobId)
            try await console.api.waitForRun(runId) { $0["status"]?.string == "running" }
            try await console.open("/settings/agents/jobs/\(jobId)")
            try await console.waitForText("main h1", contains: "lineage-snowflake")
            #expect(try await !console.isEnabled("button[data-action=delete]"))
            #expect(try await !console.isEnabled("button[data-action=run-now]"))
            #expect(try await console.text("#delete-reason").contains("cannot be deleted"))
            #expect(
                try await console.browser.attribute(
                    try await console.find("button[data-action=delete]"), "aria-describedby") == "delete-reason")
            try await console.waitForText("section[aria-labelledby=job-runs]", contains: "Running")
            #expect(
                try await console.browser.findAll("section[aria-labelledby=job-schedule] ol.preview-times li").count
                    == 5)
            try await console.fullPageScreenshot("job-detail")

            // The run ends elsewhere: the page notices and offers Delete.
            try await console.api.call(.POST, "/runs/\(runId)/cancel", expect: 202)
            try await console.waitUntil("Delete becomes available", timeout: .seconds(8)) {
                try await console.isEnabled("button[data-action=delete]")
            }

            // A race: a run starts while the confirmation dialog is open; the API's 409 becomes a message.
            try await console.click("button[data-action=delete]")
            _ = try await console.waitForText("dialog.dialog .dialog-title", contains: "Delete lineage-snowflake?")
            let racing = try await console.api.trigger(jobId)
            try await console.click("dialog.dialog .btn-danger")
            try await console.waitForText(".action-note", contains: "cannot be deleted while a run is active")
            #expect(try await console.path() == "/settings/agents/jobs/\(jobId)")
            try await console.api.call(.POST, "/runs/\(racing)/cancel", expect: 202)

            try await console.waitUntil("Delete becomes available again", timeout: .seconds(8)) {
                try await console.isEnabled("button[data-action=delete]")
            }
            try await console.click("button[data-action=delete]")
            try await console.confirmDialog(expectingTitle: "Delete lineage-snowflake?")
            try await console.waitUntil("back on the Jobs tab") { try await console.path() == "/settings/agents/jobs" }
            try await console.waitForText("#toasts", contains: "deleted")
            #expect(try await console.browser.findAll("tr[data-job-id=\"\(jobId)\"]").isEmpty)
            try await console.api.call(.GET, "/jobs/\(jobId)", expect: 404)
            let runs = try await console.api.call(.GET, "/runs?jobId=\(jobId)", expect: 200)
            #expect(runs["runs"]?.array.count == 2, "a deleted job's runs stay")
        }
    }

    @Test("on a narrow screen every page fits the width, and every control has an accessible name")
    func narrowScreenAndLabels() async throws {
        try await Console.run(width: 390, height: 844) { console in
            let host = try await console.api.localHostId()
            let jobId = try await console.api.createJob(
                name: "lineage-snowflake", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["fail-snowflake"]}"#,
                schedule: #"{"cron":"30 2 * * *","timezone":"UTC"}"#)
            let runId = try await console.api.trigger(jobId)
            try await console.api.waitForRun(runId) { $0["status"]?.string == "failed" }
            let pages = [
                "/settings/agents/hosts", "/settings/agents/hosts/\(host)", "/settings/agents/jobs",
                "/settings/agents/jobs/new", "/settings/agents/jobs/\(jobId)",
                "/settings/agents/runs", "/settings/agents/runs/\(runId)", "/settings/agents/access",
            ]
            for page in pages {
                try await console.open(page)
                try await console.waitFor("main h1")
                try await console.waitUntil("\(page) has loaded") {
                    try await console.browser.findAll("[aria-busy=true]").isEmpty
                }
                try await Task.sleep(for: .milliseconds(300))
                let overflow = try await console.browser.execute(
                    "return document.documentElement.scrollWidth - window.innerWidth;")
                #expect((overflow.number ?? 1) <= 0, "\(page) scrolls sideways on a 390 px screen")
                let unlabelled = try await console.unlabelledControls()
                #expect(unlabelled.isEmpty, "\(page) has controls without an accessible name: \(unlabelled)")
                // The tabs stay reachable.
                #expect(try await console.browser.isDisplayed(try await console.find("nav.tabs a[data-tab=runs]")))
            }
            try await console.open("/settings/agents/runs")
            try await console.waitFor("tr[data-run-id]")
            try await console.screenshot("narrow-runs")
            try await console.open("/settings/agents/runs/\(runId)")
            try await console.waitForText(
                "section[aria-labelledby=run-error-summary]", contains: "authentication failed")
            #expect(
                try await console.text("section[aria-labelledby=run-error-summary]").contains(
                    "/runs/\(runId)/fail-snowflake-connection.log"))
            try await console.screenshot("narrow-run-detail")
        }
    }

    @Test(
        "dark mode follows the system setting, every page's text keeps WCAG AA contrast in light and dark, and the tab bar never scrolls at desktop width"
    )
    func colorSchemesAndContrast() async throws {
        try await Console.run { console in
            let host = try await console.api.localHostId()
            let failing = try await console.api.createJob(
                name: "lineage-snowflake", hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["fail-snowflake"]}"#,
                schedule: #"{"cron":"30 2 * * *","timezone":"UTC"}"#)
            let failed = try await console.api.trigger(failing)
            let passing = try await console.api.createJob(name: "datahealth-nightly", hostId: host)
            let succeeded = try await console.api.trigger(passing)
            try await console.api.waitForRun(failed) { $0["status"]?.string == "failed" }
            try await console.api.waitForRun(succeeded) { $0["status"]?.string == "succeeded" }
            let pages = [
                "/settings/agents/hosts", "/settings/agents/hosts/\(host)", "/settings/agents/jobs",
                "/settings/agents/jobs/new", "/settings/agents/jobs/\(failing)", "/settings/agents/runs",
                "/settings/agents/runs/\(failed)", "/settings/agents/runs/\(succeeded)", "/settings/agents/access",
                "/settings/agents/jobs/\(passing)",
            ]
            for scheme in ["light", "dark"] {
                try await console.browser.emulateColorScheme(scheme)
                for page in pages {
                    try await console.open(page)
                    try await console.waitFor("main h1")
                    try await console.waitUntil("\(page) has loaded") {
                        try await console.browser.findAll("[aria-busy=true]").isEmpty
                    }
                    try await Task.sleep(for: .milliseconds(300))
                    let background = try await console.browser.execute(
                        "return getComputedStyle(document.body).backgroundColor;")
                    let expected = scheme == "dark" ? "rgb(15, 17, 21)" : "rgb(245, 246, 248)"
                    #expect(background.string == expected, "\(page) in \(scheme): body background \(background)")
                    let low = try await console.lowContrastText()
                    #expect(low.isEmpty, "\(page) in \(scheme) has text below 4.5:1 contrast: \(low)")
                    // The tabs fit at desktop width, and the tabs' 1 px overlap of the border does not
                    // make the list scroll vertically (a scroll bar with arrows, as it once did).
                    let scrolls = try await console.browser.execute(
                        """
                        const list = document.querySelector('.tab-list');
                        const vertical = getComputedStyle(list).overflowY !== 'hidden' && list.scrollHeight > list.clientHeight;
                        return { sideways: list.scrollWidth > list.clientWidth, vertical };
                        """)
                    #expect(scrolls["sideways"] == .bool(false), "\(page): the tabs do not fit at 1280 px")
                    #expect(scrolls["vertical"] == .bool(false), "\(page): the tab bar scrolls vertically")
                }
            }
            try await console.open("/settings/agents/runs/\(failed)")
            try await console.waitForText(
                "section[aria-labelledby=run-error-summary]", contains: "authentication failed")
            try await console.screenshot("dark-run-detail")
        }
    }

    @Test(
        "the console is keyboard operable: Tab reaches the tabs, Enter follows them, and focus lands on the new page's heading"
    )
    func keyboard() async throws {
        try await Console.run { console in
            try await console.open("/settings/agents/jobs")
            try await console.waitFor("main h1")
            // Focus the Runs tab with the keyboard, then press Enter.
            let focusedRunsTab = try await console.browser.execute(
                """
                const tab = document.querySelector('a[data-tab=runs]');
                tab.focus();
                return document.activeElement === tab;
                """)
            #expect(focusedRunsTab == .bool(true))
            try await console.browser.type(try await console.find("a[data-tab=runs]"), "\u{E007}")
            try await console.waitUntil("the Runs tab opened") { try await console.path() == "/settings/agents/runs" }
            try await console.waitForText("main h1", contains: "Runs")
            let focused = try await console.browser.execute(
                "return document.activeElement.tagName + ':' + document.activeElement.textContent;")
            #expect(focused.string == "H1:Runs", "focus moves to the new page's heading for screen-reader users")
            // The skip link is the first thing Tab reaches.
            let skip = try await console.browser.execute(
                "return document.querySelector('.skip-link').getAttribute('href');")
            #expect(skip == .string("#main"))
        }
    }

    @Test("the console's files are served with their content types, validators and a strict content security policy")
    func assetsAreServedWithHeaders() async throws {
        try await Console.run(signIn: false) { console in
            for (path, type) in [
                ("/", "text/html"), ("/settings/agents/runs/run_x", "text/html"), ("/ui/app.js", "text/javascript"),
                ("/ui/app.css", "text/css"), ("/ui/favicon.svg", "image/svg+xml"),
            ] {
                let response = try await HTTPProbe.get(console.baseURL + path)
                #expect(response.status == 200, "\(path)")
                #expect(response.headers["content-type"]?.hasPrefix(type) == true, "\(path): \(response.headers)")
                #expect(response.headers["cache-control"] == "no-cache", "\(path)")
                #expect(response.headers["content-security-policy"]?.contains("script-src 'self'") == true)
                #expect(response.headers["x-content-type-options"] == "nosniff")
                let etag = try #require(response.headers["etag"])
                let again = try await HTTPProbe.get(console.baseURL + path, headers: ["If-None-Match": etag])
                #expect(again.status == 304, "\(path) revalidates with its ETag")
            }
            #expect(try await HTTPProbe.get(console.baseURL + "/ui/missing.js").status == 404)
            #expect(try await HTTPProbe.get(console.baseURL + "/ui/index.html").status == 404)
            // The API is still the API.
            #expect(try await HTTPProbe.get(console.baseURL + "/api/v1/jobs").status == 401)
        }
    }
}
