import Foundation
import Hummingbird
import NIOCore

/// The OpenAPI 3.1 description of the API, shipped as a resource (the same file as `docs/openapi.json`).
public enum OpenAPIDocument {
    /// The document's bytes.
    public static let bytes: [UInt8] = {
        guard let url = ResourceDirectory.url?.appendingPathComponent("openapi.json"),
            let data = try? Data(contentsOf: url)
        else {
            return Array(
                #"{"openapi":"3.1.0","info":{"title":"AgentJobs (document missing from build)","version":"0"}}"#.utf8)
        }
        return Array(data)
    }()

    static func response() throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
