import Foundation
import Testing

@testable import AgentJobsCore

@Suite("Decoding failures in words")
struct DecodingFailureTests {
    struct Catalog: Decodable {
        struct Program: Decodable {
            var command: [String]
            var timeout: Int?
        }
        var name: String
        var programs: [String: Program]
    }

    @Test(
        "each failure names the value's path and what was expected, never Swift's diagnostics",
        arguments: [
            (#"{"name": 5, "programs": {}}"#, "name: expected text (a JSON string), found something else"),
            (#"{"programs": {}}"#, "name: is required"),
            (#"{"name": null, "programs": {}}"#, "name: expected text (a JSON string), found null"),
            (
                #"{"name": "n", "programs": {"datahealth": {"command": "run"}}}"#,
                "programs.datahealth.command: expected a list (a JSON array), found something else"
            ),
            (
                #"{"name": "n", "programs": {"datahealth": {"command": ["run", 7]}}}"#,
                "programs.datahealth.command[1]: expected text (a JSON string), found something else"
            ),
            (
                #"{"name": "n", "programs": {"datahealth": {"command": [], "timeout": "10"}}}"#,
                "programs.datahealth.timeout: expected a whole number, found something else"
            ),
            (#"{"name": "n", "programs": []}"#, "programs: expected an object, found something else"),
            (#"{nope"#, "it is not valid JSON"),
        ])
    func described(text: String, expected: String) throws {
        do {
            _ = try JSONDecoder().decode(Catalog.self, from: Data(text.utf8))
            Issue.record("\(text) decoded")
        } catch {
            let described = DecodingFailure.describe(error)
            #expect(described == expected)
            #expect(!described.contains("DecodingError") && !described.contains("Swift"))
        }
    }
}
