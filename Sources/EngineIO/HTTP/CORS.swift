import NIOHTTP1

/// CORS for browsers on another origin.
///
/// - With `--allowed-origins`, a listed Origin is echoed with `Access-Control-Allow-Credentials: true`, and other
///   origins get no CORS headers (and an Engine.IO 400).
/// - Without it, any origin may use the endpoint, but only without credentials: `Access-Control-Allow-Origin: *`
///   and no `Allow-Credentials`, so a page on another site can never make a browser send its cookies or HTTP
///   authentication here and read the answer. socket.io-client does not send credentials unless told to
///   (`withCredentials`), and the demo page is same-origin, so both work.
struct CORS: Sendable {
    /// nil allows any origin, without credentials.
    var allowedOrigins: [String]?

    func isAllowed(_ origin: String?) -> Bool {
        guard let origin, let allowedOrigins else { return true }
        return allowedOrigins.contains(origin)
    }

    func headers(for request: HTTPRequestHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        let origin = request.headers.first(name: "origin")
        guard isAllowed(origin) else { return headers }
        if allowedOrigins != nil, let origin {
            headers.add(name: "Access-Control-Allow-Origin", value: origin)
            headers.add(name: "Access-Control-Allow-Credentials", value: "true")
            headers.add(name: "Vary", value: "Origin")
        } else {
            headers.add(name: "Access-Control-Allow-Origin", value: "*")
        }
        return headers
    }

    func preflightHeaders(for request: HTTPRequestHead) -> HTTPHeaders {
        var headers = self.headers(for: request)
        guard !headers.isEmpty else { return headers }
        headers.add(name: "Access-Control-Allow-Methods", value: "GET,POST")
        if let requested = request.headers.first(name: "access-control-request-headers") {
            headers.add(name: "Access-Control-Allow-Headers", value: requested)
            headers.add(name: "Vary", value: "Access-Control-Request-Headers")
        }
        headers.add(name: "Access-Control-Max-Age", value: "86400")
        return headers
    }
}
