#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (Tests/Fuzz/corpus/<target>/) from the Node.js captures in
../shared/fixtures (or $SIGNAL_FIXTURES) and a few hand-written inputs taken from the unit tests.

Run from the repository root: python3 Tests/Fuzz/make_seeds.py. The output is committed, so CI does not need the
fixtures. Seeds are deduplicated, named by content hash, and kept small (libFuzzer's -max_len is 4096)."""
import base64
import glob
import hashlib
import hmac
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.environ.get("SIGNAL_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")
if not os.path.isdir(FIXTURES):
    FIXTURES = "/work/shared/fixtures"
OUT = os.path.join(ROOT, "Tests", "Fuzz", "corpus")
MAX_LEN = 4096
PER_TARGET = 80

corpora = {}


def add(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_LEN:
        return
    corpora.setdefault(target, {})[hashlib.sha1(data).hexdigest()[:16]] = data


# --- Engine.IO / Socket.IO transcripts -------------------------------------------------------------------------
ws_conversations = {}
for path in sorted(glob.glob(os.path.join(FIXTURES, "engineio", "*.json"))):
    doc = json.load(open(path))
    if not isinstance(doc, dict):
        continue
    for step in doc.get("steps", []):
        if step["kind"] == "ws" and step.get("opcode") == "text" and step.get("text") is not None:
            text = step["text"]
            if step["dir"] == "client->server":
                ws_conversations.setdefault((path, step["conn"]), []).append(text)
            if text.startswith("4"):
                add("socketio", text[1:])
                body = text[1:].lstrip("0123456789-").split(",", 1)[-1] if text[1:2] != "" else ""
                start = min([i for i in (body.find("["), body.find("{")) if i >= 0] or [-1])
                if start >= 0:
                    add("json", body[start:])
            add("polling", text)
        elif step["kind"] == "http":
            for part in ("request", "response"):
                body = step.get(part, {}).get("body_text")
                if body and step.get(part, {}).get("status", 200) == 200:
                    add("polling", body)
                    for packet in body.split("\x1e"):
                        if packet.startswith("b"):
                            add("base64", packet[1:])
                        elif packet.startswith("4"):
                            add("socketio", packet[1:])
                        elif packet.startswith("0"):
                            add("json", packet[1:])

# Unit-test inputs and edge cases.
for text in ["0", "0/admin,", '0{"token":"x"}', "1", "1/admin,", '2["message",{"a":1}]', '2/admin,17["e"]',
             "31[]", '3/admin,2["x",{"y":null}]', '4{"message":"nope"}',
             '51-["send-offer",{"_placeholder":true,"num":0}]', '61-3[{"_placeholder":true,"num":0}]',
             '510-["x"]', "5-[]", '2999999999999999["x"]', '2[1,2]', '0/a,{"b":[1.5e300,-0,1e-7]}',
             "40\r2", "40\r2" + "4" * 23]:  # ack id then a number: ambiguous, found by the fuzzer
    add("socketio", text)
for text in ['{"a":[1,2.5,-3e-7,true,false,null],"b":{"c":"\\u00e9\\ud83d\\ude00\\n"}}', "[]", "{}", '""', "0",
             "-0", "1e400", "-1e-400", "123456789012345678901234567890", "0.1", "1E+2", '"\\ud800"', '"\\udc00x"',
             '{"a":1,"a":2}', "[" * 70 + "]" * 70, ' \t\r\n[ 1 , "x" ] ', '"\\/\\b\\f\\r\\t\\"\\\\"',
             "9007199254740993", "5e-324", "1.7976931348623157e308", "[1,]", '{"a"1}', "tru", "nul"]:
    add("json", text)
for text in ["4hello\x1e2probe\x1e3\x1e6", "bAQIDBA==", "b", "1", "40\x1e42[\"x\"]", "4\x1e\x1e4", "b====",
             "bAQIDBA\x1eb/w==", "7", ""]:
    add("polling", text)
for text in ["AQIDBA==", "AQIDBA", "", "=", "A", "AB", "ABC", "/w==", "+/+/", "AQ=D", "A===", "QUJD\n"]:
    add("base64", text)

# WebSocket: each client's conversation as frame records (flags, length, payload), fragmented when long; plus
# control frames and masking.
def frame(opcode, payload, fin=True, mask=None):
    flags = opcode | (0x80 if fin else 0) | (0x40 if mask else 0)
    return bytes([flags, len(payload)]) + (mask or b"") + payload


for messages in ws_conversations.values():
    record = b""
    for text in messages:
        data = text.encode()
        pieces = [data[i:i + 200] for i in range(0, len(data), 200)] or [b""]
        for index, piece in enumerate(pieces):
            opcode = 0x1 if index == 0 else 0x0
            record += frame(opcode, piece, fin=index == len(pieces) - 1)
    add("websocket", record)
add("websocket", frame(0x1, b"40") + frame(0x9, b"ping") + frame(0x1, b"4he", fin=False) + frame(0x0, b"llo") +
    frame(0x2, b"\x01\x02") + frame(0x8, b"\x03\xe8"))
add("websocket", frame(0x1, b"2probe") + frame(0x1, b"5") + frame(0x1, b"3") + frame(0x1, b"1"))
add("websocket", frame(0x1, b"40", mask=b"\x01\x02\x03\x04") + frame(0x0, b"x") + frame(0x1, b"4" + b"a" * 250, fin=False) +
    frame(0x0, b"b" * 100))
add("websocket", frame(0x1, b"451-[\"e\",{\"_placeholder\":true,\"num\":0}]") + frame(0x2, b"\x00\x01"))

# --- Redis ---------------------------------------------------------------------------------------------------------
index = json.load(open(os.path.join(FIXTURES, "redis-adapter", "index.json")))
channels = {m["file"]: m["channel"] for m in index.get("messages", [])}
for path in sorted(glob.glob(os.path.join(FIXTURES, "redis-adapter", "*.bin"))):
    data = open(path, "rb").read()
    add("msgpack", data)
    add("cluster", data)
    channel = channels.get(os.path.basename(path), "socket.io#/#")
    add("cluster", channel)
    push = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(channel), channel.encode(), len(data), data)
    add("resp", bytes([0]) + push)
    add("resp", bytes([3]) + push)

def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)

for chunk, text in [(31, b"+OK\r\n"), (0, b"-ERR unknown command\r\n"), (1, b":42\r\n:-1\r\n"), (31, b"$-1\r\n*-1\r\n"),
                    (2, b"*0\r\n"), (5, b"*4\r\n:1\r\n*2\r\n$1\r\na\r\n*-1\r\n$-1\r\n*1\r\n*1\r\n*0\r\n"),
                    (7, b"*5\r\n+OK\r\n-ERR no\r\n:7\r\n$3\r\nabc\r\n*1\r\n$0\r\n\r\n"),
                    (4, b"*3\r\n" + bulk(b"subscribe") + bulk(b"socket.io#/#") + b":1\r\n"),
                    (9, b"*4\r\n" + bulk(b"pmessage") + bulk(b"socket.io#/#*") + bulk(b"socket.io#/#room#") + bulk(b"\x93\xa1x\x80\x80")),
                    (0, b"*2147483647\r\n"), (5, b"*1\r\n*100000000\r\n"),  # found by the fuzzer: 16 GB calloc
                    (31, b"?what\r\n"), (31, b"$abc\r\n"), (31, b":12x\r\n"), (31, b"*x\r\n"), (0, b"$5\r\nab")]:
    add("resp", bytes([chunk]) + text)

for text in ["redis://redis.internal:6380", "redis://localhost", "redis://localhost/", "redis://:s3cr%40t@127.0.0.1:7000/3",
             "redis://app:pw@h:1", "redis://pw@h", "redis://[::1]:6390/0", "redis://h:1", "localhost:6379", "http://h:1",
             "rediss://h:1", "redis://", "redis://:pw@", "redis://h:0", "redis://h:70000", "redis://h:port", "redis://h/db",
             "redis://h/-1", "redis://h?db=1", "redis://[::1", "redis://:%zz@h", "REDIS://u:p%2@[fe80::1%25eth0]:1/15"]:
    add("redisurl", text)

for data in [b'\x93\xa3abc\x83\xa4type\x02\xa4data\x92\xa1e\xc0\xa3nsp\xa1/\x83\xa5rooms\x91\xa1r\xa6except\x90\xa5flags\x80',
             b"\xd6\xff\x00\x00\x00\x01", b"\xd7\xff\x00\x00\x00\x04\x00\x00\x00\x01", b"\xc7\x0c\xff" + b"\x00" * 12,
             b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", b"\xd3\x80" + b"\x00" * 7,
             b"\xc4\x03abc", b"\xd4\x01\x02", b"\x81\x01\xc3", b"\x81\xc0\xc2", b"\xdd\xff\xff\xff\xff", b"\xc1",
             b"\x91" * 130 + b"\xc0", b"\xa3\xff\xfe\xfd"]:
    add("msgpack", data)
    add("cluster", data)
for text in ['{"type":5,"uid":"abc","requestId":"r1","rooms":["x"]}', '{"type":2,"uid":"u","opts":{"rooms":["a"],"except":[]}}',
             "socket.io#/admin#room-a#", "socket.io#/##", "socket.io#/#a#b#", "socket.io-request#/#"]:
    add("cluster", text)

# --- JWT -----------------------------------------------------------------------------------------------------------
SECRET = b"fuzz-secret"  # FuzzTargets.jwtSecret


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(header, claims):
    signing = b64url(header) + b"." + b64url(claims)
    return signing + b"." + b64url(hmac.new(SECRET, signing, hashlib.sha256).digest())


HS = b'{"alg":"HS256","typ":"JWT"}'
for claims in [b'{"sub":"alice","exp":1800000000,"rooms":["room-1"]}', b'{"sub":"bob","exp":"1600000000"}',
               b'{"nbf":1900000000}', b'{"exp":1600000000,"rooms":"all"}', b'{}', b'{"exp":1e400,"nbf":-1e400}', b"[]"]:
    add("jwt", b"\x01" + HS + b"\x00" + claims)
    add("jwt", b"\x00" + token(HS, claims))
for header in [b'{"alg":"none"}', b'{"alg":"RS256"}', b'{"alg":"HS256","alg":"none"}', b"{}"]:
    add("jwt", b"\x01" + header + b"\x00" + b'{"sub":"x"}')
add("jwt", b"\x00" + b"a.b.c")
add("jwt", b"\x00" + b"eyJhbGciOiJIUzI1NiJ9..")
add("jwt", b"\x00" + b"....")

# --- PROXY protocol (target added when the parser is merged) ------------------------------------------------------
V2 = b"\r\n\r\n\x00\r\nQUIT\n"
for data in [b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n",
             b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n", b"PROXY UNKNOWN\r\n",
             b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n", b"PROXY TCP4 1.2.3\r\n",
             b"PROXY TCP4 256.1.1.1 1.1.1.1 1 1\r\n", b"PROXY " + b"A" * 120 + b"\r\n",
             V2 + b"\x20\x00\x00\x00",  # LOCAL
             V2 + b"\x21\x11\x00\x0c" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x1f\x90\x01\xbb",  # PROXY TCP4
             V2 + b"\x21\x21\x00\x24" + bytes(range(32)) + b"\x1f\x90\x01\xbb",  # PROXY TCP6
             V2 + b"\x21\x11\x00\x14" + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + b"\x1f\x90\x01\xbb" + b"\x04\x00\x05hello",  # TLV
             V2 + b"\x21\x11\xff\xff", V2 + b"\x21\x31\x00\xd8" + b"/tmp/a".ljust(108, b"\x00") * 2]:
    add("proxy", data)

# --- write ---------------------------------------------------------------------------------------------------------
targets = sys.argv[1:] or sorted(corpora)
for target in targets:
    directory = os.path.join(OUT, target)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    seeds = sorted(corpora.get(target, {}).items(), key=lambda kv: (len(kv[1]), kv[0]))
    # Keep the smallest PER_TARGET seeds and the largest few, so the committed corpus stays small.
    if len(seeds) > PER_TARGET:
        seeds = seeds[:PER_TARGET - 10] + seeds[-10:]
    for name, data in seeds:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds, {sum(len(d) for _, d in seeds)} bytes")
