import Foundation
import Testing

@testable import AgentJobsCore

@Suite("JSON parser")
struct JSONParserTests {
    @Test("parses every JSON type, nested, with escapes and surrogate pairs")
    func parsesValues() throws {
        let text = #"""
             {"a": [1, -2.5, 3e2, 0, true, false, null], "b": {"c": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}, "": ""}
            """#
        let value = try JSONParser.parse(text)
        #expect(
            value
                == .object([
                    "a": .array([.number(1), .number(-2.5), .number(300), .number(0), .bool(true), .bool(false), .null]
                    ),
                    "b": .object(["c": .string("x\"\\/\u{8}\u{c}\n\r\té😀")]),
                    "": .string(""),
                ]))
    }

    @Test(
        "agrees with JSONDecoder on the values it decodes",
        arguments: [
            #"{"k": "multi-byte ü 漢字 😀", "n": 12345678901234, "f": 0.1, "e": -1.5E-3, "arr": [[], {}]}"#,
            #"[1,2,3]"#, #""just a string""#, "42", "null",
        ])
    func agreesWithFoundation(text: String) throws {
        let ours = try JSONParser.parse(text)
        let foundation = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(ours == foundation)
    }

    @Test(
        "refuses what is not strictly one JSON value, saying where",
        arguments: [
            "", "  ", "{", "[1,]", #"{"a":1,}"#, "01", "1.", "-", ".5", "1e", "+1", "NaN", "tru", "nul",
            #""unterminated"#, "\"tab\there\"", #""bad \x escape""#, #""\ud83d alone""#, #""\ude00""#,
            #"{"a" 1}"#, #"{1: 2}"#, "[1 2]", "1 2", #"{"a":1}x"#, "'single'",
        ])
    func refusesInvalid(text: String) {
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(text) }
    }

    @Test("refuses invalid UTF-8 inside strings")
    func refusesInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(bytes) }
    }

    @Test("refuses nesting deeper than the limit but takes the limit itself")
    func nestingLimit() throws {
        let depth = JSONParser.maximumDepth
        _ = try JSONParser.parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
        let tooDeep = String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(tooDeep) }
    }

    @Test("reads an object member by member, in order, with the same strictness")
    func members() throws {
        var seen: [(String, JSONValue)] = []
        try JSONParser.forEachMember(of: Array(#" {"b": [1, {"c": null}], "a": "x", "b": 2.5} "#.utf8)) {
            seen.append(($0, $1))
        }
        #expect(seen.map(\.0) == ["b", "a", "b"])
        #expect(seen.map(\.1) == [.array([.number(1), .object(["c": .null])]), .string("x"), .number(2.5)])
        for text in ["[1]", "\"s\"", #"{"a": 1,}"#, #"{"a": 1} 2"#, #"{"a": 01}"#, ""] {
            #expect(throws: JSONParser.Failure.self) { try JSONParser.forEachMember(of: Array(text.utf8)) { _, _ in } }
        }
        // What the closure throws comes out as it is, and it is not called again after throwing.
        var calls = 0
        #expect(throws: ValidationError(field: "a", message: "no")) {
            try JSONParser.forEachMember(of: Array(#"{"a": 1, "b": 2}"#.utf8)) { key, _ in
                calls += 1
                throw ValidationError(field: key, message: "no")
            }
        }
        #expect(calls == 1)
    }

    @Test("the failure names the byte offset")
    func failureOffset() {
        #expect(throws: JSONParser.Failure(offset: 6, reason: "expected ',' or ']' in an array")) {
            try JSONParser.parse("[1, 2 3]")
        }
    }
}

@Suite("JSON writer")
struct JSONWriterTests {
    static let now = Date(timeIntervalSince1970: 1_790_000_000.125)

    static func run(
        parameters: AgentParameters, errorSummary: String?, finished: Bool, scheduled: Bool
    ) -> Run {
        Run(
            id: "run_1", jobId: "job_1", jobName: "nightly \"lineage\"", jobVersion: 4, hostId: "host_a",
            agentType: .lineagePlus, parameters: parameters, timeoutSeconds: 3600, queueTimeoutSeconds: 600,
            status: finished ? .failed : .running, trigger: scheduled ? .schedule : .api,
            scheduledAt: scheduled ? now : nil, queuedAt: now, startedAt: now.addingTimeInterval(0.5),
            finishedAt: finished ? now.addingTimeInterval(9.25) : nil, exitCode: finished ? 2 : nil,
            errorSummary: errorSummary, cancelRequestedAt: finished ? now.addingTimeInterval(3) : nil, dispatchEpoch: 2,
            rerunOf: finished ? "run_0" : nil,
            triggeredBy: scheduled ? .schedule : RunRequester(kind: .token, id: "tok_1", name: "ci: \"deploy\" /x"),
            cancelRequestedBy: finished ? RunRequester(kind: .host, id: "host_a", name: nil) : nil)
    }

    @Test("a rerun is dispatched as manual, a trigger every orchestrator version reads; the others as they are")
    func rerunDispatchTrigger() {
        var run = Self.run(parameters: .file(fileName: "a.yaml"), errorSummary: nil, finished: false, scheduled: false)
        for trigger in RunTrigger.allCases {
            run.trigger = trigger
            #expect(RunDispatch(run: run).trigger == (trigger == .rerun ? "manual" : trigger.rawValue))
        }
    }

    @Test("a requester's stored form reads back as the requester, names with colons included")
    func requesterStoredForm() {
        for requester in [
            RunRequester.schedule, RunRequester(kind: .token, id: "tok_1", name: "a:b:c"),
            RunRequester(kind: .host, id: "host_1", name: nil), RunRequester(kind: .token, id: "tok_2", name: "ci"),
        ] {
            #expect(RunRequester(storedForm: requester.storedForm) == requester, "\(requester.storedForm)")
        }
        for text in ["", "nobody", "token:only-id", "schedule:"] {
            #expect(RunRequester(storedForm: text) == nil, "\(text) was read as a requester")
        }
    }

    @Test(
        "a run-status record written by hand reads back as the record, as JSONEncoder's output does",
        arguments: [
            run(
                parameters: .connectors(connectorTypes: ["snowflake", "dbt"], connectionName: "prod /east"),
                errorSummary: "1 of 2 connections failed\n\tprod: \u{1}ctl \\ \"quoted\" ü", finished: true,
                scheduled: true),
            run(parameters: .file(fileName: "checks.yaml"), errorSummary: nil, finished: false, scheduled: false),
        ])
    func recordMatchesCodable(run: Run) throws {
        let record = RunStatusRecord(run: run, revision: 3)
        let handWritten = record.jsonBytes
        let decoded = try WireJSON.decoder.decode(RunStatusRecord.self, from: Data(handWritten))
        #expect(decoded == record)
        let viaEncoder = try JSONParser.parse(try WireJSON.encode(record))
        #expect(try JSONParser.parse(handWritten) == viaEncoder)
    }

    @Test("a run is written byte for byte as WireJSON writes it (sorted keys, escaped slashes)")
    func keysSorted() throws {
        let run = Self.run(
            parameters: .file(fileName: "dir/a.yaml"), errorSummary: "x /y", finished: true, scheduled: true)
        var writer = JSONWriter()
        run.writeJSON(into: &writer)
        let text = String(decoding: writer.bytes, as: UTF8.self)
        let expected = String(decoding: try WireJSON.encoder.encode(run), as: UTF8.self)
        #expect(text == expected)
    }

    @Test("strings escape quotes, backslashes and every control character")
    func escaping() throws {
        var writer = JSONWriter()
        let text = "a\"b\\c\u{0}\u{1f}\n\u{7f}é"
        writer.string(text)
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #""a\"b\\c\u0000\u001f\n"# + "\u{7f}é\"")
        #expect(try JSONParser.parse(writer.bytes) == .string(text))
    }
}

extension RunLifecycleEvent {
    static func sample(exitCode: Int? = 0, errorSummary: String? = nil) -> RunLifecycleEvent {
        RunLifecycleEvent(
            type: .succeeded, runId: "run_1", jobId: "job_1", hostId: "host_a", dispatchEpoch: 3, sequence: 4,
            at: JSONWriterTests.now, exitCode: exitCode, errorSummary: errorSummary)
    }
}

@Suite("Run event bodies")
struct RunEventBodyTests {
    @Test("an event body reads back exactly as JSONDecoder read it")
    func readsLikeDecodable() throws {
        for event in [RunLifecycleEvent.sample(), .sample(exitCode: nil, errorSummary: "boom \"x\"\n")] {
            let body = try WireJSON.encode(event)
            let ours = try RunLifecycleEvent(jsonBody: body)
            let foundation = try WireJSON.decoder.decode(RunLifecycleEvent.self, from: Data(body))
            #expect(ours == foundation)
            #expect(ours == event)
        }
    }

    @Test(
        "unknown fields are ignored, missing or malformed ones named",
        arguments: [
            ("type", "\"nope\""), ("sequence", "\"4\""), ("sequence", "4.5"), ("at", "\"yesterday\""),
            ("runId", "null"),
        ])
    func namesBadField(field: String, value: String) throws {
        var object = try #require(
            try {
                if case .object(let fields) = try JSONParser.parse(WireJSON.encode(RunLifecycleEvent.sample())) {
                    fields
                } else {
                    nil
                }
            }())
        object["extra"] = .string("ignored")
        _ = try RunLifecycleEvent(jsonBody: Array(JSONEncoder().encode(JSONValue.object(object))))
        object[field] = try JSONParser.parse(value)
        let body = Array(try JSONEncoder().encode(JSONValue.object(object)))
        #expect(throws: ValidationError.self) { try RunLifecycleEvent(jsonBody: body) }
        do {
            _ = try RunLifecycleEvent(jsonBody: body)
        } catch let error as ValidationError {
            #expect(error.field == field)
        }
    }
}

@Suite("Timestamps, written out")
struct FastTimestampTests {
    @Test(
        "parses shorter fractions, no fraction and offsets",
        arguments: [
            ("2024-02-29T23:59:59Z", 1_709_251_199_000), ("2024-02-29T23:59:59.5Z", 1_709_251_199_500),
            ("2024-02-29T23:59:59.05Z", 1_709_251_199_050), ("2024-03-01T01:59:59.123+02:00", 1_709_251_199_123),
            ("1969-12-31T23:59:59.999Z", -1),
        ] as [(String, Int64)])
    func parsesForms(text: String, milliseconds: Int64) throws {
        let parsed = try #require(ISO8601.parse(text))
        #expect(Int64((parsed.timeIntervalSince1970 * 1000).rounded()) == milliseconds)
    }

    @Test(
        "refuses impossible dates",
        arguments: [
            "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01 00:00:00Z",
            "not a time",
        ])
    func refuses(text: String) {
        #expect(ISO8601.parse(text) == nil)
    }
}
