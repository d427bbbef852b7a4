

/// The Engine.IO query parameters of a request target.
struct RequestQuery {
    var path: Substring
    var eio: Substring?
    var transport: Substring?
    var sid: Substring?
    /// A JWT given in the query string (`?token=…`), for clients that cannot send a CONNECT auth payload.
    var token: Substring?

    init(target: String) {
        let question = target.firstIndex(of: "?")
        path = question.map { target[..<$0] } ?? target[...]
        guard let question else { return }
        for pair in target[target.index(after: question)...].split(separator: "&") {
            let equals = pair.firstIndex(of: "=")
            let key = equals.map { pair[..<$0] } ?? pair
            let value = equals.map { pair[pair.index(after: $0)...] } ?? ""
            switch key {
            case "EIO": eio = value
            case "transport": transport = value
            case "sid": sid = value
            case "token": token = value
            default: break
            }
        }
    }
}
