import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A minimal HTTP/1.1 keep-alive load generator: `concurrency` non-blocking sockets to 127.0.0.1
/// served by one thread with `poll`, each connection sending `POST <path>` with an empty body and
/// reading the answer before it sends the next.
///
/// AsyncHTTPClient spends ~70-85 µs of CPU per request here (pool, NIO pipeline, async hops); on a
/// 2-core machine whose cores the server needs, that is the benchmark measuring itself. This costs
/// a `send`, a `recv` and a share of a `poll` per request, on one thread (a thread per
/// connection would add 64 runnable threads competing with the server's serial writer). It reads
/// only what the benchmark needs: the status code, `Content-Length` or chunked framing, and
/// `Connection: close`. Linux only, like the rest of the benchmark (`/proc`).
final class SocketLoadGenerator: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let port: UInt16
    private let headerLines: String
    private let concurrency: Int
    /// The connections, kept open between `run` calls; only touched by the thread of one `run` at
    /// a time (calls are sequential), then by `close()`.
    private let connections: Mutex<[Int32]> = Mutex([])
    /// Gives up when no answer arrives for this long.
    private let stallLimit: Duration = .seconds(60)

    /// - Parameters:
    ///   - port: The server's port on 127.0.0.1.
    ///   - authorization: The `Authorization` header value.
    ///   - concurrency: Connections (and requests in flight).
    init(port: Int, authorization: String, concurrency: Int) {
        self.port = UInt16(port)
        headerLines = "Host: 127.0.0.1:\(port)\r\nAuthorization: \(authorization)\r\nContent-Length: 0\r\n\r\n"
        self.concurrency = max(1, concurrency)
    }

    /// Sends `POST path(item)` once per item, `concurrency` at a time, and waits for every answer;
    /// any status but 201 is a failure. Connections stay open for the next call.
    func run(items: ArraySlice<String>, path: @escaping @Sendable (String) -> String) async -> LoadRun {
        let requests = items.map { Array(("POST \(path($0)) HTTP/1.1\r\n" + headerLines).utf8) }
        return await withCheckedContinuation { (continuation: CheckedContinuation<LoadRun, Never>) in
            let thread = Thread { [self] in continuation.resume(returning: loop(requests)) }
            thread.start()
        }
    }

    /// Closes every connection.
    func close() {
        connections.withLock { sockets in
            for socket in sockets where socket >= 0 { Glibc.close(socket) }
            sockets = []
        }
    }

    private struct Slot {
        var socket: Int32 = -1
        var buffer: [UInt8] = []
        /// The request in flight on this connection and when it was sent.
        var request: Int?
        var sentAt: ContinuousClock.Instant?
    }

    private func loop(_ requests: [[UInt8]]) -> LoadRun {
        let clock = ContinuousClock()
        let start = clock.now
        var latencies: [Int64] = []
        latencies.reserveCapacity(requests.count)
        var failures: [String: Int] = [:]
        var details: [String: String] = [:]
        func fail(_ kind: String, _ detail: String) {
            failures[kind, default: 0] += 1
            if details[kind] == nil { details[kind] = detail }
        }
        func finish() -> LoadRun {
            LoadRun(
                operations: requests.count, elapsed: start.duration(to: clock.now), latencyNanoseconds: latencies,
                failures: failures, failureDetails: details)
        }

        var slots = connections.withLock { sockets in
            (0..<concurrency).map { index in Slot(socket: index < sockets.count ? sockets[index] : -1) }
        }
        defer { connections.withLock { $0 = slots.map(\.socket) } }
        var next = 0
        var inFlight = 0

        func drop(_ index: Int) {
            if slots[index].socket >= 0 { Glibc.close(slots[index].socket) }
            slots[index].socket = -1
            slots[index].buffer.removeAll(keepingCapacity: true)
        }
        /// Sends the next request on slot `index`, (re)connecting first when needed.
        func sendNext(_ index: Int) {
            while next < requests.count {
                let request = next
                next += 1
                if slots[index].socket < 0 {
                    do {
                        slots[index].socket = try Self.connect(port: port)
                    } catch {
                        fail("connection error", "\(error)")
                        continue
                    }
                }
                slots[index].sentAt = clock.now
                if Self.sendAll(requests[request], on: slots[index].socket) {
                    slots[index].request = request
                    inFlight += 1
                    return
                }
                fail("connection error", "send failed: errno \(errno)")
                drop(index)
            }
        }

        for index in slots.indices { sendNext(index) }
        var polled = [pollfd](repeating: pollfd(), count: slots.count)
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var lastProgress = clock.now
        while inFlight > 0 {
            for index in slots.indices {
                let waiting = slots[index].request != nil && slots[index].socket >= 0
                polled[index] = pollfd(fd: waiting ? slots[index].socket : -1, events: Int16(POLLIN), revents: 0)
            }
            let ready = poll(&polled, nfds_t(polled.count), 1_000)
            if ready < 0 {
                if errno == EINTR { continue }
                fail("load generator error", "poll: errno \(errno)")
                break
            }
            if ready == 0 {
                if lastProgress.duration(to: clock.now) > stallLimit {
                    fail("timeout", "no answer for \(stallLimit); \(inFlight) requests unanswered")
                    break
                }
                continue
            }
            for index in slots.indices where polled[index].fd >= 0 && polled[index].revents != 0 {
                guard slots[index].request != nil else { continue }
                let count = chunk.withUnsafeMutableBytes { recv(slots[index].socket, $0.baseAddress, $0.count, 0) }
                if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                let closed = count <= 0
                if count > 0 { slots[index].buffer.append(contentsOf: chunk[0..<count]) }
                switch HTTPResponseParser.parse(slots[index].buffer, atEndOfStream: closed) {
                case .incomplete where !closed:
                    continue
                case .incomplete:
                    fail("connection error", count == 0 ? "the server closed the connection" : "recv: errno \(errno)")
                    drop(index)
                case .failed(let reason):
                    fail("bad response", reason)
                    drop(index)
                case .complete(let status, let body, let consumed, let close):
                    if status != 201 {
                        fail("HTTP \(status)", String(decoding: body.prefix(500), as: UTF8.self))
                    }
                    slots[index].buffer.removeFirst(consumed)
                    if close || closed { drop(index) }
                }
                if let sentAt = slots[index].sentAt {
                    latencies.append(sentAt.duration(to: clock.now).nanoseconds)
                }
                slots[index].request = nil
                slots[index].sentAt = nil
                inFlight -= 1
                lastProgress = clock.now
                sendNext(index)
            }
        }
        return finish()
    }

    /// A blocking connect to 127.0.0.1:`port`, then non-blocking with `TCP_NODELAY`.
    private static func connect(port: UInt16) throws -> Int32 {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var noDelay: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw Failure(description: "connect to 127.0.0.1:\(port): errno \(code)")
        }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        return descriptor
    }

    /// Sends the whole request. Requests are a few hundred bytes and the socket's send buffer is
    /// empty when one is sent (the previous answer was read), so this does not spin in practice.
    private static func sendAll(_ bytes: [UInt8], on socket: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                send(socket, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return false
            }
            offset += sent
        }
        return true
    }
}

/// Finds one HTTP/1.x response at the start of a buffer.
enum HTTPResponseParser {
    enum Result: Equatable {
        /// More bytes are needed.
        case incomplete
        case complete(status: Int, body: [UInt8], consumed: Int, close: Bool)
        case failed(String)
    }

    /// - Parameter atEndOfStream: The peer closed the connection (ends a body without framing).
    static func parse(_ buffer: [UInt8], atEndOfStream: Bool) -> Result {
        guard let headerEnd = find([13, 10, 13, 10], in: buffer, from: 0) else { return .incomplete }
        let head = String(decoding: buffer[0..<headerEnd], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
            return .failed("not an HTTP/1.x status line: \(lines.first ?? "")")
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
        let bodyStart = headerEnd + 4
        if status == 204 || status == 304 || (100..<200).contains(status) {
            return .complete(status: status, body: [], consumed: bodyStart, close: close)
        }
        if chunked {
            var body: [UInt8] = []
            var position = bodyStart
            while true {
                guard let lineEnd = find([13, 10], in: buffer, from: position) else { return .incomplete }
                let sizeText = String(decoding: buffer[position..<lineEnd], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else {
                    return .failed("bad chunk size line: \(sizeText)")
                }
                position = lineEnd + 2
                if size == 0 {
                    // Trailers, up to the empty line.
                    while true {
                        guard let end = find([13, 10], in: buffer, from: position) else { return .incomplete }
                        let empty = end == position
                        position = end + 2
                        if empty { return .complete(status: status, body: body, consumed: position, close: close) }
                    }
                }
                guard buffer.count >= position + size + 2 else { return .incomplete }
                body.append(contentsOf: buffer[position..<(position + size)])
                position += size + 2
            }
        }
        if let contentLength {
            guard buffer.count >= bodyStart + contentLength else { return .incomplete }
            return .complete(
                status: status, body: Array(buffer[bodyStart..<(bodyStart + contentLength)]),
                consumed: bodyStart + contentLength, close: close)
        }
        // No framing: the body runs to the end of the connection.
        guard atEndOfStream else { return .incomplete }
        return .complete(status: status, body: Array(buffer[bodyStart...]), consumed: buffer.count, close: true)
    }

    private static func find(_ pattern: [UInt8], in buffer: [UInt8], from start: Int) -> Int? {
        guard buffer.count >= pattern.count, start <= buffer.count - pattern.count else { return nil }
        var index = start
        while index <= buffer.count - pattern.count {
            if buffer[index] == pattern[0] && buffer[(index + 1)..<(index + pattern.count)].elementsEqual(pattern[1...])
            {
                return index
            }
            index += 1
        }
        return nil
    }
}
