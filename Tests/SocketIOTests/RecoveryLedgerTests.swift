import Testing

@testable import SocketIO

/// The pieces of recovery across nodes that need no Redis: stream ids, the records and who they would have
/// reached (a replay must deliver exactly what the socket would have received).
@Suite("Recovery ledger: offsets and records")
struct RecoveryLedgerTests {
    @Test func streamIdsParseAsRedisWritesThem() {
        #expect(StreamOffset("1796314612601-0") == StreamOffset(milliseconds: 1_796_314_612_601, sequence: 0))
        #expect(StreamOffset("0-0") == StreamOffset(milliseconds: 0, sequence: 0))
        #expect(StreamOffset("12-34")?.description == "12-34")
        for bad in ["", "-", "1-", "-1", "01-1", "1-01", "1-2-3", "a-1", "1-b", "+1-1", " 1-1", "1-1 ", "1.5-1",
                    "99999999999999999999999-1", "abcdefgh-12"] {
            #expect(StreamOffset(bad) == nil, "\(bad)")
        }
    }

    @Test func streamIdsOrderByTimeThenSequence() {
        let ids = ["5-1", "4-9", "5-0", "10-0", "4-10"].compactMap(StreamOffset.init(_:)).sorted()
        #expect(ids.map(\.description) == ["4-9", "4-10", "5-0", "5-1", "10-0"])
    }

    @Test func aPidCarriesItsSocketIdAfter144RandomBits() {
        let socket = "AbCdEfGhIjKlMnOpQrSt"
        let pid = RecoveryRecord.makePid(socket: socket)
        #expect(pid.utf8.count == 44)
        #expect(RecoveryRecord.socket(inPid: pid) == socket)
        #expect(RecoveryRecord.makePid(socket: socket) != pid)
        #expect(RecoveryRecord.socket(inPid: "short") == nil)
        #expect(RecoveryRecord.socket(inPid: pid + "x") == nil)
    }

    @Test func aRecordRoundTripsThroughJSON() throws {
        let record = RecoveryRecord(
            socket: "s1", pid: "p", rooms: ["s1": StreamOffset("10-0")!, "room \"a\"": StreamOffset("12-3")!],
            since: StreamOffset("10-0")!, state: .object([("names", .object([("room \"a\"", .string("Ann"))]))]))
        let back = try #require(RecoveryRecord(json: record.json, pid: "p"))
        #expect(back == record)
        #expect(RecoveryRecord(json: "{}", pid: "p") == nil)
        #expect(RecoveryRecord(json: #"{"sid":"s","rooms":{"r":"x"},"since":"1-0","state":null}"#, pid: "p") == nil)
    }

    /// Joined `a` at 10-0 and `b` at 20-0, connected at 5-0: an entry reaches it when it was in a target room
    /// (any room for a broadcast to all) before the entry, and in no excluded room then.
    @Test func aRecordReceivesWhatItsJoinsAllowed() {
        let record = RecoveryRecord(
            socket: "me", pid: "p", rooms: ["me": StreamOffset("5-0")!, "a": StreamOffset("10-0")!, "b": StreamOffset("20-0")!],
            since: StreamOffset("5-0")!, state: .null)
        func receives(_ id: String, _ rooms: [Room], except: [Room] = []) -> Bool {
            record.receives(StreamOffset(id)!, options: BroadcastOptions(rooms: rooms, except: except))
        }
        #expect(receives("11-0", ["a"]))
        #expect(!receives("10-0", ["a"]))  // the entry its join mark names went out before the join
        #expect(!receives("9-0", ["a"]))
        #expect(!receives("15-0", ["b"]))
        #expect(receives("15-0", ["b", "a"]))
        #expect(receives("21-0", ["b"]))
        #expect(!receives("21-0", ["c"]))
        #expect(receives("6-0", ["me"]))  // a signal to its id
        #expect(!receives("21-0", ["a"], except: ["me"]))  // its own message
        #expect(!receives("21-0", ["a"], except: ["b"]))
        #expect(receives("15-0", ["a"], except: ["b"]))  // not yet in b then
        #expect(receives("6-0", []))
        #expect(!receives("5-0", []))
        #expect(!record.receives(StreamOffset("30-0")!, options: BroadcastOptions(rooms: ["a"], flags: BroadcastFlags(local: true))))
    }
}
