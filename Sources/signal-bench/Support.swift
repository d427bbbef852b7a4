import Foundation
import Histogram
import NIOCore

// MARK: - Time

/// Monotonic nanoseconds (CLOCK_MONOTONIC, the same clock in every thread of this process).
@inline(__always)
func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

func makeLatencyHistogram() -> Histogram<UInt64> {
    // Microseconds, 1 µs .. 120 s, three significant digits.
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
}

extension Histogram<UInt64> {
    /// Records a latency given in nanoseconds, in microseconds (at least 1).
    @inline(__always)
    mutating func recordNanos(_ ns: UInt64) {
        _ = record(Swift.max(1, Swift.min(ns / 1000, 120_000_000)))
    }

    /// Percentiles in milliseconds, for text and JSON.
    func summary() -> [String: Any] {
        guard totalCount > 0 else { return ["count": 0] }
        func ms(_ p: Double) -> Double { Double(valueAtPercentile(p)) / 1000 }
        return [
            "count": Int(totalCount),
            "p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p999_ms": ms(99.9),
            "max_ms": Double(max) / 1000, "mean_ms": mean / 1000,
        ]
    }

    func line() -> String {
        guard totalCount > 0 else { return "n=0" }
        func ms(_ p: Double) -> String { fmtMs(Double(valueAtPercentile(p)) / 1000) }
        return "n=\(totalCount) p50 \(ms(50)) p90 \(ms(90)) p99 \(ms(99)) p99.9 \(ms(99.9)) max \(fmtMs(Double(max) / 1000)) ms"
    }
}

func fmtMs(_ v: Double) -> String { String(format: v < 10 ? "%.3f" : "%.1f", v) }

// MARK: - Wire markers

/// Byte patterns looked up in received frames. Markers are plain ASCII inside a JSON string, so any server's JSON
/// serialiser leaves them intact: `~B~phase:sender:seq:tSend~` (room message) and
/// `~S~phase:pair:seq:tHop:tStart~` (signal).
enum Marker {
    static let tilde = UInt8(ascii: "~")

    /// Finds `~<tag>~` and parses up to `count` colon-separated unsigned integers ending at `~`.
    static func parse(_ buf: ByteBuffer, tag: UInt8, into out: inout (UInt64, UInt64, UInt64, UInt64, UInt64)) -> Int {
        buf.withUnsafeReadableBytes { raw -> Int in
            let n = raw.count
            var i = 0
            while i + 2 < n {
                if raw[i] == tilde && raw[i + 1] == tag && raw[i + 2] == tilde {
                    var j = i + 3
                    var fields = 0
                    var cur: UInt64 = 0
                    var digits = 0
                    while j < n && fields < 5 {
                        let c = raw[j]
                        if c >= 48 && c <= 57 {
                            cur = cur &* 10 &+ UInt64(c - 48)
                            digits += 1
                        } else if c == UInt8(ascii: ":") || c == tilde {
                            guard digits > 0 else { return fields }
                            switch fields {
                            case 0: out.0 = cur
                            case 1: out.1 = cur
                            case 2: out.2 = cur
                            case 3: out.3 = cur
                            default: out.4 = cur
                            }
                            fields += 1
                            cur = 0
                            digits = 0
                            if c == tilde { return fields }
                        } else {
                            return fields
                        }
                        j += 1
                    }
                    return fields
                }
                i += 1
            }
            return 0
        }
    }
}

/// A plausible 1.5 KB-ish SDP body (JSON-escaped: `\r\n` is written as the 4 characters `\\r\\n`).
func makeSDP(size: Int) -> String {
    let lines = [
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed", "a=msid-semantic: WMS stream", "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:EsAw", "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 DA:7B:57:DC:28:CE:04:4F:31:79:85:C4:31:67:EB:27:58:29:ED:77:2A:0D:24:AE:ED:AD:30:BC:BD:F1:9C:02",
        "a=setup:actpass", "a=mid:0", "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=sendrecv",
        "a=msid:stream track0", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1", "a=ssrc:3570614608 cname:4TOk42mSjXCkVIa6",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103", "c=IN IP4 0.0.0.0", "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 ccm fir", "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    ]
    var s = ""
    var k = 0
    while s.utf8.count < size {
        s += lines[k % lines.count] + "\\r\\n"
        k += 1
    }
    return String(s.utf8.prefix(size))!
}

// MARK: - /proc sampling

struct ProcSample {
    var cpuTicks: UInt64  // utime + stime
    var rssKB: UInt64
}

let clockTicksPerSecond = UInt64(sysconf(Int32(_SC_CLK_TCK)))

func readProc(pid: Int32) -> ProcSample? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // fields[0] = state (field 3): utime = field 14, stime = field 15.
    guard fields.count > 13, let ut = UInt64(fields[11]), let st = UInt64(fields[12]) else { return nil }
    var rss: UInt64 = 0
    if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
    }
    return ProcSample(cpuTicks: ut + st, rssKB: rss)
}

/// Bytes each process has received on its TCP connections to the given local Redis port (from `ss -tinp`),
/// summed per pid. Connections that closed in between are not counted.
func redisBytesReceived(port: Int) -> [Int32: UInt64] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["ss", "-tinpH", "dport = :\(port)"]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return [:] }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    var result: [Int32: UInt64] = [:]
    var currentPid: Int32?
    for line in text.split(separator: "\n") {
        if let r = line.range(of: "pid=") {
            let digits = line[r.upperBound...].prefix { $0.isNumber }
            currentPid = Int32(digits)
        }
        if let r = line.range(of: "bytes_received:"), let pid = currentPid {
            let digits = line[r.upperBound...].prefix { $0.isNumber }
            result[pid, default: 0] += UInt64(digits) ?? 0
        }
    }
    return result
}

func machineFacts() -> [String: Any] {
    var model = "unknown"
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            model = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? model
            break
        }
    }
    var memKB: UInt64 = 0
    if let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
        for line in info.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            memKB = UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
    }
    return ["nproc": ProcessInfo.processInfo.activeProcessorCount, "cpu_model": model, "mem_total_mb": Int(memKB / 1024)]
}
