#!/usr/bin/env python3
"""An acquirer host written from docs/protocol.md and pos.proto's field numbers alone.

Python 3 standard library only: mutual TLS with the ssl module (the terminal id is the client
certificate CN), its own framing, protobuf varint / length-delimited coding by hand (pbwire.py,
shared with the interop payment app), nothing generated and nothing of the agent's code. Ed25519 (the command key, the terminal's signed results) goes
through the `openssl` command line (OpenSSL 3), with keys in files.

It activates terminals by code (each code once; a lost answer granted again), answers Hello
(with the remote witness's head check), heartbeats, polls, risk reports, deactivation requests
and offline advices, settles batches exactly once, pushes signed commands and verifies the
signed results, and on request answers a batch OutOfBalance and takes its windowed detail upload
(totals recomputed from the rows, the digest checked). It prints one JSON object per line on
stdout (each with "event"), which test/integration/interop-acquirer.test.ts checks.

Usage: acquirer.py --ca CA.crt --cert SERVER.crt --key SERVER.key --dir WORKDIR --code CODE[,CODE]

Control, one line at a time on stdin (commands go to the terminal connected last):
  commands     lock REASON | unlock [REASON] | unlock-source SOURCE | status | settle-now |
               risk CODE SEVERITY | decide approve|reject REASON | deactivate violation|review
               REASON | fees VERSION RATE_BP FIXED MINIMUM CAP EFFECTIVE_IN_MS [CATEGORY] |
               rotate (a new key, pinned by a command the old one signs) | again N (deliver
               command N again, same envelope) | hold on|off (leave new commands to the next
               CommandPoll) | bad expired|future|lifetime|short-nonce|wrong-terminal|
               bad-signature|old-key (a status command failing that check)
  settlement   oob (the next new batch is OutOfBalance) | lose-ack (settle the next new batch,
               close instead of answering) | reject (the next new batch: SETTLEMENT_REJECTED) |
               reject-detail (the next upload as if it did not hash) | window N |
               ack-delay MS | ack-reverse on|off | drop-at-chunk N (store it, close unanswered) |
               huge-totals (once: a BatchAck with net_amount 2^53)
  other        lose activation|deactivation (do it, close unanswered) | bad-grant (once: a
               schedule without a default rule) | advices refuse|take | early-push (once: a
               command before the HelloAck, which the page forbids) | stray (push a
               HeartbeatAck, answer a request never made) | garbage too-large|zero|
               unknown-body|other-terminal (a frame the terminal must refuse) | quit
"""

import argparse
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

MAX_FRAME = 1 << 20  # the terminal's default maximum; we must not send more

# ------------------------------------------------------------------ protobuf, by hand (pbwire.py)

from pbwire import b, f_bytes, f_int, f_msg, i, one, parse, s  # noqa: E402


# ------------------------------------------------------------------ the messages we use

# Envelope: message_id 1, terminal_id 2, correlation_id 3, sent_at_ms 4; body oneof:
HELLO, HELLO_ACK, HEARTBEAT, HEARTBEAT_ACK = 10, 11, 12, 13
BATCH_SUBMIT, BATCH_ACK, OUT_OF_BALANCE, DETAIL_CHUNK, DETAIL_ACK = 20, 21, 22, 23, 24
COMMAND, COMMAND_RESULT, COMMAND_POLL, COMMAND_POLL_DONE = 30, 31, 32, 33
ACTIVATION_REQUEST, ACTIVATION_RESPONSE = 40, 41
DEACTIVATION_REQUEST, DEACTIVATION_REQUEST_ACK, RISK_REPORT, RISK_REPORT_ACK = 42, 43, 44, 45
ERROR = 50
ADVICE_BATCH, ADVICE_BATCH_ACK = 70, 71
BODIES = {HELLO: "hello", HEARTBEAT: "heartbeat", BATCH_SUBMIT: "batch_submit",
          DETAIL_CHUNK: "batch_detail_chunk", COMMAND_RESULT: "command_result",
          COMMAND_POLL: "command_poll", ACTIVATION_REQUEST: "activation_request",
          DEACTIVATION_REQUEST: "deactivation_request", RISK_REPORT: "risk_report",
          ERROR: "error", 70: "advice_batch"}


def envelope(body_field, body, terminal_id, correlation_id="", message_id=None):
    return (f_bytes(1, message_id or str(uuid.uuid4())) + f_bytes(2, terminal_id)
            + f_bytes(3, correlation_id) + f_int(4, now_ms()) + f_msg(body_field, body))


def decode_totals(raw):
    # BatchTotals: by_type 1 (TypeTotal: type 1, count 2, amount 3, fee 4), transaction_count 2,
    # net_amount 3, net_fee 4, net_settlement 5, currency 6
    t = parse(raw)
    by_type = []
    for e in t.get(1, []):
        x = parse(e)
        by_type.append({"type": s(x, 1), "count": i(x, 2), "amount": i(x, 3), "fee": i(x, 4)})
    return {"by_type": by_type, "transaction_count": i(t, 2), "net_amount": i(t, 3),
            "net_fee": i(t, 4), "net_settlement": i(t, 5), "currency": s(t, 6)}


def encode_totals(t):
    by = b"".join(f_msg(1, f_bytes(1, e["type"]) + f_int(2, e["count"]) + f_int(3, e["amount"])
                        + f_int(4, e["fee"])) for e in t["by_type"])
    return (by + f_int(2, t["transaction_count"]) + f_int(3, t["net_amount"])
            + f_int(4, t["net_fee"]) + f_int(5, t["net_settlement"]) + f_bytes(6, t["currency"]))


def decode_row(raw):
    # DetailRow: seq 1, local_id 2, type 3, amount 4, currency 5, fee 6, status 7, masked_pan 8,
    # pan_token 9, auth_code 10, original_seq 11, created_at_ms 12, merchant_category 13, hash 14
    r = parse(raw)
    return {"seq": i(r, 1), "local_id": s(r, 2), "type": s(r, 3), "amount": i(r, 4),
            "currency": s(r, 5), "fee": i(r, 6), "status": s(r, 7), "masked_pan": s(r, 8),
            "pan_token": s(r, 9), "auth_code": s(r, 10), "original_seq": i(r, 11),
            "created_at_ms": i(r, 12), "merchant_category": s(r, 13), "hash": s(r, 14)}


def totals_from_rows(rows, currency, accepted_seqs=()):
    """docs/protocol.md, Messages and Settlement: declined rows move no money; net_amount is
    sales minus refunds, voids and reversals; net_fee fees charged minus fees returned. One
    TypeTotal per type present (the schema: each type at most once). Offline advices: an
    offline row (or a refund, void, reversal of one) is paid only if its advice was accepted."""
    by = {}
    count = amount = fee = 0
    for r in rows:
        if r["status"] == "declined":
            continue
        if r["status"] == "pending-offline" and r["seq"] not in accepted_seqs:
            continue
        e = by.setdefault(r["type"], {"type": r["type"], "count": 0, "amount": 0, "fee": 0})
        e["count"] += 1
        e["amount"] += r["amount"]
        e["fee"] += r["fee"]
        sign = 1 if r["type"] == "sale" else -1
        count += 1
        amount += sign * r["amount"]
        fee += sign * r["fee"]
    return {"by_type": list(by.values()), "transaction_count": count, "net_amount": amount,
            "net_fee": fee, "net_settlement": amount - fee, "currency": currency}


def batch_digest(batch_id, rows):
    """Lower-case hex SHA-256 over batch_id, then "\\n<seq>:<row hash>" per row in seq order."""
    h = hashlib.sha256(batch_id.encode("utf-8"))
    for r in sorted(rows, key=lambda r: r["seq"]):
        h.update(("\n%d:%s" % (r["seq"], r["hash"])).encode("utf-8"))
    return h.hexdigest()


# ------------------------------------------------------------------ Ed25519 through openssl

SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")  # DER prefix of a raw 32-byte key


class Openssl:
    def __init__(self, workdir):
        self.dir = workdir
        self.n = 0
        self.lock = threading.Lock()
        self.key, self.public_raw = self.new_key()
        self.old_key = None

    def new_key(self):
        """A fresh Ed25519 key in a file, and its raw 32-byte public key."""
        path = self._file("command.key", b"")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        return path, der[-32:]

    def _file(self, name, data):
        with self.lock:
            self.n += 1
            path = os.path.join(self.dir, "%d-%s" % (self.n, name))
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    def sign(self, data, key=None):
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", key or self.key, "-rawin",
                              "-in", self._file("tbs", data)],
                             check=True, capture_output=True).stdout
        assert len(sig) == 64, "an Ed25519 signature is 64 bytes"
        return sig

    def verify(self, public_raw, data, sig):
        pub = self._file("pub.der", SPKI_ED25519 + public_raw)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER",
                            "-inkey", pub, "-rawin", "-in", self._file("data", data),
                            "-sigfile", self._file("sig", sig)], capture_output=True)
        return r.returncode == 0


# ------------------------------------------------------------------ the acquirer

def now_ms():
    return int(time.time() * 1000)


def emit(event, **fields):
    sys.stdout.write(json.dumps(dict(event=event, **fields), sort_keys=True) + "\n")
    sys.stdout.flush()


class Acquirer:
    def __init__(self, args):
        self.codes = set(args.code.split(","))  # activation codes, each used once
        self.used_codes = {}  # code -> (terminal, terminal key) it activated
        self.reviews = {}  # (terminal, request_id) -> review_id
        self.ssl = Openssl(args.dir)
        self.lock = threading.RLock()
        self.conn = None  # (socket, terminal id) of the link up now
        self.terminal_key = {}  # terminal id -> raw 32-byte key registered at activation
        self.settled = {}  # (terminal, batch id) -> {digest, settlement_id, totals}
        self.commands = {}  # terminal -> [(counter, message_id, envelope bytes)] not answered
        self.counter = {}
        self.detail = {}  # (terminal, batch id, digest) -> {"count": n, "chunks": {i: rows}}
        self.detail_totals = {}  # (terminal, batch id, digest) -> totals from the rows
        self.oob_next = False
        self.lose_next = False
        self.hold_push = False  # queue commands for the next CommandPoll instead of pushing
        self.reject_next = False  # refuse the next new batch: SETTLEMENT_REJECTED
        self.reject_detail = False  # refuse the next completed upload as if it did not hash
        self.lose_answer = set()  # "activation", "deactivation": do it, then close unanswered
        self.window = 4
        self.ack_delay = 0.0  # seconds a DetailAck waits, so chunks pile up within the window
        self.ack_reverse = False  # hold each DetailAck longer the lower its index: out of order
        self.early_push = False  # once: push a command before answering Hello
        self.unacked = 0  # chunks received and not answered yet (what the window bounds)
        self.drop_at_chunk = None  # store this chunk index, then close instead of answering
        self.sent_commands = {}  # counter -> envelope bytes, for redelivery and replay
        self.command_ids = {}  # envelope message_id -> counter of every command sent
        self.heads = {}  # terminal -> the newest journal head seen {seq, hash, incarnation}
        self.advice_answers = {}  # (terminal, advice key) -> its first outcome
        self.advice_limit = 20_000  # an offline sale above this is declined (AMOUNT_LIMIT)
        self.refuse_advices = False
        self.bad_grant = False  # once: a grant whose fee schedule has no default rule
        self.huge_totals = False  # once: a BatchAck whose net_amount is 2^53

    # -------------------------------------------------------------- the link

    def serve(self, listener, ctx):
        while True:
            raw, _ = listener.accept()
            threading.Thread(target=self.session, args=(raw, ctx), daemon=True).start()

    def session(self, raw, ctx):
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            emit("tls_refused", reason=str(e))
            raw.close()
            return
        cert = tls.getpeercert()
        cn = next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")
        emit("connected", terminal_id=cn, tls=tls.version())
        with self.lock:
            self.conn = (tls, cn)
        try:
            self.read_loop(tls, cn)
        except (OSError, ValueError, ConnectionError) as e:
            emit("link_error", reason=str(e))
        finally:
            with self.lock:
                if self.conn and self.conn[0] is tls:
                    self.conn = None
            tls.close()
            emit("disconnected", terminal_id=cn)

    def read_loop(self, tls, cn):
        buf = b""
        hello_seen = False
        while True:
            while len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big")
                if n == 0 or n > MAX_FRAME:
                    self.send(tls, cn, envelope(ERROR, f_bytes(1, "PROTOCOL_MALFORMED"), cn))
                    return
                if len(buf) < 4 + n:
                    break
                payload, buf = buf[4:4 + n], buf[4 + n:]
                env = parse(payload)
                kind = next((k for k in env if k >= 10), None)
                if kind is None:
                    self.send(tls, cn, envelope(ERROR, f_bytes(1, "PROTOCOL_MALFORMED"), cn))
                    return
                if s(env, 2) not in ("", cn):  # an envelope naming another terminal
                    self.send(tls, cn, envelope(ERROR, f_bytes(1, "PROTOCOL_UNEXPECTED"), cn))
                    return
                if not hello_seen and kind != HELLO:
                    self.send(tls, cn, envelope(ERROR, f_bytes(1, "PROTOCOL_UNEXPECTED"), cn))
                    return
                hello_seen = True
                reply = self.handle(tls, cn, kind, parse(one(env, kind)), s(env, 3))
                if reply == "close":
                    return
                if reply is not None:
                    field, body = reply
                    out = envelope(field, body, cn, correlation_id=s(env, 1))
                    if kind == DETAIL_CHUNK and self.ack_reverse:
                        chunk = parse(one(env, kind))
                        delay = (i(chunk, 4) - i(chunk, 3)) * 0.1
                        threading.Timer(delay, self.late_ack, (tls, cn, out)).start()
                    elif kind == DETAIL_CHUNK and self.ack_delay:
                        threading.Timer(self.ack_delay, self.late_ack, (tls, cn, out)).start()
                    else:
                        self.answered_chunk(kind)
                        self.send(tls, cn, out)
            data = tls.recv(65536)
            if not data:
                return
            buf += data

    def answered_chunk(self, kind):
        if kind == DETAIL_CHUNK:
            with self.lock:
                self.unacked -= 1

    def late_ack(self, tls, cn, out):
        self.answered_chunk(DETAIL_CHUNK)
        try:
            self.send(tls, cn, out)
        except OSError:
            pass  # the link went away: the terminal resends what it has no ack for

    def send(self, tls, cn, payload):
        assert 0 < len(payload) <= MAX_FRAME
        with self.lock:
            tls.sendall(len(payload).to_bytes(4, "big") + payload)

    def handle(self, tls, cn, kind, m, correlation_id):
        if kind == HELLO:
            # Hello: terminal_id 1, firmware_version 2, journal_head_hash 3, lifecycle_state 4,
            # last_command_counter 5, journal_head_seq 6, journal_incarnation 7
            emit("hello", terminal_id=s(m, 1), cn=cn, firmware_version=s(m, 2),
                 journal_head_hash=s(m, 3), lifecycle_state=s(m, 4),
                 last_command_counter=i(m, 5), journal_head_seq=i(m, 6),
                 journal_incarnation=s(m, 7))
            if s(m, 1) != cn:
                return ERROR, f_bytes(1, "PROTOCOL_UNEXPECTED") + f_bytes(2, "not your CN")
            with self.lock:
                early, self.early_push = self.early_push, False
                env = self.sent_commands.get(max(self.sent_commands, default=0))
            if early and env:  # against the page: nothing may come before the HelloAck
                emit("early_push")
                self.send(tls, cn, env)
            # HelloAck: server_time_ms 1, acquirer_id 2, head_check 3
            return HELLO_ACK, (f_int(1, now_ms()) + f_bytes(2, "PY-ACQUIRER")
                               + self.witness(cn, m))
        if kind == HEARTBEAT:
            # Heartbeat: client_time_ms 1, lifecycle_state 2, queued_batches 3, locks 4
            # journal_head_seq 6, journal_head_hash 7: the witness follows, never backwards
            # open_batch 5: OpenBatchSummary{batch_id 1, transaction_count 2, net_amount 3,
            # net_fee 4, currency 5}
            ob = parse(b(m, 5))
            emit("heartbeat", lifecycle_state=s(m, 2), queued_batches=i(m, 3),
                 locks=[v.decode() for v in m.get(4, [])], journal_head_seq=i(m, 6),
                 open_batch={"batch_id": s(ob, 1), "transaction_count": i(ob, 2),
                             "net_amount": i(ob, 3), "net_fee": i(ob, 4),
                             "currency": s(ob, 5)})
            with self.lock:
                head = self.heads.get(cn)
                if head and i(m, 6) > head["seq"]:
                    head.update(seq=i(m, 6), hash=s(m, 7))
            # HeartbeatAck: client_time_ms 1 (echoed), server_time_ms 2
            return HEARTBEAT_ACK, f_int(1, i(m, 1)) + f_int(2, now_ms())
        if kind == ACTIVATION_REQUEST:
            return self.lost("activation", self.activate(cn, m))
        if kind == COMMAND_POLL:
            return self.poll(tls, cn, i(m, 1))
        if kind == COMMAND_RESULT:
            self.result(cn, m, correlation_id)
            return None
        if kind == RISK_REPORT:
            emit("risk_report", rule=s(m, 1), detail=s(m, 2))
            return RISK_REPORT_ACK, b""
        if kind == ADVICE_BATCH and self.refuse_advices:  # an acquirer without offline approvals
            emit("advices_refused", count=len(m.get(1, [])))
            return ERROR, f_bytes(1, "PROTOCOL_UNEXPECTED") + f_bytes(2, "no offline approvals")
        if kind == ADVICE_BATCH:
            return self.advices(cn, m)
        if kind == DEACTIVATION_REQUEST:
            # DeactivationRequest: reason 1, requested_by 2, request_id 3; one review per id
            with self.lock:
                review = self.reviews.setdefault((cn, s(m, 3)), "PY-REVIEW-%d" % (len(self.reviews) + 1))
            emit("deactivation_request", reason=s(m, 1), requested_by=s(m, 2),
                 request_id=s(m, 3), review_id=review)
            # DeactivationRequestAck: review_id 1
            return self.lost("deactivation", (DEACTIVATION_REQUEST_ACK, f_bytes(1, review)))
        if kind == BATCH_SUBMIT:
            return self.settle(cn, m)
        if kind == DETAIL_CHUNK:
            return self.chunk(cn, m)
        if kind == ERROR:
            emit("error_received", code=s(m, 1), message=s(m, 2))
            return None  # never answered
        emit("unexpected", kind=BODIES.get(kind, kind))
        return ERROR, f_bytes(1, "PROTOCOL_UNEXPECTED") + f_bytes(2, "not taken here")

    def lost(self, what, reply):
        """The answer, or (once, when told to lose it) a close in its place."""
        with self.lock:
            if what not in self.lose_answer:
                return reply
            self.lose_answer.discard(what)
        emit("lost_answer", kind=what)
        return "close"

    # -------------------------------------------------------------- offline advices

    def advices(self, cn, m):
        # AdviceBatch: advices 1 (Advice: key 1, row 2 (a DetailRow), original_key 3)
        outcomes = b""
        for raw in m.get(1, []):
            a = parse(raw)
            key, row = s(a, 1), decode_row(b(a, 2))
            with self.lock:
                first = self.advice_answers.get((cn, key))
                repeat = first is not None  # answered before: its first answer, duplicate
                if not repeat:
                    ok = row["amount"] <= self.advice_limit
                    first = {"outcome": "accepted" if ok else "declined",
                             "reference": "PY-ADV-%d" % row["seq"] if ok else "",
                             "reason_code": "" if ok else "AMOUNT_LIMIT",
                             "reason": "" if ok else "over the offline limit",
                             "seq": row["seq"]}
                    self.advice_answers[(cn, key)] = first
            emit("advice", key=key, key_ok=key == "%d:%s" % (row["seq"], row["hash"][:16]),
                 seq=row["seq"], amount=row["amount"], status=row["status"],
                 original_key=s(a, 3), outcome=first["outcome"], duplicate=repeat)
            # AdviceOutcome: key 1, outcome 2, reference 3, reason_code 4, reason 5, duplicate 6
            outcomes += f_msg(1, f_bytes(1, key) + f_bytes(2, first["outcome"])
                              + f_bytes(3, first["reference"]) + f_bytes(4, first["reason_code"])
                              + f_bytes(5, first["reason"]) + f_int(6, repeat))
        # AdviceBatchAck: outcomes 1, one per advice in the same order
        return ADVICE_BATCH_ACK, outcomes

    # -------------------------------------------------------------- remote witness

    def witness(self, cn, m):
        """docs/protocol.md, Remote witness: the encoded head_check field, or nothing."""
        seq, hash_, incarnation = i(m, 6), s(m, 3), s(m, 7)
        if s(m, 4) == "unactivated" or not incarnation:
            return b""  # a fresh install, or an agent that sends no incarnation: not judged
        with self.lock:
            known = self.heads.get(cn)
            reason = ""
            if known and incarnation != known["incarnation"]:
                reason = "another journal incarnation"
            elif known and seq < known["seq"]:
                reason = "the journal ends at row %d, before row %d" % (seq, known["seq"])
            elif known and seq == known["seq"] and hash_ != known["hash"]:
                reason = "row %d has another hash" % seq
            if not reason:
                self.heads[cn] = {"seq": seq, "hash": hash_, "incarnation": incarnation}
                known = self.heads[cn]
        emit("head_check", behind=bool(reason), seq=seq, known_seq=known["seq"], reason=reason)
        # JournalHeadCheck: behind 1, known_seq 2, known_hash 3, reason 4
        return f_msg(3, f_int(1, bool(reason)) + f_int(2, known["seq"])
                     + f_bytes(3, known["hash"]) + f_bytes(4, reason))

    # -------------------------------------------------------------- activation

    def activate(self, cn, m):
        # ActivationRequest: terminal_id 1, activation_code 2, terminal_public_key 3, firmware 4
        terminal, code, key = s(m, 1), s(m, 2), b(m, 3)
        emit("activation_request", terminal_id=terminal, code=code, key_bytes=len(key))
        with self.lock:
            used = self.used_codes.get(code)
            ok = code in self.codes and used in (None, (cn, key))  # a lost answer: grant again
            if ok and terminal == cn and len(key) == 32:
                self.used_codes[code] = (cn, key)
        if terminal != cn or not ok or len(key) != 32:
            emit("activation_refused", terminal_id=terminal, code=code)
            # ActivationResponse: accepted 1, error_code 2, reason 3, attempts_left 6
            return ACTIVATION_RESPONSE, (f_bytes(2, "ACTIVATION_REFUSED")
                                         + f_bytes(3, "wrong code") + f_int(6, 2))
        self.terminal_key[cn] = key
        with self.lock:
            self.heads.pop(cn, None)  # a successful activation forgets the record
        # FeeRule: category 1, rate_bp 2, fixed 3, minimum 4, cap 5.
        with self.lock:
            bad, self.bad_grant = self.bad_grant, False
        # A schedule without a "default" rule is invalid (the terminal must refuse the grant).
        rule = f_bytes(1, "catering" if bad else "default") + f_int(2, 60) + f_int(4, 300)
        # FeeScheduleSpec: version 1, currency 2, rules 3, effective_from_ms 4
        schedule = f_bytes(1, "py-2026.1") + f_bytes(2, "CNY") + f_msg(3, rule)
        # ActivationGrant: terminal_id 1, merchant_id 2, merchant_name 3, merchant_category 4,
        # fee_schedule 5, command_public_key 6, issued_at_ms 7, currency 8
        grant = (f_bytes(1, cn) + f_bytes(2, "M-PY-1") + f_bytes(3, "Python test merchant")
                 + f_msg(5, schedule) + f_bytes(6, self.ssl.public_raw)
                 + f_int(7, now_ms()) + f_bytes(8, "CNY"))
        emit("activated", terminal_id=cn, merchant_id="M-PY-1", fee_schedule="py-2026.1")
        # ActivationResponse: accepted 1, grant 4, signature 5
        return ACTIVATION_RESPONSE, f_int(1, True) + f_bytes(4, grant) + f_bytes(
            5, self.ssl.sign(grant))

    # -------------------------------------------------------------- settlement

    def settle(self, cn, m):
        # BatchSubmit: batch_id 1, digest 2, business_date 3, first_seq 4, last_seq 5, totals 6
        batch_id, digest = s(m, 1), s(m, 2)
        totals = decode_totals(b(m, 6))
        key = (cn, batch_id)
        with self.lock:
            known = self.settled.get(key)
            if known and known["digest"] != digest:
                emit("batch_rejected", batch_id=batch_id, digest=digest)
                return ERROR, f_bytes(1, "SETTLEMENT_REJECTED") + f_bytes(2, "another digest")
            detail = self.detail_totals.get((cn, batch_id, digest))
            if not known and self.reject_next:
                self.reject_next = False
                emit("batch_rejected", batch_id=batch_id, digest=digest)
                return ERROR, f_bytes(1, "SETTLEMENT_REJECTED") + f_bytes(2, "not ours")
            if not known and detail is None and self.oob_next:
                self.oob_next = False
                # We claim one fen less than submitted: the terminal must prove its rows.
                claimed = dict(totals, net_amount=totals["net_amount"] - 1,
                               net_settlement=totals["net_settlement"] - 1)
                emit("out_of_balance", batch_id=batch_id, digest=digest, totals=totals)
                # OutOfBalance: batch_id 1, digest 2, acquirer_totals 3
                return OUT_OF_BALANCE, (f_bytes(1, batch_id) + f_bytes(2, digest)
                                        + f_msg(3, encode_totals(claimed)))
            duplicate = known is not None
            if not known:
                # Settle on the detail totals after an upload, else on what was submitted,
                # keeping one entry per type present (the schema: each type at most once).
                on = detail or dict(totals, by_type=[e for e in totals["by_type"] if e["count"]])
                known = {"digest": digest, "totals": on,
                         "settlement_id": "PY-" + uuid.uuid4().hex[:16].upper()}
                self.settled[key] = known
            lose = not duplicate and self.lose_next
            self.lose_next = self.lose_next and duplicate
        emit("batch", batch_id=batch_id, digest=digest, business_date=s(m, 3),
             first_seq=i(m, 4), last_seq=i(m, 5), totals=totals, settled_on=known["totals"],
             settlement_id=known["settlement_id"], duplicate=duplicate, lost_ack=lose)
        if lose:
            return "close"
        answered = known["totals"]
        with self.lock:
            huge, self.huge_totals = self.huge_totals, False
        if huge:  # against the page: a net amount of 2^53, beyond what int64 may carry here
            answered = dict(answered, net_amount=1 << 53)
        # BatchAck: batch_id 1, digest 2, settlement_id 3, duplicate 4, acquirer_totals 5
        return BATCH_ACK, (f_bytes(1, batch_id) + f_bytes(2, digest)
                           + f_bytes(3, known["settlement_id"]) + f_int(4, duplicate)
                           + f_msg(5, encode_totals(answered)))

    def chunk(self, cn, m):
        # BatchDetailChunk: batch_id 1, digest 2, chunk_index 3, chunk_count 4, rows 5
        batch_id, digest, index, count = s(m, 1), s(m, 2), i(m, 3), i(m, 4)
        rows = [decode_row(r) for r in m.get(5, [])]
        key = (cn, batch_id, digest)
        with self.lock:
            self.unacked += 1
            unacked = self.unacked
            up = self.detail.setdefault(key, {"count": count, "chunks": {}})
            if count != up["count"] or not 0 <= index < count:
                emit("chunk_refused", batch_id=batch_id, index=index, count=count)
                return ERROR, f_bytes(1, "PROTOCOL_MALFORMED") + f_bytes(2, "chunk out of range")
            again = index in up["chunks"]
            up["chunks"].setdefault(index, rows)
            have = up["chunks"]
            next_missing = next((n for n in range(count) if n not in have), count)
            complete = next_missing == count
            drop = self.drop_at_chunk == index and not again
            if drop:
                self.drop_at_chunk = None
                self.unacked = 0
            emit("chunk", batch_id=batch_id, index=index, count=count, rows=len(rows),
                 again=again, next_missing=next_missing, window=self.window, unacked=unacked,
                 dropped_link=drop)
            if drop:
                return "close"  # stored, never acknowledged
            body = (f_bytes(1, batch_id) + f_bytes(2, digest) + f_int(3, index)
                    + f_int(7, next_missing) + f_int(8, self.window))
            if not complete:
                # DetailAck: batch_id 1, digest 2, chunk_index 3, complete 4, settlement_id 5,
                # acquirer_totals 6, next_missing 7, window 8
                return DETAIL_ACK, body
            every = [r for n in range(count) for r in have[n]]
            fake = self.reject_detail
            self.reject_detail = False
            if fake or batch_digest(batch_id, every) != digest:
                emit("detail_rejected", batch_id=batch_id)
                return ERROR, f_bytes(1, "SETTLEMENT_REJECTED") + f_bytes(2, "rows do not hash")
            currency = every[0]["currency"] if every else "CNY"
            accepted = {a["seq"] for (t_, _), a in self.advice_answers.items()
                        if t_ == cn and a["outcome"] == "accepted"}
            totals = totals_from_rows(every, currency, accepted)
            self.detail_totals[key] = totals
        emit("detail_complete", batch_id=batch_id, digest=digest, rows=len(every),
             seqs=[r["seq"] for r in every], totals=totals,
             amount_all=sum(r["amount"] for r in every))
        return DETAIL_ACK, body + f_int(4, True) + f_msg(6, encode_totals(totals))

    # -------------------------------------------------------------- commands

    def queue(self, body_field, body, bad=None):
        """Signs a command, keeps it until a verified result, pushes it now if connected.
        `bad` makes it fail one check above the counter line: it then does not use its counter
        (docs/protocol.md, Counters), so the next command is issued with the same one."""
        with self.lock:
            if not self.conn:
                emit("command_not_sent", reason="no link")
                return
            tls, cn = self.conn
            counter = self.counter.get(cn, 0) + 1
            if not bad:
                self.counter[cn] = counter
            issued, life, nonce, terminal = now_ms(), 10 * 60_000, os.urandom(16), cn
            if bad == "expired":
                issued -= 20 * 60_000
            elif bad == "future":
                issued += 5 * 60_000
            elif bad == "lifetime":
                life = 25 * 3600_000
            elif bad == "short-nonce":
                nonce = nonce[:4]
            elif bad == "wrong-terminal":
                terminal = "T-SOMEONE-ELSE"
            if body_field == 18:  # RotateKeyCmd: signed by the key now pinned, naming the next
                key_file, public_raw = self.ssl.new_key()
                body = f_bytes(1, public_raw)
            # Command: terminal_id 1, counter 2, issued_at_ms 3, expires_at_ms 4, nonce 5, body
            command = (f_bytes(1, terminal) + f_int(2, counter) + f_int(3, issued)
                       + f_int(4, issued + life) + f_bytes(5, nonce) + f_msg(body_field, body))
            signature = self.ssl.sign(command, self.ssl.old_key if bad == "old-key" else None)
            if body_field == 18:  # every later command is signed by the new key
                self.ssl.old_key, self.ssl.key = self.ssl.key, key_file
                self.ssl.public_raw = public_raw  # and in the grants of later activations
            if bad == "bad-signature":
                signature = bytes([signature[0] ^ 1]) + signature[1:]
            # SignedCommand: command 1, signature 2; a push: message_id, no correlation_id
            message_id = str(uuid.uuid4())
            env = envelope(COMMAND, f_bytes(1, command) + f_bytes(2, signature), cn,
                           message_id=message_id)
            if not bad:
                self.commands.setdefault(cn, []).append((counter, message_id, env))
                self.sent_commands[counter] = env
            self.command_ids[message_id] = counter
        emit("command_pushed", counter=counter, message_id=message_id, bad=bad,
             held=self.hold_push)
        if not self.hold_push:
            self.send(tls, cn, env)

    def poll(self, tls, cn, after):
        with self.lock:
            due = [c for c in self.commands.get(cn, []) if c[0] > after]
        emit("command_poll", after_counter=after, pushing=[c[0] for c in due])
        for _, _, env in due:  # the same envelope, so the same message_id, on each delivery
            self.send(tls, cn, env)
        # CommandPollDone: sent 1
        return COMMAND_POLL_DONE, f_int(1, len(due))

    def result(self, cn, m, correlation_id):
        # CommandResult: body 1, signature 2
        body, sig = b(m, 1), b(m, 2)
        verified = cn in self.terminal_key and self.ssl.verify(self.terminal_key[cn], body, sig)
        # CommandResultBody: terminal_id 1, counter 2, outcome 3, error_code 4, detail 5,
        # lifecycle_state 6, locks 7, journal_head_hash 8, at_ms 9
        r = parse(body)
        counter = i(r, 2)
        with self.lock:
            pending = self.commands.get(cn, [])
            named = next((c for c in pending if c[1] == correlation_id), None)
            if verified and named and named[0] == counter:
                pending.remove(named)  # a verified result: stop delivering that command
            answers = self.command_ids.get(correlation_id)
            matches = answers == counter
        emit("command_result", verified=verified, correlation_matches=matches, answers=answers,
             body_sha256=hashlib.sha256(body).hexdigest(), correlation_id=correlation_id,
             terminal_id=s(r, 1), counter=counter, outcome=s(r, 3), error_code=s(r, 4),
             lifecycle_state=s(r, 6), locks=[v.decode() for v in r.get(7, [])],
             journal_head_hash=s(r, 8), signature_bytes=len(sig))

    def control(self):
        for line in sys.stdin:
            word, _, rest = line.strip().partition(" ")
            if word == "lock":  # LockCmd: reason 1 (Command.lock = 10)
                self.queue(10, f_bytes(1, rest or "python lock"))
            elif word == "unlock":  # UnlockCmd: source 1, reason 2 (Command.unlock = 11)
                self.queue(11, f_bytes(1, "remote") + f_bytes(2, rest or "python unlock"))
            elif word == "status":  # StatusCmd: empty (Command.status = 17)
                self.queue(17, b"")
            elif word == "again":  # deliver command N again, its same envelope (message_id)
                with self.lock:
                    env, conn = self.sent_commands[int(rest)], self.conn
                if conn:
                    self.send(conn[0], conn[1], env)
            elif word == "ack-delay":
                self.ack_delay = int(rest) / 1000
            elif word == "drop-at-chunk":
                self.drop_at_chunk = int(rest)
            elif word == "decide":  # DeactivationDecisionCmd: approve 1, reason 2 (Command 14)
                verdict, _, reason = rest.partition(" ")
                self.queue(14, f_int(1, verdict == "approve") + f_bytes(2, reason))
            elif word == "bad":  # a status command failing one check: bad VARIANT
                self.queue(17, b"", bad=rest)
            elif word == "fees":  # fees VERSION RATE_BP FIXED MINIMUM CAP EFFECTIVE_IN_MS [CATEGORY]
                v, rate, fixed, minimum, cap, later, *cat = rest.split()
                effective = now_ms() + int(later) if int(later) else 0
                # FeeRule: category 1, rate_bp 2, fixed 3, minimum 4, cap 5
                rule = (f_bytes(1, cat[0] if cat else "default") + f_int(2, int(rate))
                        + f_int(3, int(fixed)) + f_int(4, int(minimum)) + f_int(5, int(cap)))
                # FeeScheduleSpec: version 1, currency 2, rules 3, effective_from_ms 4;
                # FeeScheduleCmd: schedule 1 (Command.fee_schedule = 15)
                spec = f_bytes(1, v) + f_bytes(2, "CNY") + f_msg(3, rule) + f_int(4, effective)
                self.queue(15, f_msg(1, spec))
            elif word == "settle-now":  # SettleNowCmd: empty (Command.settle_now = 16)
                self.queue(16, b"")
            elif word == "rotate":  # RotateKeyCmd: new_public_key 1 (Command.rotate_key = 18)
                self.queue(18, b"")
            elif word == "risk":  # RiskFlagCmd: code 1, severity 2, reason 3 (Command.risk_flag 13)
                code, severity = rest.split()
                self.queue(13, f_bytes(1, code) + f_int(2, int(severity))
                           + f_bytes(3, "python risk case"))
            elif word == "garbage":  # a frame the terminal must refuse, then close
                with self.lock:
                    tls, cn = self.conn
                if rest == "too-large":  # only the 4 bytes of a length over 1 MiB
                    frame = (MAX_FRAME + 1).to_bytes(4, "big")
                elif rest == "zero":
                    frame = bytes(4)
                elif rest == "other-terminal":  # a push naming another terminal
                    payload = envelope(HEARTBEAT_ACK, f_int(1, 1) + f_int(2, now_ms()), "T-OTHER")
                    frame = len(payload).to_bytes(4, "big") + payload
                else:  # an Envelope whose only body is a kind from a newer schema (field 99)
                    payload = envelope(99, b"", cn)
                    frame = len(payload).to_bytes(4, "big") + payload
                with self.lock:
                    tls.sendall(frame)
            elif word == "ack-reverse":  # ack-reverse on|off
                self.ack_reverse = rest == "on"
            elif word == "early-push":
                self.early_push = True
            elif word == "advices":  # advices refuse|take
                self.refuse_advices = rest == "refuse"
            elif word == "huge-totals":
                self.huge_totals = True
            elif word == "bad-grant":
                self.bad_grant = True
            elif word == "hold":  # hold on|off: leave new commands to the next CommandPoll
                self.hold_push = rest == "on"
            elif word == "stray":  # a push of another kind, and an answer nobody asked for
                with self.lock:
                    tls, cn = self.conn
                self.send(tls, cn, envelope(HEARTBEAT_ACK, f_int(1, 1) + f_int(2, now_ms()), cn))
                self.send(tls, cn, envelope(RISK_REPORT_ACK, b"", cn,
                                            correlation_id=str(uuid.uuid4())))
            elif word == "unlock-source":  # UnlockCmd for another lock source
                self.queue(11, f_bytes(1, rest) + f_bytes(2, "reconciled"))
            elif word == "reject":
                self.reject_next = True
            elif word == "reject-detail":
                self.reject_detail = True
            elif word == "deactivate":  # DeactivateCmd: reason 1, violation 2 (Command 12)
                violation, _, reason = rest.partition(" ")
                self.queue(12, f_bytes(1, reason) + f_int(2, violation == "violation"))
            elif word == "oob":
                self.oob_next = True
            elif word == "lose":  # lose activation|deactivation: the next answer of that kind
                self.lose_answer.add(rest)
            elif word == "lose-ack":
                self.lose_next = True
            elif word == "window":
                self.window = int(rest)
            elif word == "quit":
                break
            emit("control", word=word)
        os._exit(0)


def main():
    p = argparse.ArgumentParser()
    for a in ("--ca", "--cert", "--key", "--dir", "--code"):
        p.add_argument(a, required=True)
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual: the terminal's certificate or nothing
    listener = socket.create_server(("127.0.0.1", 0))
    acq = Acquirer(args)
    emit("listening", port=listener.getsockname()[1],
         command_key=acq.ssl.public_raw.hex())
    threading.Thread(target=acq.serve, args=(listener, ctx), daemon=True).start()
    acq.control()


if __name__ == "__main__":
    main()
