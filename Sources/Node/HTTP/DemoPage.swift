import Foundation

/// The demo client's static files, bundled with the binary as SwiftPM resources and read once at start-up.
enum DemoPage {
    struct File: Sendable {
        var contentType: String
        var body: [UInt8]
    }

    /// Where the files are: `$SIGNAL_DEMO_DIR`, else the SwiftPM resource bundle next to the executable. Not
    /// `Bundle.module`, whose accessor stops the process when the bundle is missing (a binary copied alone), nor
    /// `Bundle.main`, whose first use stops the process when the executable's directory cannot be read (a node run
    /// as another user from a clone in a 0700 directory, e.g. `mktemp -d`): the executable is found through
    /// `/proc/self/exe`, which needs no permission on its directories.
    static var directory: URL? {
        if let override = ProcessInfo.processInfo.environment["SIGNAL_DEMO_DIR"], !override.isEmpty {
            return URL(fileURLWithPath: override)
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = [
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                .map { URL(fileURLWithPath: $0).deletingLastPathComponent() },
            executable.deletingLastPathComponent(),
        ].compactMap { $0 }
        for base in candidates {
            let directory = base.appendingPathComponent("signal_Node.resources").appendingPathComponent("demo")
            if FileManager.default.fileExists(atPath: directory.path) { return directory }
        }
        return nil
    }

    /// Served on `/` when the demo files are not found.
    static let fallback = File(
        contentType: "text/html; charset=utf-8",
        body: Array(
            """
            <!doctype html><html><head><meta charset="utf-8"><title>signal-node</title></head><body>
            <h1>signal-node</h1><p>The demo files (signal_Node.resources) were not found next to the binary; set
            SIGNAL_DEMO_DIR. Socket.IO endpoint: <code>/socket.io/</code>.</p></body></html>

            """.utf8
        )
    )

    /// URL path (`/`, `/app.js`, …) → file.
    static let files: [String: File] = {
        guard let directory else { return ["/": fallback] }
        var files: [String: File] = [:]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names {
            guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path) else { continue }
            let path = name == "index.html" ? "/" : "/" + name
            files[path] = File(contentType: contentType(of: name), body: Array(data))
        }
        return files
    }()

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "json": "application/json"
        default: "application/octet-stream"
        }
    }
}
