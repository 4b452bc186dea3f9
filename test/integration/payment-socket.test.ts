/**
 * The payment app's Unix socket, end to end: a real PaymentSocketServer on a temp socket in
 * front of a real core (SQLite journal, fees, lifecycle), and real clients. Round trips; a
 * record is answered only once its row can be read from a second SQLite connection; a crowd of
 * clients gets unique sequence numbers over one unbroken chain; half frames, garbage frames
 * and card data beyond the PAN are refused without hurting anyone else; retries by local id
 * come back as duplicates of the first answer.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { DestinationStream } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { applyActivation, journalPath, openCore } from '../../agent/runtime/core.ts';
import type { Core, Identity } from '../../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import { createLogger } from '../../base/log.ts';
import { PaymentClient, PaymentSocketServer } from '../../agent/runtime/payment-socket.ts';
import { Store } from '../../storage/store.ts';
import { localClientConnection } from '../../protocol/connection.ts';
import { encodeFrame, FrameDecoder } from '../../protocol/framer.ts';
import {
  decodeLocalReply,
  decodeLocalRequest,
  encodeLocalRequest,
  type pos,
} from '../../protocol/messages.ts';

const PAN = '4111111111111111';
const MASKED = '411111******1111';
/** A card only ever offered together with data the agent must refuse: it must never land anywhere. */
const SECRET_PAN = '5500005555555559';
const CVV = '739';
const TRACK2 = `${SECRET_PAN}=29121015432112345678`;
const PIN_BLOCK = Buffer.from('0412AC89ABCDEF67', 'hex');
const MAX_FRAME = 64 * 1024;
const IDENTITY: Identity = {
  ...{ terminalId: 'T0001', merchantId: 'M-SOCK', merchantName: 'Socket Shop' },
  ...{ category: 'default', currency: 'CNY', activatedAt: 0 },
};
const ROOT = path.resolve(import.meta.dirname, '../..');
/** An agent core and its payment socket alone in a child process (run through tsx). */
const CHILD = [
  "const u = (f) => process.env.PA_ROOT + '/' + f;",
  "const { openCore, applyActivation } = await import(u('agent/runtime/core.ts'));",
  "const { DEFAULT_FEE_SCHEDULE } = await import(u('agent/policy/fees.ts'));",
  "const { PaymentSocketServer } = await import(u('agent/runtime/payment-socket.ts'));",
  'const core = openCore({ dataDir: process.env.PA_DIR });',
  "applyActivation(core, JSON.parse(process.env.PA_ID), DEFAULT_FEE_SCHEDULE, 'test');",
  'const s = new PaymentSocketServer({ payments: core.payments, terminal: core.terminal, store: core.store, log: core.log });',
  'await s.listen(process.env.PA_SOCK);',
  "process.stdout.write('ready\\n');",
].join('\n');

let dir: string;
let sock: string;
let core: Core;
let server: PaymentSocketServer;
let logLines: string[];
const clients: Array<{ close(): void }> = [];

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pa-paysock-'));
  sock = path.join(dir, 'payment.sock');
  logLines = [];
  const log = createLogger({ level: 'debug' }, {
    write: (line: string) => void logLines.push(line),
  } as DestinationStream);
  core = openCore({ dataDir: dir }, { log });
  applyActivation(core, IDENTITY, DEFAULT_FEE_SCHEDULE, 'test');
  server = new PaymentSocketServer({
    payments: core.payments,
    terminal: core.terminal,
    store: core.store,
    log,
    maxFrameBytes: MAX_FRAME,
  });
  await server.listen(sock);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server.close();
  core.close();
  rmSync(dir, { recursive: true, force: true });
});

async function connect(): Promise<PaymentClient> {
  const c = await PaymentClient.connect(sock);
  clients.push(c);
  return c;
}

/** A client that speaks bytes, not messages: what it sends is exactly what the test wrote. */
async function rawClient() {
  const socket = net.createConnection(sock);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  clients.push({ close: () => socket.destroy() });
  const decoder = new FrameDecoder();
  const replies: pos.v1.LocalReply[] = [];
  socket.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) replies.push(decodeLocalReply(f));
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, replies, closed };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ]);
}

function count(where = '1'): number {
  return (
    core.store.db.prepare(`SELECT count(*) AS n FROM journal WHERE ${where}`).get() as {
      n: number;
    }
  ).n;
}

let saleSerial = 0;
/** A sale with the test card, fit for both PaymentClient.record and a raw RecordRequest. */
const sale = (amount: number, localId = `S-${process.pid}-${++saleSerial}`) => ({
  type: 'sale' as const,
  status: 'approved' as const,
  amount,
  card: { pan: PAN },
  localId,
});

describe('payment socket round trips', () => {
  it('answers mayTransact, record and query with what the journal holds', async () => {
    const c = await connect();
    expect(await c.mayTransact()).toMatchObject({ allowed: true, state: 'active', locks: [] });

    const s = await c.record(sale(12_345));
    expect(s).toMatchObject({
      maskedPan: MASKED,
      status: 'approved',
      feeVersion: DEFAULT_FEE_SCHEDULE.version,
      duplicate: false,
    });
    const row = core.store.journal.getTxn(s.seq)!;
    expect(s).toMatchObject({ fee: row.fee, batchId: row.batchId, localId: row.localId });
    // 0.60 % of 123.45 yuan is 74 fen, below the 300 fen minimum of the default category.
    expect(row.fee).toBe(300);

    const refund = await c.record({
      type: 'refund',
      amount: 2_345,
      originalSeq: s.seq,
      localId: 'REFUND-1',
    });
    expect(refund.maskedPan).toBe(MASKED);
    const view = await c.query(refund.seq);
    expect(view).toMatchObject({
      localId: refund.localId,
      type: 'refund',
      amount: 2_345,
      currency: 'CNY',
      fee: refund.fee,
      status: 'approved',
      maskedPan: MASKED,
      originalSeq: s.seq,
      batchId: refund.batchId,
    });
    expect(view.createdAtMs).toBe(core.store.journal.getTxn(refund.seq)!.createdAt);

    await expect(c.query(99_999)).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
    // By the app's own id: how an app whose reply was lost learns the result without resending.
    expect(await c.query({ localId: 'REFUND-1' })).toEqual(view);
    const missing = c.query({ localId: '4000001234567899' });
    await expect(missing).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
    // Whatever was sent as the id is not echoed (a card number typed by mistake).
    await expect(missing).rejects.not.toMatchObject({ message: expect.stringContaining('4000') });
    const conn = localClientConnection(net.createConnection(sock));
    clients.push({ close: () => conn.destroy() });
    const replies = new Map<string, pos.v1.LocalReply>();
    conn.on('message', (r) => replies.set(r.requestId, r));
    conn.send({ requestId: 'both', query: { seq: s.seq, localId: 'REFUND-1' } });
    conn.send({ requestId: 'none', query: {} });
    await vi.waitFor(() => expect(replies.size).toBe(2), { timeout: 5_000 });
    for (const id of ['both', 'none'])
      expect(replies.get(id)).toMatchObject({ error: { code: 'TXN_INVALID' } });
    // An event row is not a transaction, and query must not leak it as one.
    const eventSeq = core.store.journal.events('lifecycle')[0]!.seq;
    await expect(c.query(eventSeq)).rejects.toMatchObject({ code: 'STORAGE_NOT_FOUND' });
  });

  it('reports a lock and refuses a sale while locked, keeping the connection', async () => {
    const c = await connect();
    core.terminal.apply({ type: 'lock', source: 'technician', by: 'technician' }, 'test', 'test');
    const may = await c.mayTransact();
    expect(may).toMatchObject({ allowed: false, state: 'active', locks: ['technician'] });
    expect(may.reason).toContain('locked by technician');
    await expect(c.record(sale(500))).rejects.toMatchObject({ code: 'LIFECYCLE_LOCKED' });
    expect(core.store.journal.events('txn-refused').at(-1)?.detail).toMatchObject({
      code: 'LIFECYCLE_LOCKED',
    });
    core.terminal.apply({ type: 'unlock', source: 'technician', by: 'technician' }, 'test', 't');
    expect((await c.record(sale(500))).seq).toBeGreaterThan(0);
  });

  it('while locked: a repeat gets its first result, a reversal is taken, a refund is refused (docs/protocol.md)', async () => {
    const c = await connect();
    const first = await c.record(sale(9_000, 'LOCKED-S1'));
    core.terminal.apply({ type: 'lock', source: 'remote', by: 'acquirer' }, 'test', 'test');
    expect(await c.record(sale(9_000, 'LOCKED-S1'))).toEqual({ ...first, duplicate: true });
    const refund = { type: 'refund' as const, amount: 1_000, originalSeq: first.seq };
    await expect(c.record({ ...refund, localId: 'LOCKED-R1' })).rejects.toMatchObject({
      code: 'LIFECYCLE_LOCKED',
    });
    const reversal = await c.record({
      ...{ type: 'reversal', amount: 9_000, originalSeq: first.seq, localId: 'LOCKED-X1' },
    });
    expect(reversal).toMatchObject({ duplicate: false, fee: first.fee, maskedPan: MASKED });
    // The reversal cancelled the sale: nothing is left to take back from it.
    core.terminal.apply({ type: 'unlock', source: 'remote', by: 'acquirer' }, 'test', 'test');
    await expect(c.record({ ...refund, localId: 'LOCKED-R2' })).rejects.toMatchObject({
      code: 'TXN_EXCEEDS_ORIGINAL',
    });
  });

  it('a journal kept as evidence: locked, and every record, a repeat too, is STORAGE_FROZEN', async () => {
    const c = await connect();
    const first = await c.record(sale(9_100, 'FROZEN-S1'));
    const reason = 'the acquirer saw this journal further';
    core.store.freeze({ source: 'journal-rollback', reason });
    core.terminal.hold('journal-rollback', reason);
    expect(await c.mayTransact()).toMatchObject({ allowed: false, locks: ['journal-rollback'] });
    for (const r of [sale(9_100, 'FROZEN-S1'), sale(500, 'FROZEN-S2')])
      await expect(c.record(r)).rejects.toMatchObject({ code: 'STORAGE_FROZEN' });
    expect((await c.query(first.seq)).localId).toBe('FROZEN-S1');
  });

  it('acks a record only once its row is durable: read on receipt, then SIGKILL the agent', async () => {
    // The server runs in its own process, so "the row is there when the ack arrives" is a fact
    // about another process's commit, not about this event loop's ordering.
    const childDir = path.join(dir, 'child');
    const childSock = path.join(childDir, 'payment.sock');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      env: {
        ...process.env,
        PA_ROOT: pathToFileURL(ROOT).href,
        PA_DIR: childDir,
        PA_SOCK: childSock,
        PA_ID: JSON.stringify(IDENTITY),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    clients.push({ close: () => child.kill('SIGKILL') });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await vi.waitFor(() => expect(out).toContain('ready'), { timeout: 20_000, interval: 20 });
    const file = path.join(childDir, 'journal.db');
    const reader = new Database(file, { readonly: true });
    const byseq = reader.prepare('SELECT local_id, amount FROM journal WHERE seq = ?');
    const seen: Array<{ seq: number; localId: string; found: unknown }> = [];
    const c = localClientConnection(net.createConnection(childSock));
    clients.push({ close: () => c.destroy() });
    c.on('message', (reply) => {
      const seq = Number(reply.record?.seq ?? 0);
      // Read synchronously on receipt, before anything else can run here.
      seen.push({ seq, localId: reply.record?.localId ?? '', found: byseq.get(seq) });
      if (seen.length === 15) child.kill('SIGKILL');
    });
    for (let i = 0; i < 60; i++)
      c.send({ requestId: `r${i}`, record: sale(1_000 + i, `DUR-${i}`) });
    await within(exited, 10_000, 'the child to die');
    await within(c.waitClosed(), 5_000, 'the connection to close');
    reader.close();
    expect(seen.length).toBeGreaterThanOrEqual(15);
    for (const s of seen) {
      const i = Number(s.localId.slice(4));
      expect(s.found, `row ${s.seq} when its ack arrived`).toEqual({
        local_id: `DUR-${i}`,
        amount: 1_000 + i,
      });
    }
    const after = Store.open(file);
    expect(after.journal.verify().ok).toBe(true);
    for (const s of seen) expect(after.journal.getTxn(s.seq)?.localId).toBe(s.localId);
    expect(after.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    after.close();
  });
});

describe('many clients at once', () => {
  it('20 clients x 50 records: unique seqs, every row present, chain verifies', async () => {
    const CLIENTS = 20;
    const EACH = 50;
    const conns = await Promise.all(Array.from({ length: CLIENTS }, () => connect()));
    const acks = await Promise.all(
      conns.map((c, ci) =>
        Promise.all(
          Array.from({ length: EACH }, (_, j) =>
            c.record(sale(1_000 + ci * EACH + j, `C${ci}-R${j}`)),
          ),
        ),
      ),
    );
    const flat = acks.flat();
    expect(flat).toHaveLength(CLIENTS * EACH);
    expect(new Set(flat.map((a) => a.seq)).size).toBe(CLIENTS * EACH);
    expect(flat.every((a) => !a.duplicate)).toBe(true);
    for (const [ci, list] of acks.entries())
      for (const [j, a] of list.entries()) {
        const row = core.store.journal.findByLocalId(`C${ci}-R${j}`);
        expect(row?.seq).toBe(a.seq);
        expect(row?.amount).toBe(1_000 + ci * EACH + j);
      }
    expect(count("kind = 'txn'")).toBe(CLIENTS * EACH);
    expect(core.store.journal.verify()).toMatchObject({ ok: true });
  });
});

describe('broken and hostile clients', () => {
  it('a client that dies mid-frame journals nothing and disturbs no one', async () => {
    const good = await connect();
    const before = count();
    const dying = await rawClient();
    const whole = encodeFrame(
      encodeLocalRequest({ requestId: 'half', record: sale(7_777, 'HALF-1') }),
    );
    dying.socket.write(whole.subarray(0, Math.floor(whole.length / 2)));
    // While the half frame sits in the server's buffer, another client is served.
    const mid = await good.record(sale(4_200));
    dying.socket.destroy();
    await dying.closed;
    await vi.waitFor(() => expect(logLines.join('')).toContain('PROTOCOL_FRAME_TRUNCATED'));
    const after = await good.record(sale(4_300));
    expect(after.seq).toBeGreaterThan(mid.seq);
    expect(core.store.journal.findByLocalId('HALF-1')).toBeUndefined();
    expect(count()).toBe(before + 2);
    expect(count('amount = 7777')).toBe(0);
    // And a fresh client can still connect.
    expect((await (await connect()).mayTransact()).allowed).toBe(true);
  });

  const [TOO_LARGE, MALFORMED] = ['PROTOCOL_FRAME_TOO_LARGE', 'PROTOCOL_MALFORMED'];
  const cases: Array<[string, Buffer, string]> = [
    ['an oversized length prefix', Buffer.from('7fffffff010203', 'hex'), TOO_LARGE],
    ['one byte over the limit', Buffer.from('00010001', 'hex'), TOO_LARGE],
    ['a zero length', Buffer.from('00000000', 'hex'), MALFORMED],
    // Field 10 (record) claims 2^28 bytes in a 6-byte payload.
    ['an undecodable payload', Buffer.from('00000006528080808001', 'hex'), MALFORMED],
    ['a LocalRequest with no body', encodeFrame(encodeLocalRequest({ requestId: 'x' })), MALFORMED],
  ];
  for (const [what, bytes, code] of cases) {
    it(`${what}: typed ErrorReply, that client dropped, others served`, async () => {
      const good = await connect();
      const before = count();
      const bad = await rawClient();
      bad.socket.write(bytes);
      await within(bad.closed, 5_000, 'the server to drop the client');
      expect(bad.replies).toHaveLength(1);
      expect(bad.replies[0]!.error).toMatchObject({ code });
      expect(bad.replies[0]!.requestId).toBe('');
      expect(count()).toBe(before);
      expect((await good.record(sale(900))).seq).toBe(before + 1);
    });
  }

  it('random byte payloads (seeded) each get a typed error and a hang-up', async () => {
    const good = await connect();
    let tried = 0;
    for (let i = 0; tried < 30; i++) {
      // Deterministic noise: a failing case replays from its index.
      const noise = createHash('sha512').update(`garbage ${i}`).digest();
      const payload = noise.subarray(0, 1 + (noise[63]! % 63));
      try {
        decodeLocalRequest(payload);
        continue; // by chance a valid request: not garbage
      } catch {
        tried++;
      }
      const bad = await rawClient();
      bad.socket.write(encodeFrame(payload));
      await within(bad.closed, 5_000, `drop after garbage ${payload.toString('hex')}`);
      expect(bad.replies.map((r) => r.error?.code)).toEqual(['PROTOCOL_MALFORMED']);
    }
    expect((await good.mayTransact()).allowed).toBe(true);
    expect(count("kind = 'txn'")).toBe(0);
  });

  it('an app that writes without reading its replies is held back, not buffered without end', async () => {
    // 1 MB of requests: well beyond what the two kernel buffers and the agent's stream buffer
    // hold together (Node 22 and later buffer four times as much as Node 20 by default).
    const n = 100_000;
    const frame = encodeFrame(encodeLocalRequest({ requestId: 'p', mayTransact: {} }));
    let handled = 0;
    const handle = server.handle.bind(server);
    server.handle = (req) => (handled++, handle(req));
    const socket = net.createConnection(sock);
    clients.push({ close: () => socket.destroy() });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(Buffer.concat(Array.from({ length: n }, () => frame)));
    // The agent stops reading once its replies back up: most requests are not even read.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(handled).toBeGreaterThan(0);
    expect(handled).toBeLessThan(n / 4);
    // Reading the replies lets the rest through: every request is answered.
    const decoder = new FrameDecoder();
    let answered = 0;
    socket.on('data', (chunk: Buffer) => (answered += decoder.push(chunk).length));
    socket.resume();
    await vi.waitFor(() => expect(answered).toBe(n), { timeout: 20_000 });
  });

  it('a refused request (bad amount) is answered and the connection stays', async () => {
    const c = await connect();
    await expect(c.record(sale(-5))).rejects.toMatchObject({ code: 'TXN_INVALID_AMOUNT' });
    expect((await c.record(sale(5))).status).toBe('approved');
  });

  it('a sale naming an original is refused, and takes nothing from that original', async () => {
    const c = await connect();
    const first = await c.record(sale(10_000));
    await expect(c.record({ ...sale(10_000), originalSeq: first.seq })).rejects.toMatchObject({
      code: 'TXN_INVALID',
    });
    const refund = { type: 'refund' as const, amount: 10_000, originalSeq: first.seq };
    expect(await c.record({ ...refund, localId: 'REFUND-ALL' })).toMatchObject({
      duplicate: false,
    });
  });

  it('a refund is never pending-offline: only a sale is approved offline', async () => {
    const c = await connect();
    const first = await c.record(sale(10_000));
    await expect(
      c.record({
        ...{ type: 'refund', amount: 1_000, originalSeq: first.seq, localId: 'R-OFF' },
        ...{ status: 'pending-offline', approvedAt: Date.now() },
      }),
    ).rejects.toMatchObject({ code: 'TXN_INVALID', message: /never pending-offline/ });
    expect(count("kind = 'txn'")).toBe(1);
  });

  it('a record without local_id or status is refused (TXN_INVALID) and the refusal journaled', async () => {
    const raw = await rawClient();
    const { localId: _unused, ...noId } = sale(600);
    const { status: _none, ...noStatus } = sale(700);
    raw.socket.write(encodeFrame(encodeLocalRequest({ requestId: 'no-id', record: noId })));
    raw.socket.write(encodeFrame(encodeLocalRequest({ requestId: 'no-st', record: noStatus })));
    await vi.waitFor(() => expect(raw.replies).toHaveLength(2), { timeout: 5_000 });
    expect(raw.replies.map((r) => [r.requestId, r.error?.code])).toEqual([
      ['no-id', 'TXN_INVALID'],
      ['no-st', 'TXN_INVALID'],
    ]);
    expect(count("kind = 'txn'")).toBe(0);
    expect(core.store.journal.events('txn-refused')).toHaveLength(2);
  });

  it('a reply too large for a frame is answered with PROTOCOL_FRAME_TOO_LARGE, not left unsent', async () => {
    const small = path.join(dir, 'small.sock');
    const tight = new PaymentSocketServer({
      payments: core.payments,
      terminal: core.terminal,
      store: core.store,
      log: core.log,
      maxFrameBytes: 300,
    });
    await tight.listen(small);
    try {
      const c = await PaymentClient.connect(sock);
      clients.push(c);
      const s = await c.record(sale(4_321));
      const socket = net.createConnection(small);
      clients.push({ close: () => socket.destroy() });
      const conn = localClientConnection(socket);
      const replies: pos.v1.LocalReply[] = [];
      conn.on('message', (r) => replies.push(r));
      await new Promise((resolve) => socket.once('connect', resolve));
      // The echoed id leaves no room for a TransactionView, but room for an error.
      const requestId = 'q'.repeat(220);
      conn.send({ requestId, query: { seq: s.seq } });
      conn.send({ requestId: 'next', mayTransact: {} });
      await vi.waitFor(() => expect(replies).toHaveLength(2), { timeout: 5_000 });
      expect(replies[0]).toMatchObject({ requestId, error: { code: 'PROTOCOL_FRAME_TOO_LARGE' } });
      expect(replies[1]).toMatchObject({ requestId: 'next', mayTransact: { allowed: true } });
    } finally {
      await tight.close();
    }
  });
});

describe('card data beyond the PAN', () => {
  it('CVV, track 2 and PIN block are refused with CARD_SENSITIVE_DATA and never stored', async () => {
    const good = await connect();
    const kept = await good.record(sale(3_000));
    const c = localClientConnection(net.createConnection(sock));
    clients.push({ close: () => c.destroy() });
    const replies = new Map<string, pos.v1.LocalReply>();
    c.on('message', (r) => replies.set(r.requestId, r));
    const offers: Array<[string, pos.v1.ICardData]> = [
      ['cvv', { pan: SECRET_PAN, cvv: CVV }],
      ['track2', { pan: SECRET_PAN, track2: TRACK2 }],
      ['pin', { pan: SECRET_PAN, pinBlock: PIN_BLOCK }],
      ['all', { pan: SECRET_PAN, cvv: CVV, track2: TRACK2, pinBlock: PIN_BLOCK }],
    ];
    for (const [id, card] of offers)
      c.send({
        requestId: id,
        record: { type: 'sale', status: 'approved', amount: 4_000, card, localId: `SENS-${id}` },
      });
    await vi.waitFor(() => expect(replies.size).toBe(offers.length), { timeout: 5_000 });
    for (const [id] of offers) {
      expect(replies.get(id)?.error?.code, id).toBe('CARD_SENSITIVE_DATA');
      expect(core.store.journal.findByLocalId(`SENS-${id}`)).toBeUndefined();
    }
    // The connection survives a refusal: it is a typed answer, not bad framing.
    expect(c.closed).toBe(false);
    const refusals = core.store.journal.events('txn-refused');
    expect(refusals.filter((e) => e.detail.code === 'CARD_SENSITIVE_DATA')).toHaveLength(4);

    const files = ['', '-wal'].map((s) => journalPath(core.config) + s);
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    expect(bytes.includes(Buffer.from(MASKED)), 'the scan must see the rows it checks').toBe(true);
    expect(core.store.journal.getTxn(kept.seq)?.maskedPan).toBe(MASKED);
    const needles: Array<[string, Buffer]> = [
      ['PAN', Buffer.from(SECRET_PAN)],
      ['track 2', Buffer.from(TRACK2)],
      ['track 2 discretionary data', Buffer.from(TRACK2.split('=')[1]!)],
      ['PIN block bytes', PIN_BLOCK],
      ['PIN block hex', Buffer.from(PIN_BLOCK.toString('hex'))],
      ['PIN block HEX', Buffer.from(PIN_BLOCK.toString('hex').toUpperCase())],
    ];
    for (const [what, needle] of needles) expect(bytes.indexOf(needle), what).toBe(-1);
    const text = bytes.toString('latin1');
    expect(text).not.toMatch(new RegExp(`(?<![0-9A-Fa-f])${CVV}(?![0-9A-Fa-f])`));
    expect(logLines.join('')).not.toContain(SECRET_PAN);
  });
});

describe('retries by local id', () => {
  it('a resend over a new connection returns duplicate=true with the same seq', async () => {
    const first = await connect();
    const a = await first.record(sale(8_800, 'POS-77'));
    first.close();
    const second = await connect();
    const b = await second.record(sale(8_800, 'POS-77'));
    expect(a.duplicate).toBe(false);
    expect(b).toEqual({ ...a, duplicate: true });
    // Two copies racing on two connections still make one row.
    const [x, y] = await Promise.all(
      [await connect(), await connect()].map((c) => c.record(sale(990, 'POS-78'))),
    );
    expect(x!.seq).toBe(y!.seq);
    expect([x!.duplicate, y!.duplicate].sort()).toEqual([false, true]);
    // The same id for a different transaction is refused, not merged.
    await expect(second.record(sale(8_801, 'POS-77'))).rejects.toMatchObject({
      code: 'TXN_INVALID',
    });
    expect(count("local_id IN ('POS-77', 'POS-78')")).toBe(2);
  });
});
