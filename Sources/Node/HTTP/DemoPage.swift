import Foundation

/// The demo client's static files, bundled with the binary as SwiftPM resources and read once at start-up.
enum DemoPage {
    struct File: Sendable {
        var contentType: String
        var body: [UInt8]
    }

    /// URL path (`/`, `/app.js`, …) → file.
    static let files: [String: File] = {
        guard let directory = Bundle.module.url(forResource: "demo", withExtension: nil) else { return [:] }
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
