/// Splits the multiplexed stream of Docker's attach and logs endpoints (containers without a
/// TTY) into stdout and stderr.
///
/// Each frame is an 8-byte header — stream type (0 stdin, 1 stdout, 2 stderr), three zero bytes,
/// the payload size as a big-endian UInt32 — followed by the payload. Bytes arrive in arbitrary
/// chunks, so a frame may span several ``feed(_:)`` calls.
struct DockerStreamDemultiplexer: Sendable {
    enum Stream: Sendable, Hashable {
        case stdout
        case stderr
    }

    struct Frame: Sendable, Hashable {
        var stream: Stream
        var payload: [UInt8]
    }

    private var buffer: [UInt8] = []
    private var start = 0

    /// Bytes received that do not form a complete frame yet.
    var pendingByteCount: Int { buffer.count - start }

    /// Adds received bytes and returns the frames they complete, in order.
    mutating func feed(_ bytes: some Sequence<UInt8>) -> [Frame] {
        buffer.append(contentsOf: bytes)
        var frames: [Frame] = []
        while buffer.count - start >= 8 {
            let size =
                Int(buffer[start + 4]) << 24 | Int(buffer[start + 5]) << 16 | Int(buffer[start + 6]) << 8
                | Int(buffer[start + 7])
            guard buffer.count - start - 8 >= size else { break }
            // stdin (0) never appears in logs; anything but stderr is treated as output.
            let stream: Stream = buffer[start] == 2 ? .stderr : .stdout
            frames.append(Frame(stream: stream, payload: Array(buffer[(start + 8)..<(start + 8 + size)])))
            start += 8 + size
        }
        // Compact now and then rather than on every frame, which would copy the buffer each time.
        if start > 0 && (start == buffer.count || start >= 64 * 1024) {
            buffer.removeFirst(start)
            start = 0
        }
        return frames
    }
}
