import Foundation
import Testing

@testable import AgentJobsCore

/// The trigger path writes and reads its JSON and timestamps without Foundation's encoders; these
/// pin that it produces exactly what the Foundation path produced before.
@Suite("Hot-path JSON, timestamps and identifiers")
struct HotPathEncodingTests {
    /// Strings that need every kind of escaping `JSONEncoder` does, and some that need none.
    static let awkwardStrings: [String] = [
        "", "plain", "with space", "slash/and\\backslash", "quote\"d", "tab\there", "line\nbreak", "cr\rlf",
        "\u{08}\u{0C}", String(decoding: (0..<32).map { UInt8($0) }, as: UTF8.self), "del\u{7F}", "héllo wörld",
        "日本語", "emoji 🎉 and 𝄞", "</script>",
    ]

    static let parameterValues: [AgentParameters] =
        [
            .file(fileName: "a.yaml"), .connectors(connectorTypes: ["snowflake"], connectionName: nil),
            .connectors(connectorTypes: ["a", "b/c"], connectionName: "prod conn"),
            .connectors(connectorTypes: [], connectionName: nil),
        ] + awkwardStrings.map { .file(fileName: $0) }
        + [.connectors(connectorTypes: awkwardStrings, connectionName: awkwardStrings.last)]

    @Test("parameters are written as the same bytes JSONEncoder with sorted keys writes")
    func parametersMatchJSONEncoder() throws {
        for parameters in Self.parameterValues {
            let expected = String(decoding: try WireJSON.encoder.encode(parameters), as: UTF8.self)
            #expect(parameters.jsonText == expected)
        }
    }

    @Test("stored parameters read back without JSONDecoder equal what JSONDecoder reads")
    func storedParametersRoundTrip() throws {
        for parameters in Self.parameterValues {
            let text = parameters.jsonText
            #expect(AgentParameters.parseStored(text) == parameters)
            #expect(
                AgentParameters.parseStored(text)
                    == (try JSONDecoder().decode(AgentParameters.self, from: Data(text.utf8))))
        }
        #expect(
            AgentParameters.parseStored(#"{"connectorTypes": ["x"], "connectionName": null}"#)
                == .connectors(connectorTypes: ["x"], connectionName: nil))
        #expect(AgentParameters.parseStored(#"{"connectorTypes": "x"}"#) == nil)
        #expect(AgentParameters.parseStored(#"{"other": 1}"#) == nil)
        #expect(AgentParameters.parseStored("not json") == nil)
    }

    @Test("the dispatch payload is the same bytes as JSONEncoder's")
    func dispatchPayloadMatchesJSONEncoder() throws {
        let now = Date(timeIntervalSince1970: 1_790_000_000.125)
        for (index, parameters) in Self.parameterValues.enumerated() {
            let job = Job(
                id: "job_\(index)", name: "nightly \"\(index)\"", hostId: "host/\(index)", agentType: .datahealth,
                parameters: parameters, schedule: nil, timeoutSeconds: 60 + index, queueTimeoutSeconds: 30,
                version: index + 1, createdAt: now, updatedAt: now)
            var run = Run.queued(of: job, trigger: index.isMultiple(of: 2) ? .api : .schedule, at: now)
            run.dispatchEpoch = index + 1
            let dispatch = RunDispatch(run: run)
            #expect(dispatch.jsonBytes == Array(try WireJSON.encoder.encode(dispatch)))
        }
    }

    @Test(
        "the cancel payload is the same bytes as JSONEncoder's, and both outbox commands carry their run's host as key")
    func cancelPayloadMatchesJSONEncoder() throws {
        let now = Date(timeIntervalSince1970: 1_790_000_000.125)
        for (index, hostId) in ["host_a", "host/\"quoted\"", "h\u{1}"].enumerated() {
            let cancel = RunCancel(runId: "run_\(index)", hostId: hostId, dispatchEpoch: index + 1, requestedAt: now)
            #expect(cancel.jsonBytes == Array(try WireJSON.encoder.encode(cancel)))
        }
        let job = Job(
            id: "job_a", name: "nightly", hostId: "host_a", agentType: .datahealth,
            parameters: .file(fileName: "f.csv"), schedule: nil, timeoutSeconds: 60, queueTimeoutSeconds: 30,
            version: 1, createdAt: now, updatedAt: now)
        let run = Run.queued(of: job, trigger: .api, at: now)
        let dispatch = OutboxCommand.dispatch(run)
        let cancel = OutboxCommand.cancel(run, requestedAt: now)
        #expect(dispatch.key == "host_a" && cancel.key == "host_a")
        #expect(dispatch.type == RunDispatch.type && cancel.type == RunCancel.type)
        #expect(
            try WireJSON.decoder.decode(RunCancel.self, from: Data(cancel.payload)).dispatchEpoch == run.dispatchEpoch)
    }

    @Test("JSONParser reads what JSONDecoder reads and refuses what RFC 8259 refuses")
    func parserAgreesWithJSONDecoder() throws {
        let valid = [
            #"{"a": [1, -2.5, 3e2, 0, -0, 1E-3], "b": {"c": null, "d": true, "e": false}, "f": "x\u00e9\ud83c\udf89\n"}"#,
            " [ ] ", "{}", #""\/\\\"\b\f\n\r\t""#, "123", "[[[[[]]]]]",
        ]
        for text in valid {
            let expected = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
            #expect((try? JSONParser.parse(text)) == expected, "\(text)")
        }
        // Foundation's JSONDecoder accepts trailing commas; JSONParser is strict about them.
        for text in ["[1,]", "{\"a\":1,}"] { #expect((try? JSONParser.parse(text)) == nil, "\(text)") }
        let invalid = [
            "", "{", "01", "1.", ".5", "-", "tru", "nul", "\"unterminated", "\"bad \\x escape\"",
            "\"\\ud800\"", "{\"a\" 1}", "[1] 2", "\"raw\ncontrol\"", "{a: 1}",
        ]
        for text in invalid {
            // Stricter than JSONDecoder, which accepts some of these; stored values never need it.
            #expect((try? JSONParser.parse(text)) == nil, "\(text)")
        }
    }

    @Test("timestamps are formatted as the ISO 8601 format style formats them, rounded to the millisecond")
    func timestampFormatMatchesFormatStyle() {
        let style = Date.ISO8601FormatStyle(timeZone: .gmt)
        var samples: [Double] = [
            0, -0.0005, 0.0005, 1_790_000_000.125, 1_790_000_000.9996, 951_782_400, 951_868_799.999, 4_102_444_800,
            -2_208_988_800.5, -12_212_553_600, 253_402_300_799.999, 1_709_164_800,
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            // From the Gregorian reform (1583) on: before it Foundation's calendar is Julian, while
            // RFC 3339 (and ISO8601.format) use the proleptic Gregorian calendar.
            samples.append(
                Double(Int64.random(in: -12_212_553_600_000...253_000_000_000_000, using: &generator)) / 1000)
        }
        for seconds in samples {
            let date = Date(timeIntervalSince1970: seconds)
            // What the Date holds (it stores seconds since 2001, so -0.0005 comes back as -0.000499…).
            let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
            let whole = Int64((Double(milliseconds) / 1000).rounded(.down))
            let fraction = milliseconds - whole * 1000
            let text = Date(timeIntervalSince1970: TimeInterval(whole)).formatted(style)
            let digits = String(fraction)
            let expected = text.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
            #expect(ISO8601.format(date) == expected, "\(seconds)")
            #expect(
                ISO8601.parse(ISO8601.format(date)).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
                    == milliseconds)
        }
    }

    @Test("time-ordered ids sort by creation time and keep 20 base-36 characters")
    func timeOrderedIdentifiers() {
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        var previous = ""
        var seen: Set<String> = []
        for step in 0..<2_000 {
            let id = Identifier.makeTimeOrdered("run", at: start.addingTimeInterval(Double(step) / 1000))
            #expect(id.hasPrefix("run_"))
            #expect(id.count == 24)
            #expect(id.dropFirst(4).allSatisfy { ("0"..."9").contains($0) || ("a"..."z").contains($0) })
            #expect(id > previous, "ids of later milliseconds sort after earlier ones")
            seen.insert(id)
            previous = id
        }
        #expect(seen.count == 2_000)
        // Within one millisecond the random part keeps them apart.
        let sameInstant = (0..<1_000).map { _ in Identifier.makeTimeOrdered("run", at: start) }
        #expect(Set(sameInstant).count == 1_000)
        #expect(Set(sameInstant.map { $0.prefix(13) }).count == 1)
    }

    @Test("random identifiers use every base-36 character about equally often")
    func randomIdentifiersAreUniform() {
        var counts: [Character: Int] = [:]
        for _ in 0..<10_000 {
            let id = Identifier.make("job")
            #expect(id.count == 24)
            for character in id.dropFirst(4) { counts[character, default: 0] += 1 }
        }
        // 200,000 characters over 36 symbols: ~5,556 each (σ ≈ 73); a biased draw (`byte % 36`
        // without rejection) gives the first 4 symbols ~6,250 and the rest ~5,469.
        #expect(counts.count == 36)
        #expect(counts.values.allSatisfy { (5_200...5_900).contains($0) }, "\(counts)")
    }
}
