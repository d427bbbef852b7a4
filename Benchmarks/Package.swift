// swift-tools-version:6.1
// Micro-benchmarks of the hot path's codecs, with allocation counts (ordo-one/benchmark). A package of its own, so
// the main build and CI do not compile the benchmark library. From the repository root:
//
//   swift package --package-path Benchmarks benchmark                       # run, print the table
//   swift package --package-path Benchmarks benchmark baseline update main  # keep a baseline named main
//   swift package --package-path Benchmarks benchmark baseline compare main # after a change: what moved
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, so the repository's package is known here by the name of
// the folder it was cloned into.
let signal = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "signal-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "Codecs",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SocketIO", package: signal),
                .product(name: "Adapter", package: signal),
            ],
            path: "Benchmarks/Codecs",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
