import AgentJobsCore
import Hummingbird
import NIOCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// JSON bodies in and out, with the API's one date format (RFC 3339 UTC with milliseconds).
enum JSONResponse {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601.format(date))
        }
        return encoder
    }

    static func make(status: HTTPResponse.Status = .ok, _ value: some Encodable) throws -> Response {
        make(status: status, json: try encoder().encode(value))
    }

    /// A run, written without `JSONEncoder` (the same bytes).
    static func make(status: HTTPResponse.Status = .ok, _ run: RunResource) -> Response {
        make(status: status, json: run.jsonBytes)
    }

    /// A response with a ready JSON body.
    static func make(status: HTTPResponse.Status = .ok, json: some Collection<UInt8>) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.contentLength] = String(json.count)
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: json)))
    }

    /// The request body as JSON, or nil when the body is empty.
    /// - Throws: ``APIError`` 400 `malformed_json`, or 413 when the body is over 1 MiB.
    static func body(of request: Request) async throws -> JSONValue? {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: 1 << 20)
        } catch {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "the request body is over 1 MiB")
        }
        guard buffer.readableBytes > 0 else { return nil }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
        } catch DecodingError.dataCorrupted(let context) where !context.codingPath.isEmpty {
            // JSON, but a value no JSON type of ours holds (JSONValue says which, in words).
            let field = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
            throw ValidationError(field: field, message: "is \(context.debugDescription)")
        } catch DecodingError.dataCorrupted(let context) {
            throw APIError.malformedJSON(context.underlyingError.map { "\($0)" } ?? context.debugDescription)
        } catch {
            throw APIError.malformedJSON("the body could not be read as JSON")
        }
    }

    /// The request body, which must be a JSON object.
    static func requiredBody(of request: Request) async throws -> JSONValue {
        guard let body = try await body(of: request) else {
            throw APIError.malformedJSON("the body is empty; send a JSON object")
        }
        return body
    }
}
