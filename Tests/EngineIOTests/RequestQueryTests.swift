import Testing

@testable import EngineIO

@Suite("RequestQuery")
struct RequestQueryTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var target: String
        var path: String
        var eio: String?
        var transport: String?
        var sid: String?
        var testDescription: String { target }
    }

    static let vectors: [Vector] = [
        Vector(
            target: "/socket.io/?EIO=4&transport=polling&t=N8hyd6w",
            path: "/socket.io/",
            eio: "4",
            transport: "polling"
        ),
        Vector(
            target: "/socket.io/?EIO=4&transport=websocket&sid=wZX3oN0bSVIhsaknAAAI",
            path: "/socket.io/",
            eio: "4",
            transport: "websocket",
            sid: "wZX3oN0bSVIhsaknAAAI"
        ),
        Vector(
            target: "/socket.io/?sid=abc&transport=polling&EIO=3",
            path: "/socket.io/",
            eio: "3",
            transport: "polling",
            sid: "abc"
        ),
        Vector(target: "/socket.io/", path: "/socket.io/"),
        Vector(target: "/socket.io/?", path: "/socket.io/"),
        Vector(target: "/", path: "/"),
        Vector(target: "/healthz?x=1", path: "/healthz"),
        Vector(target: "/?sid=&EIO", path: "/", eio: "", sid: ""),
        Vector(target: "/x?transport=polling&transport=websocket", path: "/x", transport: "websocket"),
        Vector(target: "/x?&&EIO=4&", path: "/x", eio: "4"),
        Vector(target: "/x?a=b=c&EIO=4=5", path: "/x", eio: "4=5"),
        Vector(target: "/x?eio=4&Transport=polling&SID=a", path: "/x"),
        Vector(target: "/x?sid=a%2Bb", path: "/x", sid: "a%2Bb"),
        Vector(target: "/a?b?EIO=4&sid=x", path: "/a", sid: "x"),
    ]

    @Test("parses", arguments: vectors)
    func parsesTheEngineParameters(_ vector: Vector) {
        let query = RequestQuery(target: vector.target)
        #expect(String(query.path) == vector.path)
        #expect(query.eio.map(String.init) == vector.eio)
        #expect(query.transport.map(String.init) == vector.transport)
        #expect(query.sid.map(String.init) == vector.sid)
    }
}
