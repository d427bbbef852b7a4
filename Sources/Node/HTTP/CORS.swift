import NIOHTTP1

/// CORS for browsers on another origin, as the seed configures it (`origin: "*"`, credentials allowed): the
/// request's Origin is echoed when allowed, so it works with and without `withCredentials`.
struct CORS: Sendable {
    /// nil allows any origin.
    var allowedOrigins: [String]?

    func isAllowed(_ origin: String?) -> Bool {
        guard let origin, let allowedOrigins else { return true }
        return allowedOrigins.contains(origin)
    }

    func headers(for request: HTTPRequestHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        let origin = request.headers.first(name: "origin")
        guard isAllowed(origin) else { return headers }
        headers.add(name: "Access-Control-Allow-Origin", value: origin ?? "*")
        headers.add(name: "Access-Control-Allow-Credentials", value: "true")
        if origin != nil { headers.add(name: "Vary", value: "Origin") }
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
