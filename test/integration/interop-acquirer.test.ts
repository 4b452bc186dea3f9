/**
 * docs/protocol.md's acquirer side, proved from outside: test/interop/acquirer.py, an acquirer
 * host in Python written from that page and the .proto's field numbers alone (standard library,
 * hand-rolled protobuf, its own mutual-TLS server, Ed25519 through the openssl command line,
 * nothing of this repository), runs as a child process on 127.0.0.1, and real agents (in this
 * process) activate against it. The tests run in order on one terminal, then on two more:
 * settlement exactly once across a lost ack, out-of-balance batches proved by windowed detail
 * uploads (lost link, acks out of order, negative totals, offline advices), SETTLEMENT_REJECTED,
 * signed commands whose signed results Python verifies (every refusal above the counter line,
 * redelivery, poll, fee schedules, key rotation), frames the terminal must refuse, the remote
 * witness, and deactivation. Each checks what Python printed against the agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTlsMaterial } from '../../protocol/tls-material.ts';
import { Agent } from '../../agent/runtime/agent.ts';
import { parseConfig } from '../../agent/config.ts';
import type { BatchTotals } from '../../storage/batches.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ACQUIRER = path.join(ROOT, 'test', 'interop', 'acquirer.py');
const TERMINAL = 'TPYACQ01';
const CODE = 'PY-CODE-1';
const TERMINAL2 = 'TPYACQ02';
const CODE2 = 'PY-CODE-2';
const TERMINAL3 = 'TPYACQ03';
const CODE3 = 'PY-CODE-3';

type Line = Record<string, unknown> & { event: string };
type WireTotals = {
  by_type: Array<{ type: string; count: number; amount: number; fee: number }>;
  transaction_count: number;
  net_amount: number;
  net_fee: number;
  net_settlement: number;
  currency: string;
};

let tmp: string;
let py: ChildProcess;
let agent: Agent;
let config: ReturnType<typeof parseConfig>;
let dataDir: string;
let tlsMaterial: ReturnType<typeof ensureTlsMaterial>;
let port: number;
const lines: Line[] = [];
let pyStderr = '';

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'pa-pyacq-'));
  const tls = ensureTlsMaterial(path.join(tmp, 'pki'), [TERMINAL, TERMINAL2, TERMINAL3]);
  tlsMaterial = tls;
  const files = { ca: tls.caCert, cert: tls.serverCert, key: tls.serverKey };
  const pyDir = path.join(tmp, 'acquirer');
  mkdirSync(pyDir);
  const args = [ACQUIRER, '--dir', pyDir, '--code', `${CODE},${CODE2},${CODE3}`];
  for (const [name, pem] of Object.entries(files)) {
    writeFileSync(path.join(pyDir, `${name}.pem`), pem, { mode: 0o600 });
    args.push(`--${name}`, path.join(pyDir, `${name}.pem`));
  }
  py = spawn('python3', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  py.stderr!.on('data', (d: Buffer) => (pyStderr += d.toString()));
  readline
    .createInterface({ input: py.stdout! })
    .on('line', (l) => lines.push(JSON.parse(l) as Line));
  const listening = await waitFor((l) => l.event === 'listening', 'the acquirer to listen');

  port = listening.port as number;
  dataDir = path.join(tmp, TERMINAL);
  config = configFor(TERMINAL, dataDir);
  agent = await startAgent();
}, 20_000);

function configFor(terminalId: string, dir: string): ReturnType<typeof parseConfig> {
  mkdirSync(path.join(dir, 'tls'), { recursive: true });
  writeFileSync(path.join(dir, 'tls', 'ca.crt'), tlsMaterial.caCert);
  writeFileSync(path.join(dir, 'tls', 'terminal.crt'), tlsMaterial.clients[terminalId]!.cert);
  writeFileSync(path.join(dir, 'tls', 'terminal.key'), tlsMaterial.clients[terminalId]!.key, {
    mode: 0o600,
  });
  return parseConfig({
    terminalId,
    dataDir: dir,
    acquirer: {
      port,
      backoffInitialMs: 20,
      backoffMaxMs: 100,
      requestTimeoutMs: 3_000,
      heartbeatIntervalMs: 150,
    },
    // Small chunks and a wide window of ours, so the Python side's window is the one that holds.
    settlement: { detailChunkRows: 2, detailWindow: 8 },
    paymentSocket: { path: '' },
    log: { level: 'silent' },
  });
}

async function startAgent(cfg = config): Promise<Agent> {
  const a = new Agent({ config: cfg, schedules: false });
  await a.start();
  await a.channel.waitUntilUp(8_000);
  return a;
}

afterAll(async () => {
  if (process.env.DUMP) for (const l of lines) console.log(JSON.stringify(l));
  await agent?.stop();
  py?.kill('SIGKILL');
  if (!process.env.KEEP) rmSync(tmp, { recursive: true, force: true });
  else console.log('TMP', tmp);
});

async function waitFor(pred: (l: Line) => boolean, what: string): Promise<Line> {
  const deadline = Date.now() + 8_000;
  for (;;) {
    const found = lines.find(pred);
    if (found) return found;
    if (Date.now() > deadline || py.exitCode !== null)
      throw new Error(`timed out waiting for ${what}; stderr: ${pyStderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const tell = (line: string) => py.stdin!.write(`${line}\n`);

/** Pushes one command by a control line; its verified result as Python printed it. */
async function command(line: string): Promise<Line> {
  const pushed = events('command_pushed').length;
  tell(line);
  await waitFor(() => events('command_pushed').length > pushed, `${line} pushed`);
  const push = events('command_pushed').at(-1)!;
  return waitFor(
    (l) => l.event === 'command_result' && l.correlation_id === push.message_id,
    `the result of ${line}`,
  );
}
const events = (name: string) => lines.filter((l) => l.event === name);

/** Python's by_type carries only the types present (the schema: each type at most once). */
function asWire(t: BatchTotals): WireTotals {
  return {
    by_type: t.byType.filter((x) => x.count > 0),
    transaction_count: t.transactionCount,
    net_amount: t.netAmount,
    net_fee: t.netFee,
    net_settlement: t.netSettlement,
    currency: t.currency,
  };
}

function sell(amounts: number[], status: 'approved' | 'declined' = 'approved'): void {
  for (const amount of amounts)
    agent.core.payments.record({ type: 'sale', amount, status, card: { pan: '4111111111111111' } });
}

/** Settles until the batch is in a final state (a lost ack fails the first attempt). */
async function settle(batchId?: string): Promise<string> {
  const first = await agent.settleNow('interop');
  const id = batchId ?? first.closed ?? first.pending[0] ?? first.settled[0]!;
  const deadline = Date.now() + 8_000;
  while (!['acked', 'resolved'].includes(agent.core.store.batches.get(id)!.state)) {
    if (Date.now() > deadline) throw new Error(`batch ${id} not settled`);
    await agent.channel.waitUntilUp(5_000);
    await agent.settleNow('interop again');
  }
  return id;
}

describe('an acquirer in Python written from docs/protocol.md', () => {
  it('is reached over mutual TLS, answers Hello and activates the terminal by code', async () => {
    expect(await waitFor((l) => l.event === 'hello', 'hello')).toMatchObject({
      terminal_id: TERMINAL,
      cn: TERMINAL,
      lifecycle_state: 'unactivated',
    });
    expect(events('connected')[0]).toMatchObject({ terminal_id: TERMINAL });
    await agent.activate(CODE, 'console:tech1');
    expect(agent.core.terminal.status().state).toBe('active');
    expect(events('activation_request')[0]).toMatchObject({ code: CODE, key_bytes: 32 });
    // The grant's fee schedule is the one the terminal prices with: 0.60 %, at least 3.00 yuan.
    const r = agent.core.payments.record({
      type: 'sale',
      amount: 100_000,
      card: { pan: '4111111111111111' },
    });
    expect(r).toMatchObject({ fee: 600, feeVersion: 'py-2026.1' });
  });

  it('settles the batch once: a resend after a lost ack is the same settlement, duplicate', async () => {
    sell([12_000, 34_500, 7_700]);
    sell([99_900], 'declined');
    tell('lose-ack');
    const id = await settle();
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.state).toBe('acked');
    const seen = events('batch').filter((l) => l.batch_id === id);
    expect(seen.map((l) => [l.duplicate, l.lost_ack])).toEqual([
      [false, true],
      [true, false],
    ]);
    expect(seen[1]!.settlement_id).toBe(seen[0]!.settlement_id);
    expect(batch.settlementId).toBe(seen[0]!.settlement_id);
    expect(seen[0]!.digest).toBe(batch.digest);
    // What Python decoded is the agent's batch; it settled on it with zero types left out.
    expect(seen[0]!.totals).toMatchObject({
      transaction_count: 4,
      net_amount: 154_200,
      currency: 'CNY',
    });
    expect(seen[0]!.settled_on).toEqual(asWire(batch.totals!));
    expect(events('chunk')).toHaveLength(0);
  });

  it('locks and unlocks by signed commands; Python verifies each signed result', async () => {
    tell('lock interop lock');
    const locked = await waitFor((l) => l.event === 'command_result' && l.counter === 1, 'lock');
    expect(locked).toMatchObject({
      verified: true,
      correlation_matches: true,
      terminal_id: TERMINAL,
      outcome: 'applied',
      locks: ['remote'],
      signature_bytes: 64,
    });
    expect(() => sell([1_000])).toThrow(expect.objectContaining({ code: 'LIFECYCLE_LOCKED' }));
    tell('unlock interop unlock');
    const unlocked = await waitFor(
      (l) => l.event === 'command_result' && l.counter === 2,
      'unlock',
    );
    expect(unlocked).toMatchObject({ verified: true, outcome: 'applied', locks: [] });
    expect(agent.core.terminal.status().locks).toEqual([]);
    expect(() => sell([1_000])).not.toThrow();
  });

  it('proves an out-of-balance batch with a windowed detail upload, then settles on its rows', async () => {
    sell([2_000, 3_000, 4_000, 5_000]);
    sell([6_000], 'declined');
    tell('window 2');
    tell('ack-delay 150');
    tell('oob');
    await waitFor((l) => l.event === 'control' && l.word === 'oob', 'oob armed');
    const id = await settle();
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.state).toBe('resolved');
    // 1,000 (the sale after the unlock) + 4 sales + 1 declined: 6 rows, 3 chunks of 2.
    const chunks = events('chunk').filter((l) => l.batch_id === id);
    expect(new Set(chunks.map((l) => l.index))).toEqual(new Set([0, 1, 2]));
    expect(chunks.every((l) => l.count === 3)).toBe(true);
    // The probe goes alone; then at most the acquirer's window (2 < our 8) is unacknowledged.
    expect(chunks[0]).toMatchObject({ index: 0, unacked: 1 });
    expect(Math.max(...chunks.map((l) => l.unacked as number))).toBe(2);
    const done = await waitFor(
      (l) => l.event === 'detail_complete' && l.batch_id === id,
      'detail complete',
    );
    expect(done).toMatchObject({ batch_id: id, digest: batch.digest, rows: 6 });
    // The totals Python computed from the rows it decoded are the agent's own.
    expect(done.totals).toEqual(asWire(batch.totals!));
    const submits = events('batch').filter((l) => l.batch_id === id);
    expect(submits.at(-1)).toMatchObject({ duplicate: false, settled_on: done.totals });
    expect(batch.settlementId).toBe(submits.at(-1)!.settlement_id);
    tell('ack-delay 0');
    expect(pyStderr).toBe('');
  });

  it('answers heartbeats and polls: the link dropped only at the lost ack', async () => {
    const before = events('heartbeat').length;
    await waitFor(() => events('heartbeat').length >= before + 3, 'three more heartbeats');
    // Heartbeat.open_batch is what the batch will settle: sold now, seen, then submitted.
    sell([7_000, 8_000]);
    sell([500], 'declined');
    const seen = events('heartbeat').length;
    await waitFor(() => events('heartbeat').length >= seen + 2, 'heartbeats after the sales');
    const open = events('heartbeat').at(-1)!.open_batch as Record<string, unknown>;
    const { closed } = await agent.settleNow('open batch check');
    expect(open.batch_id).toBe(closed);
    expect(events('batch').find((l) => l.batch_id === closed)!.totals).toMatchObject({
      transaction_count: open.transaction_count,
      net_amount: open.net_amount,
      net_fee: open.net_fee,
      currency: open.currency,
    });
    expect(events('connected')).toHaveLength(2);
    expect(events('link_error')).toEqual([]);
    expect(events('heartbeat').at(-1)).toMatchObject({ lifecycle_state: 'active', locks: [] });
    // A poll on each contact once the command key is pinned: the reconnect after activation.
    expect(events('command_poll').length).toBeGreaterThanOrEqual(1);
    expect(events('unexpected')).toEqual([]);
    // A push of another kind is ignored, an answer nobody waits for is dropped: the link stays.
    tell('stray');
    // Each HeartbeatAck was a trusted reading of the acquirer clock: a command still applies.
    tell('status');
    const status = await waitFor((l) => l.event === 'command_result' && l.counter === 3, 'status');
    expect(status).toMatchObject({ verified: true, outcome: 'applied', error_code: '' });
    expect(events('connected')).toHaveLength(2);
    expect(events('error_received')).toEqual([]);
  });

  it('a command delivered again gets its first result; an older one is COMMAND_REPLAYED', async () => {
    const first = events('command_result').find((l) => l.counter === 3)!;
    tell('again 3');
    await waitFor(
      () => events('command_result').filter((l) => l.counter === 3).length === 2,
      'again',
    );
    const again = events('command_result').filter((l) => l.counter === 3)[1]!;
    expect(again).toMatchObject({ verified: true, outcome: 'applied', correlation_matches: true });
    expect(again.body_sha256).toBe(first.body_sha256);
    tell('again 1');
    await waitFor(
      () => events('command_result').filter((l) => l.counter === 1).length === 2,
      'replay',
    );
    expect(events('command_result').filter((l) => l.counter === 1)[1]).toMatchObject({
      verified: true,
      outcome: 'refused',
      error_code: 'COMMAND_REPLAYED',
    });
    expect(agent.core.terminal.status().locks).toEqual([]);
  });

  it('a command failing a check above the counter line is refused and does not use its counter', async () => {
    const refusals: Record<string, string> = {
      'bad-signature': 'COMMAND_BAD_SIGNATURE',
      'wrong-terminal': 'COMMAND_WRONG_TERMINAL',
      'short-nonce': 'COMMAND_MALFORMED',
      expired: 'COMMAND_EXPIRED',
      future: 'COMMAND_ISSUED_IN_FUTURE',
      lifetime: 'COMMAND_LIFETIME_TOO_LONG',
    };
    const next = Math.max(...events('command_result').map((l) => l.counter as number)) + 1;
    for (const [bad, code] of Object.entries(refusals)) {
      const pushed = events('command_pushed').length;
      tell(`bad ${bad}`);
      const push = await waitFor(
        () => events('command_pushed').length > pushed,
        `the ${bad} command pushed`,
      ).then(() => events('command_pushed').at(-1)!);
      expect(push).toMatchObject({ bad, counter: next });
      const result = await waitFor(
        (l) => l.event === 'command_result' && l.correlation_id === push.message_id,
        `the answer to ${bad}`,
      );
      expect(result, bad).toMatchObject({ verified: true, outcome: 'refused', error_code: code });
    }
    // The same counter, now in a good command, is applied.
    tell('status');
    const ok = await waitFor(
      (l) => l.event === 'command_result' && l.counter === next && l.outcome === 'applied',
      'the good command',
    );
    expect(ok).toMatchObject({ verified: true, correlation_matches: true });
  });

  it('a link lost mid-upload resumes from what Python holds; no acknowledged chunk again', async () => {
    sell([1_100, 1_200, 1_300, 1_400, 1_500, 1_600]);
    tell('window 2');
    tell('drop-at-chunk 1');
    tell('oob');
    await waitFor(
      () => events('control').filter((l) => l.word === 'oob').length === 2,
      'oob armed',
    );
    const id = await settle();
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.state).toBe('resolved');
    const chunks = events('chunk').filter((l) => l.batch_id === id);
    const times = (i: number) => chunks.filter((l) => l.index === i).length;
    expect(chunks.find((l) => l.dropped_link)).toMatchObject({ index: 1 });
    expect(times(0)).toBe(1);
    // The one in flight when the link went comes again, as the probe of the resumed upload.
    expect(times(1)).toBe(2);
    expect(chunks.filter((l) => l.index === 1)[1]).toMatchObject({ again: true });
    const done = events('detail_complete').find((l) => l.batch_id === id)!;
    expect(done).toMatchObject({ rows: 6, digest: batch.digest });
    expect(done.totals).toEqual(asWire(batch.totals!));
    expect(batch.settlementId).toBe(
      events('batch')
        .filter((l) => l.batch_id === id)
        .at(-1)!.settlement_id,
    );
  });

  it('DetailAcks out of order, the last chunk answered first, still end in one settlement', async () => {
    sell([1_700, 1_800, 1_900, 2_000, 2_100, 2_200, 2_300, 2_400]);
    tell('window 3');
    tell('ack-reverse on');
    tell('oob');
    await waitFor(
      () => events('control').filter((l) => l.word === 'oob').length === 3,
      'oob armed',
    );
    const id = await settle();
    tell('ack-reverse off');
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.state).toBe('resolved');
    const chunks = events('chunk').filter((l) => l.batch_id === id);
    expect(chunks.map((l) => l.index)).toEqual([0, 1, 2, 3]);
    const done = events('detail_complete').find((l) => l.batch_id === id)!;
    expect(done.totals).toEqual(asWire(batch.totals!));
  });

  it('negative totals (a refund of a sale settled before) go both ways as int64', async () => {
    const sale = agent.core.payments.record({
      type: 'sale',
      amount: 20_000,
      card: { pan: '4111111111111111' },
    });
    await settle();
    agent.core.payments.record({ type: 'refund', amount: 20_000, originalSeq: sale.seq });
    tell('oob');
    await waitFor(
      () => events('control').filter((l) => l.word === 'oob').length === 4,
      'oob armed',
    );
    const id = await settle();
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.totals!.netAmount).toBe(-20_000);
    expect(batch.state).toBe('resolved');
    const done = events('detail_complete').find((l) => l.batch_id === id)!;
    expect(done.totals).toEqual(asWire(batch.totals!));
    expect(events('batch').filter((l) => l.batch_id === id)[0]!.totals).toMatchObject({
      net_amount: -20_000,
      net_settlement: batch.totals!.netSettlement,
    });
  });

  it('SETTLEMENT_REJECTED, on a submit or a detail upload, disputes the batch and locks until Python unlocks', async () => {
    for (const how of ['reject', 'reject-detail']) {
      if (how === 'reject-detail') tell('oob');
      tell(how);
      await waitFor(() => events('control').some((l) => l.word === how), `${how} armed`);
      sell([4_400]);
      const report = await agent.settleNow(how);
      const id = report.closed!;
      expect(report.disputed, how).toEqual([id]);
      expect(agent.core.store.batches.get(id)!.state).toBe('disputed');
      expect(agent.core.terminal.status().locks).toEqual(['settlement-dispute']);
      expect(() => sell([1_000])).toThrow(expect.objectContaining({ code: 'LIFECYCLE_LOCKED' }));
      const submits = events('batch').length + events('batch_rejected').length;
      await agent.heartbeatTick(); // a contact: the disputed batch is not sent again
      expect(events('batch').length + events('batch_rejected').length).toBe(submits);
      const results = events('command_result').length;
      tell('unlock-source settlement-dispute');
      await waitFor(() => events('command_result').length > results, 'the unlock');
      expect(events('command_result').at(-1)).toMatchObject({ outcome: 'applied', locks: [] });
      expect(() => sell([1_000])).not.toThrow();
    }
  });

  it('installs fee schedules, settles now and rotates its command key, each by a signed command', async () => {
    const sale = (amount: number) =>
      agent.core.payments.record({ type: 'sale', amount, card: { pan: '4111111111111111' } });
    // 1 % (half up to the fen) + 0.10 fixed, no minimum, at most 5.00.
    expect(await command('fees py-2026.2 100 10 0 500 0')).toMatchObject({ outcome: 'applied' });
    const s = sale(10_000);
    expect(s).toMatchObject({ fee: 110, feeVersion: 'py-2026.2' });
    expect(sale(1_050).fee).toBe(21); // 10.5 rounds up to 11, + 10
    expect(sale(100_000).fee).toBe(500); // 1,010 capped
    // A refund returns the fee in proportion, rounded down: 110 x 3,333 / 10,000 = 36.66.
    const refund = agent.core.payments.record({
      type: 'refund',
      amount: 3_333,
      originalSeq: s.seq,
    });
    expect(refund.fee).toBe(36);
    // A schedule that takes effect in an hour changes nothing now.
    expect(await command('fees py-2026.3 200 0 0 0 3600000')).toMatchObject({ outcome: 'applied' });
    expect(sale(10_000)).toMatchObject({ fee: 110, feeVersion: 'py-2026.2' });
    // No "default" rule: refused by the terminal, and the counter is used.
    const bad = await command('fees py-bad 100 0 0 0 0 catering');
    expect(bad).toMatchObject({ outcome: 'refused', error_code: 'FEE_INVALID_SCHEDULE' });
    expect(bad.counter).toBe(bad.answers);

    const batches = events('batch').length;
    expect(await command('settle-now')).toMatchObject({ outcome: 'applied' });
    await waitFor(() => events('batch').length > batches, 'the batch settle-now sent');
    const sent = events('batch').at(-1)!;
    expect(sent.totals).toMatchObject({ transaction_count: 6 });

    expect(await command('rotate')).toMatchObject({ verified: true, outcome: 'applied' });
    expect(await command('status')).toMatchObject({ outcome: 'applied' });
    expect(await command('bad old-key')).toMatchObject({
      outcome: 'refused',
      error_code: 'COMMAND_BAD_SIGNATURE',
    });
  });

  it('a risk flag at severity 5 locks (risk), below it does not; Python unlocks risk', async () => {
    expect(await command('risk PY-CASE-1 4')).toMatchObject({ outcome: 'applied', locks: [] });
    expect(await command('risk PY-CASE-2 5')).toMatchObject({
      outcome: 'applied',
      locks: ['risk'],
    });
    expect(() => sell([1_000])).toThrow(expect.objectContaining({ code: 'LIFECYCLE_LOCKED' }));
    expect(await command('unlock-source risk')).toMatchObject({ outcome: 'applied', locks: [] });
    expect(() => sell([1_000])).not.toThrow();
  });

  it('a command left for the poll is pushed before CommandPollDone on the next contact', async () => {
    tell('hold on');
    tell('lock left for the poll');
    await waitFor(() => events('command_pushed').at(-1)?.held === true, 'the held command');
    const held = events('command_pushed').at(-1)!;
    tell('hold off');
    await agent.heartbeatTick(); // a contact: risk reports, deactivation, then CommandPoll
    const poll = await waitFor(
      (l) => l.event === 'command_poll' && (l.pushing as number[]).includes(held.counter as number),
      'the poll that delivers it',
    );
    expect(poll.after_counter).toBe((held.counter as number) - 1);
    const result = await waitFor(
      (l) => l.event === 'command_result' && l.correlation_id === held.message_id,
      'its result',
    );
    expect(result).toMatchObject({ outcome: 'applied', locks: ['remote'], verified: true });
    expect(await command('unlock')).toMatchObject({ outcome: 'applied', locks: [] });
  });

  it('a command pushed before the HelloAck is refused: ErrorReply, close, then a normal link', async () => {
    const [errors, hellos] = [events('error_received').length, events('hello').length];
    tell('early-push');
    await waitFor(() => events('control').some((l) => l.word === 'early-push'), 'armed');
    tell('garbage zero'); // a reconnect, so that a Hello comes
    await waitFor(() => events('early_push').length === 1, 'the early push');
    await waitFor(() => events('hello').length > hellos + 1, 'the next reconnect');
    expect(
      events('error_received')
        .slice(errors)
        .map((l) => l.code),
    ).toEqual(['PROTOCOL_MALFORMED', 'PROTOCOL_UNEXPECTED']);
    await agent.channel.waitUntilUp(5_000);
    expect(agent.core.terminal.status().locks).toEqual([]);
  });

  it('a frame the terminal cannot take: one uncorrelated ErrorReply, the close, a reconnect', async () => {
    for (const [garbage, code] of [
      ['too-large', 'PROTOCOL_FRAME_TOO_LARGE'],
      ['zero', 'PROTOCOL_MALFORMED'],
      ['unknown-body', 'PROTOCOL_MALFORMED'],
      ['other-terminal', 'PROTOCOL_UNEXPECTED'],
    ]) {
      const [errors, gone, hellos] = ['error_received', 'disconnected', 'hello'].map(
        (e) => events(e).length,
      );
      tell(`garbage ${garbage}`);
      await waitFor(() => events('disconnected').length > gone!, `the close after ${garbage}`);
      expect(events('error_received').slice(errors), garbage).toMatchObject([{ code }]);
      await waitFor(() => events('hello').length > hellos!, `the reconnect after ${garbage}`);
    }
    await agent.channel.waitUntilUp(5_000);
  });

  it('offline advices: Python accepts one and declines one; the batch pays only the accepted', async () => {
    const offline = (amount: number) =>
      agent.core.payments.record({
        type: 'sale',
        amount,
        status: 'pending-offline',
        approvedAt: Date.now(),
        card: { pan: '4111111111111111' },
      });
    // First an acquirer without offline approvals, refusing AdviceBatch with an ErrorReply: the
    // advices stay queued, and the batch they are in stays open.
    tell('advices refuse');
    await waitFor(() => events('control').some((l) => l.word === 'advices'), 'refusing');
    const small = offline(5_000);
    const big = offline(30_000); // over Python's 200.00 offline limit: AMOUNT_LIMIT
    sell([6_000]);
    const round = await agent.forwardAdvices({ ignoreBackoff: true });
    expect(round).toMatchObject({ accepted: 0, declined: 0 });
    await waitFor(() => events('advices_refused').length > 0, 'a refused AdviceBatch');
    const waited = await agent.settleNow('advices unanswered');
    expect(waited.closed).toBeNull();
    expect(agent.core.store.batches.get(small.batchId)!.state).toBe('open');
    // Then Python takes them; out of balance, so that it recomputes the totals from the rows.
    tell('oob');
    tell('advices take');
    await waitFor(
      () => events('control').filter((l) => l.word === 'advices').length === 2,
      'taking',
    );
    await agent.forwardAdvices({ ignoreBackoff: true });
    const advices = events('advice');
    expect(advices.map((l) => [l.seq, l.outcome, l.key_ok, l.status])).toEqual([
      [small.seq, 'accepted', true, 'pending-offline'],
      [big.seq, 'declined', true, 'pending-offline'],
    ]);
    const id = await settle(small.batchId);
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.state).toBe('resolved');
    const done = events('detail_complete').find((l) => l.batch_id === id)!;
    expect(done.seqs).toEqual(expect.arrayContaining([small.seq, big.seq]));
    // The declined offline row counts as declined: of every row's amount, only its 30,000 is
    // not paid (on both sides).
    expect((done.amount_all as number) - batch.totals!.netAmount).toBe(30_000);
    expect(done.totals).toEqual(asWire(batch.totals!));
  });

  it('a BatchAck with an amount beyond 2^53 - 1 is PROTOCOL_MALFORMED; the resend settles', async () => {
    tell('huge-totals');
    await waitFor(() => events('control').some((l) => l.word === 'huge-totals'), 'armed');
    sell([4_200]);
    const first = await agent.settleNow('huge totals');
    expect(first.error).toMatchObject({ code: 'PROTOCOL_MALFORMED' });
    const id = first.pending[0]!;
    expect(agent.core.store.batches.get(id)!.state).toBe('sent');
    await settle(id);
    const batch = agent.core.store.batches.get(id)!;
    expect(batch.state).toBe('acked');
    const seen = events('batch').filter((l) => l.batch_id === id);
    expect(seen.map((l) => l.duplicate)).toEqual([false, true]);
    expect(batch.settlementId).toBe(seen[0]!.settlement_id);
  });

  it('remote witness: a data directory put back is told behind, locks itself and settles nothing', async () => {
    sell([3_300]); // the open batch has a row to settle
    await agent.stop();
    const backup = path.join(tmp, 'backup');
    cpSync(dataDir, backup, { recursive: true });
    agent = await startAgent();
    sell([2_100, 2_200]);
    const head = agent.core.store.journal.headOf();
    await waitFor(
      () => events('heartbeat').some((l) => (l.journal_head_seq as number) >= head.seq),
      'a heartbeat with the new head',
    );
    await agent.stop();
    rmSync(dataDir, { recursive: true });
    cpSync(backup, dataDir, { recursive: true });
    const submits = events('batch').length;
    agent = await startAgent();
    const check = await waitFor((l) => l.event === 'head_check' && l.behind === true, 'behind');
    expect(check).toMatchObject({ known_seq: head.seq });
    expect(check.seq as number).toBeLessThan(head.seq);
    const deadline = Date.now() + 5_000;
    while (!agent.core.terminal.status().locks.includes('journal-rollback')) {
      if (Date.now() > deadline) throw new Error('no journal-rollback lock');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(() => sell([1_000])).toThrow();
    await agent.settleNow('after the rollback').catch(() => undefined);
    // Across a restart too: locked before any contact, and still no BatchSubmit.
    await agent.stop();
    agent = new Agent({ config, schedules: false });
    await agent.start();
    expect(agent.core.terminal.status().locks).toContain('journal-rollback');
    await agent.channel.waitUntilUp(8_000);
    await agent.settleNow('after the restart').catch(() => undefined);
    expect(events('batch')).toHaveLength(submits);
  });
});

describe('deactivation with the Python acquirer', () => {
  it('a used code is refused; the merchant asks, Python reviews and approves by a signed command', async () => {
    await agent.stop(); // the first terminal is done: commands go to the one connected last
    agent = await startAgent(configFor(TERMINAL2, path.join(tmp, TERMINAL2)));
    // Python allows 2 more tries: the terminal promises no more than the acquirer does.
    await expect(agent.activate(CODE, 'console:tech2')).rejects.toMatchObject({
      code: 'ACTIVATION_REFUSED',
      message: expect.stringContaining('(2 attempts left)'),
    });
    // A grant the terminal cannot take (no default fee rule): refused, still unactivated.
    tell('bad-grant');
    await waitFor(() => events('control').some((l) => l.word === 'bad-grant'), 'bad grant armed');
    await expect(agent.activate(CODE2, 'console:tech2')).rejects.toMatchObject({
      code: 'FEE_INVALID_SCHEDULE',
    });
    expect(agent.core.terminal.status().state).toBe('unactivated');
    // A lost answer: the code is used, and the same code with the same terminal key is granted
    // again, so the terminal must ask again with the key it sent.
    tell('lose activation');
    await waitFor((l) => l.event === 'control' && l.word === 'lose', 'lose armed');
    await expect(agent.activate(CODE2, 'console:tech2')).rejects.toThrow();
    expect(events('lost_answer')).toMatchObject([{ kind: 'activation' }]);
    await agent.channel.waitUntilUp(5_000);
    await agent.activate(CODE2, 'console:tech2');
    expect(agent.core.terminal.status().state).toBe('active');
    sell([5_000, 6_000]);
    // Its ack lost: the request is sent again on the next contact, with the same request_id.
    tell('lose deactivation');
    await waitFor(
      () => events('control').filter((l) => l.word === 'lose').length === 2,
      'lose armed',
    );
    await agent.requestDeactivation('merchant closes the shop', 'console:tech2');
    await agent.channel.waitUntilUp(5_000);
    await agent.heartbeatTick();
    const requests = events('deactivation_request');
    expect(requests).toHaveLength(2);
    expect(requests[1]).toMatchObject({
      request_id: requests[0]!.request_id,
      review_id: requests[0]!.review_id,
    });
    const asked = requests[0]!;
    expect(asked).toMatchObject({
      reason: 'merchant closes the shop',
      requested_by: 'console:tech2',
    });
    expect(asked.request_id).not.toBe('');
    expect(agent.core.terminal.status().state).toBe('deactivation-pending');
    expect(() => sell([1_000])).toThrow();
    const before = events('command_result').length;
    tell('decide approve the merchant asked');
    await waitFor(() => events('command_result').length > before, 'the decision result');
    expect(events('command_result').at(-1)).toMatchObject({
      terminal_id: TERMINAL2,
      verified: true,
      outcome: 'applied',
      counter: 1,
    });
    const deadline = Date.now() + 8_000;
    while (agent.core.terminal.status().state !== 'deactivated') {
      if (Date.now() > deadline) throw new Error(`still ${agent.core.terminal.status().state}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // Its final settlement reached Python: both sales, settled once.
    const final = events('batch').filter((l) => (l.totals as WireTotals).net_amount === 11_000);
    expect(final.map((l) => l.duplicate)).toEqual([false]);
  });

  it('a deactivate for a violation: final settlement at once, then deactivated', async () => {
    await agent.stop();
    agent = await startAgent(configFor(TERMINAL3, path.join(tmp, TERMINAL3)));
    await agent.activate(CODE3, 'console:tech3');
    sell([9_100, 9_200]);
    const result = await command('deactivate violation card data found on the terminal');
    expect(result).toMatchObject({ terminal_id: TERMINAL3, verified: true, outcome: 'applied' });
    const deadline = Date.now() + 8_000;
    while (agent.core.terminal.status().state !== 'deactivated') {
      if (Date.now() > deadline) throw new Error(`still ${agent.core.terminal.status().state}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const final = events('batch').filter((l) => (l.totals as WireTotals).net_amount === 18_300);
    expect(final.map((l) => l.duplicate)).toEqual([false]);
    expect(() => sell([1_000])).toThrow();
  });
});
