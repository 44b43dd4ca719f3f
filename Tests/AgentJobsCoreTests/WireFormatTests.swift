import Crypto
import Foundation
import Testing

@testable import AgentJobsCore

@Suite("Wire format")
struct WireFormatTests {
    // An exactly representable fraction, so decoded times compare equal.
    static let now = Date(timeIntervalSince1970: 1_790_000_000.125)

    static func incoming(_ message: OutgoingMessage, offset: Int64 = 7) -> IncomingMessage {
        IncomingMessage(
            topic: message.topic, partition: 0, offset: offset, key: message.key, value: message.value,
            headers: message.headers)
    }

    static func dispatchRow(hostId: String = "host_a") throws -> OutboxMessage {
        let job = Job(
            id: "job_1", name: "nightly", hostId: hostId, agentType: .datahealth, parameters: .file(fileName: "a.yaml"),
            schedule: nil, timeoutSeconds: 60, queueTimeoutSeconds: 30, version: 3, createdAt: now, updatedAt: now)
        let run = Run.queued(id: "run_1", of: job, trigger: .manual, at: now)
        return OutboxMessage(
            sequence: 42, topic: Topic.dispatch, key: hostId, runId: run.id, type: RunDispatch.type,
            payload: try WireJSON.encode(RunDispatch(run: run)), createdAt: now)
    }

    @Test("a relayed dispatch carries the CloudEvents headers and verifies with the control plane's key")
    func dispatchRoundTrip() throws {
        let signingKey = DispatchSigningKey()
        let outgoing = try Self.dispatchRow().wireMessage(signedWith: signingKey)
        #expect(outgoing.topic == Topic.dispatch)
        #expect(outgoing.key == Array("host_a".utf8))
        let headers = Dictionary(
            outgoing.headers.map { ($0.key, $0.stringValue ?? "") }, uniquingKeysWith: { a, _ in a })
        #expect(headers["ce_specversion"] == "1.0")
        #expect(headers["ce_type"] == "agentjobs.run.dispatch.v1")
        #expect(headers["ce_id"] == "outbox-42")
        #expect(headers["ce_subject"] == "run_1")
        #expect(headers["ce_source"] == "agentjobs://control-plane")
        #expect(headers["ce_time"] == ISO8601.format(Self.now))
        #expect(headers["content-type"] == "application/json")

        let wire = try WireMessage(Self.incoming(outgoing))
        try signingKey.verifier.verify(wire)
        let verifier = try DispatchVerifier(base64: signingKey.verifier.base64)
        try verifier.verify(wire)
        let dispatch = try wire.decode(RunDispatch.self)
        #expect(dispatch.runId == "run_1")
        #expect(dispatch.jobVersion == 3)
        #expect(dispatch.parameters == .file(fileName: "a.yaml"))
        #expect(dispatch.queueDeadline == Self.now.addingTimeInterval(30))
    }

    @Test("outbox row types get .v1 unless they already end in a version")
    func outboxTypeVersionSuffix() {
        #expect(OutboxMessage.hasVersionSuffix("agentjobs.run.dispatch.v1"))
        #expect(OutboxMessage.hasVersionSuffix("agentjobs.run.cancel.v12"))
        #expect(!OutboxMessage.hasVersionSuffix("agentjobs.run.dispatch"))
        #expect(!OutboxMessage.hasVersionSuffix("agentjobs.run.dispatch.v"))
        #expect(!OutboxMessage.hasVersionSuffix("agentjobs.run.dispatch.v1x"))
        #expect(!OutboxMessage.hasVersionSuffix("agentjobs.run.v1.dispatch"))
        #expect(!OutboxMessage.hasVersionSuffix("v1"))
    }

    @Test("a signing key restored from its raw bytes signs what the original's verifier accepts")
    func restoredSigningKey() throws {
        let original = DispatchSigningKey()
        let restored = try DispatchSigningKey(rawRepresentation: original.rawRepresentation)
        #expect(restored.verifier == original.verifier)
        let outgoing = try Self.dispatchRow().wireMessage(signedWith: restored)
        try original.verifier.verify(try WireMessage(Self.incoming(outgoing)))
    }

    @Test("a dispatch with a changed body, key or a foreign signature does not verify")
    func tamperedDispatch() throws {
        let signingKey = DispatchSigningKey()
        let outgoing = try Self.dispatchRow().wireMessage(signedWith: signingKey)

        var otherBody = Self.incoming(outgoing)
        otherBody.value = Array(
            String(decoding: otherBody.value, as: UTF8.self).replacingOccurrences(of: "a.yaml", with: "b.yaml").utf8)
        #expect(
            throws: WireError(.badSignature, "dispatch command signature does not verify with the control plane's key")
        ) {
            try signingKey.verifier.verify(try WireMessage(otherBody))
        }

        var otherKey = Self.incoming(outgoing)
        otherKey.key = Array("host_b".utf8)
        #expect(throws: WireError.self) { try signingKey.verifier.verify(try WireMessage(otherKey)) }

        #expect(throws: WireError.self) {
            try DispatchSigningKey().verifier.verify(try WireMessage(Self.incoming(outgoing)))
        }

        var unsigned = Self.incoming(outgoing)
        unsigned.headers.removeAll { $0.key == WireHeader.signature }
        #expect(throws: WireError(.badSignature, "dispatch command is not signed by the control plane")) {
            try signingKey.verifier.verify(try WireMessage(unsigned))
        }
    }

    static func dispatchRows(_ count: Int) throws -> [OutboxMessage] {
        try (0..<count).map { index in
            var row = try dispatchRow(hostId: "host_\(index % 7)")
            row.sequence = Int64(100 + index)
            return row
        }
    }

    static func withSignature(_ message: IncomingMessage, _ signature: String) -> IncomingMessage {
        var copy = message
        copy.headers.removeAll { $0.key == WireHeader.signature }
        copy.headers.append(MessageHeader(key: WireHeader.signature, value: signature))
        return copy
    }

    @Test("every message of a batch-signed run of rows verifies on its own, whatever the batch size")
    func batchSignaturesVerify() throws {
        let signingKey = DispatchSigningKey()
        let verifier = try DispatchVerifier(base64: signingKey.verifier.base64)
        for count in [1, 2, 3, 5, 8, 31, 32, 33, 70] {
            let rows = try Self.dispatchRows(count)
            let messages = try OutboxMessage.wireMessages(rows, signedWith: signingKey)
            #expect(messages.count == count)
            for (row, message) in zip(rows, messages) {
                let wire = try WireMessage(Self.incoming(message))
                #expect(wire.envelope.id == "outbox-\(row.sequence)")
                #expect(wire.signature?.hasPrefix("ed25519-batch:") == true)
                try verifier.verify(wire)
            }
        }
        // A batch of one has an empty path.
        let single = try signingKey.batchSignatures(for: [(try Self.dispatchRow().envelope, [1, 2, 3])])
        #expect(single[0].hasSuffix(":0:1:"))
    }

    @Test("the relay's batch signing builds exactly the messages of the general construction, batch by batch")
    func batchSigningMatchesGeneralConstruction() throws {
        let signingKey = DispatchSigningKey()
        var rows = try Self.dispatchRows(70)
        // A cancel row, and one whose stored type already carries its version.
        rows[5].type = RunCancel.type
        rows[6].type = RunDispatch.versionedType
        rows[7].createdAt = Self.now.addingTimeInterval(0.0004)
        let messages = try OutboxMessage.wireMessages(rows, signedWith: signingKey)
        var expected: [OutgoingMessage] = []
        for start in stride(from: 0, to: rows.count, by: OutboxMessage.signatureBatchSize) {
            let batch = rows[start..<min(start + OutboxMessage.signatureBatchSize, rows.count)]
            let signatures = try signingKey.batchSignatures(for: batch.map { ($0.envelope, $0.payload) })
            for (row, signature) in zip(batch, signatures) {
                expected.append(
                    OutgoingMessage(topic: row.topic, envelope: row.envelope, body: row.payload, signature: signature))
            }
        }
        #expect(messages == expected)
        #expect(messages[5].headers.first { $0.key == WireHeader.type }?.stringValue == "agentjobs.run.cancel.v1")
        #expect(messages[6].headers.first { $0.key == WireHeader.type }?.stringValue == "agentjobs.run.dispatch.v1")
    }

    @Test("base64 of signature headers is Foundation's standard padded base64, at every length")
    func base64MatchesFoundation() {
        var generator = SystemRandomNumberGenerator()
        for count in 0..<100 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var encoded = Array("x".utf8)
            Base64.append(bytes, to: &encoded)
            #expect(encoded == Array(("x" + Data(bytes).base64EncodedString()).utf8))
        }
    }

    @Test("a batch signature does not verify for a changed message, another position or another batch's key")
    func batchSignaturesRefuseTampering() throws {
        let signingKey = DispatchSigningKey()
        let messages = try OutboxMessage.wireMessages(try Self.dispatchRows(5), signedWith: signingKey)
        let incoming = messages.map { Self.incoming($0) }
        let signatures = messages.map { message in
            message.headers.first { $0.key == WireHeader.signature }?.stringValue ?? ""
        }
        let refused = WireError(
            .badSignature, "dispatch command signature does not verify with the control plane's key")

        var changedBody = incoming[2]
        changedBody.value = Array(
            String(decoding: changedBody.value, as: UTF8.self).replacingOccurrences(of: "a.yaml", with: "b.yaml").utf8)
        #expect(throws: refused) { try signingKey.verifier.verify(try WireMessage(changedBody)) }

        var rekeyed = incoming[2]
        rekeyed.key = Array("host_other".utf8)
        #expect(throws: refused) { try signingKey.verifier.verify(try WireMessage(rekeyed)) }

        // Another message's signature header (its index and path) on this message.
        #expect(throws: refused) {
            try signingKey.verifier.verify(try WireMessage(Self.withSignature(incoming[2], signatures[3])))
        }
        // The right path with a wrong index or batch size.
        var fields = signatures[2].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        for (position, value) in [(2, "1"), (2, "3"), (3, "6"), (3, "4"), (2, "9")] {
            var changed = fields
            changed[position] = value
            #expect(throws: WireError.self) {
                try signingKey.verifier.verify(
                    try WireMessage(Self.withSignature(incoming[2], changed.joined(separator: ":"))))
            }
        }
        // Malformed headers are refused, not trapped on.
        fields[4] = "AAAA"
        for malformed in [
            "ed25519-batch:", "ed25519-batch:x:0:1", fields.joined(separator: ":"), "ed25519-batch:!!:0:1:",
            "ed25519-batch:\(fields[1]):-1:1:", "rsa:abc",
        ] {
            #expect(throws: WireError.self) {
                try signingKey.verifier.verify(try WireMessage(Self.withSignature(incoming[2], malformed)))
            }
        }
        // The same rows signed by another key.
        #expect(throws: refused) { try DispatchSigningKey().verifier.verify(try WireMessage(incoming[0])) }
        try signingKey.verifier.verify(try WireMessage(incoming[0]))
    }

    @Test("a host's events verify with the stored credential hash and not with another host's")
    func eventSignatures() throws {
        let credential = Secret.generate(prefix: "ajh")
        let event = RunLifecycleEvent(
            type: .failed, runId: "run_1", jobId: "job_1", hostId: "host_a", dispatchEpoch: 1, sequence: 3,
            at: Self.now,
            exitCode: 1, errorSummary: "conn-a: boom")
        let outgoing = try event.message(signedWith: HostEventKey(credential: credential.value))
        #expect(outgoing.topic == Topic.runEvents)
        #expect(outgoing.key == Array("run_1".utf8))
        let wire = try WireMessage(Self.incoming(outgoing))
        #expect(wire.envelope.type == "agentjobs.run.failed.v1")
        #expect(wire.envelope.id == "run_1:1:3")
        try HostEventKey(credentialHash: credential.hash).verify(wire)
        #expect(throws: WireError.self) {
            try HostEventKey(credentialHash: Secret.generate(prefix: "ajh").hash).verify(wire)
        }
        let decoded = try RunLifecycleEvent.decode(wire)
        #expect(decoded == event)
        #expect(decoded.runEvent == .failed(at: Self.now, exitCode: 1, errorSummary: "conn-a: boom"))
    }

    @Test("a host signature is the HMAC-SHA256 of the signed bytes, keyed with the credential hash")
    func eventSignatureIsPlainHMAC() throws {
        let credential = Secret.generate(prefix: "ajh")
        let key = HostEventKey(credentialHash: credential.hash)
        let envelope = WireEnvelope(
            id: "run_1:1:2", source: WireEnvelope.hostSource("host_a"), type: "agentjobs.run.started.v1",
            time: Self.now, subject: "run_1", key: "run_1")
        let body = Array(#"{"x":1}"#.utf8)
        let expected = HMAC<SHA256>.authenticationCode(
            for: envelope.signedBytes(body: body), using: SymmetricKey(data: Array(credential.hash.utf8)))
        // The same key signs many messages: each signature starts from the keyed state afresh.
        for _ in 0..<3 {
            #expect(
                key.signature(envelope: envelope, body: body) == "hmac-sha256:" + Data(expected).base64EncodedString())
        }
        #expect(key == HostEventKey(credential: credential.value))
    }

    @Test("an event with a control character in an id is refused; a NUL in its error summary becomes U+FFFD")
    func controlCharactersInEvents() throws {
        let key = HostEventKey(credential: "ajh_x")
        let forged = RunLifecycleEvent(
            type: .started, runId: "run_1", jobId: "job\u{0}1", hostId: "host_a", dispatchEpoch: 1, sequence: 1,
            at: Self.now)
        #expect(throws: WireError.self) {
            try RunLifecycleEvent.decode(try WireMessage(Self.incoming(try forged.message(signedWith: key))))
        }
        let failed = RunLifecycleEvent(
            type: .failed, runId: "run_1", jobId: "job_1", hostId: "host_a", dispatchEpoch: 1, sequence: 2,
            at: Self.now, exitCode: 1, errorSummary: "line 1\nbad byte: \u{0} end\ttab", reason: "r\u{0}")
        let decoded = try RunLifecycleEvent.decode(try WireMessage(Self.incoming(try failed.message(signedWith: key))))
        #expect(decoded.errorSummary == "line 1\nbad byte: \u{FFFD} end\ttab")
        #expect(decoded.reason == "r\u{FFFD}")
    }

    @Test("an event whose body names another run or host than its envelope is refused")
    func inconsistentEvent() throws {
        let key = HostEventKey(credential: "ajh_x")
        let event = RunLifecycleEvent(
            type: .started, runId: "run_1", jobId: "job_1", hostId: "host_a", dispatchEpoch: 1, sequence: 1,
            at: Self.now)
        var incoming = Self.incoming(try event.message(signedWith: key))
        incoming.key = Array("run_2".utf8)
        #expect(throws: WireError.self) { try RunLifecycleEvent.decode(try WireMessage(incoming)) }
    }

    @Test(
        "unknown types and versions, missing headers and undecodable bodies are told apart",
        arguments: [
            ("agentjobs.run.dispatch.v2", "{}", WireError.Code.unknownVersion),
            ("agentjobs.run.launch.v1", "{}", .unknownType),
            ("agentjobs.run.dispatch", "{}", .unknownType),
            ("agentjobs.run.dispatch.v1", "not json", .undecodableBody),
            ("agentjobs.run.dispatch.v1", "{\"runId\":1}", .undecodableBody),
        ])
    func decodingErrors(type: String, body: String, code: WireError.Code) throws {
        let envelope = WireEnvelope(id: "m1", source: "x", type: type, time: Self.now, subject: "run_1", key: "host_a")
        let message = OutgoingMessage(topic: Topic.dispatch, envelope: envelope, body: Array(body.utf8), signature: nil)
        let wire = try WireMessage(Self.incoming(message))
        #expect(throws: WireError.self) { try wire.decode(RunDispatch.self) }
        do {
            _ = try wire.decode(RunDispatch.self)
        } catch {
            #expect(error.code == code)
        }
    }

    @Test("a message without CloudEvents headers is refused naming the missing header")
    func missingHeaders() {
        let raw = IncomingMessage(topic: Topic.dispatch, partition: 0, offset: 0, key: nil, value: [0xff, 0x00])
        #expect(throws: WireError(.missingHeader, "header ce_specversion is missing")) { try WireMessage(raw) }
    }

    @Test("a dead letter keeps the original key, body and headers and says why and where it was read")
    func deadLetter() {
        let raw = IncomingMessage(
            topic: Topic.runEvents, partition: 3, offset: 99, key: Array("run_9".utf8), value: [1, 2, 3],
            headers: [MessageHeader(key: "ce_type", value: "x")])
        let letter = OutgoingMessage.deadLetter(for: raw, reason: "unknown_type: x")
        #expect(letter.topic == Topic.deadLetter)
        #expect(letter.key == raw.key)
        #expect(letter.value == raw.value)
        let headers = Dictionary(letter.headers.map { ($0.key, $0.stringValue ?? "") }, uniquingKeysWith: { a, _ in a })
        #expect(headers["ce_type"] == "x")
        #expect(headers[WireHeader.deadLetterReason] == "unknown_type: x")
        #expect(headers[WireHeader.originalTopic] == Topic.runEvents)
        #expect(headers[WireHeader.originalPartition] == "3")
        #expect(headers[WireHeader.originalOffset] == "99")
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test(
        "formatting and parsing a time round-trips to the same text",
        arguments: [1_790_000_000.123, 0.5, -1.001, 1_790_000_000.9995])
    func roundTrip(seconds: Double) throws {
        let text = ISO8601.format(Date(timeIntervalSince1970: seconds))
        let parsed = try #require(ISO8601.parse(text))
        #expect(ISO8601.format(parsed) == text)
    }

    @Test("times are written with milliseconds in UTC")
    func shape() {
        #expect(ISO8601.format(Date(timeIntervalSince1970: 1_790_000_000.123)) == "2026-09-21T14:13:20.123Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
    }
}
