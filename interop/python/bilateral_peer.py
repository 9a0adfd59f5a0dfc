#!/usr/bin/env python3
"""A reference peer for the Bilateral wire protocol, version 1.

Written from PROTOCOL.md alone (section numbers in comments refer to it).
It joins a Bilateral mesh as dialler and as listener, keeps sessions with
heartbeats, makes and serves calls and casts, and runs in plaintext (NULL)
or CURVE mode.  Streams (OPEN) are refused the way a node without stream
services refuses them (§13.3, RESET UnknownService).

Dependencies: Python 3.11 standard library, ``pyzmq`` and ``msgpack``.

Command line::

    bilateral_peer.py --name NAME --listen tcp://127.0.0.1:0
        [--curve-secret FILE.key_secret] [--allow FILE]... [--allow-any]
        [--heartbeat-ms N] [--lost-ms N] [--network NET] [--log-level LEVEL]

Control protocol: one JSON object per line on stdin (commands) and on
stdout (responses and events); logs go to stderr.  A command names its
operation in ``"op"`` and may carry an ``"id"``, echoed by its response::

    {"op": "dial", "id": 1, "peer": "alpha", "endpoint": "tcp://127.0.0.1:7100"}
    {"op": "call", "id": 2, "peer": "alpha", "method": "echo", "args": [1, 2],
     "timeout_ms": 2000}
    {"op": "cast", "id": 3, "peer": "alpha", "method": "log", "args": "hi"}
    {"op": "peers", "id": 4}      {"op": "stats", "id": 5}
    {"op": "disconnect", "id": 6, "peer": "alpha"}
    {"op": "quit", "id": 7}       {"op": "crash"}

A response is ``{"id": N, "ok": true, "result": ...}`` or ``{"id": N, "ok":
false, "error": {"kind": ..., "message": ...}}``; the error kinds of a call
are listed at ``Node.on_reply``.  Events have an ``"event"`` field: ``ready``
(first line: name, endpoint(s), incarnation), ``joined``, ``left``, ``lost``
(with ``reason``), ``cast``, ``served`` and ``dropped`` (with the counter's
name).  ``Control`` below gives each command's fields and results.

Methods this peer serves (§7): ``echo`` (returns its argument), ``add``
(``[a, b]`` of integers -> ``a + b``, else BadArguments), ``fail`` (always a
HandlerError), ``whoami`` (its own name), ``record`` (returns nil).  Any
other method is UnknownMethod, and a ``bilateral.<service>.*`` method
NoService.  Every request answered is reported as a ``served`` event.  GAPS.md lists what writing this
peer showed to be unclear in PROTOCOL.md.

JSON <-> MessagePack conventions (§7.5):

* command ``args`` are JSON values packed as MessagePack (objects -> maps
  with str keys, arrays -> arrays, integers -> the smallest integer format,
  floats -> float 64, strings -> str, null -> nil);
* results and cast arguments are MessagePack decoded to JSON: ``bin`` ->
  a list of ints (0-255); a map whose keys are not all strings -> a list
  of ``[key, value]`` pairs; ext types -> ``{"ext": code, "data": [ints]}``;
  the MessagePack timestamp -> ``{"timestamp": [seconds, nanoseconds]}``;
  non-finite floats -> the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import heapq
import json
import logging
import math
import os
import random
import struct
import sys
import time
import unicodedata
from typing import Any, Callable, Optional

import msgpack
import zmq
import zmq.auth
import zmq.utils.z85 as z85
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("bilateral_peer")

# ---------------------------------------------------------------------------
# Constants (§1.1, §1.3, §8, §9, §13.8, §13.9)
# ---------------------------------------------------------------------------

WIRE_VERSION = 0x01            # §3.2: byte 0 of every frame, always 0x01 (§4)
PROTOCOL_MIN = 1               # §4: this peer speaks protocol version 1 only
PROTOCOL_MAX = 1

MAX_CHUNK = 1 << 20            # §1.3: a DATA/FRAGMENT payload is at most 1 MiB
MAX_FRAME = MAX_CHUNK + 1024   # §1.3: no protocol frame is longer than this
MAX_MESSAGE_SIZE = 128 << 20   # §9: default max_message_size
CHUNK_SIZE = 128 << 10         # §13.8: default chunk size of the sender
MIN_PIECE = 4096               # §13.8: every piece but the last >= 4096 bytes
MAX_REASSEMBLY = 64            # §13.8: messages under reassembly per peer
MAX_PEER_MEMORY = 256 << 20    # §9.1: default max_peer_memory

HWM = 10_000                   # §1.1: SNDHWM / RCVHWM
LINGER_MS = 200                # §1.1, §8
RECONNECT_IVL_MS = 100         # §1.1, §8
MAXMSGSIZE = min(2 * MAX_MESSAGE_SIZE + 4096, MAX_FRAME)   # §1.1, §9

JOIN_RETRY = 0.5               # §5.1, §8
JOIN_TIMEOUT = 2.0             # §5.1, §8
BACKOFF_INITIAL = 0.1          # §8
BACKOFF_MAX = 30.0             # §8
BACKOFF_JITTER = 0.5           # §8
NOTJOINED_RATE = 200           # §6.1, §8: REJECT(NotJoined) answers per second
REPLACED_KEEP = 4              # §5.2, §5.4: replaced incarnations remembered
DEDUP_KEEP = 4096              # §7.2: request ids remembered per session
MAX_PENDING_CALLS = 100_000    # §7.1

# §13.9 windows (the sender's choice; these are the implementation's values)
MESSAGE_WINDOW_BYTES = 4 << 20
MESSAGE_WINDOW_COUNT = min(2500, HWM // 4)
LINK_WINDOW = 512 << 10
FULL_RETRY = 0.010             # §1.1: a refused windowed frame is offered again 10 ms later
MAX_MARKS = 32                 # outstanding MARKs remembered per lane (as lane.rs)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"   # §10.3
ZAP_DOMAIN = b"bilateral"                 # §10.2

# §3.2 kinds
JOIN, WELCOME, REJECT, PING, PONG, PART, REQUEST, REPLY, CAST, OPEN, \
    DATA, STATUS, RESET, FRAGMENT, MARK, ACK = range(1, 17)
KIND_NAMES = {1: "JOIN", 2: "WELCOME", 3: "REJECT", 4: "PING", 5: "PONG",
              6: "PART", 7: "REQUEST", 8: "REPLY", 9: "CAST", 10: "OPEN",
              11: "DATA", 12: "STATUS", 13: "RESET", 14: "FRAGMENT",
              15: "MARK", 16: "ACK"}

# §3.4 REJECT codes
WRONG_NETWORK, NAME_TAKEN, UNSUPPORTED_VERSION, JOINING_ITSELF, NOT_JOINED, \
    BAD_NAME, SECURITY_MISMATCH, WRONG_PEER, SHUTTING_DOWN_CODE, \
    UNAUTHORIZED, HANDSHAKE_FAILED = range(1, 12)
REJECT_NAMES = {1: "WrongNetwork", 2: "NameTaken", 3: "UnsupportedVersion",
                4: "JoiningItself", 5: "NotJoined", 6: "BadName",
                7: "SecurityMismatch", 8: "WrongPeer", 9: "ShuttingDown",
                10: "Unauthorized", 11: "HandshakeFailed"}

# §3.4 PART reasons
PART_CLOSING, PART_DISCONNECT = 0, 1

# §3.4 REPLY statuses
ST_OK, ST_HANDLER_ERROR, ST_UNKNOWN_METHOD, ST_BAD_ARGUMENTS, ST_OVERLOADED, \
    ST_SHUTTING_DOWN, ST_TYPED_ERROR, ST_NO_SERVICE, ST_TOO_LARGE = range(9)

# §13.7 RESET codes used here
RESET_UNKNOWN_SERVICE = 1
RESET_UNKNOWN_STREAM = 7

# §3.4 stream flags
FLAG_OPENER = 0x01
FLAG_PROBE = 0x08

SEC_NULL, SEC_CURVE = 0, 1    # §10: JOIN security byte

# Session end reasons (§7.3 PeerLost reasons)
TIMEOUT, PARTED, RESTARTED, RESET_REASON, DISCONNECTED = (
    "timeout", "parted", "restarted", "reset", "disconnected")

# Link identities (§1.4)
OUT, IN = "outbound", "inbound"

# Outbound link states (§5.1)
JOINING, UP, WAITING = "joining", "up", "waiting"


# ---------------------------------------------------------------------------
# Identifiers (§2, §10.1)
# ---------------------------------------------------------------------------

def name_error(name_bytes: bytes) -> Optional[str]:
    """Why ``name_bytes`` is not a valid node name (§2), or None if it is.

    1-255 bytes of UTF-8 without control characters (category Cc)."""
    if not 1 <= len(name_bytes) <= 255:
        return "name must be 1-255 bytes"
    try:
        text = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return "name is not UTF-8"
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return "name contains a control character"
    return None


def is_z85_key(text: str) -> bool:
    """True if ``text`` is a Z85-encoded 32-byte CURVE key (§10.1)."""
    if len(text) != 40:
        return False
    try:
        return len(z85.decode(text.encode("ascii"))) == 32
    except Exception:
        return False


# ---------------------------------------------------------------------------
# Frame format (§3)
# ---------------------------------------------------------------------------

class WireError(Exception):
    """A frame that does not decode (§3.3); the frame is dropped."""


@dataclasses.dataclass
class Message:
    """Base of every decoded frame: the header's sender incarnation (§3.2)."""
    incarnation: int

    kind = 0

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


@dataclasses.dataclass
class Join(Message):
    kind = JOIN
    min_version: int = 1
    max_version: int = 1
    security: int = 0
    heartbeat_ms: int = 0
    network: str = ""
    name: str = ""
    target: str = ""


@dataclasses.dataclass
class Welcome(Message):
    kind = WELCOME
    version: int = 1
    heartbeat_ms: int = 0
    joiner_incarnation: int = 0
    name: str = ""


@dataclasses.dataclass
class Reject(Message):
    kind = REJECT
    code: int = 0
    your_incarnation: int = 0
    min_version: int = 1
    max_version: int = 1
    detail: str = ""


@dataclasses.dataclass
class Ping(Message):
    kind = PING
    nonce: int = 0


@dataclasses.dataclass
class Pong(Message):
    kind = PONG
    nonce: int = 0


@dataclasses.dataclass
class Part(Message):
    kind = PART
    reason: int = 0


@dataclasses.dataclass
class Request(Message):
    kind = REQUEST
    request_id: int = 0
    timeout_ms: int = 0
    method: str = ""
    args: bytes = b""


@dataclasses.dataclass
class Reply(Message):
    kind = REPLY
    request_id: int = 0
    status: int = 0
    payload: bytes = b""


@dataclasses.dataclass
class Cast(Message):
    kind = CAST
    method: str = ""
    args: bytes = b""


@dataclasses.dataclass
class Open(Message):
    kind = OPEN
    stream_id: int = 0
    timeout_ms: int = 0
    window: int = 0
    service: str = ""
    init: bytes = b""


@dataclasses.dataclass
class Data(Message):
    kind = DATA
    stream_id: int = 0
    flags: int = 0
    offset: int = 0
    payload: bytes = b""


@dataclasses.dataclass
class Status(Message):
    kind = STATUS
    stream_id: int = 0
    flags: int = 0
    sent: int = 0
    limit: int = 0


@dataclasses.dataclass
class Reset(Message):
    kind = RESET
    stream_id: int = 0
    flags: int = 0
    code: int = 0
    detail: str = ""


@dataclasses.dataclass
class Fragment(Message):
    kind = FRAGMENT
    transfer_id: int = 0
    total: int = 0
    offset: int = 0
    payload: bytes = b""


@dataclasses.dataclass
class Mark(Message):
    kind = MARK
    token: int = 0


@dataclasses.dataclass
class Ack(Message):
    kind = ACK
    token: int = 0


class _Reader:
    """Reads the fields of one frame (§3.1); raises WireError when short."""

    def __init__(self, buf: bytes, pos: int = 10):
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise WireError("frame shorter than its fixed fields")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    @staticmethod
    def _text(raw: bytes) -> str:
        # §3.1: text that is not valid UTF-8 makes the whole frame undecodable.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("text field is not UTF-8") from None

    def str8(self) -> str:
        return self._text(self.take(self.u8()))

    def str16(self) -> str:
        return self._text(self.take(self.u16()))

    def rest(self) -> bytes:
        out = self.buf[self.pos:]
        self.pos = len(self.buf)
        return out


def decode_frame(buf: bytes) -> Message:
    """Decode one protocol frame (§3.2-§3.4), or raise WireError (§3.3).

    Trailing bytes after JOIN, WELCOME, REJECT, PING, PONG, PART, STATUS,
    RESET, MARK and ACK are ignored (§3.3)."""
    if len(buf) < 10:
        raise WireError("frame shorter than the header")
    if buf[0] != WIRE_VERSION:
        raise WireError(f"wire version {buf[0]} is not 1")
    kind = buf[1]
    inc = struct.unpack(">Q", buf[2:10])[0]
    r = _Reader(buf)
    if kind == JOIN:
        m: Message = Join(inc, r.u8(), r.u8(), r.u8(), r.u32(), r.str8(), r.str8(), r.str8())
    elif kind == WELCOME:
        m = Welcome(inc, r.u8(), r.u32(), r.u64(), r.str8())
    elif kind == REJECT:
        m = Reject(inc, r.u8(), r.u64(), r.u8(), r.u8(), r.str16())
    elif kind == PING:
        m = Ping(inc, r.u64())
    elif kind == PONG:
        m = Pong(inc, r.u64())
    elif kind == PART:
        m = Part(inc, r.u8())
    elif kind == REQUEST:
        m = Request(inc, r.u64(), r.u32(), r.str8(), r.rest())
        if not m.method:
            raise WireError("REQUEST with an empty method name")
    elif kind == REPLY:
        m = Reply(inc, r.u64(), r.u8(), r.rest())
    elif kind == CAST:
        m = Cast(inc, r.str8(), r.rest())
        if not m.method:
            raise WireError("CAST with an empty method name")
    elif kind == OPEN:
        m = Open(inc, r.u64(), r.u32(), r.u32(), r.str8(), r.rest())
        if not m.service:
            raise WireError("OPEN with an empty service name")
    elif kind == DATA:
        m = Data(inc, r.u64(), r.u8(), r.u64(), r.rest())
    elif kind == STATUS:
        m = Status(inc, r.u64(), r.u8(), r.u64(), r.u64())
    elif kind == RESET:
        m = Reset(inc, r.u64(), r.u8(), r.u8(), r.str16())
    elif kind == FRAGMENT:
        m = Fragment(inc, r.u64(), r.u64(), r.u64(), r.rest())
    elif kind == MARK:
        m = Mark(inc, r.u64())
    elif kind == ACK:
        m = Ack(inc, r.u64())
    else:
        raise WireError(f"unknown kind {kind}")
    return m


def _hdr(kind: int, inc: int) -> bytes:
    """The 10-byte header (§3.2)."""
    return struct.pack(">BBQ", WIRE_VERSION, kind, inc)


def _str8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise ValueError("str8 longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _str16(text: str) -> bytes:
    """§3.1: senders truncate text longer than 65 535 bytes at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) > 65535:
        raw = raw[:65535]
        while raw and (raw[-1] & 0xC0) == 0x80:
            raw = raw[:-1]
        if raw and raw[-1] >= 0xC0:   # a lead byte left without its continuation
            raw = raw[:-1]
    return struct.pack(">H", len(raw)) + raw


def encode_join(inc, network, name, target, security, heartbeat_ms,
                min_version=PROTOCOL_MIN, max_version=PROTOCOL_MAX) -> bytes:
    return (_hdr(JOIN, inc) + struct.pack(">BBBI", min_version, max_version, security, heartbeat_ms)
            + _str8(network) + _str8(name) + _str8(target))


def encode_welcome(inc, version, heartbeat_ms, joiner_incarnation, name) -> bytes:
    return _hdr(WELCOME, inc) + struct.pack(">BIQ", version, heartbeat_ms, joiner_incarnation) + _str8(name)


def encode_reject(inc, code, your_incarnation, detail="") -> bytes:
    return (_hdr(REJECT, inc) + struct.pack(">BQBB", code, your_incarnation, PROTOCOL_MIN, PROTOCOL_MAX)
            + _str16(detail))


def encode_ping(inc, nonce) -> bytes:
    return _hdr(PING, inc) + struct.pack(">Q", nonce)


def encode_pong(inc, nonce) -> bytes:
    return _hdr(PONG, inc) + struct.pack(">Q", nonce)


def encode_part(inc, reason) -> bytes:
    return _hdr(PART, inc) + bytes([reason])


def encode_request(inc, request_id, timeout_ms, method, args) -> bytes:
    timeout_ms = max(0, min(int(timeout_ms), 0xFFFFFFFF))   # §3.4: saturates at 2^32-1
    return _hdr(REQUEST, inc) + struct.pack(">QI", request_id, timeout_ms) + _str8(method) + args


def encode_reply(inc, request_id, status, payload) -> bytes:
    return _hdr(REPLY, inc) + struct.pack(">QB", request_id, status) + payload


def encode_cast(inc, method, args) -> bytes:
    return _hdr(CAST, inc) + _str8(method) + args


def encode_reset(inc, stream_id, flags, code, detail="") -> bytes:
    return _hdr(RESET, inc) + struct.pack(">QBB", stream_id, flags, code) + _str16(detail)


def encode_fragment(inc, transfer_id, total, offset, payload) -> bytes:
    return _hdr(FRAGMENT, inc) + struct.pack(">QQQ", transfer_id, total, offset) + payload


def encode_mark(inc, token) -> bytes:
    return _hdr(MARK, inc) + struct.pack(">Q", token)


def encode_ack(inc, token) -> bytes:
    return _hdr(ACK, inc) + struct.pack(">Q", token)


def rewrite_request_timeout(frame: bytes, timeout_ms: int) -> bytes:
    """§7.1 step 3: a REQUEST that waited for room leaves with timeout_ms rewritten."""
    timeout_ms = max(0, min(int(timeout_ms), 0xFFFFFFFF))
    return frame[:18] + struct.pack(">I", timeout_ms) + frame[22:]


# ---------------------------------------------------------------------------
# MessagePack <-> JSON (§7.5)
# ---------------------------------------------------------------------------

def unpack(payload: bytes) -> Any:
    """Decode exactly one MessagePack value; raises on anything else."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=False, timestamp=0)


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def to_json(value: Any, depth: int = 0) -> Any:
    """MessagePack value -> JSON-compatible value (conventions in the module docstring)."""
    if depth > 256:
        raise ValueError("value nested too deeply for JSON")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_json(v, depth + 1) for k, v in value.items()}
        return [[to_json(k, depth + 1), to_json(v, depth + 1)] for k, v in value.items()]
    if isinstance(value, msgpack.ExtType):
        return {"ext": value.code, "data": list(value.data)}
    if isinstance(value, msgpack.Timestamp):
        return {"timestamp": [value.seconds, value.nanoseconds]}
    return repr(value)


def text_payload(payload: bytes) -> str:
    """§7.3: text payloads are decoded as UTF-8, replacing invalid sequences."""
    return payload.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def random_u64_nonzero() -> int:
    """§2: an incarnation is a random non-zero u64."""
    while True:
        v = random.SystemRandom().getrandbits(64)
        if v:
            return v


def backoff(n: int) -> float:
    """§8: delay after the n-th failed attempt in a row (n >= 1)."""
    d = min(BACKOFF_INITIAL * (2 ** (n - 1)), BACKOFF_MAX)
    return d * (1 - BACKOFF_JITTER * random.random())


class RateLimiter:
    """A fixed one-second window allowing ``rate`` events (§6.1)."""

    def __init__(self, rate: int):
        self.rate = rate
        self.window = 0.0
        self.used = 0

    def allow(self, now: float) -> bool:
        if now - self.window >= 1.0:
            self.window = now
            self.used = 0
        if self.used >= self.rate:
            return False
        self.used += 1
        return True


# ---------------------------------------------------------------------------
# Calls, lanes and links (§1.4, §7.1, §13.8, §13.9)
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class PendingCall:
    """One outstanding call made through the control protocol (§7.1).

    The control protocol has one target per call, so the call is its target."""
    cmd_id: Any
    peer: str
    request_id: int
    method: str
    deadline: float
    incarnation: int
    sent: bool = False
    done: bool = False


@dataclasses.dataclass
class Outgoing:
    """A windowed message (REQUEST, REPLY or CAST) waiting in a lane (§13.9)."""
    kind: int
    frame: bytes
    incarnation: int                 # the session it belongs to
    call: Optional[PendingCall] = None


@dataclasses.dataclass
class Transfer:
    """A message sent as FRAGMENTs (§13.8)."""
    transfer_id: int
    frame: bytes
    incarnation: int
    kind: int
    offset: int = 0
    call: Optional[PendingCall] = None


SENT, FULL, UNROUTABLE, FAILED = "sent", "full", "unroutable", "failed"


class Lane:
    """What this node has handed to one link since the link opened (§13.9).

    Three counts, each against its own window: message frames (REQUEST,
    REPLY, CAST) and their bytes against the message window, FRAGMENT bytes
    (bulk) against ``LINK_WINDOW``.  Bulk bytes do not count against the
    message window.  After each round of sending a MARK goes out if anything
    was sent since the last one and a quarter of any window has gone since
    then, or a window is full; the periodic timer adds one when what is in
    flight has seen neither a MARK nor progress for a heartbeat interval.
    The peer's ACK acknowledges everything before that MARK."""

    def __init__(self, node: "Node", peer: "Peer", via: str, transmit: Callable[[bytes], str]):
        self.node = node
        self.peer = peer
        self.via = via
        self.transmit = transmit
        self.messages: collections.deque[Outgoing] = collections.deque()
        self.transfers: collections.deque[Transfer] = collections.deque()
        self.sent_msgs = self.sent_bytes = self.sent_bulk = 0      # sent_bytes: message bytes only
        self.acked_msgs = self.acked_bytes = self.acked_bulk = 0
        self.mark_at = (0, 0, 0)               # counters at the last MARK
        self.marks: list[tuple[int, int, int, int]] = []   # (token, msgs, bytes, bulk)
        now = time.monotonic()
        self.marked_at = now                   # when the last MARK went
        self.progress_at = now                 # last ACK that freed room, or in flight became non-zero
        self.retry_at = 0.0

    # -- accounting --------------------------------------------------------
    def msgs_in_flight(self) -> int:
        return self.sent_msgs - self.acked_msgs

    def bytes_in_flight(self) -> int:
        """Message bytes sent and not acknowledged (bulk excluded)."""
        return self.sent_bytes - self.acked_bytes

    def bulk_in_flight(self) -> int:
        return self.sent_bulk - self.acked_bulk

    def anything_in_flight(self) -> bool:
        return self.bytes_in_flight() > 0 or self.bulk_in_flight() > 0

    def queued_bytes(self) -> int:
        return (sum(len(m.frame) for m in self.messages)
                + sum(len(t.frame) - t.offset for t in self.transfers))

    def _message_room(self) -> bool:
        return (self.msgs_in_flight() < MESSAGE_WINDOW_COUNT
                and self.bytes_in_flight() < MESSAGE_WINDOW_BYTES)

    def _on_sent(self, nbytes: int, bulk: bool, now: float) -> None:
        if not self.anything_in_flight():
            self.progress_at = now
        if bulk:
            self.sent_bulk += nbytes
        else:
            self.sent_msgs += 1
            self.sent_bytes += nbytes

    # -- MARK / ACK ----------------------------------------------------------
    def send_mark(self, now: float) -> None:
        """§13.9: MARK(token) asks the receiver to ACK what was sent before it."""
        token = random.getrandbits(64)
        s = self.peer.session
        if s is None:
            return
        if self.transmit(encode_mark(self.node.incarnation, token)) != SENT:
            self.node.count("send_failures")      # §1.1: a control frame refused is dropped
            return
        self.marks.append((token, self.sent_msgs, self.sent_bytes, self.sent_bulk))
        if len(self.marks) > MAX_MARKS:
            del self.marks[0]                     # a later MARK covers it anyway
        self.mark_at = (self.sent_msgs, self.sent_bytes, self.sent_bulk)
        self.marked_at = now

    def on_ack(self, token: int, now: float) -> None:
        """§13.9: the ACK acknowledges its MARK and every earlier one."""
        for i, (tok, msgs, nbytes, bulk) in enumerate(self.marks):
            if tok == token:
                before = (self.acked_msgs, self.acked_bytes, self.acked_bulk)
                self.acked_msgs = max(self.acked_msgs, msgs)
                self.acked_bytes = max(self.acked_bytes, nbytes)
                self.acked_bulk = max(self.acked_bulk, bulk)
                del self.marks[:i + 1]
                if (self.acked_msgs, self.acked_bytes, self.acked_bulk) != before:
                    self.progress_at = now
                    self.pump(now)
                return
        # An ACK whose token matches no MARK awaiting its ACK is ignored (§13.9).

    def _mark_due(self) -> bool:
        """§13.9: something went out since the last MARK, and a quarter of a
        window has gone since then, or a window is full."""
        m0, b0, k0 = self.mark_at
        if (self.sent_msgs, self.sent_bytes, self.sent_bulk) == self.mark_at:
            return False
        return (self.sent_bulk - k0 >= max(LINK_WINDOW // 4, 1)
                or self.sent_bytes - b0 >= max(MESSAGE_WINDOW_BYTES // 4, 1)
                or self.sent_msgs - m0 >= max(MESSAGE_WINDOW_COUNT // 4, 1)
                or self.bulk_in_flight() >= LINK_WINDOW
                or not self._message_room())

    def periodic(self, now: float) -> None:
        """§13.9: MARK when what is in flight saw neither a MARK nor progress
        for a heartbeat interval; offer waiting frames again."""
        if (self.anything_in_flight()
                and now - self.marked_at >= self.node.heartbeat
                and now - self.progress_at >= self.node.heartbeat):
            self.send_mark(now)
        if self.messages or self.transfers:
            self.pump(now)

    # -- sending -------------------------------------------------------------
    def pump(self, now: float) -> None:
        """Offer waiting frames to the link, messages before bulk (§13.9),
        then a MARK if one is due."""
        if now < self.retry_at:
            return
        while True:
            if self.messages and self._message_room():
                item = self.messages[0]
                frame = self.node.ready_to_send(self.peer, item, now)
                if frame is None:
                    self.messages.popleft()
                    continue
                result = self.transmit(frame)
                if result == FULL:
                    # §1.1: back to the front of the queue, offered again 10 ms later.
                    self.node.count("send_failures")
                    self.retry_at = now + FULL_RETRY
                    break
                self.messages.popleft()
                if result != SENT:
                    self.node.send_failed(self.peer, item.call, item.kind, item, self.via)
                    continue
                if item.call is not None:
                    item.call.sent = True
                self._on_sent(len(frame), False, now)
                continue
            if self.transfers and self.bulk_in_flight() < LINK_WINDOW:
                t = self.transfers[0]
                if not self.node.transfer_wanted(self.peer, t):
                    self.transfers.popleft()
                    continue
                piece = t.frame[t.offset:t.offset + CHUNK_SIZE]
                frame = encode_fragment(self.node.incarnation, t.transfer_id, len(t.frame), t.offset, piece)
                result = self.transmit(frame)
                if result == FULL:
                    self.node.count("send_failures")
                    self.retry_at = now + FULL_RETRY
                    break
                self.transfers.popleft()
                if result != SENT:
                    self.node.send_failed(self.peer, t.call, t.kind)
                    continue
                if t.call is not None:
                    t.call.sent = True
                t.offset += len(piece)
                if t.offset < len(t.frame):
                    self.transfers.append(t)      # transfers take turns, one chunk each
                self._on_sent(len(frame), True, now)
                continue
            break
        if self._mark_due():
            self.send_mark(now)

    def clear(self) -> None:
        self.messages.clear()
        self.transfers.clear()


class OutboundLink:
    """Our DEALER towards a dialled peer and its state (§1.4, §5.1)."""

    def __init__(self):
        self.state = WAITING
        self.dealer: Optional[zmq.Socket] = None
        self.monitor: Optional[zmq.Socket] = None
        self.lane: Optional[Lane] = None
        self.join_frame = b""
        self.attempt_start = 0.0
        self.last_join = 0.0
        self.last_recv = 0.0
        self.next_attempt = 0.0


class InboundLink:
    """The peer's DEALER as seen on our ROUTER (§1.4); exists only while alive."""

    def __init__(self, lane: Lane, now: float):
        self.lane = lane
        self.last_recv = now


@dataclasses.dataclass
class Reassembly:
    """One message under reassembly (§13.8)."""
    total: int
    via: str
    buf: bytearray
    last_progress: float


class Session:
    """The relationship with one incarnation of a peer (Terms, §6)."""

    def __init__(self, incarnation: int, now: float, heartbeat: float):
        self.incarnation = incarnation
        self.began = now
        self.next_ping = now + heartbeat          # §6.2: first PING one interval after the start
        self.nonce = 0                            # §2: counts from 1 per peer
        self.last_nonce: Optional[int] = None
        self.last_ping_at = 0.0
        self.srtt: Optional[float] = None
        self.seen_ids: collections.deque[int] = collections.deque()
        self.seen_set: set[int] = set()
        self.reassembly: dict[int, Reassembly] = {}
        self.reassembly_bytes = 0

    def first_time(self, request_id: int) -> bool:
        """Remember a request id; False if it was already admitted (duplicate)."""
        if request_id in self.seen_set:
            return False
        self.seen_ids.append(request_id)
        self.seen_set.add(request_id)
        if len(self.seen_ids) > DEDUP_KEEP:
            self.seen_set.discard(self.seen_ids.popleft())
        return True


class Peer:
    """Everything this node knows about one other node (§1.4, §5, §6)."""

    def __init__(self, name: str):
        self.name = name
        self.name_b = name.encode("utf-8")
        self.dialled = False
        self.endpoint: Optional[str] = None
        self.out: Optional[OutboundLink] = None
        self.inbound: Optional[InboundLink] = None
        self.session: Optional[Session] = None
        self.replaced: collections.deque[int] = collections.deque(maxlen=REPLACED_KEEP)
        self.failures = 0
        self.last_refusal: Optional[tuple[int, str]] = None
        self.next_transfer_id = random.getrandbits(63)

    def out_up(self) -> bool:
        return self.out is not None and self.out.state == UP

    def lane(self, via: Optional[str]) -> Optional[Lane]:
        if via == OUT and self.out_up():
            return self.out.lane
        if via == IN and self.inbound is not None:
            return self.inbound.lane
        return None

    def preferred(self) -> Optional[str]:
        """§1.4: the outbound link if Up, else the inbound link if alive, else none."""
        if self.out_up():
            return OUT
        if self.inbound is not None:
            return IN
        return None

    def usable(self, via: str) -> bool:
        return self.lane(via) is not None


# ---------------------------------------------------------------------------
# Handlers served by this peer (callee side, §7.2)
# ---------------------------------------------------------------------------

class HandlerFailure(Exception):
    """A handler error: REPLY(HandlerError, message) (§7.2)."""


class BadArguments(Exception):
    """Arguments that do not decode: REPLY(BadArguments, message) (§7.2)."""


def reserved_service(method: str) -> Optional[str]:
    """The built-in service a ``bilateral.<service>.<method>`` name belongs to (§7.6):
    the text between ``bilateral.`` and the next dot (or the end), possibly empty."""
    if not method.startswith("bilateral."):
        return None
    return method[len("bilateral."):].split(".", 1)[0]


# ---------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------

class Node:
    """One Bilateral node: the ROUTER, a DEALER per dialled peer, the sessions.

    Single-threaded: one reactor loop polls every socket and stdin, and the
    handlers run inline (so the handler queue of §7.2 never fills)."""

    def __init__(self, args: argparse.Namespace, out: Callable[[dict], None]):
        self.emit = out
        self.heartbeat = args.heartbeat_ms / 1000.0
        self.lost = args.lost_ms / 1000.0
        self.heartbeat_ms = args.heartbeat_ms
        self.network = args.network
        self.incarnation = random_u64_nonzero()
        self.counters: collections.Counter[str] = collections.Counter()
        self.peers: dict[str, Peer] = {}
        self.pending: dict[tuple[str, int], PendingCall] = {}
        self.pending_ids: collections.Counter[int] = collections.Counter()
        self.deadlines: list[tuple[float, int, str]] = []
        self.next_request_id = random.getrandbits(64)
        # §6.1, §13.5: REJECT(NotJoined) and RESET(UnknownStream) share one budget.
        self.notjoined_limit = RateLimiter(NOTJOINED_RATE)
        self.mismatch_report = RateLimiter(1)
        self.closed = False

        # §10: CURVE mode - the name is the public key in Z85.
        self.curve = args.curve_secret is not None
        self.allow_any = args.allow_any
        self.allowed: set[str] = set()
        if self.curve:
            public, secret = zmq.auth.load_certificate(args.curve_secret)
            if secret is None:
                raise SystemExit(f"{args.curve_secret}: no secret key in the file")
            self.public_key, self.secret_key = public, secret
            self.name = public.decode("ascii")
            if not is_z85_key(self.name):
                raise SystemExit(f"{args.curve_secret}: public key is not a Z85 CURVE key")
            for path in args.allow:
                self.allowed.update(load_allow_file(path))
        else:
            if not args.name:
                raise SystemExit("--name is required without --curve-secret")
            self.name = args.name
        err = name_error(self.name.encode("utf-8"))
        if err:
            raise SystemExit(f"invalid node name: {err}")
        self.name_b = self.name.encode("utf-8")
        self.security = SEC_CURVE if self.curve else SEC_NULL

        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.zap: Optional[zmq.Socket] = None
        if self.curve:
            # §10.3: the ZAP handler is bound before the ROUTER accepts connections.
            self.zap = self.ctx.socket(zmq.REP)
            self.zap.linger = 0
            self.zap.bind(ZAP_ENDPOINT)
            self.poller.register(self.zap, zmq.POLLIN)

        # §1.1: one ROUTER bound to every listen endpoint.
        self.router = self.ctx.socket(zmq.ROUTER)
        self._common_options(self.router, args.listen)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if self.curve:
            # §10.2: the ROUTER is a CURVE server with ZAP domain "bilateral".
            self.router.curve_server = True
            self.router.curve_secretkey = self.secret_key
            self.router.curve_publickey = self.public_key
            self.router.zap_domain = ZAP_DOMAIN
        self.endpoints = []
        for ep in args.listen:
            self.router.bind(normalise_bind(ep))
            self.endpoints.append(self.router.getsockopt_string(zmq.LAST_ENDPOINT))
        self.poller.register(self.router, zmq.POLLIN)
        self.dealer_owner: dict[zmq.Socket, Peer] = {}
        self.monitor_owner: dict[zmq.Socket, tuple[Peer, zmq.Socket]] = {}

    # -- sockets ---------------------------------------------------------------
    @staticmethod
    def _common_options(sock: zmq.Socket, endpoints: list[str]) -> None:
        """§1.1 options common to ROUTER and DEALER."""
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
        if any(ep.startswith("tcp://[") for ep in endpoints):
            sock.setsockopt(zmq.IPV6, 1)
        # §1.5: ZMTP heartbeats are deliberately not set.

    def _open_dealer(self, peer: Peer) -> zmq.Socket:
        """§1.1: a DEALER whose routing id is our name, connected to the peer."""
        d = self.ctx.socket(zmq.DEALER)
        self._common_options(d, [peer.endpoint])
        d.setsockopt(zmq.ROUTING_ID, self.name_b)
        d.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        if self.curve:
            # §10.2: CURVE client; the server key is the dialled peer's name.
            d.curve_serverkey = peer.name.encode("ascii")
            d.curve_publickey = self.public_key
            d.curve_secretkey = self.secret_key
        # §10.5: handshake failures are learnt from the socket monitor.
        mon = d.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                   | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        d.connect(peer.endpoint)
        self.poller.register(d, zmq.POLLIN)
        self.poller.register(mon, zmq.POLLIN)
        self.dealer_owner[d] = peer
        self.monitor_owner[mon] = (peer, d)
        peer.out.monitor = mon
        return d

    def _close_dealer(self, peer: Peer) -> None:
        o = peer.out
        if o is None or o.dealer is None:
            return
        d, mon = o.dealer, o.monitor
        for s in (d, mon):
            if s is not None:
                try:
                    self.poller.unregister(s)
                except KeyError:
                    pass
        self.dealer_owner.pop(d, None)
        if mon is not None:
            self.monitor_owner.pop(mon, None)
            try:
                d.disable_monitor()
            except zmq.ZMQError:
                pass
            mon.close(linger=0)
        d.close(linger=LINGER_MS)   # §5.1: queued frames get at most the linger time
        o.dealer = None
        o.monitor = None

    def _transmit_out(self, dealer: zmq.Socket) -> Callable[[bytes], str]:
        def send(frame: bytes) -> str:
            try:
                dealer.send(frame, zmq.DONTWAIT)    # §1.1: all sends are non-blocking
                return SENT
            except zmq.Again:
                return FULL
            except zmq.ZMQError as e:
                log.debug("DEALER send failed: %s", e)
                return FAILED
        return send

    def _transmit_in(self, name_b: bytes) -> Callable[[bytes], str]:
        def send(frame: bytes) -> str:
            try:
                self.router.send_multipart([name_b, frame], zmq.DONTWAIT)
                return SENT
            except zmq.Again:
                return FULL
            except zmq.ZMQError as e:
                if e.errno == zmq.EHOSTUNREACH:     # §1.1 ROUTER_MANDATORY, §6.2
                    return UNROUTABLE
                log.debug("ROUTER send failed: %s", e)
                return FAILED
        return send

    def send_control(self, peer: Peer, via: Optional[str], frame: bytes) -> bool:
        """Send a control frame on a link; a refused one is dropped and counted (§1.1)."""
        if via == OUT and peer.out is not None and peer.out.dealer is not None:
            result = self._transmit_out(peer.out.dealer)(frame)
        elif via == IN:
            result = self._transmit_in(peer.name_b)(frame)
        else:
            result = FAILED
        if result != SENT:
            self.count("send_failures")
            return False
        return True

    def router_send(self, rid: bytes, frame: bytes) -> None:
        """A control frame on the ROUTER to a routing id (REJECT, WELCOME)."""
        if self._transmit_in(rid)(frame) != SENT:
            self.count("send_failures")

    # -- counting / reporting --------------------------------------------------
    def count(self, reason: str, n: int = 1) -> None:
        self.counters[reason] += n

    def drop(self, reason: str, detail: str = "") -> None:
        """§9: every bad message is dropped, counted under a reason and logged."""
        self.count(reason)
        self.count("dropped")
        log.debug("dropped (%s) %s", reason, detail)
        ev = {"event": "dropped", "reason": reason}
        if detail:
            ev["detail"] = detail
        self.emit(ev)

    # -- sessions (§5, §6) -----------------------------------------------------
    def begin_session(self, peer: Peer, incarnation: int) -> None:
        now = time.monotonic()
        peer.session = Session(incarnation, now, self.heartbeat)
        log.info("joined %s/%x", peer.name, incarnation)
        self.emit({"event": "joined", "peer": peer.name, "incarnation": incarnation})

    def end_session(self, peer: Peer, reason: str) -> None:
        """End the session (§6.3): fail its calls, forget its inbound link and
        reassembly, drop what waits in its lanes.  The caller decides what
        happens to the outbound link."""
        s = peer.session
        if s is None:
            return
        peer.session = None
        if reason == RESTARTED:
            peer.replaced.append(s.incarnation)       # §5.2, §5.4
        # §7.3: every call pending on the session fails at once (PeerLost).
        for key, call in list(self.pending.items()):
            if call.peer == peer.name and call.incarnation == s.incarnation:
                self.finish_call(call, error={"kind": "unreachable", "reason": reason,
                                              "message": f"peer lost ({reason})"})
        if peer.inbound is not None:
            peer.inbound.lane.clear()
        peer.inbound = None                            # §6.3: the inbound link is forgotten
        if peer.out is not None and peer.out.lane is not None:
            peer.out.lane.clear()
        log.info("session with %s/%x ended: %s", peer.name, s.incarnation, reason)
        ev = "left" if reason == PARTED else "lost"
        self.emit({"event": ev, "peer": peer.name, "incarnation": s.incarnation, "reason": reason})

    def forget_if_idle(self, peer: Peer) -> None:
        """§5.2, §6.2: a peer we do not dial and without a session is forgotten
        (with its list of replaced incarnations)."""
        if not peer.dialled and peer.session is None and self.peers.get(peer.name) is peer:
            del self.peers[peer.name]

    # -- dialling (§5.1) -------------------------------------------------------
    def dial(self, name: str, endpoint: str) -> Peer:
        peer = self.peers.get(name)
        if peer is None:
            peer = self.peers[name] = Peer(name)
        if peer.dialled and peer.endpoint == endpoint:
            return peer
        peer.dialled = True
        peer.endpoint = endpoint
        peer.failures = 0
        if peer.out is None:
            peer.out = OutboundLink()
        self.start_attempt(peer)
        return peer

    def start_attempt(self, peer: Peer) -> None:
        """§5.1: every join attempt opens a fresh DEALER and sends JOIN."""
        now = time.monotonic()
        o = peer.out
        self._retire_outbound_lane(peer)
        self._close_dealer(peer)
        o.state = JOINING
        o.dealer = self._open_dealer(peer)
        o.lane = Lane(self, peer, OUT, self._transmit_out(o.dealer))   # a new connection, a new lane
        o.join_frame = encode_join(self.incarnation, self.network, self.name, peer.name,
                                   self.security, self.heartbeat_ms)
        o.attempt_start = now
        self._send_join(peer, now)

    def _send_join(self, peer: Peer, now: float) -> None:
        o = peer.out
        o.last_join = now
        if self._transmit_out(o.dealer)(o.join_frame) != SENT:
            self.count("send_failures")

    def _retire_outbound_lane(self, peer: Peer) -> None:
        """§13.9: messages waiting for a link that went down move to the peer's
        other link if it has one; transfers are abandoned."""
        o = peer.out
        if o is None or o.lane is None:
            return
        lane = o.lane
        o.lane = None
        if peer.inbound is not None and peer.session is not None:
            peer.inbound.lane.messages.extend(lane.messages)
        for t in lane.transfers:
            self.send_failed(peer, t.call, t.kind)
        lane.clear()

    def _retire_inbound_lane(self, peer: Peer) -> None:
        lane = peer.inbound.lane
        if peer.out_up() and peer.session is not None:
            peer.out.lane.messages.extend(lane.messages)
        for t in lane.transfers:
            self.send_failed(peer, t.call, t.kind)
        lane.clear()

    def fail_attempt(self, peer: Peer, refusal: Optional[tuple[int, str]]) -> None:
        """§5.1: a failed or refused attempt: close the DEALER, n += 1, Waiting."""
        o = peer.out
        if refusal is not None:
            peer.last_refusal = refusal
            log.warning("join of %s refused: %s (%s)", peer.name,
                        REJECT_NAMES.get(refusal[0], f"code {refusal[0]}"), refusal[1])
        self._retire_outbound_lane(peer)
        self._close_dealer(peer)
        peer.failures += 1
        o.state = WAITING
        o.next_attempt = time.monotonic() + backoff(peer.failures)

    def on_refused(self, peer: Peer, code: int, detail: str) -> None:
        """§5.1: REJECT (code != NotJoined), or a §10.5 handshake failure."""
        if peer.session is not None and peer.inbound is None:
            self.end_session(peer, RESET_REASON)
        self.fail_attempt(peer, (code, detail))

    def on_welcome(self, peer: Peer, msg: Welcome) -> None:
        o = peer.out
        now = time.monotonic()
        if msg.joiner_incarnation != self.incarnation:
            self.drop("stale_incarnation", "WELCOME for another incarnation")   # §3.4, §5.1
            return
        if o.state == UP:
            # §5.1: a WELCOME again counts as traffic if it is from the session's incarnation.
            # Otherwise it is ignored (§5.1).
            if peer.session is not None and peer.session.incarnation == msg.incarnation:
                o.last_recv = now
            else:
                log.debug("ignored a WELCOME from %s/%x on an Up link", peer.name, msg.incarnation)
            return
        if o.state != JOINING:
            return
        if msg.name != peer.name:
            self.fail_attempt(peer, (WRONG_PEER, f"WELCOME from {msg.name!r}"))
            return
        if not PROTOCOL_MIN <= msg.version <= PROTOCOL_MAX:   # §4 step 3
            self.fail_attempt(peer, (UNSUPPORTED_VERSION, f"version {msg.version}"))
            return
        if msg.heartbeat_ms > self.lost * 1000 / 2:
            log.warning("%s announces heartbeat %d ms, above half our lost timeout",
                        peer.name, msg.heartbeat_ms)
        peer.failures = 0
        if peer.session is not None and peer.session.incarnation != msg.incarnation:
            self.end_session(peer, RESTARTED)
        if peer.session is None:
            self.begin_session(peer, msg.incarnation)
        o.state = UP
        o.last_recv = now
        o.lane.pump(now)

    def on_dealer_reject(self, peer: Peer, msg: Reject) -> None:
        o = peer.out
        if msg.your_incarnation != self.incarnation:
            self.drop("stale_incarnation", "REJECT for another incarnation")
            return
        if o.state == JOINING:
            if msg.code == NOT_JOINED:
                return                     # an answer to an earlier message (§5.1)
            self.on_refused(peer, msg.code, msg.detail)
        elif o.state == UP:
            if msg.code == NOT_JOINED:
                # §5.1, §6.1: the listener timed us out or restarted; re-join at once.
                s = peer.session
                reason = RESTARTED if s is not None and msg.incarnation != s.incarnation else RESET_REASON
                self.end_session(peer, reason)
                self.start_attempt(peer)
            else:
                self.on_refused(peer, msg.code, msg.detail)

    def on_monitor_event(self, mon: zmq.Socket) -> None:
        """§10.5: a failed ZMTP handshake is a refusal of the join attempt."""
        try:
            ev = parse_monitor_message(mon.recv_multipart(zmq.DONTWAIT))
        except (zmq.Again, Exception):
            return
        owner = self.monitor_owner.get(mon)
        if owner is None:
            return
        peer, dealer = owner
        if peer.out is None or peer.out.dealer is not dealer or peer.out.state == WAITING:
            return
        event, value = ev.get("event"), ev.get("value")
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            code, detail = UNAUTHORIZED, f"ZAP status {value}"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and \
                value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            code, detail = SECURITY_MISMATCH, "ZMTP mechanism mismatch"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            code, detail = HANDSHAKE_FAILED, f"ZMTP handshake failed (protocol error {value})"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self.curve:
            code, detail = HANDSHAKE_FAILED, "CURVE handshake failed"
        else:
            # §10.5: in NULL mode HANDSHAKE_FAILED_NO_DETAIL is a connection
            # that broke during the handshake; the join timer deals with it.
            log.debug("ignored monitor event %s (value %s) from %s", event, value, peer.name)
            return
        self.on_refused(peer, code, detail)

    # -- listening (§5.2) ------------------------------------------------------
    def reject(self, rid: bytes, code: int, your_incarnation: int, detail: str) -> None:
        self.count("joins_refused" if code != NOT_JOINED else "not_joined_sent")
        self.router_send(rid, encode_reject(self.incarnation, code, your_incarnation, detail))

    def on_join(self, rid_text: str, rid: bytes, msg: Join) -> None:
        """§5.2 checks 4-10, then begin / keep / replace the session and WELCOME."""
        inc = msg.incarnation
        if rid_text == self.name:
            return self.reject(rid, JOINING_ITSELF, inc, "that is my own name")
        low, high = max(msg.min_version, PROTOCOL_MIN), min(msg.max_version, PROTOCOL_MAX)
        if msg.min_version > msg.max_version or low > high:
            return self.reject(rid, UNSUPPORTED_VERSION, inc, "no protocol version in common")
        if msg.security != self.security:
            return self.reject(rid, SECURITY_MISMATCH, inc, "security mechanisms differ")
        if msg.network != self.network:
            return self.reject(rid, WRONG_NETWORK, inc, "network names differ")
        if msg.name != rid_text:
            return self.reject(rid, BAD_NAME, inc, "name differs from routing id")
        if msg.target != self.name:
            return self.reject(rid, WRONG_PEER, inc, f"I am not {msg.target}")
        if self.curve:                                     # check 9a (§10.3)
            if not is_z85_key(msg.name):
                return self.reject(rid, BAD_NAME, inc, "name is not a Z85 CURVE key")
            if not self.key_allowed(msg.name):
                return self.reject(rid, UNAUTHORIZED, inc, "key not allowed")
        peer = self.peers.get(rid_text)
        if peer is not None and inc in peer.replaced:      # check 10
            return self.reject(rid, NAME_TAKEN, inc, "a newer incarnation replaced this one")
        if msg.heartbeat_ms > self.lost * 1000 / 2:
            log.warning("%s announces heartbeat %d ms, above half our lost timeout",
                        rid_text, msg.heartbeat_ms)
        now = time.monotonic()
        if peer is None:
            peer = self.peers[rid_text] = Peer(rid_text)
        if peer.session is None:
            self.begin_session(peer, inc)
        elif peer.session.incarnation != inc:
            was_up = peer.out_up()
            self.end_session(peer, RESTARTED)
            self.begin_session(peer, inc)
            if peer.dialled and was_up:
                self.start_attempt(peer)
        # §5.2, §6.2: a JOIN opens the inbound link when there is none but does
        # not keep an existing one alive.
        if peer.inbound is None:
            peer.inbound = InboundLink(Lane(self, peer, IN, self._transmit_in(peer.name_b)), now)
        self.count("joins_accepted")
        self.router_send(rid, encode_welcome(self.incarnation, high, self.heartbeat_ms, inc, self.name))

    def key_allowed(self, key: str) -> bool:
        """§10.3 access policy: an allow-list, or allow any key."""
        return self.allow_any or key in self.allowed

    # -- receiving -------------------------------------------------------------
    def _read_parts(self, sock: zmq.Socket) -> Optional[tuple[list, int]]:
        """One ZeroMQ message: at most 4 frames kept, the rest read and discarded (§1.3)."""
        try:
            first = sock.recv(zmq.DONTWAIT, copy=False)
        except zmq.Again:
            return None
        parts, count, frame = [first], 1, first
        while frame.more:
            frame = sock.recv(copy=False)
            count += 1
            if count <= 4:
                parts.append(frame)
        return parts, count

    def on_router_readable(self, budget: int = 512) -> None:
        for _ in range(budget):
            got = self._read_parts(self.router)
            if got is None:
                return
            try:
                self.on_router_message(*got)
            except Exception:                       # §9: input never crashes the node
                log.exception("error handling a ROUTER message")
                self.drop("internal_error", "exception while handling a ROUTER message")

    def on_router_message(self, parts: list, count: int) -> None:
        rid = parts[0].bytes
        err = name_error(rid)                                  # §5.2 check 1, §9
        if err:
            return self.drop("bad_routing_id", err)
        rid_text = rid.decode("utf-8")
        if self.curve:                                         # §5.2 check 1a, §10.4
            try:
                user_id = parts[-1].get("User-Id")
            except zmq.ZMQError:
                user_id = None
            if user_id != rid_text:
                self.count("identity_mismatch")
                self.count("dropped")
                if self.mismatch_report.allow(time.monotonic()):   # at most one report a second
                    self.emit({"event": "dropped", "reason": "identity_mismatch",
                               "detail": f"routing id {rid_text!r} is not key {user_id!r}"})
                return
        if count != 2:                                         # §1.3, §5.2 check 2
            return self.drop("wrong_frame_count", f"{count} frames on the ROUTER")
        frame = parts[1].bytes
        if len(frame) > MAX_MESSAGE_SIZE:                      # §5.2 check 3, §9
            return self.drop("oversized", f"{len(frame)} bytes")
        try:
            msg = decode_frame(frame)
        except WireError as e:
            return self.drop("malformed", str(e))
        if isinstance(msg, (Welcome, Reject)):                 # §3.2
            return self.drop("malformed", f"{msg.kind_name} on the ROUTER")
        if isinstance(msg, Join):
            return self.on_join(rid_text, rid, msg)
        if rid_text == self.name:                              # §6.1
            return self.drop("bad_routing_id", "message under my own name")
        self.on_session_message(rid_text, IN, msg)

    def on_dealer_readable(self, dealer: zmq.Socket, budget: int = 512) -> None:
        for _ in range(budget):
            peer = self.dealer_owner.get(dealer)
            if peer is None or peer.out is None or peer.out.dealer is not dealer:
                return
            got = self._read_parts(dealer)
            if got is None:
                return
            parts, count = got
            try:
                self.on_dealer_message(peer, parts, count)
            except Exception:
                log.exception("error handling a DEALER message")
                self.drop("internal_error", "exception while handling a DEALER message")

    def on_dealer_message(self, peer: Peer, parts: list, count: int) -> None:
        if count != 1:                                         # §1.3
            return self.drop("wrong_frame_count", f"{count} frames on a DEALER")
        frame = parts[0].bytes
        if len(frame) > MAX_MESSAGE_SIZE:
            return self.drop("oversized", f"{len(frame)} bytes")
        try:
            msg = decode_frame(frame)
        except WireError as e:
            return self.drop("malformed", str(e))
        if isinstance(msg, Join):                              # §3.2
            return self.drop("malformed", "JOIN on a DEALER")
        if isinstance(msg, Welcome):
            return self.on_welcome(peer, msg)
        if isinstance(msg, Reject):
            return self.on_dealer_reject(peer, msg)
        self.on_session_message(peer.name, OUT, msg)

    def on_session_message(self, name: str, via: str, msg: Message) -> None:
        """§6.1: session messages are accepted only from the current session."""
        peer = self.peers.get(name)
        s = peer.session if peer is not None else None
        if s is None or s.incarnation != msg.incarnation:
            reason = "unknown_sender" if s is None else "stale_incarnation"
            self.drop(reason, f"{msg.kind_name} from {name}/{msg.incarnation:x}")
            if via == IN and self.notjoined_limit.allow(time.monotonic()):
                self.reject(name.encode("utf-8"), NOT_JOINED, msg.incarnation, "")
            return
        now = time.monotonic()
        # §6.2: liveness per link - anything valid from the session's incarnation.
        if via == IN:
            if peer.inbound is None:
                peer.inbound = InboundLink(Lane(self, peer, IN, self._transmit_in(peer.name_b)), now)
            peer.inbound.last_recv = now
        elif peer.out is not None:
            peer.out.last_recv = now
        self.dispatch(peer, via, msg, now)

    def dispatch(self, peer: Peer, via: str, msg: Message, now: float) -> None:
        s = peer.session
        if isinstance(msg, Ping):
            # §6.2: PONG at once, same nonce, on the link the PING came in on.
            self.send_control(peer, via, encode_pong(self.incarnation, msg.nonce))
        elif isinstance(msg, Pong):
            if msg.nonce == s.last_nonce:
                sample = now - s.last_ping_at
                s.srtt = sample if s.srtt is None else (7 * s.srtt + sample) / 8
        elif isinstance(msg, Part):
            self.on_part(peer)
        elif isinstance(msg, Request):
            self.on_request(peer, via, msg, now)
        elif isinstance(msg, Reply):
            self.on_reply(peer, msg)
        elif isinstance(msg, Cast):
            self.on_cast(peer, msg)
        elif isinstance(msg, Open):
            # §13.3: no stream service here -> RESET(UnknownService) on the OPEN's link.
            self.count("streams_refused")
            link = via if peer.usable(via) else peer.preferred()
            self.send_control(peer, link, encode_reset(self.incarnation, msg.stream_id, 0,
                                                       RESET_UNKNOWN_SERVICE, ""))
        elif isinstance(msg, (Data, Status)):
            # §13.5: DATA, or a PROBE, for an unknown stream -> RESET(UnknownStream),
            # at the NotJoined rate; a STATUS without PROBE is ignored.
            self.count("stream_frames_dropped")
            if isinstance(msg, Data) or msg.flags & FLAG_PROBE:
                if self.notjoined_limit.allow(now):
                    flags = (msg.flags & FLAG_OPENER) ^ FLAG_OPENER
                    link = via if peer.usable(via) else peer.preferred()
                    self.send_control(peer, link, encode_reset(self.incarnation, msg.stream_id, flags,
                                                               RESET_UNKNOWN_STREAM, ""))
        elif isinstance(msg, Reset):
            self.count("stream_frames_dropped")       # §13.6: RESET for an unknown stream is ignored
        elif isinstance(msg, Fragment):
            self.on_fragment(peer, via, msg, now)
        elif isinstance(msg, Mark):
            # §13.9: answer every MARK at once with ACK on the link it came on.
            self.send_control(peer, via, encode_ack(self.incarnation, msg.token))
        elif isinstance(msg, Ack):
            lane = peer.lane(via)
            if lane is not None:
                lane.on_ack(msg.token, now)

    def on_part(self, peer: Peer) -> None:
        """§6.3: PART ends the session (Parted); a dialled peer is retried after backoff(1)."""
        self.end_session(peer, PARTED)
        if peer.dialled:
            peer.failures = 0                                   # §5.1: n := 0, then a failure
            self.fail_attempt(peer, None)
        else:
            self.forget_if_idle(peer)

    # -- large messages (§13.8) ------------------------------------------------
    def on_fragment(self, peer: Peer, via: str, msg: Fragment, now: float) -> None:
        s = peer.session
        table = s.reassembly
        piece = msg.payload
        if msg.offset == 0:
            old = table.pop(msg.transfer_id, None)
            if old is not None:                                 # a second start drops the first
                s.reassembly_bytes -= len(old.buf)
                self.drop("fragments_dropped", "transfer restarted")
            if msg.total > MAX_MESSAGE_SIZE:
                # §9: a REQUEST's caller is answered TooLarge instead of timing out.
                self.drop("oversized", f"fragmented message of {msg.total} bytes")
                if len(piece) >= 18 and piece[0] == WIRE_VERSION and piece[1] == REQUEST:
                    rid = struct.unpack(">Q", piece[10:18])[0]
                    text = (f"the request ({msg.total} bytes) is larger than the callee's "
                            f"max_message_size ({MAX_MESSAGE_SIZE})").encode("utf-8")
                    link = via if peer.usable(via) else peer.preferred()
                    self.send_control(peer, link, encode_reply(self.incarnation, rid, ST_TOO_LARGE, text))
                return
            if len(table) >= MAX_REASSEMBLY:
                # §13.8 step 1: dropped and counted; a REQUEST's caller is told.
                log.debug("%s: %d messages under reassembly", peer.name, MAX_REASSEMBLY)
                self._refuse_reassembly(peer, via, piece, b"too many large messages under way")
                return
            ra = Reassembly(msg.total, via, bytearray(), now)
            table[msg.transfer_id] = ra
        else:
            ra = table.get(msg.transfer_id)
            if ra is None:
                return self.drop("fragments_dropped", "piece of an unknown transfer")
        end = len(ra.buf) + len(piece)
        if (msg.offset != len(ra.buf) or via != ra.via or msg.total != ra.total or end > ra.total
                or (len(piece) < MIN_PIECE and end != ra.total)):
            s.reassembly_bytes -= len(ra.buf)
            del table[msg.transfer_id]
            return self.drop("fragments_dropped", "piece out of place")
        if s.reassembly_bytes + len(piece) > MAX_PEER_MEMORY:   # §9.1 memory share
            s.reassembly_bytes -= len(ra.buf)
            del table[msg.transfer_id]
            self._refuse_reassembly(peer, via, bytes(ra.buf[:22]) if ra.buf else piece)
            return
        ra.buf += piece
        s.reassembly_bytes += len(piece)
        ra.last_progress = now
        if end < ra.total:
            return
        del table[msg.transfer_id]
        s.reassembly_bytes -= len(ra.buf)
        whole = bytes(ra.buf)
        try:
            inner = decode_frame(whole)
        except WireError as e:
            return self.drop("malformed", f"reassembled: {e}")
        if not isinstance(inner, (Request, Reply, Cast, Open)):
            return self.drop("malformed", f"reassembled {inner.kind_name}")
        # "handles it as if it had arrived whole on that link" (§13.8 step 3)
        self.on_session_message(peer.name, via, inner)

    def _refuse_reassembly(self, peer: Peer, via: str, head: bytes,
                           why: bytes = b"no memory for a message this large") -> None:
        """§13.8 step 2: a piece the sender's memory share cannot hold drops the
        message; if its first piece starts with a REQUEST's wire version, kind
        and request id, that request is answered REPLY(Overloaded) on the link
        the pieces came on.  The inner header's incarnation is not checked."""
        self.drop("reassembly_refused")
        if len(head) >= 18 and head[0] == WIRE_VERSION and head[1] == REQUEST:
            rid = struct.unpack(">Q", head[10:18])[0]
            link = via if peer.usable(via) else peer.preferred()
            self.send_control(peer, link, encode_reply(self.incarnation, rid, ST_OVERLOADED, why))

    # -- callee (§7.2, §7.4, §7.6) ---------------------------------------------
    def run_handler(self, method: str, args: bytes) -> tuple[int, bytes]:
        """Run one of this peer's methods; returns (REPLY status, payload)."""
        service = reserved_service(method)
        if service is not None:
            # §7.6: we run none of the built-in services, so every reserved
            # REQUEST is NoService(service), the service possibly empty
            # (``bilateral.`` alone, or ``bilateral..x``).
            return ST_NO_SERVICE, service.encode("utf-8")
        handler = {"echo": self.h_echo, "add": self.h_add, "fail": self.h_fail,
                   "whoami": self.h_whoami, "record": self.h_record}.get(method)
        if handler is None:
            return ST_UNKNOWN_METHOD, method.encode("utf-8")
        try:
            return ST_OK, handler(args)
        except BadArguments as e:
            return ST_BAD_ARGUMENTS, str(e).encode("utf-8")
        except HandlerFailure as e:
            return ST_HANDLER_ERROR, str(e).encode("utf-8")
        except Exception as e:                     # §7.2: a panicking handler
            return ST_HANDLER_ERROR, f"handler panicked: {e}".encode("utf-8")

    @staticmethod
    def h_echo(args: bytes) -> bytes:
        """Returns its argument unchanged (the same MessagePack bytes)."""
        try:
            unpack(args)
        except Exception as e:
            raise BadArguments(f"arguments are not one MessagePack value: {e}") from None
        return args

    @staticmethod
    def h_add(args: bytes) -> bytes:
        """[a, b] (two integers) -> a + b."""
        try:
            v = unpack(args)
        except Exception as e:
            raise BadArguments(f"arguments are not MessagePack: {e}") from None
        if not (isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)):
            raise BadArguments("expected an array of two integers")
        try:
            return pack(v[0] + v[1])
        except Exception as e:                     # §7.2: the return value cannot be encoded
            raise HandlerFailure(f"cannot encode the result: {e}") from None

    @staticmethod
    def h_fail(args: bytes) -> bytes:
        raise HandlerFailure("python says no")

    def h_whoami(self, args: bytes) -> bytes:
        return pack(self.name)

    @staticmethod
    def h_record(args: bytes) -> bytes:
        return pack(None)

    def on_request(self, peer: Peer, via: str, msg: Request, received: float) -> None:
        s = peer.session
        if not s.first_time(msg.request_id):
            return self.drop("duplicate_requests", f"request {msg.request_id} already admitted")
        # §7.2: the deadline is receipt time + timeout_ms, checked before the handler starts.
        deadline = received + msg.timeout_ms / 1000.0
        if time.monotonic() >= deadline:
            return self.drop("requests_expired", f"{msg.method} from {peer.name}")
        status, payload = self.run_handler(msg.method, msg.args)
        frame = encode_reply(self.incarnation, msg.request_id, status, payload)
        # §1.4, §7.2: the REPLY goes on the request's link if usable, else the preferred one.
        link = via if peer.usable(via) else peer.preferred()
        if link is None:
            return self.count("replies_orphaned")
        self.send_windowed(peer, link, REPLY, frame)
        self.emit({"event": "served", "peer": peer.name, "method": msg.method, "status": status})

    def on_cast(self, peer: Peer, msg: Cast) -> None:
        if reserved_service(msg.method) is not None:
            # §7.6: a CAST for a service we do not run is dropped.
            return self.drop("casts_dropped", f"reserved method {msg.method}")
        self.run_handler(msg.method, msg.args)      # §7.4: result or error discarded
        ev = {"event": "cast", "peer": peer.name, "method": msg.method}
        try:
            ev["args"] = to_json(unpack(msg.args))
        except Exception as e:
            ev["args"] = None
            ev["args_error"] = str(e)
        self.emit(ev)

    # -- caller (§7.1, §7.3, §7.4) ---------------------------------------------
    def send_windowed(self, peer: Peer, via: str, kind: int, frame: bytes,
                      call: Optional[PendingCall] = None) -> None:
        """Hand a REQUEST, REPLY or CAST to a link's lane; FRAGMENTs if larger
        than the chunk size (§13.8)."""
        lane = peer.lane(via)
        inc = peer.session.incarnation
        if len(frame) > CHUNK_SIZE:
            peer.next_transfer_id = (peer.next_transfer_id + 1) & 0xFFFFFFFFFFFFFFFF
            lane.transfers.append(Transfer(peer.next_transfer_id, frame, inc, kind, call=call))
        else:
            lane.messages.append(Outgoing(kind, frame, inc, call))
        lane.pump(time.monotonic())

    def ready_to_send(self, peer: Peer, item: Outgoing, now: float) -> Optional[bytes]:
        """The frame of a waiting message as it leaves, or None to drop it (§7.1 step 3)."""
        if peer.session is None or peer.session.incarnation != item.incarnation:
            if item.kind == REPLY:
                self.count("replies_orphaned")
            return None
        if item.call is not None:
            if item.call.done:
                return None
            left = item.call.deadline - now
            if left <= 0:
                return None
            if item.call.sent:
                return item.frame
            return rewrite_request_timeout(item.frame, math.ceil(left * 1000))
        return item.frame

    def transfer_wanted(self, peer: Peer, t: Transfer) -> bool:
        if peer.session is None or peer.session.incarnation != t.incarnation:
            return False
        return t.call is None or not t.call.done

    def send_failed(self, peer: Peer, call: Optional[PendingCall], kind: int,
                    item: Optional[Outgoing] = None, via: Optional[str] = None) -> None:
        """§6.2, §7.3: a frame that could not be handed to a connection.

        A REQUEST's call fails (Unreachable).  A REPLY is offered to the
        peer's other link if it has one (§7.2: a computed reply is never
        dropped by the node that computed it while the session lasts)."""
        self.count("send_failures")
        if item is not None and kind == REPLY and via is not None:
            other = IN if via == OUT else OUT
            lane = peer.lane(other)
            if lane is not None:
                lane.messages.append(item)
                lane.pump(time.monotonic())
                return
            self.count("replies_orphaned")
        if call is not None and not call.done:
            self.finish_call(call, error={"kind": "unreachable",
                                          "message": "the frame could not be handed to a connection"})

    def call(self, cmd_id: Any, peer_name: str, method: str, args: bytes, timeout_ms: float) -> None:
        """§7.1: one call to one target; the outcome is reported via finish_call."""
        def fail(kind: str, message: str, **extra):
            self.emit({"id": cmd_id, "ok": False, "error": {"kind": kind, "message": message, **extra}})
        if self.closed:
            return fail("shutting_down", "node closed")
        if timeout_ms <= 0:
            return fail("expired", "the deadline passed before the request could leave")
        if len(self.pending) >= MAX_PENDING_CALLS:
            return fail("overloaded", "too many calls pending (local)")
        peer = self.peers.get(peer_name)
        if peer is None or peer_name == self.name:
            return fail("unreachable", "unknown peer")
        if peer.session is None or peer.preferred() is None:
            refusal = peer.last_refusal
            extra = {}
            if refusal is not None:
                extra["refusal"] = {"code": refusal[0], "name": REJECT_NAMES.get(refusal[0], "?"),
                                    "detail": refusal[1]}
            return fail("unreachable", "no session with that peer", **extra)
        via = peer.preferred()
        lane = peer.lane(via)
        if lane.queued_bytes() + len(args) > MAX_PEER_MEMORY:        # §9.1
            return fail("overloaded", "the peer's memory bound (local)")
        rid = self.next_request_id
        while self.pending_ids[rid]:                     # §2: skip ids still pending
            rid = (rid + 1) & 0xFFFFFFFFFFFFFFFF
        self.next_request_id = (rid + 1) & 0xFFFFFFFFFFFFFFFF
        now = time.monotonic()
        call = PendingCall(cmd_id, peer.name, rid, method, now + timeout_ms / 1000.0,
                           peer.session.incarnation)
        self.pending[(peer.name, rid)] = call
        self.pending_ids[rid] += 1
        heapq.heappush(self.deadlines, (call.deadline, rid, peer.name))
        # §7.1 step 2: timeout_ms = what is left, rounded up.
        frame = encode_request(self.incarnation, rid, math.ceil(timeout_ms), method, args)
        self.send_windowed(peer, via, REQUEST, frame, call)

    def finish_call(self, call: PendingCall, result: Any = None, error: Optional[dict] = None) -> None:
        if call.done:
            return
        call.done = True
        key = (call.peer, call.request_id)
        if self.pending.get(key) is call:
            del self.pending[key]
            self.pending_ids[call.request_id] -= 1
            if not self.pending_ids[call.request_id]:
                del self.pending_ids[call.request_id]
        if error is None:
            self.emit({"id": call.cmd_id, "ok": True, "result": result})
        else:
            self.emit({"id": call.cmd_id, "ok": False, "error": error})

    def on_reply(self, peer: Peer, msg: Reply) -> None:
        """§7.1: REPLYs match on (sending peer, request id); §7.3 maps the status.

        REPLY status -> control-protocol error kind:
          0 Ok            -> ok:true, result (an undecodable payload -> "protocol")
          1 HandlerError  -> "remote_error" (message = the handler's text)
          2 UnknownMethod -> "unknown_method"
          3 BadArguments  -> "bad_arguments"
          4 Overloaded    -> "overloaded"
          5 ShuttingDown  -> "shutting_down"
          6 TypedError    -> "typed_error" (message, and "data" = the decoded error)
          7 NoService     -> "no_service" (message = the service name)
          8 TooLarge      -> "too_large" (message = the callee's text)
          other s         -> "protocol" (status = s, message = "status s: text")
        Outcomes without a REPLY: deadline -> "timeout"; session ended ->
        "unreachable" with "reason"; no session / unknown peer / frame not
        handed to a connection -> "unreachable"; deadline passed before the
        REQUEST left -> "expired"; node quitting -> "shutting_down".
        """
        call = self.pending.get((peer.name, msg.request_id))
        if call is None or call.incarnation != peer.session.incarnation:
            return self.drop("late_replies", f"request {msg.request_id} from {peer.name}")
        st, payload = msg.status, msg.payload
        if st == ST_OK:
            try:
                result = to_json(unpack(payload))
            except Exception as e:
                return self.finish_call(call, error={"kind": "protocol", "status": st,
                                                     "message": f"bad reply: {e}"})
            return self.finish_call(call, result=result)
        if st == ST_TYPED_ERROR:
            err = {"kind": "typed_error", "status": st}
            try:
                # §3.4: a MessagePack array [message (str), error (bin)]; anything else is text.
                message, encoded = unpack(payload)
                if not isinstance(message, str):
                    raise ValueError("TypedError message is not a str")
                err["message"] = message
                try:
                    err["data"] = to_json(unpack(encoded)) if isinstance(encoded, bytes) else to_json(encoded)
                except Exception:
                    err["data"] = to_json(encoded)
            except Exception:
                err["message"] = text_payload(payload)
                err["data"] = None
            return self.finish_call(call, error=err)
        kinds = {ST_HANDLER_ERROR: "remote_error", ST_UNKNOWN_METHOD: "unknown_method",
                 ST_BAD_ARGUMENTS: "bad_arguments", ST_OVERLOADED: "overloaded",
                 ST_SHUTTING_DOWN: "shutting_down", ST_NO_SERVICE: "no_service",
                 ST_TOO_LARGE: "too_large"}
        text = text_payload(payload)
        if st in kinds:
            return self.finish_call(call, error={"kind": kinds[st], "status": st, "message": text})
        # §3.3, §7.3: unknown status -> a generic remote failure "status s: text".
        self.finish_call(call, error={"kind": "protocol", "status": st, "message": f"status {st}: {text}"})

    def cast(self, peer_name: str, method: str, args: bytes) -> Optional[str]:
        """§7.4: a CAST on the preferred link; returns an error text if not sent."""
        peer = self.peers.get(peer_name)
        if peer is None or peer.session is None or peer.preferred() is None:
            return "no session with that peer"
        frame = encode_cast(self.incarnation, method, args)
        self.send_windowed(peer, peer.preferred(), CAST, frame)
        return None

    # -- ZAP (§10.3) -----------------------------------------------------------
    def on_zap(self) -> None:
        try:
            frames = self.zap.recv_multipart(zmq.DONTWAIT)
        except zmq.Again:
            return
        reqid = frames[1] if len(frames) > 1 else b""
        def answer(code: bytes, text: bytes, user: bytes = b"") -> None:
            self.zap.send_multipart([b"1.0", reqid, code, text, user, b""])
        if len(frames) < 7 or frames[0] != b"1.0" or frames[5] != b"CURVE" or len(frames[6]) != 32:
            return answer(b"500", b"bad ZAP request")
        key = z85.encode(frames[6]).decode("ascii")
        if self.key_allowed(key):
            answer(b"200", b"OK", key.encode("ascii"))
        else:
            answer(b"400", b"key not allowed")
            self.drop("unauthorized", f"key {key} from {frames[3].decode('ascii', 'replace')}")

    # -- timers (§5.1, §6.2, §7.1, §8, §13.8) ----------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        for peer in list(self.peers.values()):
            self._tick_peer(peer, now)
        while self.deadlines and self.deadlines[0][0] <= now:
            _, rid, name = heapq.heappop(self.deadlines)
            call = self.pending.get((name, rid))
            if call is not None and call.deadline <= now:
                if call.sent:
                    self.finish_call(call, error={"kind": "timeout", "message": "no reply by the deadline"})
                else:
                    self.finish_call(call, error={"kind": "expired",
                                                  "message": "the deadline passed before the request could leave"})

    def _tick_peer(self, peer: Peer, now: float) -> None:
        o = peer.out
        if o is not None:
            if o.state == JOINING:
                if now - o.attempt_start >= JOIN_TIMEOUT:
                    self.fail_attempt(peer, None)
                elif now - o.last_join >= JOIN_RETRY:
                    self._send_join(peer, now)               # the same JOIN again
            elif o.state == WAITING:
                if now >= o.next_attempt:
                    self.start_attempt(peer)
            elif o.state == UP and now - o.last_recv >= self.lost:
                # §5.1, §6.2: the outbound link is dead; re-dial at once, no backoff.
                log.info("outbound link to %s silent", peer.name)
                inbound_alive = peer.inbound is not None and now - peer.inbound.last_recv < self.lost
                if not inbound_alive:
                    self.end_session(peer, TIMEOUT)
                self.start_attempt(peer)
        if peer.inbound is not None and now - peer.inbound.last_recv >= self.lost:
            # §6.2: the inbound link is dead; without an Up outbound link the session ends.
            log.info("inbound link from %s silent", peer.name)
            self._retire_inbound_lane(peer)
            peer.inbound = None
            if not peer.out_up():
                self.end_session(peer, TIMEOUT)
                self.forget_if_idle(peer)
                return
        s = peer.session
        if s is None:
            return
        if now >= s.next_ping:                                 # §6.2
            s.next_ping = now + self.heartbeat
            via = peer.preferred()
            if via is not None:
                s.nonce += 1
                if self.send_control(peer, via, encode_ping(self.incarnation, s.nonce)):
                    s.last_nonce = s.nonce
                    s.last_ping_at = now
        for tid, ra in list(s.reassembly.items()):             # §13.8 step 4
            if now - ra.last_progress >= self.lost:
                del s.reassembly[tid]
                s.reassembly_bytes -= len(ra.buf)
                self.drop("fragments_dropped", "transfer idle for lost_timeout")
        for via in (OUT, IN):
            lane = peer.lane(via)
            if lane is not None:
                lane.periodic(now)

    # -- leaving (§6.3) ----------------------------------------------------------
    def disconnect(self, name: str) -> bool:
        """§6.3 Disconnect: PART(Disconnect) on every live link, end the session,
        close the DEALER, forget the peer."""
        peer = self.peers.get(name)
        if peer is None:
            return False
        if peer.session is not None:
            frame = encode_part(self.incarnation, PART_DISCONNECT)
            if peer.out_up():
                self.send_control(peer, OUT, frame)
            if peer.inbound is not None:
                self.send_control(peer, IN, frame)
            self.end_session(peer, DISCONNECTED)
        if peer.out is not None:
            self._close_dealer(peer)
        del self.peers[name]
        return True

    def close(self) -> None:
        """§6.3 Closing: fail our calls, PART(Closing) on every live link, close with linger."""
        if self.closed:
            return
        self.closed = True
        for call in list(self.pending.values()):
            self.finish_call(call, error={"kind": "shutting_down", "message": "node closed"})
        for peer in self.peers.values():
            if peer.session is None:
                continue
            frame = encode_part(self.incarnation, PART_CLOSING)
            if peer.out_up():
                self.send_control(peer, OUT, frame)
            if peer.inbound is not None:
                self.send_control(peer, IN, frame)
        for peer in self.peers.values():
            if peer.out is not None:
                self._close_dealer(peer)
        self.router.close(linger=LINGER_MS)
        if self.zap is not None:
            self.zap.close(linger=0)
        self.ctx.term()                     # waits at most the linger time for the PARTs


def normalise_bind(endpoint: str) -> str:
    """``tcp://host:0`` means any free port, as ``tcp://host:*`` (§1.2)."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        return endpoint[:-2] + ":*"
    return endpoint


def load_allow_file(path: str) -> set[str]:
    """A key list file (§10.3): one Z85 public key per line.

    Each line is trimmed; blank lines and lines starting with ``#`` are
    skipped, as the Rust implementation reads them.  ``#`` is a Z85 digit, so
    a key whose text starts with ``#`` cannot be listed in such a file (it is
    skipped with a warning here).  Any other line that is not a key is an error."""
    keys = set()
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                if is_z85_key(line):
                    log.warning("%s:%d: a key starting with '#' is read as a comment", path, n)
                continue
            if not is_z85_key(line):
                raise SystemExit(f"{path}:{n}: not a Z85 public key")
            keys.add(line)
    return keys


# ---------------------------------------------------------------------------
# Control protocol (JSON lines on stdin / stdout)
# ---------------------------------------------------------------------------

class Control:
    """Reads commands from stdin, writes responses and events to stdout.

    Commands (each with an "id" echoed by its response):
      dial {peer, endpoint}         -> ok at once; the session is the "joined" event
      call {peer, method, args, timeout_ms}
                                    -> ok + result, or error kind (see Node.on_reply)
      cast {peer, method, args}     -> ok once queued (unreachable without a session)
      peers                         -> [{name, incarnation, state, outbound, inbound,
                                        dialled, srtt_ms?, last_refusal?}]
                                       state: "up" (in session) / "joining" / "waiting"
      disconnect {peer}             -> §6.3 PART(Disconnect), forget the peer (extra)
      stats                         -> {counters} (extra)
      quit                          -> PART(Closing) to every peer, respond, exit 0
      crash                         -> os._exit(0), nothing sent
    Malformed commands answer kind "bad_command" (or "bad_name" for a bad dial name).

    Events: ready, joined, left (PART), lost (any other end; "reason" is
    timeout, restarted, reset or disconnected), cast, served, dropped
    (reason = the §9 counter name, optional "detail").
    """

    def __init__(self, args: argparse.Namespace):
        self.buffer = b""
        self.quitting = False
        self.stdout_broken = False
        self.node = Node(args, self.write)

    def write(self, obj: dict) -> None:
        """One JSON object per line, flushed.  If stdout is gone (the driver
        died), leave the mesh as on end of stdin."""
        if getattr(self, "stdout_broken", False):
            return
        try:
            sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            self.stdout_broken = True
            self.quitting = True

    def run(self) -> None:
        node = self.node
        self.write({"event": "ready", "name": node.name, "endpoint": node.endpoints[0] if node.endpoints else None,
                    "endpoints": node.endpoints, "incarnation": node.incarnation})
        node.poller.register(sys.stdin.fileno(), zmq.POLLIN)
        while not self.quitting:
            try:
                events = node.poller.poll(20)
            except zmq.ZMQError as e:
                if e.errno == zmq.EINTR:
                    continue
                raise
            for sock, _ in events:
                if sock == sys.stdin.fileno():
                    self.on_stdin()
                    if self.quitting:
                        break
                elif sock is node.router:
                    node.on_router_readable()
                elif sock is node.zap:
                    node.on_zap()
                elif sock in node.dealer_owner:
                    node.on_dealer_readable(sock)
                elif sock in node.monitor_owner:
                    node.on_monitor_event(sock)
            if self.quitting:
                break
            try:
                node.tick()
            except Exception:
                log.exception("error in timers")

    def on_stdin(self) -> None:
        data = os.read(sys.stdin.fileno(), 1 << 20)
        if not data:
            self.quit(None)                          # end of stdin = quit
            return
        self.buffer += data
        while b"\n" in self.buffer and not self.quitting:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.on_line(line)

    def on_line(self, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("a command is a JSON object")
        except Exception as e:
            return self.write({"id": None, "ok": False, "error": {"kind": "bad_command", "message": str(e)}})
        cmd_id = cmd.get("id")
        try:
            self.on_command(cmd_id, cmd)
        except CommandError as e:
            self.write({"id": cmd_id, "ok": False, "error": {"kind": e.kind, "message": str(e)}})
        except Exception as e:
            log.exception("command failed")
            self.write({"id": cmd_id, "ok": False, "error": {"kind": "bad_command", "message": repr(e)}})

    def on_command(self, cmd_id: Any, cmd: dict) -> None:
        node = self.node
        op = cmd.get("op")
        if op == "crash":
            os._exit(0)                              # like kill -9: nothing is sent
        if op == "quit":
            return self.quit(cmd_id)
        if op == "dial":
            name, endpoint = _str_field(cmd, "peer"), _str_field(cmd, "endpoint")
            err = name_error(name.encode("utf-8"))
            if err:
                raise CommandError("bad_name", err)
            if node.curve and not is_z85_key(name):  # §10.1: refused at connect time
                raise CommandError("bad_name", "a CURVE peer name must be a Z85 public key")
            if name == node.name:
                raise CommandError("bad_name", "cannot dial my own name")
            node.dial(name, endpoint)
            return self.write({"id": cmd_id, "ok": True})
        if op in ("call", "cast"):
            peer, method = _str_field(cmd, "peer"), _str_field(cmd, "method")
            raw = method.encode("utf-8")
            if not 1 <= len(raw) <= 255 or any(unicodedata.category(c) == "Cc" for c in method):
                raise CommandError("bad_command", "method must be 1-255 bytes without control characters")
            try:
                args = pack(cmd.get("args"))
            except Exception as e:
                raise CommandError("bad_command", f"args cannot be encoded: {e}") from None
            if op == "call":
                timeout = cmd.get("timeout_ms", 5000)
                if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
                    raise CommandError("bad_command", "timeout_ms must be a number")
                return node.call(cmd_id, peer, method, args, timeout)
            err = node.cast(peer, method, args)
            if err:
                raise CommandError("unreachable", err)
            return self.write({"id": cmd_id, "ok": True})
        if op == "disconnect":
            if not node.disconnect(_str_field(cmd, "peer")):
                raise CommandError("unreachable", "unknown peer")
            return self.write({"id": cmd_id, "ok": True})
        if op == "peers":
            return self.write({"id": cmd_id, "ok": True, "peers": [self.describe(p) for p in node.peers.values()]})
        if op == "stats":
            return self.write({"id": cmd_id, "ok": True, "counters": dict(node.counters)})
        raise CommandError("bad_command", f"unknown op {op!r}")

    def describe(self, p: Peer) -> dict:
        s = p.session
        if s is not None:
            state = "up"
        elif p.out is not None:
            state = p.out.state
        else:
            state = "unknown"
        d = {"name": p.name, "incarnation": s.incarnation if s else None, "state": state,
             "outbound": p.out.state if p.out else None, "inbound": p.inbound is not None,
             "dialled": p.dialled}
        if s is not None and s.srtt is not None:
            d["srtt_ms"] = round(s.srtt * 1000, 3)
        if p.last_refusal is not None:
            d["last_refusal"] = {"code": p.last_refusal[0],
                                 "name": REJECT_NAMES.get(p.last_refusal[0], "?"),
                                 "detail": p.last_refusal[1]}
        return d

    def quit(self, cmd_id: Any) -> None:
        """§6.3: PART(Closing) to every peer, respond, exit 0."""
        self.quitting = True
        self.node.close()
        if cmd_id is not None:
            self.write({"id": cmd_id, "ok": True})


class CommandError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _str_field(cmd: dict, key: str) -> str:
    v = cmd.get(key)
    if not isinstance(v, str) or not v:
        raise CommandError("bad_command", f"{key!r} must be a non-empty string")
    return v


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Bilateral protocol v1 reference peer (Python)")
    p.add_argument("--name", help="node name (ignored with --curve-secret: the name is the public key)")
    p.add_argument("--listen", action="append", default=[], help="endpoint to bind (repeatable)")
    p.add_argument("--curve-secret", help="zcert secret key file (NAME.key_secret): CURVE mode")
    p.add_argument("--allow", action="append", default=[], help="allow file: one Z85 key per line")
    p.add_argument("--allow-any", action="store_true", help="CURVE: allow any key")
    p.add_argument("--heartbeat-ms", type=int, default=1000, help="heartbeat interval (§8, default 1000)")
    p.add_argument("--lost-ms", type=int, default=5000, help="lost timeout (§8, default 5000)")
    p.add_argument("--network", default="", help="network name (§2, default empty)")
    p.add_argument("--log-level", default=os.environ.get("BILATERAL_PEER_LOG", "INFO"))
    a = p.parse_args(argv)
    if not 0 < a.heartbeat_ms < a.lost_ms:
        p.error("need 0 < heartbeat-ms < lost-ms (§6.2)")
    if len(a.network.encode("utf-8")) > 255:
        p.error("network name longer than 255 bytes")
    return a


def main() -> None:
    args = parse_args()
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    control = Control(args)
    control.run()
    control.node.close()          # no-op after quit; leaves properly if stdout broke
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
