#!/usr/bin/env python3
"""A payment app written from docs/protocol.md ("Payment app socket") alone.

Python 3 standard library only: protobuf varint and length-delimited coding by hand (pbwire.py,
shared with the interop acquirer) from the field numbers on that page, its own framing, nothing
generated and nothing of the agent's code.
It drives one agent through the socket and prints one JSON object per line (each with "step"),
which test/integration/interop-payment-app.test.ts checks.

Usage: payment_app.py SOCKET_PATH ID_PREFIX [--after-restart]     (or: payment_app.py --example)
"""

import json
import os
import socket
import sys
import time

MAX_FRAME = 65536  # the payment-app socket's fixed maximum payload

# ------------------------------------------------------------------ protobuf, by hand (pbwire.py)

from pbwire import f_int, f_msg, i, one, parse, s  # noqa: E402
from pbwire import f_bytes as f_str  # noqa: E402


# ------------------------------------------------------------------ the messages on the page

# LocalRequest: request_id 1; record 10, may_transact 11, query 12, advice_outcomes 30
# LocalReply: request_id 1; record 10, may_transact 11, transaction 12, error 20, advice_outcomes 30


def card_data(pan, cvv="", track2="", pin_block=b""):
    # CardData: pan 1, cvv 2, track2 3, pin_block 4
    return f_str(1, pan) + f_str(2, cvv) + f_str(3, track2) + f_str(4, pin_block)


def record_request(type_, amount, status, local_id, card=None, currency="", auth_code="",
                   original_seq=0, approved_at_ms=0):
    # RecordRequest: type 1, amount 2, currency 3, card 4, status 5, auth_code 6,
    # original_seq 7, local_id 8, approved_at_ms 9
    return (f_str(1, type_) + f_int(2, amount) + f_str(3, currency) + f_msg(4, card)
            + f_str(5, status) + f_str(6, auth_code) + f_int(7, original_seq)
            + f_str(8, local_id) + f_int(9, approved_at_ms))


def local_request(request_id, record=None, may_transact=False, query_seq=None,
                  advice_outcomes=None, query_local_id=None):
    out = f_str(1, request_id)
    if record is not None:
        out += f_msg(10, record)
    elif may_transact:
        out += f_msg(11, b"")
    elif query_seq is not None:
        out += f_msg(12, f_int(1, query_seq))  # QueryRequest: seq 1
    elif query_local_id is not None:
        out += f_msg(12, f_str(2, query_local_id))  # QueryRequest: local_id 2
    elif advice_outcomes is not None:
        after_seq, limit = advice_outcomes  # AdviceOutcomesRequest: after_seq 1, limit 2
        out += f_msg(30, f_int(1, after_seq) + f_int(2, limit))
    return out


def frame(payload):
    return len(payload).to_bytes(4, "big") + payload


def decode_reply(payload):
    f = parse(payload)
    reply = {"request_id": s(f, 1)}
    if 10 in f:  # RecordReply
        r = parse(one(f, 10))
        reply["record"] = {
            "seq": i(r, 1), "fee": i(r, 2), "fee_schedule_version": s(r, 3),
            "masked_pan": s(r, 4), "status": s(r, 5), "local_id": s(r, 6),
            "batch_id": s(r, 7), "duplicate": bool(i(r, 8)),
        }
    elif 11 in f:  # MayTransactReply
        r = parse(one(f, 11))
        reply["may_transact"] = {
            "allowed": bool(i(r, 1)), "state": s(r, 2),
            "locks": [v.decode() for v in r.get(3, [])], "reason": s(r, 4),
        }
    elif 12 in f:  # TransactionView
        r = parse(one(f, 12))
        reply["transaction"] = {
            "seq": i(r, 1), "local_id": s(r, 2), "type": s(r, 3), "amount": i(r, 4),
            "currency": s(r, 5), "fee": i(r, 6), "status": s(r, 7), "masked_pan": s(r, 8),
            "auth_code": s(r, 9), "original_seq": i(r, 10), "batch_id": s(r, 11),
            "created_at_ms": i(r, 12), "advice_state": s(r, 30),
            "advice_reference": s(r, 31), "advice_reason_code": s(r, 32),
            "advice_reason": s(r, 33),
        }
    elif 20 in f:  # ErrorReply: code 1, message 2
        r = parse(one(f, 20))
        reply["error"] = {"code": s(r, 1), "message": s(r, 2)}
    elif 30 in f:  # AdviceOutcomesReply: outcomes 1 (AdviceOutcomeView), pending 2
        r = parse(one(f, 30))
        outcomes = []
        for raw in r.get(1, []):
            o = parse(raw)
            outcomes.append({
                "seq": i(o, 1), "outcome_seq": i(o, 2), "local_id": s(o, 3), "type": s(o, 4),
                "amount": i(o, 5), "outcome": s(o, 6), "reference": s(o, 7),
                "reason_code": s(o, 8), "reason": s(o, 9), "answered_at_ms": i(o, 10),
            })
        reply["advice_outcomes"] = {"outcomes": outcomes, "pending": i(r, 2)}
    return reply


# ------------------------------------------------------------------ the connection


class Agent:
    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.serial = 0

    def next_id(self):
        self.serial += 1
        return "py-%d-%d" % (os.getpid(), self.serial)

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_frame(self):
        """One reply payload, or None when the agent closed the connection."""
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[:4], "big")
                if n == 0 or n > MAX_FRAME:
                    raise ValueError("bad frame length %d from the agent" % n)
                if len(self.buf) >= 4 + n:
                    payload, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    return payload
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def ask(self, build):
        """Sends one request (build(request_id) -> payload) and reads its reply."""
        rid = self.next_id()
        self.send_raw(frame(build(rid)))
        payload = self.read_frame()
        if payload is None:
            raise ConnectionError("the agent closed the connection")
        reply = decode_reply(payload)
        if reply["request_id"] != rid:
            raise ValueError("reply for %r, expected %r" % (reply["request_id"], rid))
        return reply

    def close(self):
        self.sock.close()


def out(step, **kw):
    kw["step"] = step
    sys.stdout.write(json.dumps(kw, sort_keys=True) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------ the run

CARD = "4111111111111111"
CARD_B = "5500005555555559"
CARD_CVV = "4012888888881881"  # offered only together with a CVV: must never be stored
ACKED = []


def record(agent, step, **kw):
    reply = agent.ask(lambda rid: local_request(rid, record=record_request(**kw)))
    if "record" in reply:
        ACKED.append(reply["record"]["local_id"])
    out(step, **reply)
    return reply


def example():
    """The worked example's request frame, encoded by this program."""
    rec = record_request("sale", 88800, "approved", "POS-0001", card=card_data(CARD),
                         auth_code="A1B2C3")
    out("example", hex=frame(local_request("r1", record=rec)).hex(),
        may_transact_hex=frame(local_request("m", may_transact=True)).hex())


def bad_frames(path, prefix):
    # A malformed frame (not a LocalRequest) with a good request right behind it in the same write:
    # the error reply, then the close; the good one is never read.
    a = Agent(path)
    good = local_request(prefix + "-after-bad", may_transact=True)
    a.send_raw(frame(b"\xff\xff\xff") + frame(good))
    replies = []
    while True:
        p = a.read_frame()
        if p is None:
            break
        replies.append(decode_reply(p))
    out("malformed", replies=replies, closed=True)
    a.close()
    # A length prefix over 64 KiB: refused as soon as its 4 bytes arrive.
    b = Agent(path)
    b.send_raw((MAX_FRAME + 1).to_bytes(4, "big"))
    replies = []
    while True:
        p = b.read_frame()
        if p is None:
            break
        replies.append(decode_reply(p))
    out("oversized", replies=replies, closed=True)
    b.close()


def pipeline(path, prefix, sale_seq):
    """Five requests written at once on one connection; replies matched by request_id."""
    a = Agent(path)
    ids = ["%s-pipe-%d" % (prefix, n) for n in range(5)]
    reqs = [
        local_request(ids[0], may_transact=True),
        local_request(ids[1], query_seq=sale_seq),
        local_request(ids[2], record=record_request(
            "sale", 1500, "approved", prefix + "-P1", card=card_data(CARD))),
        local_request(ids[3], record=record_request(
            "sale", 0, "approved", prefix + "-P2", card=card_data(CARD))),
        local_request(ids[4], advice_outcomes=(0, 1)),
    ]
    a.send_raw(b"".join(frame(r) for r in reqs))
    by_id = {}
    order = []
    for _ in reqs:
        reply = decode_reply(a.read_frame())
        by_id[reply["request_id"]] = reply
        order.append(reply["request_id"])
    a.close()
    if "record" in by_id[ids[2]]:
        ACKED.append(by_id[ids[2]]["record"]["local_id"])
    out("pipeline", sent=ids, order=order,
        kinds=[sorted(k for k in by_id[rid] if k != "request_id")[0] for rid in ids],
        record=by_id[ids[2]].get("record"), error=by_id[ids[3]].get("error"),
        queried=by_id[ids[1]].get("transaction", {}).get("seq"))


def poll_outcomes(agent, want, deadline_s=12.0):
    """Outcomes after the cursor until `want` local ids are answered (or the deadline)."""
    after = 0
    seen = {}
    polls = 0
    end = time.time() + deadline_s
    while time.time() < end:
        r = agent.ask(lambda rid: local_request(rid, advice_outcomes=(after, 50)))
        polls += 1
        got = r["advice_outcomes"]["outcomes"]
        for o in got:
            seen[o["local_id"]] = o
            after = max(after, o["outcome_seq"])
        if all(w in seen for w in want):
            out("outcomes", outcomes=[seen[w] for w in want], after=after, polls=polls,
                pending=r["advice_outcomes"]["pending"])
            return after
        if not got:
            time.sleep(0.2)
    out("outcomes", outcomes=list(seen.values()), after=after, polls=polls, timeout=True)
    return after


def after_restart(path, prefix):
    """The agent was killed and started again: connect (retrying while it starts) and resend the
    first sale with its local_id, as an app does for a record whose reply it never read."""
    end = time.time() + 15.0
    while True:
        try:
            agent = Agent(path)
            break
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.2)
    record(agent, "after_restart", type_="sale", amount=12800, status="approved",
           local_id=prefix + "-S1", card=card_data(CARD), auth_code="AUTH01")
    # Or, without resending anything: ask for it by the app's own id.
    out("query_local_id", **agent.ask(
        lambda rid: local_request(rid, query_local_id=prefix + "-S1")))
    agent.close()


def main():
    if sys.argv[1:] == ["--example"]:
        example()
        return
    path, prefix = sys.argv[1], sys.argv[2]
    if sys.argv[3:] == ["--after-restart"]:
        after_restart(path, prefix)
        return
    example()
    agent = Agent(path)
    out("may_transact", **agent.ask(lambda rid: local_request(rid, may_transact=True)))

    sale = record(agent, "sale", type_="sale", amount=12800, status="approved",
                  local_id=prefix + "-S1", card=card_data(CARD), auth_code="AUTH01")
    seq = sale["record"]["seq"]
    record(agent, "refund", type_="refund", amount=2800, status="approved",
           local_id=prefix + "-R1", original_seq=seq)
    sale2 = record(agent, "sale2", type_="sale", amount=6600, status="approved",
                   local_id=prefix + "-S2", card=card_data(CARD_B))
    record(agent, "void", type_="void", amount=6600, status="approved",
           local_id=prefix + "-V1", original_seq=sale2["record"]["seq"])
    now_ms = int(time.time() * 1000)
    record(agent, "offline", type_="sale", amount=5000, status="pending-offline",
           local_id=prefix + "-O1", card=card_data(CARD), approved_at_ms=now_ms - 1000)
    record(agent, "offline_big", type_="sale", amount=30000, status="pending-offline",
           local_id=prefix + "-O2", card=card_data(CARD), approved_at_ms=now_ms)
    # The same record again, as after a lost reply: the first result, duplicate=true.
    record(agent, "repeat", type_="sale", amount=12800, status="approved",
           local_id=prefix + "-S1", card=card_data(CARD), auth_code="AUTH01")
    out("query", **agent.ask(lambda rid: local_request(rid, query_seq=seq)))
    out("query_missing", **agent.ask(lambda rid: local_request(rid, query_seq=999999)))

    # Typed refusals; the connection stays up after each.
    record(agent, "refund_no_original", type_="refund", amount=100, status="approved",
           local_id=prefix + "-E1")
    record(agent, "zero_amount", type_="sale", amount=0, status="approved",
           local_id=prefix + "-E2", card=card_data(CARD))
    record(agent, "huge_amount", type_="sale", amount=1 << 53, status="approved",
           local_id=prefix + "-E5", card=card_data(CARD))
    record(agent, "negative_amount", type_="sale", amount=-500, status="approved",
           local_id=prefix + "-E6", card=card_data(CARD))
    record(agent, "cvv", type_="sale", amount=700, status="approved",
           local_id=prefix + "-E3", card=card_data(CARD_CVV, cvv="123"))
    record(agent, "no_local_id", type_="sale", amount=700, status="approved",
           local_id="", card=card_data(CARD))
    record(agent, "refund_too_much", type_="refund", amount=10001, status="approved",
           local_id=prefix + "-E4", original_seq=seq)

    pipeline(path, prefix, seq)
    poll_outcomes(agent, [prefix + "-O1", prefix + "-O2"])
    agent.close()
    bad_frames(path, prefix)
    out("acknowledged", local_ids=ACKED)


if __name__ == "__main__":
    main()
