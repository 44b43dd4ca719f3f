extension String {
    /// `bytes` as a string when they are valid UTF-8, else `nil`. ASCII — what AgentJobs writes in
    /// message keys, headers and JSON — is taken as it is: `String(validating:as:)` looks up generic
    /// metadata on every call on this toolchain, which showed on the aggregator's per-event path.
    init?<Bytes: Collection<UInt8>>(utf8Bytes bytes: Bytes) {
        if !bytes.contains(where: { $0 >= 0x80 }) {
            self.init(decoding: bytes, as: UTF8.self)
        } else if let text = String(validating: bytes, as: UTF8.self) {
            self = text
        } else {
            return nil
        }
    }
}

extension StringProtocol {
    /// Whether any character is a control character (U+0000–U+001F, U+007F–U+009F): never part of
    /// an id or a name, and U+0000 cannot be stored in PostgreSQL text at all.
    public var hasControlCharacter: Bool {
        unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// The text with every U+0000 replaced by U+FFFD: free text from a host (an error summary)
    /// keeps its line breaks and tabs, but not a character PostgreSQL cannot store.
    public var withoutNUL: String {
        guard unicodeScalars.contains("\u{0}") else { return String(self) }
        return String(String.UnicodeScalarView(unicodeScalars.map { $0 == "\u{0}" ? "\u{FFFD}" : $0 }))
    }
}
