import Adapter
import Benchmark
import NIOCore
import SocketIO

// The work one signaling message costs a node, piece by piece: the inbound Socket.IO text frame decoded (JSON
// included), the outbound frame encoded once for all recipients, the cross-node MessagePack message encoded by
// the sender's node and decoded by the others. Payloads are the seed's: a chat message and an SDP offer of a
// typical size. Each benchmark reports time and mallocs per operation, so a change that adds an allocation on
// the hot path shows here.

/// A seed `offer`: the client's SDP (about 2.5 KB, like Chromium's for audio + video) and the peer ids.
let offerSDP = (0..<40).map { "a=candidate:\($0) 1 udp 2122260223 192.168.1.\($0) 5\($0)000 typ host generation 0 network-id 1\\r\\n" }.joined()
let offerJSON = #"42["offer",{"offer":{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"# + offerSDP + #""},"fromPeer":"tq4D5Jp85FmUUOV7AAAB","toPeer":"Jp85FmUUOV7AAABtq4D5"}]"#
let messageJSON = #"42["message",{"roomName":"room-1","personName":"alice","content":"hello, this is a chat message of ordinary length"}]"#

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 100,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )

    let message = ByteBuffer(string: messageJSON)
    let offer = ByteBuffer(string: offerJSON)

    Benchmark("SocketIOPacket.decode (chat message, 130 B)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try SocketIOPacket.decode(message))
        }
    }

    Benchmark("SocketIOPacket.decode (offer, \(offerJSON.utf8.count / 1024) KB)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try SocketIOPacket.decode(offer))
        }
    }

    let decodedMessage = try! SocketIOPacket.decode(message)
    Benchmark("SocketIOPacket.engineFrames (chat message)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(decodedMessage.engineFrames())
        }
    }

    let decodedOffer = try! SocketIOPacket.decode(offer)
    Benchmark("SocketIOPacket.engineFrames (offer)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(decodedOffer.engineFrames())
        }
    }

    guard case .array(let messageData)? = decodedMessage.data, case .array(let offerData)? = decodedOffer.data else {
        fatalError("the payloads decode to event arrays")
    }
    let options = BroadcastOptions(rooms: ["room-1"], except: ["tq4D5Jp85FmUUOV7AAAB"])
    let messageBroadcast = BroadcastPacket(data: messageData)
    let offerBroadcast = BroadcastPacket(data: offerData)

    Benchmark("ClusterBroadcast.encode (chat message, MessagePack)") { benchmark in
        for _ in benchmark.scaledIterations {
            var buffer = ByteBuffer()
            buffer.reserveCapacity(256)
            ClusterBroadcast.encode(uid: "MhorfW", packet: messageBroadcast, options: options, into: &buffer)
            blackHole(buffer)
        }
    }

    var encodedMessage = ByteBuffer()
    ClusterBroadcast.encode(uid: "MhorfW", packet: messageBroadcast, options: options, into: &encodedMessage)
    var encodedOffer = ByteBuffer()
    ClusterBroadcast.encode(uid: "MhorfW", packet: offerBroadcast, options: BroadcastOptions(rooms: ["Jp85FmUUOV7AAABtq4D5"]), into: &encodedOffer)

    Benchmark("ClusterBroadcast.init(decoding:) (chat message)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ClusterBroadcast(decoding: encodedMessage))
        }
    }

    Benchmark("ClusterBroadcast.init(decoding:) (offer)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ClusterBroadcast(decoding: encodedOffer))
        }
    }

    // What a node pays for its own echo (pattern mode) since it is recognised before the decode.
    Benchmark("ClusterBroadcast.hasUID (own echo of an offer)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(ClusterBroadcast.hasUID("MhorfW", encodedOffer))
        }
    }
}
