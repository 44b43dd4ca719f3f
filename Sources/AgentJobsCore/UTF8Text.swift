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
