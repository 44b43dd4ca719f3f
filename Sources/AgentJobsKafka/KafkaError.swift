/// The one error type of `AgentJobsKafka`.
///
/// `code` is stable and meant for programs (and the HTTP error body); `message` is for people.
/// Neither ever contains configuration values of secret properties (passwords, keys, tokens).
public struct KafkaError: Error, Sendable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible
{
    /// A stable, extensible error code. Compare with the static members; `rawValue` is the
    /// stable string used on the wire (`kafka.*`).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The stable string form, e.g. `kafka.delivery_timed_out`.
        public let rawValue: String

        private init(_ rawValue: String) { self.rawValue = rawValue }

        public var description: String { rawValue }

        /// A configuration value is missing, malformed or conflicts with a value AgentJobs fixes.
        public static let invalidConfiguration = Code("kafka.invalid_configuration")
        /// The librdkafka linked at run time is older than ``KafkaRuntime/minimumVersion``.
        public static let unsupportedLibrdkafkaVersion = Code("kafka.unsupported_librdkafka_version")
        /// librdkafka refused to create a client handle.
        public static let clientCreationFailed = Code("kafka.client_creation_failed")
        /// `run()` was called a second time on the same client.
        public static let alreadyRunning = Code("kafka.already_running")
        /// The broker did not acknowledge the message within the delivery timeout
        /// (`message.timeout.ms`); it was not stored (or its storage is unknown).
        public static let deliveryTimedOut = Code("kafka.delivery_timed_out")
        /// The broker rejected the message, or librdkafka could not enqueue it.
        public static let deliveryFailed = Code("kafka.delivery_failed")
        /// The producer is shutting down or shut down; the message was not (or not surely) sent.
        public static let producerShutDown = Code("kafka.producer_shut_down")
        /// The consumer is shut down; nothing more can be read or committed.
        public static let consumerClosed = Code("kafka.consumer_closed")
        /// Two tasks iterated the consumer's messages at the same time.
        public static let concurrentIteration = Code("kafka.concurrent_iteration")
        /// Subscribing to topics or assigning partitions failed.
        public static let subscriptionFailed = Code("kafka.subscription_failed")
        /// Committing offsets failed; the positions were not committed.
        public static let commitFailed = Code("kafka.commit_failed")
        /// Creating topics failed (an already existing topic is not a failure).
        public static let topicCreationFailed = Code("kafka.topic_creation_failed")
        /// Reading cluster metadata failed or the topic does not exist.
        public static let metadataFailed = Code("kafka.metadata_failed")
        /// librdkafka raised a fatal error; the client cannot be used any more.
        public static let fatal = Code("kafka.fatal")
        /// A non-fatal error librdkafka reported (broker down, unknown topic, …); it keeps
        /// retrying on its own. Logged, not thrown.
        public static let clientError = Code("kafka.client_error")
        /// An operation did not finish within its timeout.
        public static let timedOut = Code("kafka.timed_out")
    }

    /// The librdkafka error behind a failure, as reported by `rd_kafka_err2name`.
    public struct LibrdkafkaError: Sendable, Hashable, CustomStringConvertible {
        /// The numeric `rd_kafka_resp_err_t` (negative values are librdkafka-internal).
        public var code: Int32
        /// The symbolic name, e.g. `_MSG_TIMED_OUT` or `TOPIC_ALREADY_EXISTS`.
        public var name: String

        /// Creates a value (normally built from a `rd_kafka_resp_err_t`).
        public init(code: Int32, name: String) {
            self.code = code
            self.name = name
        }

        public var description: String { "\(name) (\(code))" }
    }

    /// The stable code.
    public var code: Code
    /// What happened and what to do next; never contains secret values.
    public var message: String
    /// The underlying librdkafka error, when there is one.
    public var librdkafkaError: LibrdkafkaError?

    /// Creates an error.
    public init(code: Code, message: String, librdkafkaError: LibrdkafkaError? = nil) {
        self.code = code
        self.message = message
        self.librdkafkaError = librdkafkaError
    }

    public var description: String {
        if let librdkafkaError {
            return "\(code.rawValue): \(message) [\(librdkafkaError.name)]"
        }
        return "\(code.rawValue): \(message)"
    }

    public var debugDescription: String {
        var text = "KafkaError(code: \(code.rawValue), message: \(String(reflecting: message))"
        if let librdkafkaError {
            text += ", librdkafka: \(librdkafkaError.name) (\(librdkafkaError.code))"
        }
        return text + ")"
    }
}
