#!/usr/bin/env python3
"""Self test of bilateral_peer.py without a Rust node.

Run:  python3 test_self.py      (exits non-zero on failure; about 30 s)

It starts several peers as subprocesses, drives them through the JSON-lines
control protocol exactly as the Rust interop test would, and plays raw
ZeroMQ sockets against them (a scripted protocol peer and garbage senders).
Everything binds 127.0.0.1 with port 0; waits are for events with deadlines.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import msgpack
import zmq
import zmq.auth

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bilateral_peer as bp  # noqa: E402  (encoders/decoders for the raw peers)

PEER = os.path.join(HERE, "bilateral_peer.py")
HB, LOST = 200, 1000            # short timers so the liveness tests are quick
TMP = tempfile.mkdtemp(prefix="bilateral-selftest-")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# ---------------------------------------------------------------------------
# A peer subprocess driven through the control protocol
# ---------------------------------------------------------------------------

class Proc:
    def __init__(self, label, *extra, name=None, listen="tcp://127.0.0.1:0"):
        self.label = label
        args = [sys.executable, PEER, "--listen", listen, "--heartbeat-ms", str(HB), "--lost-ms", str(LOST)]
        if name:
            args += ["--name", name]
        args += list(extra)
        self.stderr_path = os.path.join(TMP, f"{label}-{time.monotonic_ns()}.log")
        self.stderr = open(self.stderr_path, "wb")
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines: list[dict] = []
        self.cv = threading.Condition()
        self.next_id = 1
        self.eof = False
        threading.Thread(target=self._reader, daemon=True).start()
        ready = self.wait(lambda m: m.get("event") == "ready", 10, "ready")
        self.name = ready["name"]
        self.endpoint = ready["endpoint"]
        self.incarnation = ready["incarnation"]

    def _reader(self):
        for raw in self.p.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = {"event": "__garbage__", "line": raw.decode("utf-8", "replace")}
            with self.cv:
                self.lines.append(msg)
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def wait(self, pred, timeout, what="message", consume=True):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i, m in enumerate(self.lines):
                    if pred(m):
                        if consume:
                            del self.lines[i]
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.eof and not any(pred(m) for m in self.lines)):
                    if left > 0 and self.eof:
                        raise Failure(f"{self.label}: exited while waiting for {what}")
                    raise Failure(f"{self.label}: no {what} within {timeout}s")
                self.cv.wait(min(left, 0.2))

    def event(self, ev, timeout=5, **fields):
        return self.wait(lambda m: m.get("event") == ev and all(m.get(k) == v for k, v in fields.items()),
                         timeout, f"event {ev} {fields}")

    def send(self, obj):
        self.p.stdin.write((json.dumps(obj) + "\n").encode())
        self.p.stdin.flush()

    def cmd(self, op, timeout=10, **kw):
        cid = self.next_id
        self.next_id += 1
        self.send({"op": op, "id": cid, **kw})
        return self.wait(lambda m: m.get("id") == cid and "ok" in m, timeout, f"response to {op}")

    def call(self, peer, method, args=None, timeout_ms=3000):
        return self.cmd("call", timeout=timeout_ms / 1000 + 5, peer=peer, method=method,
                        args=args, timeout_ms=timeout_ms)

    def peers(self):
        r = self.cmd("peers")
        return {p["name"]: p for p in r["peers"]}

    def until(self, pred, timeout, what):
        """Poll the peer table until ``pred(peers)`` holds (a wait with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            table = self.peers()
            if pred(table):
                return table
            if time.monotonic() > deadline:
                raise Failure(f"{self.label}: {what} not reached; peers={table}")
            with self.cv:
                self.cv.wait(0.05)

    def has(self, pred):
        with self.cv:
            return any(pred(m) for m in self.lines)

    def quit(self):
        r = self.cmd("quit")
        check(r["ok"], "quit ok")
        check(self.p.wait(5) == 0, f"{self.label} exit status 0")

    def crash(self):
        self.send({"op": "crash"})
        check(self.p.wait(5) == 0, f"{self.label} crash exit status 0")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.stderr.close()

    def alive(self):
        return self.p.poll() is None


# ---------------------------------------------------------------------------
# A scripted raw protocol peer (DEALER dialling a Proc), in a thread
# ---------------------------------------------------------------------------

class RawPeer(threading.Thread):
    """Joins a peer with a hand-driven DEALER, answers PINGs, answers REQUESTs
    from a script, and records every other frame it gets."""

    def __init__(self, ctx, name, target: Proc, script):
        super().__init__(daemon=True)
        self.name, self.target, self.script = name, target, script
        self.inc = bp.random_u64_nonzero()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, name.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(target.endpoint)
        self.outq: queue.Queue = queue.Queue()
        self.got: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.requests = []

    def send(self, *frames):
        self.outq.put(frames)

    def run(self):
        self.sock.send(bp.encode_join(self.inc, "", self.name, self.target.name, 0, HB))
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.stop.is_set():
            while not self.outq.empty():
                frames = self.outq.get()
                self.sock.send_multipart(list(frames))
            if not poller.poll(10):
                continue
            raw = self.sock.recv()
            try:
                m = bp.decode_frame(raw)
            except bp.WireError:
                self.got.put(("undecodable", raw))
                continue
            if isinstance(m, bp.Ping):
                self.sock.send(bp.encode_pong(self.inc, m.nonce))
            elif isinstance(m, bp.Request):
                self.requests.append(m)
                action = self.script.get(m.method)
                if action is not None:
                    status, payload = action
                    self.sock.send(bp.encode_reply(self.inc, m.request_id, status, payload))
            else:
                self.got.put((type(m).__name__, m))

    def expect(self, kind, timeout=3, pred=lambda m: True):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"raw peer: no {kind}")
            try:
                k, m = self.got.get(timeout=left)
            except queue.Empty:
                raise Failure(f"raw peer: no {kind}") from None
            if k == kind and pred(m):
                return m


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_worked_example():
    """§11 byte for byte, through our encoders and decoder."""
    join = bp.encode_join(1, "test", "a", "b", 0, 1000)
    check(join.hex() == ("0101" "0000000000000001" "010100" "000003e8" "0474657374" "0161" "0162"),
          "§11 JOIN bytes")
    check(len(join) == 26, "JOIN 26 bytes")
    welcome = bp.encode_welcome(2, 1, 1000, 1, "b")
    check(welcome.hex() == "01020000000000000002010000" "03e8" "0000000000000001" "0162", "§11 WELCOME bytes")
    rej = bp.encode_reject(2, 1, 1, "network names differ")
    check(len(rej) == 43 and rej[:23].hex() == "0103000000000000000201000000000000000101010014", "§11 REJECT bytes")
    req = bp.encode_request(1, 7, 5000, "Arith.SumDiff", msgpack.packb({"a": 100, "b": 250}))
    check(req.hex() == ("01070000000000000001" "0000000000000007" "00001388"
                        "0d" "41726974682e53756d44696666" "82a16164a162ccfa"), "§11 REQUEST bytes")
    check(len(req) == 44, "REQUEST 44 bytes")
    rep = bp.encode_reply(2, 7, 0, msgpack.packb({"s": 350, "d": -150}))
    check(len(rep) == 30 and rep.hex().endswith("82a173cd015ea164d1ff6a"), "§11 REPLY bytes")
    m = bp.decode_frame(join)
    check(isinstance(m, bp.Join) and m.network == "test" and m.name == "a" and m.target == "b", "decode JOIN")
    check(bp.decode_frame(req).method == "Arith.SumDiff", "decode REQUEST")
    # §3.3: trailing bytes ignored after fixed messages; bad UTF-8 and empty methods refused
    check(bp.decode_frame(bp.encode_ping(3, 9) + b"xx").nonce == 9, "PING trailing bytes")
    for bad in [b"", b"\x02" + join[1:], join[:19], bp.encode_cast(1, "x", b"")[:10] + b"\x00",
                bp.encode_request(1, 1, 1, "m", b"")[:22] + b"\x01\xff", bytes([1, 17]) + bytes(8)]:
        try:
            bp.decode_frame(bad)
            raise Failure(f"decoded a bad frame {bad.hex()}")
        except bp.WireError:
            pass


def test_basics(a: Proc, b: Proc):
    # join: a dials b (a is the dialler, b the listener)
    check(a.cmd("dial", peer="b", endpoint=b.endpoint)["ok"], "dial ok")
    ja = a.event("joined", peer="b")
    jb = b.event("joined", peer="a")
    check(ja["incarnation"] == b.incarnation and jb["incarnation"] == a.incarnation, "joined incarnations")
    t = a.peers()
    check(t["b"]["state"] == "up" and t["b"]["incarnation"] == b.incarnation, f"a's peers: {t}")

    # calls a -> b with every outcome our callee produces
    value = {"x": [1, 2.5, "three", None, True, {"n": -7}], "big": 2 ** 63}
    r = a.call("b", "echo", value)
    check(r["ok"] and r["result"] == value, f"echo: {r}")
    r = a.call("b", "add", [2, 40])
    check(r["ok"] and r["result"] == 42, f"add: {r}")
    for bad in ([1], [1, "2"], [1, 2, 3], {"a": 1}, [1.5, 2], [True, 1]):
        r = a.call("b", "add", bad)
        check(not r["ok"] and r["error"]["kind"] == "bad_arguments", f"add {bad}: {r}")
    r = a.call("b", "add", [2 ** 64 - 1, 1])
    check(not r["ok"] and r["error"]["kind"] == "remote_error", f"add overflow: {r}")
    r = a.call("b", "fail", None)
    check(not r["ok"] and r["error"] == {"kind": "remote_error", "status": 1, "message": "python says no"},
          f"fail: {r}")
    r = a.call("b", "whoami")
    check(r["ok"] and r["result"] == "b", f"whoami: {r}")
    r = a.call("b", "record", {"anything": 1})
    check(r["ok"] and r["result"] is None, f"record: {r}")
    r = a.call("b", "nope")
    check(not r["ok"] and r["error"]["kind"] == "unknown_method" and r["error"]["message"] == "nope", f"nope: {r}")
    r = a.call("b", "bilateral.registry.records", {})
    check(not r["ok"] and r["error"]["kind"] == "no_service" and r["error"]["message"] == "registry", f"ns: {r}")
    for method, service in (("bilateral.", ""), ("bilateral.x", "x"), ("bilateral..y", "")):
        r = a.call("b", method, None)
        check(not r["ok"] and r["error"]["kind"] == "no_service" and r["error"]["message"] == service,
              f"{method}: {r}")
    r = a.call("zed", "echo", 1)
    check(not r["ok"] and r["error"]["kind"] == "unreachable", f"unknown peer: {r}")
    r = a.call("b", "echo", 1, timeout_ms=0)
    check(not r["ok"] and r["error"]["kind"] == "expired", f"expired: {r}")
    check(b.event("served", peer="a", method="echo"), "served event")

    # large messages: REQUEST and REPLY both travel in FRAGMENTs (§13.8)
    big = "x" * 300_000 + "é" * 100_000
    r = a.call("b", "echo", big, timeout_ms=10000)
    check(r["ok"] and r["result"] == big, "large echo")
    many = [a.cmd("call", peer="b", method="add", args=[i, i], timeout_ms=5000) for i in range(3)]
    check(all(m["ok"] for m in many), "sequential adds")

    # the listener calls back over its inbound link
    r = b.call("a", "whoami")
    check(r["ok"] and r["result"] == "a", f"b->a whoami: {r}")

    # casts
    check(a.cmd("cast", peer="b", method="record", args=[1, "two"])["ok"], "cast ok")
    b.event("cast", peer="a", method="record", args=[1, "two"])
    check(a.cmd("cast", peer="b", method="bilateral.channel.push", args={})["ok"], "reserved cast ok")
    b.event("dropped", reason="casts_dropped")
    r = a.cmd("cast", peer="nobody", method="record", args=1)
    check(not r["ok"] and r["error"]["kind"] == "unreachable", "cast to unknown peer")
    # many calls in flight at once (several MARKs, windows)
    ids = []
    for i in range(200):
        cid = 1000 + i
        a.send({"op": "call", "id": cid, "peer": "b", "method": "add", "args": [i, 1], "timeout_ms": 5000})
        ids.append(cid)
    for i, cid in enumerate(ids):
        r = a.wait(lambda m, cid=cid: m.get("id") == cid, 10, f"call {cid}")
        check(r["ok"] and r["result"] == i + 1, f"burst call {cid}: {r}")


def test_mutual(a: Proc, c: Proc):
    a.send({"op": "dial", "id": 50, "peer": "c", "endpoint": c.endpoint})
    c.send({"op": "dial", "id": 51, "peer": "a", "endpoint": a.endpoint})
    # consume the two responses, so that no later command of the same id matches them
    a.wait(lambda m: m.get("id") == 50 and "ok" in m, 5, "response to dial 50")
    c.wait(lambda m: m.get("id") == 51 and "ok" in m, 5, "response to dial 51")
    a.event("joined", peer="c")
    c.event("joined", peer="a")
    # one session over two links (§5.3)
    a.until(lambda t: t["c"]["outbound"] == "up" and t["c"]["inbound"], 5, "a: both links to c")
    c.until(lambda t: t["a"]["outbound"] == "up" and t["a"]["inbound"], 5, "c: both links to a")
    check(not a.has(lambda m: m.get("event") == "joined" and m.get("peer") == "c"), "a joined c once")
    check(not c.has(lambda m: m.get("event") in ("joined", "lost", "left") and m.get("peer") == "a"),
          "c: one session with a")
    check(a.call("c", "whoami")["result"] == "c" and c.call("a", "whoami")["result"] == "a", "mutual calls")
    # §6.3 Disconnect: c drops a; a sees PART (left) and, still dialling c, rejoins c's same incarnation
    check(c.cmd("disconnect", peer="a")["ok"], "disconnect")
    c.event("lost", peer="a", reason="disconnected")
    a.event("left", peer="c", incarnation=c.incarnation)
    a.event("joined", peer="c", incarnation=c.incarnation, timeout=5)
    c.event("joined", peer="a", incarnation=a.incarnation)


def test_raw_peer(ctx, a: Proc):
    """A hand-driven peer: every REPLY status as seen by our caller, MARK/ACK,
    OPEN refusal, fragment reassembly, PING/PONG, NotJoined."""
    typed = msgpack.packb(["bad thing", msgpack.packb({"code": 7})], use_bin_type=True)
    script = {
        "typed": (bp.ST_TYPED_ERROR, typed),
        "busy": (bp.ST_OVERLOADED, b"handler queue full"),
        "closing": (bp.ST_SHUTTING_DOWN, b""),
        "weird": (99, b"what"),
        "badok": (bp.ST_OK, b"\xc1"),
        "unknown": (bp.ST_UNKNOWN_METHOD, b"unknown"),
        "nosvc": (bp.ST_NO_SERVICE, b"channel"),
        "badargs": (bp.ST_BAD_ARGUMENTS, b"nope"),
        "err": (bp.ST_HANDLER_ERROR, b"boom"),
        "ok": (bp.ST_OK, msgpack.packb({"s": 350, "d": -150})),
    }
    raw = RawPeer(ctx, "raw", a, script)
    raw.start()
    try:
        w = raw.expect("Welcome")
        check(w.joiner_incarnation == raw.inc and w.name == a.name and w.incarnation == a.incarnation, "WELCOME")
        a.event("joined", peer="raw", incarnation=raw.inc)
        expect = {"typed": "typed_error", "busy": "overloaded", "closing": "shutting_down", "weird": "protocol",
                  "badok": "protocol", "unknown": "unknown_method", "nosvc": "no_service",
                  "badargs": "bad_arguments", "err": "remote_error"}
        for method, kind in expect.items():
            r = a.call("raw", method, [1])
            check(not r["ok"] and r["error"]["kind"] == kind, f"{method}: {r}")
        r = a.call("raw", "typed")
        check(r["error"]["message"] == "bad thing" and r["error"]["data"] == {"code": 7}, f"typed data {r}")
        r = a.call("raw", "weird")
        check(r["error"]["status"] == 99, f"raw status: {r}")
        r = a.call("raw", "ok")
        check(r["ok"] and r["result"] == {"s": 350, "d": -150}, f"ok: {r}")
        r = a.call("raw", "silent", timeout_ms=300)
        check(not r["ok"] and r["error"]["kind"] == "timeout", f"timeout: {r}")
        req = raw.requests[-1]
        check(0 < req.timeout_ms <= 300, f"REQUEST timeout_ms {req.timeout_ms}")
        # §13.9: a's REQUESTs are windowed: a MARK follows within a heartbeat; ACK it
        mk = raw.expect("Mark", timeout=2)
        raw.send(bp.encode_ack(raw.inc, mk.token))
        # a late REPLY to the timed-out call is dropped and counted
        raw.send(bp.encode_reply(raw.inc, req.request_id, 0, b"\xc0"))
        a.event("dropped", reason="late_replies")

        # PING -> PONG with the same nonce; MARK -> ACK with the same token
        raw.send(bp.encode_ping(raw.inc, 777))
        raw.expect("Pong", pred=lambda m: m.nonce == 777)
        raw.send(bp.encode_mark(raw.inc, 0xDEADBEEF))
        raw.expect("Ack", pred=lambda m: m.token == 0xDEADBEEF)
        # OPEN -> RESET(UnknownService); DATA / PROBE for an unknown stream -> RESET(UnknownStream)
        raw.send(bp._hdr(bp.OPEN, raw.inc) + struct.pack(">QII", 5, 1000, 65536) + bp._str8("files") + b"\xc0")
        rs = raw.expect("Reset", pred=lambda m: m.stream_id == 5)
        check(rs.code == bp.RESET_UNKNOWN_SERVICE and rs.flags == 0 and rs.detail == "", f"RESET for OPEN: {rs}")
        raw.send(bp._hdr(bp.DATA, raw.inc) + struct.pack(">QBQ", 6, 1, 0) + b"abc")
        rs = raw.expect("Reset", pred=lambda m: m.stream_id == 6)
        check(rs.code == bp.RESET_UNKNOWN_STREAM and rs.flags == 0 and rs.detail == "", f"RESET for DATA: {rs}")
        raw.send(bp._hdr(bp.STATUS, raw.inc) + struct.pack(">QBQQ", 8, 0x08, 0, 0))
        rs = raw.expect("Reset", pred=lambda m: m.stream_id == 8)
        check(rs.code == bp.RESET_UNKNOWN_STREAM and rs.flags == 1, f"RESET for PROBE: {rs}")

        # a fragmented REQUEST (pieces of 5000 bytes), answered by a fragmented REPLY
        payload = msgpack.packb("z" * 200_000)
        whole = bp.encode_request(raw.inc, 4242, 5000, "echo", payload)
        for off in range(0, len(whole), 5000):
            raw.send(bp.encode_fragment(raw.inc, 9, len(whole), off, whole[off:off + 5000]))
        pieces, total = {}, None
        while total is None or sum(len(p) for p in pieces.values()) < total:
            f = raw.expect("Fragment")
            total = f.total
            pieces[f.offset] = f.payload
        reply = bp.decode_frame(b"".join(pieces[k] for k in sorted(pieces)))
        check(isinstance(reply, bp.Reply) and reply.request_id == 4242 and reply.status == 0
              and reply.payload == payload, "fragmented echo reply")
        # a piece out of place drops the message; a too-short middle piece too
        raw.send(bp.encode_fragment(raw.inc, 10, 10000, 4096, b"q" * 4096))
        a.event("dropped", reason="fragments_dropped")
        raw.send(bp.encode_fragment(raw.inc, 11, 10000, 0, whole[:100]))
        a.event("dropped", reason="fragments_dropped")
        raw.send(bp.encode_fragment(raw.inc, 12, 1 << 40, 0, b"x" * 5000))
        a.event("dropped", reason="oversized")
        # a REQUEST declaring more than max_message_size is answered TooLarge (§9)
        big = bp.encode_request(raw.inc, 4343, 5000, "echo", b"\xc0")
        raw.send(bp.encode_fragment(raw.inc, 14, 1 << 40, 0, big + b"x" * 5000))
        a.event("dropped", reason="oversized")
        tl = raw.expect("Reply", pred=lambda m: m.request_id == 4343)
        check(tl.status == bp.ST_TOO_LARGE and b"max_message_size" in tl.payload, f"TooLarge: {tl}")
        # a reassembled frame that is not REQUEST/REPLY/CAST/OPEN
        ping = bp.encode_ping(raw.inc, 1)
        raw.send(bp.encode_fragment(raw.inc, 13, len(ping), 0, ping))
        a.event("dropped", reason="malformed")

        # garbage on an established link: none of it may hurt
        for junk in [b"", b"\x01", b"\x02" * 30, b"\x01\x63" + bytes(20), bytes([1, 7]) + bytes(8),
                     bp.encode_request(raw.inc, 1, 1, "m", b"")[:23],
                     bp.encode_cast(raw.inc, "m", b"") .replace(b"\x01m", b"\x01\xff"),
                     bp.encode_join(raw.inc, "", "raw", a.name, 0, 1)[:-1] + b"\xc3",
                     bp.encode_welcome(raw.inc, 1, 1, 1, "x"), bp.encode_reject(raw.inc, 5, 1),
                     bp.encode_join(raw.inc, "", "raw", a.name, 0, 1) + b"\xff" * 5]:
            raw.send(junk)
        raw.send(b"multi", b"part")
        raw.send(bp.encode_ping(raw.inc + 1, 5))            # another incarnation -> NotJoined
        rj = raw.expect("Reject", pred=lambda m: m.code == bp.NOT_JOINED)
        check(rj.your_incarnation == raw.inc + 1, "NotJoined addressed to the stale incarnation")
        a.event("dropped", reason="wrong_frame_count")
        a.event("dropped", reason="stale_incarnation")
        # a cast through the raw peer still works
        raw.send(bp.encode_cast(raw.inc, "record", msgpack.packb({"k": b"\x00\x01"}, use_bin_type=True)))
        a.event("cast", peer="raw", method="record", args={"k": [0, 1]})
        # PART -> left
        raw.send(bp.encode_part(raw.inc, bp.PART_DISCONNECT))
        a.event("left", peer="raw", incarnation=raw.inc)
        check("raw" not in a.peers(), "a forgot the parted raw peer")
    finally:
        raw.stop.set()
        raw.join(2)
        raw.sock.close()


def test_garbage_senders(ctx, a: Proc):
    """Raw DEALERs / ROUTERs sending junk; the peer must keep working."""
    rnd = random.Random(1)
    socks = []
    # a DEALER with no routing id: libzmq gives it an id starting with 0
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.connect(a.endpoint)
    socks.append(d)
    d.send(bp.encode_ping(1, 1))
    a.event("dropped", reason="bad_routing_id")
    # a DEALER using a's own name
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.routing_id = a.name.encode()
    d.connect(a.endpoint)
    socks.append(d)
    d.send(bp.encode_ping(1, 1))
    a.event("dropped", reason="bad_routing_id")
    d.send(bp.encode_join(1, "", a.name, a.name, 0, 1000))
    rj = bp.decode_frame(d.recv())
    check(isinstance(rj, bp.Reject) and rj.code == bp.JOINING_ITSELF, "JoiningItself")
    # JOIN refusals
    j = ctx.socket(zmq.DEALER)
    j.linger = 0
    j.routing_id = b"joiner"
    j.connect(a.endpoint)
    socks.append(j)
    for frame, code in [(bp.encode_join(5, "other", "joiner", a.name, 0, 1000), bp.WRONG_NETWORK),
                        (bp.encode_join(5, "", "joiner", "not-a", 0, 1000), bp.WRONG_PEER),
                        (bp.encode_join(5, "", "someone", a.name, 0, 1000), bp.BAD_NAME),
                        (bp.encode_join(5, "", "joiner", a.name, 1, 1000), bp.SECURITY_MISMATCH),
                        (bp.encode_join(5, "", "joiner", a.name, 7, 1000), bp.SECURITY_MISMATCH),
                        (bp.encode_join(5, "", "joiner", a.name, 0, 1000, 2, 3), bp.UNSUPPORTED_VERSION),
                        (bp.encode_join(5, "", "joiner", a.name, 0, 1000, 1, 0), bp.UNSUPPORTED_VERSION)]:
        j.send(frame)
        if not j.poll(3000):
            raise Failure(f"no REJECT {code}")
        rj = bp.decode_frame(j.recv())
        check(isinstance(rj, bp.Reject) and rj.code == code and rj.your_incarnation == 5, f"REJECT {code}: {rj}")
    # name taken: join as incarnation 5, restart as 6, then 5 again
    j.send(bp.encode_join(5, "", "joiner", a.name, 0, 1000))
    check(isinstance(bp.decode_frame(j.recv()), bp.Welcome), "joiner/5 welcomed")
    j.send(bp.encode_join(6, "", "joiner", a.name, 0, 1000))
    check(isinstance(bp.decode_frame(j.recv()), bp.Welcome), "joiner/6 welcomed")
    a.event("lost", peer="joiner", incarnation=5, reason="restarted")
    j.send(bp.encode_join(5, "", "joiner", a.name, 0, 1000))
    rj = bp.decode_frame(j.recv())
    check(isinstance(rj, bp.Reject) and rj.code == bp.NAME_TAKEN, f"NameTaken: {rj}")
    j.send(bp.encode_part(6, 0))
    a.event("left", peer="joiner", incarnation=6)
    # random junk from a named DEALER, also multipart
    g = ctx.socket(zmq.DEALER)
    g.linger = 0
    g.routing_id = b"garbage"
    g.connect(a.endpoint)
    socks.append(g)
    for _ in range(300):
        n = rnd.randrange(0, 64)
        frame = bytes(rnd.randrange(256) for _ in range(n))
        if rnd.random() < 0.5 and n > 2:
            frame = b"\x01" + bytes([rnd.randrange(1, 20)]) + frame[2:]
        if rnd.random() < 0.1:
            g.send_multipart([frame] * rnd.randrange(2, 7))
        else:
            g.send(frame)
    # a ROUTER that a dials, answering junk
    r = ctx.socket(zmq.ROUTER)
    r.linger = 0
    r.bind("tcp://127.0.0.1:*")
    socks.append(r)
    rep = a.cmd("dial", peer="evil", endpoint=r.LAST_ENDPOINT.decode())
    check(rep["ok"], "dial evil")
    if not r.poll(3000):
        raise Failure("evil got no JOIN")
    rid, join = r.recv_multipart()
    jm = bp.decode_frame(join)
    check(rid == a.name.encode() and isinstance(jm, bp.Join) and jm.target == "evil", "JOIN to evil")
    for junk in [bp.encode_welcome(99, 1, 1000, jm.incarnation + 1, "evil"),   # not addressed to a
                 bp.encode_reject(99, 1, jm.incarnation + 1),
                 bp.encode_join(99, "", "evil", a.name, 0, 1), b"\x01\x02", b"junk"]:
        r.send_multipart([rid, junk])
    r.send_multipart([rid, b"two", b"frames"])
    a.event("dropped", reason="wrong_frame_count")
    # a WELCOME from the wrong name -> local refusal WrongPeer
    r.send_multipart([rid, bp.encode_welcome(99, 1, 1000, jm.incarnation, "devil")])
    a.until(lambda t: t.get("evil", {}).get("last_refusal", {}).get("code") == bp.WRONG_PEER, 5, "WrongPeer")
    check(a.alive(), "a survived the garbage")
    for s in socks:
        s.close()


def test_part_restart_crash(a: Proc, b: Proc):
    """PART -> left; restart -> new incarnation rejoins; crash -> lost; restart."""
    port_ep = b.endpoint
    old = b.incarnation
    b.quit()
    a.event("left", peer="b", incarnation=old)
    b2 = Proc("b2", name="b", listen=port_ep)
    check(b2.incarnation != old, "new incarnation")
    a.event("joined", peer="b", incarnation=b2.incarnation, timeout=10)
    b2.event("joined", peer="a")
    check(a.call("b", "whoami")["result"] == "b", "call after restart")
    # crash: a finds out by silence within lost_timeout (plus a heartbeat of slack)
    t0 = time.monotonic()
    b2.crash()
    a.event("lost", peer="b", incarnation=b2.incarnation, timeout=LOST / 1000 + 2)
    check(time.monotonic() - t0 < LOST / 1000 + 1.5, "lost in time")
    b3 = Proc("b3", name="b", listen=port_ep)
    a.event("joined", peer="b", incarnation=b3.incarnation, timeout=10)
    # a restart detected before the timeout (REJECT NotJoined on the Up link, §5.4)
    b3.crash()
    b4 = Proc("b4", name="b", listen=port_ep)
    ev = a.event("lost", peer="b", incarnation=b3.incarnation, timeout=5)
    print(f"     restart while in session seen as: {ev['reason']}", flush=True)
    a.event("joined", peer="b", incarnation=b4.incarnation, timeout=10)
    check(ev["reason"] in ("restarted", "timeout"), f"restart reason {ev}")
    return b4


def test_curve(ctx):
    keys = os.path.join(TMP, "keys")
    os.makedirs(keys)
    pub = {}
    for n in ("x", "y", "z"):
        # §10.3: a key list file skips lines starting with "#", which is also a
        # Z85 digit, so a key that starts with it could not be listed.
        while True:
            p, _ = zmq.auth.create_certificates(keys, n)
            pub[n] = zmq.auth.load_certificate(p)[0].decode()
            if not pub[n].startswith("#"):
                break
    allow_x = os.path.join(keys, "allow_x")
    with open(allow_x, "w") as f:
        f.write("# keys allowed into x\n\n" + pub["y"] + "\n")
    allow_y = os.path.join(keys, "allow_y")
    with open(allow_y, "w") as f:
        f.write(pub["x"] + "\n")
    sec = lambda n: os.path.join(keys, f"{n}.key_secret")
    x = Proc("x", "--curve-secret", sec("x"), "--allow", allow_x)
    y = Proc("y", "--curve-secret", sec("y"), "--allow", allow_y)
    z = Proc("z", "--curve-secret", sec("z"), "--allow", allow_y)
    try:
        check(x.name == pub["x"] and y.name == pub["y"], "CURVE names are the public keys")
        check(y.cmd("dial", peer=x.name, endpoint=x.endpoint)["ok"], "y dials x")
        x.event("joined", peer=y.name)
        y.event("joined", peer=x.name)
        r = y.call(x.name, "whoami")
        check(r["ok"] and r["result"] == x.name, f"CURVE whoami: {r}")
        r = x.call(y.name, "add", [1, 2])
        check(r["ok"] and r["result"] == 3, f"CURVE add back: {r}")
        # z is not in x's allow file: refused by ZAP, reported on both sides
        check(z.cmd("dial", peer=x.name, endpoint=x.endpoint)["ok"], "z dials x")
        x.event("dropped", reason="unauthorized")
        z.until(lambda t: t[x.name].get("last_refusal", {}).get("code") == bp.UNAUTHORIZED, 5, "Unauthorized")
        check(z.name not in x.peers(), "z never joined x")
        # a bad CURVE name is refused locally
        r = y.cmd("dial", peer="not-a-key", endpoint=x.endpoint)
        check(not r["ok"] and r["error"]["kind"] == "bad_name", "bad CURVE name")
        # y's key used under another routing id: dropped before decoding (§10.4)
        ypub, ysec = zmq.auth.load_certificate(sec("y"))
        imp = ctx.socket(zmq.DEALER)
        imp.linger = 0
        imp.routing_id = pub["z"].encode()
        imp.curve_serverkey = x.name.encode()
        imp.curve_publickey = ypub
        imp.curve_secretkey = ysec
        imp.connect(x.endpoint)
        imp.send(bp.encode_join(1, "", pub["z"], x.name, 1, 1000))
        x.event("dropped", reason="identity_mismatch")
        imp.close()
        # a NULL node cannot join a CURVE node (handshake mismatch, §10.5)
        n = Proc("n", name="plain")
        try:
            n.cmd("dial", peer=x.name, endpoint=x.endpoint)
            t = n.until(lambda t: t[x.name].get("last_refusal", {}).get("code") in
                        (bp.SECURITY_MISMATCH, bp.HANDSHAKE_FAILED), 8, "SecurityMismatch")
            print("     NULL dialling CURVE refused as:", t[x.name]["last_refusal"], flush=True)
        finally:
            n.kill()
        y.quit()
        x.event("left", peer=y.name)
    finally:
        for p in (x, y, z):
            p.kill()


def main():
    t0 = time.monotonic()
    procs = []
    ctx = zmq.Context()
    ok = True
    steps = []
    try:
        def step(name, fn, *args):
            t = time.monotonic()
            res = fn(*args)
            steps.append(name)
            print(f"ok   {name} ({time.monotonic() - t:.1f}s)", flush=True)
            return res
        step("worked example (§11) and decoder", test_worked_example)
        a = Proc("a", name="a"); procs.append(a)
        b = Proc("b", name="b"); procs.append(b)
        c = Proc("c", name="c"); procs.append(c)
        step("join, calls with every outcome, casts, fragments", test_basics, a, b)
        step("mutual dialling", test_mutual, a, c)
        step("scripted raw peer: REPLY statuses, MARK/ACK, OPEN, FRAGMENT", test_raw_peer, ctx, a)
        step("garbage senders and JOIN refusals", test_garbage_senders, ctx, a)
        step("still serving after garbage", lambda: check(c.call("a", "add", [1, 1])["result"] == 2, "alive"))
        b4 = step("PART, restart, crash, restart", test_part_restart_crash, a, b)
        procs.append(b4)
        # crash of a peer that dials us (and that we dial): c
        c_inc = c.incarnation
        c.crash()
        step("crash -> lost (c)", lambda: a.event("lost", peer="c", incarnation=c_inc, timeout=LOST / 1000 + 2))
        step("CURVE", test_curve, ctx)
        stats = a.cmd("stats")["counters"]
        print("     a's counters:", json.dumps(stats, sort_keys=True), flush=True)
        step("quit", a.quit)
        for p in procs:
            p.kill()
        for name in os.listdir(TMP):
            if name.endswith(".log"):
                with open(os.path.join(TMP, name), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                check("Traceback" not in text and "internal_error" not in text, f"exception logged in {name}")
        steps.append("no exception in any peer's log")
    except Exception as e:
        ok = False
        print(f"FAIL: {e}", flush=True)
        traceback.print_exc()
        for p in procs:
            print(f"--- stderr of {p.label} ({p.stderr_path}) ---")
            try:
                with open(p.stderr_path, "rb") as f:
                    sys.stdout.write(f.read()[-4000:].decode("utf-8", "replace"))
            except OSError:
                pass
    finally:
        for p in procs:
            p.kill()
        ctx.destroy(linger=0)
    print(f"{'PASS' if ok else 'FAIL'}: {len(steps)} steps in {time.monotonic() - t0:.1f}s")
    if ok:
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
