// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "agentjobs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "agentjobs", targets: ["agentjobs"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP over HTTP only: the gRPC exporter's dependencies would add minutes to every clean build.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .target(
            name: "AgentJobsCron",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsCore",
            dependencies: [
                "AgentJobsCron",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsTelemetry",
            dependencies: [
                "AgentJobsCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsLifecycle",
            dependencies: [.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "AgentJobsSQLite",
            dependencies: ["CSQLite"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsPostgres",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsStore",
                "AgentJobsSQLite",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsEmbeddedLog",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsSQLite",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsKafka",
            dependencies: [
                "AgentJobsCore",
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsStore",
            dependencies: ["AgentJobsCore", "AgentJobsSQLite"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsControlPlane",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsCron",
                "AgentJobsLifecycle",
                "AgentJobsStore",
                "AgentJobsTelemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: [.copy("Resources")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsOrchestrator",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsLifecycle",
                "AgentJobsTelemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsAggregator",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsLifecycle",
                "AgentJobsStore",
                "AgentJobsTelemetry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "agentjobs",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsLifecycle",
                "AgentJobsStore",
                "AgentJobsPostgres",
                "AgentJobsEmbeddedLog",
                "AgentJobsControlPlane",
                "AgentJobsKafka",
                "AgentJobsAggregator",
                "AgentJobsOrchestrator",
                "AgentJobsTelemetry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "agentjobs-bench",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsStore",
                "AgentJobsSQLite",
                "AgentJobsPostgres",
                "AgentJobsEmbeddedLog",
                "AgentJobsControlPlane",
                "AgentJobsKafka",
                "AgentJobsAggregator",
                "AgentJobsOrchestrator",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsCronTests",
            dependencies: ["AgentJobsCron"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsTelemetryTests",
            dependencies: [
                "AgentJobsTelemetry",
                "AgentJobsLifecycle",
                "AgentJobsCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsCoreTests",
            dependencies: ["AgentJobsCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsKafkaTests",
            dependencies: [
                "AgentJobsTestSupport",
                "AgentJobsCore",
                "AgentJobsKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsTransportTests",
            dependencies: [
                "AgentJobsTestSupport",
                "AgentJobsCore",
                "AgentJobsStore",
                "AgentJobsEmbeddedLog",
                "AgentJobsKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsOrchestratorTests",
            dependencies: [
                "AgentJobsTestSupport",
                "AgentJobsCore",
                "AgentJobsOrchestrator",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsAggregatorTests",
            dependencies: [
                "AgentJobsTestSupport",
                "AgentJobsAggregator",
                "AgentJobsStore",
                "AgentJobsEmbeddedLog",
                "AgentJobsCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsStoreTests",
            dependencies: [
                "AgentJobsStore", "AgentJobsSQLite", "AgentJobsPostgres", "AgentJobsCore", "AgentJobsTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentJobsTestSupport",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsPostgres",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/AgentJobsTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsEndToEndTests",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsTestSupport",
                "AgentJobsKafka",
                "AgentJobsOrchestrator",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsUITests",
            dependencies: [
                "AgentJobsCore",
                "AgentJobsTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentJobsControlPlaneTests",
            dependencies: [
                "AgentJobsTestSupport",
                "AgentJobsControlPlane",
                "AgentJobsStore",
                "AgentJobsPostgres",
                "AgentJobsEmbeddedLog",
                "AgentJobsCore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
