import AgentJobsCore
import Foundation
import Testing

@Suite("Job definitions and agent parameters")
struct ValidationTests {
    func json(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    func field(of body: () throws -> some Any) -> String? {
        do {
            _ = try body()
            return nil
        } catch let error as ValidationError {
            return error.field
        } catch {
            return "unexpected \(error)"
        }
    }

    @Test("lineage-plus needs a non-empty connectorTypes list and takes an optional connectionName")
    func connectorParameters() throws {
        let parameters = try AgentParameters.validate(
            json(#"{"connectorTypes":["snowflake"," bigquery ","snowflake"],"connectionName":"prod"}"#),
            for: .lineagePlus)
        #expect(parameters == .connectors(connectorTypes: ["snowflake", "bigquery"], connectionName: "prod"))
        #expect(
            field { try AgentParameters.validate(json(#"{"connectorTypes":[]}"#), for: .lineagePlus) }
                == "parameters.connectorTypes")
        #expect(
            field { try AgentParameters.validate(json(#"{}"#), for: .externalMonitors) } == "parameters.connectorTypes")
        #expect(
            field { try AgentParameters.validate(json(#"{"connectorTypes":[1]}"#), for: .lineagePlus) }
                == "parameters.connectorTypes[0]")
        #expect(
            field { try AgentParameters.validate(json(#"{"connectorTypes":["a"],"x":1}"#), for: .lineagePlus) }
                == "parameters.x")
        #expect(
            field { try AgentParameters.validate(json(#"{"connectorTypes":["--rm"]}"#), for: .lineagePlus) }
                == "parameters.connectorTypes[0]")
    }

    @Test("10,000 connector types are refused quickly; at most 64, de-duplicated in order")
    func connectorTypesAreBounded() throws {
        let many = (0..<10_000).map { "\"c\($0)\"" }.joined(separator: ",")
        let started = ContinuousClock.now
        #expect(
            field { try AgentParameters.validate(json(#"{"connectorTypes":[\#(many)]}"#), for: .lineagePlus) }
                == "parameters.connectorTypes")
        #expect(ContinuousClock.now - started < .seconds(2))
        let sixtyFour = (0..<64).map { "\"c\($0 % 32)\"" }.joined(separator: ",")
        let parameters = try AgentParameters.validate(json(#"{"connectorTypes":[\#(sixtyFour)]}"#), for: .lineagePlus)
        #expect(parameters == .connectors(connectorTypes: (0..<32).map { "c\($0)" }, connectionName: nil))
    }

    @Test("NUL and other control characters are refused in every string field, names are bounded in bytes")
    func controlCharactersAndLongNames() throws {
        #expect(
            field { try AgentParameters.validate(json(#"{"fileName":"a\u0000b"}"#), for: .datahealth) }
                == "parameters.fileName")
        #expect(
            field {
                try AgentParameters.validate(
                    .object(["connectorTypes": .array([.string("a\u{0}b")])]), for: .lineagePlus)
            } == "parameters.connectorTypes[0]")
        var reader = try JSONObjectReader(json(#"{"name":"nightly\u0000evil","other":"x\u001b[31m"}"#))
        #expect(field { try reader.requiredName("name") } == "name")
        #expect(field { try reader.string("other") } == "other")
        var long = try JSONObjectReader(.object(["name": .string(String(repeating: "é", count: 150))]))
        #expect(field { try long.requiredName("name") } == "name")
        var fine = try JSONObjectReader(.object(["name": .string(String(repeating: "é", count: 100))]))
        #expect(try fine.requiredName("name").count == 100)
    }

    @Test("datahealth needs fileName and refuses connector fields")
    func fileParameters() throws {
        #expect(
            try AgentParameters.validate(json(#"{"fileName":"checks.yaml"}"#), for: .datahealth)
                == .file(fileName: "checks.yaml"))
        #expect(field { try AgentParameters.validate(json(#"{}"#), for: .datahealth) } == "parameters.fileName")
        #expect(
            field { try AgentParameters.validate(json(#"{"fileName":"a","connectorTypes":["b"]}"#), for: .datahealth) }
                == "parameters.connectorTypes")
    }

    @Test("persistent agent types cannot be jobs", arguments: [AgentType.dataSource, .sds, .crossSource])
    func persistentTypesAreRefused(type: AgentType) {
        #expect(field { try AgentParameters.validate(nil, for: type) } == "agentType")
    }

    @Test("a create request names the first bad field")
    func createRequestErrors() throws {
        let valid = #"{"name":"n","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"}}"#
        let definition = try JobDefinition.parseCreate(json(valid))
        #expect(definition.timeoutSeconds == Job.Limits.defaultTimeoutSeconds)
        #expect(definition.schedule == nil)
        let cases: [(String, String)] = [
            (#"{"hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"}}"#, "name"),
            (#"{"name":"  ","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"}}"#, "name"),
            (#"{"name":"n","hostId":"h","agentType":"nope","parameters":{}}"#, "agentType"),
            (
                #"{"name":"n","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"},"color":"red"}"#,
                "color"
            ),
            (
                #"{"name":"n","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"},"timeoutSeconds":0}"#,
                "timeoutSeconds"
            ),
            (
                #"{"name":"n","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"},"queueTimeoutSeconds":1.5}"#,
                "queueTimeoutSeconds"
            ),
            (
                #"{"name":"n","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"},"schedule":{"cron":"61 * * * *"}}"#,
                "schedule.cron"
            ),
            (
                #"{"name":"n","hostId":"h","agentType":"datahealth","parameters":{"fileName":"f"},"schedule":{"cron":"@daily","timezone":"Mars/Base"}}"#,
                "schedule.timezone"
            ),
            (#"[1]"#, "body"),
        ]
        for (body, expected) in cases {
            #expect(field { try JobDefinition.parseCreate(json(body)) } == expected, "\(body)")
        }
    }

    @Test("a patch changes only the fields it names and can remove the schedule")
    func patch() throws {
        let base = JobDefinition(
            name: "n", hostId: "h", agentType: .lineagePlus,
            parameters: .connectors(connectorTypes: ["a"], connectionName: nil),
            schedule: JobSchedule(cron: "@daily", timezone: "UTC"))
        let renamed = try base.applyingPatch(json(#"{"name":"m"}"#))
        #expect(renamed.name == "m")
        #expect(renamed.parameters == base.parameters)
        #expect(try base.applyingPatch(json(#"{"schedule":null}"#)).schedule == nil)
        #expect(field { try base.applyingPatch(json(#"{"agentType":"datahealth"}"#)) } == "parameters")
        let retyped = try base.applyingPatch(json(#"{"agentType":"datahealth","parameters":{"fileName":"x"}}"#))
        #expect(retyped.parameters == .file(fileName: "x"))
        #expect(field { try base.applyingPatch(json(#"{"agentType":"sds"}"#)) } == "agentType")
    }

    @Test("a job may only target a host that manages its agent type")
    func hostMustManageAgentType() {
        let host = AgentJobsCore.Host(id: "h", name: "db-1", managedAgents: [.datahealth], registeredAt: Date())
        let definition = JobDefinition(
            name: "n", hostId: "h", agentType: .lineagePlus,
            parameters: .connectors(connectorTypes: ["a"], connectionName: nil))
        #expect(field { try definition.check(against: host) } == "agentType")
    }
}
