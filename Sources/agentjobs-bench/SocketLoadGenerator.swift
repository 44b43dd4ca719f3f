import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A minimal HTTP/1.1 keep-alive load generator on plain blocking sockets: one connection and one
/// thread per in-flight slot, each sending `POST <path>` with an empty body and reading the answer
/// before sending the next.
///
/// AsyncHTTPClient spends ~80-150 µs of CPU per request here (pool, NIO pipeline, async hops); on a
/// 2-core machine whose other core runs the server, that is the benchmark measuring itself. This
/// costs a `send` and one or two `recv`s per request. It reads only what the benchmark needs:
/// the status code, `Content-Length` or chunked framing, and `Connection: close`.
final class SocketLoadGenerator: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let port: UInt16
    private let host = "127.0.0.1"
    private let headerLines: String
    private let connections: [Connection]

    /// - Parameters:
    ///   - port: The server's port on 127.0.0.1.
    ///   - authorization: The `Authorization` header value.
    ///   - concurrency: Connections (and requests in flight).
    init(port: Int, authorization: String, concurrency: Int) {
        self.port = UInt16(port)
        headerLines = "Host: 127.0.0.1:\(port)\r\nAuthorization: \(authorization)\r\nContent-Length: 0\r\n\r\n"
        connections = (0..<concurrency).map { _ in Connection() }
    }

    /// Sends `POST path(item)` once per item, `concurrency` at a time, and waits for every answer;
    /// any status but 201 is a failure. Connections stay open for the next call.
    func run(items: ArraySlice<String>, path: @escaping @Sendable (String) -> String) async -> LoadRun {
        final class Cursor: Sendable { let next = Atomic<Int>(0) }
        let items = Array(items)
        let cursor = Cursor()
        let clock = ContinuousClock()
        let results = Mutex<[WorkerResult]>([])
        let start = clock.now
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let group = DispatchGroup()
            for connection in connections.prefix(max(1, min(connections.count, items.count))) {
                group.enter()
                let thread = Thread { [self] in
                    var result = WorkerResult()
                    while true {
                        let index = cursor.next.wrappingAdd(1, ordering: .relaxed).oldValue
                        guard index < items.count else { break }
                        let request = Array(("POST \(path(items[index])) HTTP/1.1\r\n" + headerLines).utf8)
                        let begin = clock.now
                        let outcome = exchange(request, on: connection)
                        result.latencies.append(begin.duration(to: clock.now).nanoseconds)
                        if case .failure(let kind, let detail) = outcome {
                            result.failures[kind, default: 0] += 1
                            if result.details[kind] == nil { result.details[kind] = detail }
                        }
                    }
                    results.withLock { $0.append(result) }
                    group.leave()
                }
                thread.stackSize = 1 << 20
                thread.start()
            }
            group.notify(queue: .global()) { continuation.resume() }
        }
        let elapsed = start.duration(to: clock.now)
        var run = LoadRun(
            operations: items.count, elapsed: elapsed, latencyNanoseconds: [], failures: [:], failureDetails: [:])
        for result in results.withLock({ $0 }) {
            run.latencyNanoseconds.append(contentsOf: result.latencies)
            run.failures.merge(result.failures, uniquingKeysWith: +)
            run.failureDetails.merge(result.details) { first, _ in first }
        }
        return run
    }

    /// Closes every connection.
    func close() {
        for connection in connections { connection.close() }
    }

    private struct WorkerResult: Sendable {
        var latencies: [Int64] = []
        var failures: [String: Int] = [:]
        var details: [String: String] = [:]
    }

    /// One request and its answer; a broken connection is closed (and reopened by the next request).
    private func exchange(_ request: [UInt8], on connection: Connection) -> Outcome {
        do {
            try connection.openIfNeeded(host: host, port: port)
            try connection.send(request)
            let response = try connection.readResponse()
            if response.close { connection.close() }
            if response.status == 201 { return .success }
            return .failure(
                kind: "HTTP \(response.status)", detail: String(decoding: response.body.prefix(500), as: UTF8.self))
        } catch {
            connection.close()
            return .failure(kind: "connection error", detail: "\(error)")
        }
    }

    /// A socket used by one thread at a time (the worker that owns it, then `close()` after
    /// every worker has finished), which is what makes the unchecked `Sendable` sound.
    private final class Connection: @unchecked Sendable {
        private var socket: Int32 = -1
        private var buffer: [UInt8] = []
        private var chunk = [UInt8](repeating: 0, count: 16_384)

        struct Response {
            var status: Int
            var body: [UInt8]
            var close: Bool
        }

        func openIfNeeded(host: String, port: UInt16) throws {
            guard socket < 0 else { return }
            buffer.removeAll(keepingCapacity: true)
            let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { throw Failure(description: "socket: errno \(errno)") }
            var noDelay: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            let status = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard status == 0 else {
                let code = errno
                Glibc.close(descriptor)
                throw Failure(description: "connect to \(host):\(port): errno \(code)")
            }
            socket = descriptor
        }

        func close() {
            if socket >= 0 { Glibc.close(socket) }
            socket = -1
        }

        func send(_ bytes: [UInt8]) throws {
            var offset = 0
            while offset < bytes.count {
                let sent = bytes.withUnsafeBytes {
                    Glibc.send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
                }
                if sent < 0 {
                    if errno == EINTR { continue }
                    throw Failure(description: "send: errno \(errno)")
                }
                offset += sent
            }
        }

        /// Reads more bytes into `buffer`.
        private func fill() throws {
            while true {
                let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                if count > 0 {
                    buffer.append(contentsOf: chunk[0..<count])
                    return
                }
                if count < 0, errno == EINTR { continue }
                throw Failure(description: count == 0 ? "the server closed the connection" : "recv: errno \(errno)")
            }
        }

        private func headerEnd() -> Int? {
            guard buffer.count >= 4 else { return nil }
            for index in 0...(buffer.count - 4)
            where buffer[index] == 13 && buffer[index + 1] == 10 && buffer[index + 2] == 13 && buffer[index + 3] == 10 {
                return index
            }
            return nil
        }

        func readResponse() throws -> Response {
            var end = headerEnd()
            while end == nil {
                try fill()
                end = headerEnd()
            }
            let headerCount = end! + 4
            let head = String(decoding: buffer[0..<end!], as: UTF8.self)
            buffer.removeFirst(headerCount)
            let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
            let statusParts = lines.first?.split(separator: " ") ?? []
            guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
                throw Failure(description: "not an HTTP/1.x status line: \(lines.first ?? "")")
            }
            var contentLength: Int?
            var chunked = false
            var close = statusParts[0] == "HTTP/1.0"
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces).lowercased()
                switch name {
                case "content-length": contentLength = Int(value)
                case "transfer-encoding": chunked = value.contains("chunked")
                case "connection": close = value.contains("close") ? true : (value.contains("keep-alive") ? false : close)
                default: break
                }
            }
            var body: [UInt8] = []
            if chunked {
                body = try readChunked()
            } else if let contentLength {
                while buffer.count < contentLength { try fill() }
                body = Array(buffer[0..<contentLength])
                buffer.removeFirst(contentLength)
            } else if status != 204 && status != 304 && !(100..<200).contains(status) {
                // No framing: the body runs to the end of the connection.
                while true {
                    do { try fill() } catch { break }
                }
                body = buffer
                buffer.removeAll()
                close = true
            }
            return Response(status: status, body: body, close: close)
        }

        private func readLine() throws -> String {
            while true {
                if buffer.count >= 2, let index = (0..<(buffer.count - 1)).first(where: { buffer[$0] == 13 && buffer[$0 + 1] == 10 }) {
                    let line = String(decoding: buffer[0..<index], as: UTF8.self)
                    buffer.removeFirst(index + 2)
                    return line
                }
                try fill()
            }
        }

        private func readChunked() throws -> [UInt8] {
            var body: [UInt8] = []
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) else {
                    throw Failure(description: "bad chunk size line: \(sizeLine)")
                }
                if size == 0 {
                    // Trailers, up to the empty line.
                    while try !readLine().isEmpty {}
                    return body
                }
                while buffer.count < size + 2 { try fill() }
                body.append(contentsOf: buffer[0..<size])
                buffer.removeFirst(size + 2)
            }
        }
    }
}
