import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Synchronization

/// `signal-bench`: a load generator for Socket.IO signaling servers that speak the seed's events.
@main
struct SignalBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "signal-bench",
        abstract: "Load generator for Socket.IO (Engine.IO v4 over WebSocket) signaling servers.",
        discussion: """
            Phases (--phases, in this order): connect (connect+join --clients at --connect-rate), baseline (the \
            clients silent for --duration: servers' CPU without events), broadcast (room \
            messages at --rate for --duration), saturate (closed loop, --window messages in flight per client), \
            signal (offer/answer/ICE rounds between two clients of a room on different nodes, at --signal-rate), \
            idle (extra clients on --idle-url ramped to each of --idle-counts; RSS of the --rss process). \
            --watch name=pid samples utime+stime (and VmRSS) of server processes to report CPU per event.
            """)

    @Option(name: .customLong("url"), help: "Server URL, repeatable; clients are spread over them.")
    var urls: [String] = ["http://127.0.0.1:4000"]
    @Option(help: "Comma-separated phases: connect,baseline,broadcast,saturate,signal,idle.")
    var phases = "connect,broadcast,saturate,signal"
    @Option(help: "Working clients (connect/broadcast/saturate/signal).") var clients = 200
    @Option(help: "Clients per room.") var roomSize = 4
    @Option(help: "mixed: a room's members alternate over the URLs; local: a whole room on one URL.")
    var layout = "mixed"
    @Option(help: "Connects+joins per second.") var connectRate = 200.0
    @Option(help: "Handshakes in flight at most.") var maxConnecting = 64
    @Option(help: "Room messages per second, all clients together (broadcast phase).") var rate = 400.0
    @Option(help: "Seconds of the broadcast and signal phases.") var duration = 10.0
    @Option(help: "Seconds of the saturate phase.") var saturateDuration = 10.0
    @Option(help: "Messages in flight per client at saturation.") var window = 4
    @Option(help: "Bytes of chat content per message.") var messageSize = 100
    @Option(help: "Offer/answer/ICE rounds per second, all pairs together.") var signalRate = 100.0
    @Option(help: "Bytes of SDP in offers and answers.") var sdpSize = 1500
    @Option(help: "Idle phase: cumulative connection counts to measure at.") var idleCounts = "1000,5000"
    @Option(help: "Idle phase: URL (default: the first --url).") var idleUrl: String?
    @Option(help: "Idle phase: connects+joins per second.") var idleConnectRate = 500.0
    @Option(help: "Idle phase: seconds to wait before sampling RSS.") var idleSettle = 3.0
    @Option(name: .customLong("watch"), help: "name=pid of a server process to sample, repeatable.")
    var watch: [String] = []
    @Option(help: "Idle phase: the watched name whose RSS is reported per connection.") var rss: String?
    @Option(help: "Redis port: report bytes each watched process receives from Redis (ss -tinp).")
    var redisPort: Int?
    @Option(help: "Event loop threads of the load generator.") var threads = 1
    @Option(help: "Relayed ICE event to count: ice_candidate (ours, python-socketio) or ice-candidate (the seed's).")
    var iceEvent = "ice_candidate"
    @Option(help: "Seconds to wait for late deliveries after a phase.") var drainTimeout = 10.0
    @Option(help: "Connect/join timeout, seconds.") var connectTimeout = 15.0
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(help: "Label of the implementation under test.") var label = "server"
    @Option(help: "Seconds between progress lines (0: none).") var progressInterval = 1.0
    @Flag(help: "Exit with status 1 if any delivery or signal was lost or any error was seen (for CI smoke runs).")
    var failOnLoss = false

    func run() throws {
        let endpoints = try urls.map { u -> Endpoint in
            guard let e = Endpoint(u) else { throw ValidationError("bad URL \(u)") }
            return e
        }
        var watched: [(String, Int32)] = []
        for w in watch {
            let parts = w.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let pid = Int32(parts[1]) else { throw ValidationError("--watch wants name=pid") }
            watched.append((String(parts[0]), pid))
        }
        let bench = Bench(options: self, endpoints: endpoints, watched: watched)
        try bench.run()
    }
}

/// The driver: runs on the main thread, paces connects, starts and stops phases on every loop, collects results.
final class Bench: @unchecked Sendable {
    let o: SignalBench
    let endpoints: [Endpoint]
    let watched: [(String, Int32)]
    let group: MultiThreadedEventLoopGroup
    let lcs: [LoopContext]
    let config: ClientConfig
    var mainClients: [SIOClient] = []
    let registry = Registry()
    var idleClients: [SIOClient] = []
    var phaseId: UInt64 = 0
    var connectFailed = 0
    var results: [[String: Any]] = []
    let inflight = Atomic<Int>(0)
    let started = Date()

    init(options: SignalBench, endpoints: [Endpoint], watched: [(String, Int32)]) {
        o = options
        self.endpoints = endpoints
        self.watched = watched
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.threads))
        var loops: [LoopContext] = []
        for (i, loop) in group.makeIterator().enumerated() {
            loops.append(LoopContext(loop: loop, seed: UInt64(i + 1) &* 0x1234_5678_9ABC_DEF1 ^ UInt64(getpid())))
        }
        lcs = loops
        config = ClientConfig(
            roomSize: options.roomSize,
            contentPadding: String(repeating: "x", count: max(0, options.messageSize - 40)),
            sdp: makeSDP(size: max(16, options.sdpSize - 40)),
            candidate: "candidate:842163049 1 udp 1677729535 192.0.2.10 54400 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag EsAw network-cost 999",
            connectTimeout: .milliseconds(Int64(options.connectTimeout * 1000)),
            iceHyphen: options.iceEvent == "ice-candidate")
    }

    func log(_ s: String) {
        FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
    }

    func run() throws {
        let phases = o.phases.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        log("signal-bench [\(o.label)]: \(o.clients) clients, rooms of \(o.roomSize) (\(o.layout)), urls \(endpoints), phases \(phases.joined(separator: ","))")
        // Working clients: client i is in room i / roomSize, on loop i % threads.
        for i in 0..<o.clients {
            let room = i / o.roomSize
            let ep = o.layout == "local" ? endpoints[room % endpoints.count] : endpoints[i % endpoints.count]
            let c = SIOClient(
                index: i, roomBase: room * o.roomSize, roomName: "bench-\(room)", endpoint: ep,
                lc: lcs[i % lcs.count], config: config, registry: registry)
            mainClients.append(c)
        }
        registry.clients = mainClients
        let perRoom = o.roomSize
        for lc in lcs {
            let mine = mainClients.filter { $0.lc === lc }
            try lc.loop.submit {
                lc.clients = mine
                lc.clientsPerRoom = perRoom
            }.wait()
        }
        let needsConnect = phases.contains { ["connect", "baseline", "broadcast", "saturate", "signal"].contains($0) }
        if needsConnect { phaseConnect(measured: phases.contains("connect")) }
        for p in phases {
            switch p {
            case "connect": break
            case "baseline": phaseBaseline()
            case "broadcast": phaseBroadcast()
            case "saturate": phaseSaturate()
            case "signal": phaseSignal()
            case "idle": phaseIdle()
            default: log("unknown phase \(p)")
            }
        }
        // Close everything.
        for c in mainClients + idleClients { c.lc.loop.execute { c.close() } }
        Thread.sleep(forTimeInterval: 0.5)
        report()
        try? group.syncShutdownGracefully()
        if o.failOnLoss {
            let bad = results.filter { r in
                ((r["lost"] as? Int) ?? 0) > 0 || ((r["errors"] as? Int) ?? 0) > 0 || ((r["duplicates"] as? Int) ?? 0) > 0
                    || ((r["failed"] as? Int) ?? 0) > 0
            }
            if !bad.isEmpty || connectFailed > 0 {
                log(
                    "signal-bench: \(connectFailed) clients failed to join; losses or errors in: "
                        + bad.map { $0["phase"] as? String ?? "?" }.joined(separator: ", "))
                throw ExitCode(1)
            }
        }
    }

    // MARK: Sampling

    struct Snapshot {
        var time: UInt64
        var procs: [String: ProcSample]
        var selfCPU: UInt64
        var redisBytes: [Int32: UInt64]
    }

    func snapshot() -> Snapshot {
        var procs: [String: ProcSample] = [:]
        for (name, pid) in watched { if let s = readProc(pid: pid) { procs[name] = s } }
        let me = readProc(pid: getpid())?.cpuTicks ?? 0
        let rb = o.redisPort.map { redisBytesReceived(port: $0) } ?? [:]
        return Snapshot(time: nowNanos(), procs: procs, selfCPU: me, redisBytes: rb)
    }

    func ticksToMs(_ t: UInt64) -> Double { Double(t) * 1000 / Double(clockTicksPerSecond) }

    /// CPU (ms) of each watched process, servers total, load generator; Redis bytes received per process.
    func costs(_ a: Snapshot, _ b: Snapshot, events: Int, eventName: String) -> [String: Any] {
        var cpu: [String: Double] = [:]
        var total = 0.0
        for (name, _) in watched {
            guard let x = a.procs[name], let y = b.procs[name] else { continue }
            let ms = ticksToMs(y.cpuTicks &- x.cpuTicks)
            cpu[name] = ms
            total += ms
        }
        var d: [String: Any] = [
            "cpu_ms": cpu, "cpu_ms_servers_total": total,
            "cpu_ms_loadgen": ticksToMs(b.selfCPU &- a.selfCPU),
            "cost_events": events, "cost_event": eventName,
        ]
        if events > 0, !watched.isEmpty {
            d["cpu_us_per_event"] = total * 1000 / Double(events)
            var per: [String: Double] = [:]
            for (k, v) in cpu { per[k] = v * 1000 / Double(events) }
            d["cpu_us_per_event_by_process"] = per
        }
        if o.redisPort != nil {
            var rb: [String: Int] = [:]
            for (name, pid) in watched {
                if let y = b.redisBytes[pid] { rb[name] = Int(y &- (a.redisBytes[pid] ?? 0)) }
            }
            d["redis_bytes_received"] = rb
        }
        return d
    }

    // MARK: Collecting

    func collectStats() -> PhaseStats {
        var s = PhaseStats()
        for lc in lcs { s.merge(try! lc.loop.submit { lc.stats }.wait()) }
        return s
    }

    struct Delivery { var expected = 0, received = 0, lost = 0, duplicates = 0, reorders = 0 }

    /// Exact room-message accounting over the working clients: every joined member should get every message of
    /// its room once, in the sender's order.
    func deliveryAccounting() -> Delivery {
        var all: [ClientCounters] = []
        var joined: [Bool] = Array(repeating: false, count: mainClients.count)
        for lc in lcs {
            let (cs, js) = try! lc.loop.submit { (lc.counters(), lc.clients.map { ($0.index, $0.joined) }) }.wait()
            all += cs
            for (i, j) in js { joined[i] = j }
        }
        var sentBy = Array(repeating: 0, count: mainClients.count)
        for c in all { sentBy[c.index] = c.sent }
        var d = Delivery()
        for c in all where joined[c.index] {
            let base = (c.index / o.roomSize) * o.roomSize
            for slot in 0..<o.roomSize where base + slot < mainClients.count {
                let exp = sentBy[base + slot]
                let got = c.receivedFrom[slot]
                d.expected += exp
                d.received += got
                d.lost += max(0, exp - got)
                d.duplicates += max(0, got - exp)
            }
            d.reorders += c.reorders
        }
        return d
    }

    func beginPhase() {
        phaseId += 1
        let id = phaseId
        for lc in lcs { try! lc.loop.submit { lc.resetPhase(id) }.wait() }
    }

    /// Sleeps `seconds`, printing a progress line every progressInterval.
    func runFor(_ seconds: Double, phase: String, t0: UInt64) {
        let end = Date().addingTimeInterval(seconds)
        let step = o.progressInterval > 0 ? o.progressInterval : seconds
        while Date() < end {
            Thread.sleep(forTimeInterval: min(step, end.timeIntervalSinceNow))
            if o.progressInterval > 0 { progress(phase: phase, t0: t0) }
        }
    }

    func progress(phase: String, t0: UInt64) {
        var sent = 0, deliv = 0, sig = 0, errs = 0
        for lc in lcs {
            let s = try! lc.loop.submit {
                (
                    lc.stats.messagesSent, lc.stats.deliveries,
                    lc.stats.offersReceived + lc.stats.answersReceived + lc.stats.iceReceived, lc.stats.errorCount
                )
            }.wait()
            sent += s.0
            deliv += s.1
            sig += s.2
            errs += s.3
        }
        let el = Double(nowNanos() - t0) / 1e9
        log(
            String(
                format: "[%@ %6.1fs] %@ t=%.1fs sent %d delivered %d (%.0f/s) signals %d errors %d", o.label,
                Date().timeIntervalSince(started), phase, el, sent, deliv, Double(deliv) / el, sig, errs))
    }

    // MARK: Phases

    /// Connects clients paced at `rate` per second, at most maxConnecting handshakes at once; waits for all.
    func connect(_ list: [SIOClient], rate: Double, phase: String) -> (ok: Int, failed: Int) {
        let ok = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        let t0 = nowNanos()
        var lastProgress = Date()
        for (k, c) in list.enumerated() {
            let target = t0 + UInt64(Double(k) * 1e9 / rate)
            let now = nowNanos()
            if target > now { Thread.sleep(forTimeInterval: Double(target - now) / 1e9) }
            while inflight.load(ordering: .relaxed) >= o.maxConnecting { Thread.sleep(forTimeInterval: 0.001) }
            inflight.add(1, ordering: .relaxed)
            let startAt = target
            c.lc.loop.execute { [self] in
                c.start(startedAt: startAt).whenComplete { [self] r in
                    inflight.subtract(1, ordering: .relaxed)
                    switch r {
                    case .success: ok.add(1, ordering: .relaxed)
                    case .failure: failed.add(1, ordering: .relaxed)
                    }
                }
            }
            if o.progressInterval > 0, Date().timeIntervalSince(lastProgress) >= o.progressInterval {
                lastProgress = Date()
                log(
                    String(
                        format: "[%@ %6.1fs] %@ started %d joined %d failed %d", o.label,
                        Date().timeIntervalSince(started), phase, k + 1, ok.load(ordering: .relaxed),
                        failed.load(ordering: .relaxed)))
            }
        }
        while ok.load(ordering: .relaxed) + failed.load(ordering: .relaxed) < list.count {
            Thread.sleep(forTimeInterval: 0.005)
        }
        return (ok.load(ordering: .relaxed), failed.load(ordering: .relaxed))
    }

    func phaseConnect(measured: Bool) {
        beginPhase()
        let a = snapshot()
        let (ok, failed) = connect(mainClients, rate: o.connectRate, phase: "connect")
        connectFailed = failed
        let b = snapshot()
        // Let the user_joined broadcasts land before counting them.
        Thread.sleep(forTimeInterval: 0.5)
        let s = collectStats()
        let secs = Double(b.time - a.time) / 1e9
        // Pairs for the signal phase: even slot with the next slot of the same room.
        var sids: [Int: String] = [:]
        for lc in lcs {
            for (i, sid) in try! lc.loop.submit({ lc.clients.map { ($0.index, $0.sid) } }).wait() { sids[i] = sid }
        }
        for c in mainClients {
            let slot = c.index % o.roomSize
            let peer = slot % 2 == 0 ? c.index + 1 : c.index - 1
            guard peer < mainClients.count, peer / o.roomSize == c.index / o.roomSize, let ps = sids[peer], !ps.isEmpty
            else { continue }
            let initiator = slot % 2 == 0
            c.lc.loop.execute {
                c.peerSid = ps
                c.isInitiator = initiator
            }
        }
        let r: [String: Any] = [
            "phase": "connect", "clients": mainClients.count, "joined": ok, "failed": failed,
            "seconds": secs, "joins_per_s": Double(ok) / secs, "offered_rate": o.connectRate,
            "latency": s.connect.summary(), "user_joined_received": s.userJoined,
            "errors": s.errorCount, "server_errors": s.serverErrors, "error_detail": s.errorDetail,
        ].merging(costs(a, b, events: ok, eventName: "connect+join")) { x, _ in x }
        log("connect: \(ok) joined, \(failed) failed in \(String(format: "%.2f", secs)) s; latency \(s.connect.line())")
        if measured { results.append(r) }
    }

    /// Waits until every expected delivery arrived (or the drain timeout), returns the final accounting.
    func drainDeliveries() -> Delivery {
        let end = Date().addingTimeInterval(o.drainTimeout)
        var d = deliveryAccounting()
        while d.lost > 0 && Date() < end {
            Thread.sleep(forTimeInterval: 0.05)
            d = deliveryAccounting()
        }
        return d
    }

    func roomPhaseResult(
        _ name: String, a: Snapshot, b: Snapshot, activeSeconds: Double, activeDeliveries: Int, d: Delivery
    ) -> [String: Any] {
        let s = collectStats()
        let secs = Double(b.time - a.time) / 1e9
        var r: [String: Any] = [
            "phase": name, "seconds": secs, "active_seconds": activeSeconds,
            "messages_sent": s.messagesSent, "deliveries": s.deliveries, "expected_deliveries": d.expected,
            "lost": d.lost, "duplicates": d.duplicates, "reordered": d.reorders, "stale": s.staleDeliveries,
            "misrouted": s.misrouted, "deliveries_per_s": Double(activeDeliveries) / activeSeconds,
            "deliveries_in_active_window": activeDeliveries,
            "messages_per_s": Double(s.messagesSent) / activeSeconds,
            "latency": s.delivery.summary(), "errors": s.errorCount, "server_errors": s.serverErrors, "error_detail": s.errorDetail,
        ]
        r.merge(costs(a, b, events: s.deliveries, eventName: "room delivery")) { x, _ in x }
        log(
            "\(name): sent \(s.messagesSent), delivered \(s.deliveries)/\(d.expected) (lost \(d.lost), dup \(d.duplicates), reordered \(d.reorders)), "
                + String(format: "%.0f deliveries/s; ", Double(activeDeliveries) / activeSeconds) + "latency \(s.delivery.line())"
        )
        return r
    }

    /// The working clients connected and silent for --duration: the servers' CPU that is not caused by events
    /// (heartbeats, pings, timers), to put the per-event costs in proportion.
    func phaseBaseline() {
        beginPhase()
        let a = snapshot()
        runFor(o.duration, phase: "baseline", t0: a.time)
        let b = snapshot()
        var r: [String: Any] = ["phase": "baseline", "seconds": Double(b.time - a.time) / 1e9]
        r.merge(costs(a, b, events: 0, eventName: "second")) { x, _ in x }
        if let total = r["cpu_ms_servers_total"] as? Double {
            r["cpu_ms_per_s"] = total / (Double(b.time - a.time) / 1e9)
            log(String(format: "baseline: servers used %.1f ms of CPU per second with the clients connected and silent", total / (Double(b.time - a.time) / 1e9)))
        }
        results.append(r)
    }

    func phaseBroadcast() {
        beginPhase()
        let a = snapshot()
        let total = Double(mainClients.count)
        for lc in lcs {
            let rate = o.rate * Double(lc.clients.count) / total
            try! lc.loop.submit { lc.startPacer(rate: rate, senders: lc.clients, mode: .broadcast) }.wait()
        }
        runFor(o.duration, phase: "broadcast", t0: a.time)
        for lc in lcs { try! lc.loop.submit { lc.stop() }.wait() }
        let active = Double(nowNanos() - a.time) / 1e9
        let activeDeliveries = collectStats().deliveries
        let d = drainDeliveries()
        let b = snapshot()
        var r = roomPhaseResult("broadcast", a: a, b: b, activeSeconds: active, activeDeliveries: activeDeliveries, d: d)
        r["offered_messages_per_s"] = o.rate
        r["offered_deliveries_per_s"] = o.rate * Double(o.roomSize)
        results.append(r)
    }

    func phaseSaturate() {
        beginPhase()
        let a = snapshot()
        for lc in lcs { try! lc.loop.submit { lc.startSaturation(window: self.o.window) }.wait() }
        runFor(o.saturateDuration, phase: "saturate", t0: a.time)
        for lc in lcs { try! lc.loop.submit { lc.stop() }.wait() }
        let active = Double(nowNanos() - a.time) / 1e9
        let activeDeliveries = collectStats().deliveries
        let d = drainDeliveries()
        let b = snapshot()
        var r = roomPhaseResult("saturate", a: a, b: b, activeSeconds: active, activeDeliveries: activeDeliveries, d: d)
        r["window"] = o.window
        results.append(r)
    }

    func phaseSignal() {
        beginPhase()
        let a = snapshot()
        var initiators: [LoopContext: [SIOClient]] = [:]
        var count = 0
        for lc in lcs {
            let list = try! lc.loop.submit { lc.clients.filter { $0.isInitiator && !$0.peerSid.isEmpty && $0.joined } }.wait()
            initiators[lc] = list
            count += list.count
        }
        for lc in lcs {
            let list = initiators[lc] ?? []
            let rate = count > 0 ? o.signalRate * Double(list.count) / Double(count) : 0
            try! lc.loop.submit { lc.startPacer(rate: rate, senders: list, mode: .signal) }.wait()
        }
        runFor(o.duration, phase: "signal", t0: a.time)
        for lc in lcs { try! lc.loop.submit { lc.stop() }.wait() }
        let active = Double(nowNanos() - a.time) / 1e9
        let end = Date().addingTimeInterval(o.drainTimeout)
        var s = collectStats()
        while (s.offersReceived < s.offersSent || s.answersReceived < s.answersSent || s.iceReceived < s.iceSent)
            && Date() < end
        {
            Thread.sleep(forTimeInterval: 0.05)
            s = collectStats()
        }
        let b = snapshot()
        let relayed = s.offersReceived + s.answersReceived + s.iceReceived
        let sent = s.offersSent + s.answersSent + s.iceSent
        var r: [String: Any] = [
            "phase": "signal", "seconds": Double(b.time - a.time) / 1e9, "active_seconds": active,
            "pairs": count, "offered_rounds_per_s": o.signalRate, "sdp_bytes": o.sdpSize,
            "offers_sent": s.offersSent, "offers_received": s.offersReceived,
            "answers_sent": s.answersSent, "answers_received": s.answersReceived,
            "ice_sent": s.iceSent, "ice_received": s.iceReceived, "ice_other_name_received": s.iceHyphen,
            "rounds_completed": s.iceReceived, "signals_relayed": relayed, "lost": max(0, sent - relayed),
            "stale": s.staleDeliveries, "signals_per_s": Double(relayed) / active,
            "latency": s.signalHop.summary(), "round_trip_latency": s.signalRTT.summary(),
            "offer_latency": s.offerHop.summary(), "answer_latency": s.answerHop.summary(),
            "ice_latency": s.iceHop.summary(),
            "errors": s.errorCount, "server_errors": s.serverErrors, "error_detail": s.errorDetail,
        ]
        r.merge(costs(a, b, events: relayed, eventName: "relayed signal")) { x, _ in x }
        if let cpu = r["cpu_ms_servers_total"] as? Double, s.iceReceived > 0 {
            r["cpu_us_per_round"] = cpu * 1000 / Double(s.iceReceived)
        }
        log(
            "signal: \(s.offersSent) rounds, relayed \(relayed)/\(sent) (lost \(max(0, sent - relayed))); hop \(s.signalHop.line()); offer→answer \(s.signalRTT.line()); offer \(s.offerHop.line()); answer \(s.answerHop.line()); ice \(s.iceHop.line())"
        )
        results.append(r)
    }

    func phaseIdle() {
        let counts = o.idleCounts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard let maxCount = counts.max(), let ep = Endpoint(o.idleUrl ?? o.urls[0]) else { return }
        beginPhase()
        let base = 1_000_000
        for i in 0..<maxCount {
            let room = i / o.roomSize
            idleClients.append(
                SIOClient(
                    index: base + i, roomBase: base + room * o.roomSize, roomName: "idle-\(room)", endpoint: ep,
                    lc: lcs[i % lcs.count], config: config, registry: Registry()))
        }
        Thread.sleep(forTimeInterval: 1)
        let baseline = snapshot()
        var steps: [[String: Any]] = []
        var done = 0
        var prevRSS = baseline.procs[o.rss ?? ""]?.rssKB ?? 0
        for target in counts.sorted() where target > done {
            let a = snapshot()
            let (ok, failed) = connect(Array(idleClients[done..<target]), rate: o.idleConnectRate, phase: "idle→\(target)")
            let b = snapshot()
            log("idle: \(target) connections (\(ok) joined, \(failed) failed in this step); settling \(o.idleSettle) s")
            Thread.sleep(forTimeInterval: o.idleSettle)
            let c = snapshot()
            var step: [String: Any] = [
                "connections": target, "joined": ok, "failed": failed,
                "seconds": Double(b.time - a.time) / 1e9, "joins_per_s": Double(ok) / (Double(b.time - a.time) / 1e9),
            ]
            var rss: [String: Int] = [:]
            for (name, _) in watched { rss[name] = Int(c.procs[name]?.rssKB ?? 0) }
            step["rss_kb"] = rss
            if let name = o.rss, let r0 = baseline.procs[name]?.rssKB, let r1 = c.procs[name]?.rssKB {
                step["rss_kb_baseline"] = Int(r0)
                step["kb_per_connection"] = (Double(r1) - Double(r0)) / Double(target)
                step["kb_per_connection_marginal"] = (Double(r1) - Double(prevRSS)) / Double(target - done)
                prevRSS = r1
            }
            step.merge(costs(a, b, events: ok, eventName: "connect+join")) { x, _ in x }
            steps.append(step)
            if let k = step["kb_per_connection"] as? Double {
                log(String(format: "idle: %d connections, %.2f KB RSS per connection", target, k))
            }
            done = target
        }
        let s = collectStats()
        results.append([
            "phase": "idle", "url": ep.description, "steps": steps, "latency": s.connect.summary(),
            "errors": s.errorCount, "server_errors": s.serverErrors, "error_detail": s.errorDetail, "user_joined_received": s.userJoined,
        ])
    }

    // MARK: Report

    func report() {
        var out = "\n== signal-bench results: \(o.label) ==\n"
        for r in results {
            let name = r["phase"] as? String ?? "?"
            out += "\n[\(name)]\n"
            func num(_ k: String) -> String {
                if let v = r[k] as? Double { return String(format: "%.1f", v) }
                if let v = r[k] as? Int { return "\(v)" }
                return "-"
            }
            func lat(_ k: String) -> String {
                guard let l = r[k] as? [String: Any], let n = l["count"] as? Int, n > 0 else { return "n/a" }
                let f = { (x: String) in fmtMs(l[x] as? Double ?? 0) }
                return "p50 \(f("p50_ms")) p90 \(f("p90_ms")) p99 \(f("p99_ms")) p99.9 \(f("p999_ms")) max \(f("max_ms")) ms (n=\(n))"
            }
            switch name {
            case "baseline":
                out += "  servers' CPU with \(mainClients.count) silent clients: \(num("cpu_ms_per_s")) ms per second\n"
            case "connect":
                out += "  joined \(num("joined"))/\(num("clients")) at \(num("joins_per_s"))/s, failed \(num("failed")), errors \(num("errors"))\n"
                out += "  connect+join latency \(lat("latency"))\n"
            case "broadcast", "saturate":
                out += "  messages \(num("messages_sent")) (\(num("messages_per_s"))/s), deliveries \(num("deliveries")) (\(num("deliveries_per_s"))/s)\n"
                out += "  lost \(num("lost")), duplicates \(num("duplicates")), reordered \(num("reordered")), errors \(num("errors"))\n"
                out += "  delivery latency \(lat("latency"))\n"
            case "signal":
                out += "  rounds \(num("offers_sent")), relayed \(num("signals_relayed")) (\(num("signals_per_s"))/s), lost \(num("lost")), errors \(num("errors"))\n"
                out += "  hop latency \(lat("latency"))\n  offer→answer \(lat("round_trip_latency"))\n"
            case "idle":
                for st in r["steps"] as? [[String: Any]] ?? [] {
                    let k = st["kb_per_connection"] as? Double ?? .nan
                    let m = st["kb_per_connection_marginal"] as? Double ?? .nan
                    out += String(
                        format: "  %d connections: %.2f KB RSS/conn (marginal %.2f), joins %.0f/s, CPU %.0f µs/join\n",
                        st["connections"] as? Int ?? 0, k, m, st["joins_per_s"] as? Double ?? 0,
                        st["cpu_us_per_event"] as? Double ?? .nan)
                }
                out += "  connect+join latency \(lat("latency"))\n"
            default: break
            }
            if let cpu = r["cpu_us_per_event"] as? Double {
                out += String(format: "  CPU %.1f µs per %@ (servers %.0f ms, load generator %.0f ms)\n", cpu,
                    r["cost_event"] as? String ?? "event", r["cpu_ms_servers_total"] as? Double ?? 0,
                    r["cpu_ms_loadgen"] as? Double ?? 0)
            }
            if let rb = r["redis_bytes_received"] as? [String: Int], !rb.isEmpty {
                out += "  bytes received from Redis: " + rb.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
            }
        }
        print(out)
        if let path = o.json {
            let doc: [String: Any] = [
                "label": o.label, "machine": machineFacts(), "date": ISO8601DateFormatter().string(from: Date()),
                "urls": o.urls, "watched": Dictionary(uniqueKeysWithValues: watched.map { ($0.0, Int($0.1)) }),
                "config": [
                    "clients": o.clients, "room_size": o.roomSize, "layout": o.layout, "rate": o.rate,
                    "duration": o.duration, "saturate_duration": o.saturateDuration, "window": o.window,
                    "message_size": o.messageSize, "signal_rate": o.signalRate, "sdp_size": o.sdpSize,
                    "connect_rate": o.connectRate, "idle_counts": o.idleCounts, "idle_connect_rate": o.idleConnectRate,
                    "threads": o.threads, "phases": o.phases,
                ],
                "phases": results,
            ]
            if let data = try? JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]) {
                _ = FileManager.default.createFile(atPath: path, contents: data)
            }
        }
    }
}

extension LoopContext: Hashable {
    static func == (a: LoopContext, b: LoopContext) -> Bool { a === b }
    func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}
