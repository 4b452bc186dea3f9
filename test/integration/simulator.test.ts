/**
 * The acquirer simulator on its own, over real mutual TLS on 127.0.0.1: its ledger settles each
 * (terminal, batch, digest) once, rejects a second digest, settles out-of-balance batches on the
 * totals it computes from the detail rows, guards activation codes, signs commands that verify
 * with plain node:crypto, and keeps commands for an offline terminal until it polls.
 */
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import { isAgentError } from '../../base/errors.ts';
import { silentLogger } from '../../base/log.ts';
import { AcquirerChannel } from '../../protocol/channel.ts';
import { envelopeConnection } from '../../protocol/connection.ts';
import {
  decodeActivationGrant,
  decodeCommand,
  decodeUnlockGrant,
  encodeCommandResultBody,
  newMessageId,
  type EnvelopeBody,
  type pos,
} from '../../protocol/messages.ts';
import { ensureTlsMaterial } from '../../protocol/tls-material.ts';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { runAcquirerCli } from '../../simulator/cli.ts';
import { CardSim, luhnCheckDigit } from '../../simulator/card-sim.ts';
import { ed25519FromRaw, rawEd25519 } from '../../simulator/command-signer.ts';

const T1 = 'T0001';
const T2 = 'T0002';
const root = mkdtempSync(join(tmpdir(), 'pos-sim-'));
const tlsDir = join(root, 'tls');
const open: Array<{ close(): unknown }> = [];
let n = 0;

beforeAll(() => {
  ensureTlsMaterial(tlsDir, [T1, T2]);
});
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function sim(extra: Partial<Parameters<typeof AcquirerSimulator.start>[0]> = {}) {
  const s = await AcquirerSimulator.start({
    dataDir: join(root, `acq-${++n}`),
    tlsDir,
    terminals: [
      { terminalId: T1, activationCode: '123456', merchantCategory: 'catering' },
      { terminalId: T2, activationCode: '654321' },
    ],
    ...extra,
  });
  open.push({ close: () => s.stop() });
  return s;
}

async function channel(
  s: AcquirerSimulator,
  terminalId = T1,
  onUnsolicited?: AcquirerChannel['onUnsolicited'],
) {
  const c = new AcquirerChannel({
    terminalId,
    tls: s.clientTls(terminalId),
    helloFactory: () => ({ firmwareVersion: 'test' }),
    backoff: { initialMs: 10, maxMs: 100 },
    requestTimeoutMs: 5_000,
    onUnsolicited,
  });
  c.start();
  open.push({ close: () => c.close() });
  await c.waitUntilUp(5_000);
  return c;
}

/** A bare TLS client, to send what the real channel never would. */
async function rawClient(s: AcquirerSimulator, cert: string) {
  const t = s.clientTls(cert);
  const socket = tls.connect({
    host: t.host,
    port: t.port,
    ca: [t.ca],
    cert: t.cert,
    key: t.key,
    servername: 'localhost',
  });
  await once(socket, 'secureConnect');
  const conn = envelopeConnection(socket);
  open.push({ close: () => conn.destroy() });
  return (body: EnvelopeBody, terminalId: string): Promise<pos.v1.Envelope> =>
    new Promise((resolve) => {
      const messageId = newMessageId();
      conn.on('message', (env) => env.correlationId === messageId && resolve(env));
      conn.send({ ...body, messageId, terminalId, sentAtMs: Date.now() });
    });
}

const totals = (sale: number, fee: number, count = 1): pos.v1.IBatchTotals => ({
  byType: [
    { type: 'sale', count, amount: sale, fee },
    { type: 'refund', count: 0, amount: 0, fee: 0 },
    { type: 'void', count: 0, amount: 0, fee: 0 },
    { type: 'reversal', count: 0, amount: 0, fee: 0 },
  ],
  transactionCount: count,
  netAmount: sale,
  netFee: fee,
  netSettlement: sale - fee,
  currency: 'CNY',
});

const digestOf = (batchId: string, rows: Array<{ seq: number; hash: string }>): string => {
  const h = createHash('sha256').update(batchId);
  for (const r of rows) h.update(`\n${r.seq}:${r.hash}`);
  return h.digest('hex');
};

const submit = (batchId: string, digest: string, t: pos.v1.IBatchTotals): EnvelopeBody => ({
  batchSubmit: { batchId, digest, businessDate: '2026-01-15', firstSeq: 1, lastSeq: 1, totals: t },
});

describe('acquirer simulator: settlement ledger', () => {
  it('settles a key once; a resend gets the same settlement id flagged duplicate', async () => {
    const s = await sim();
    const c = await channel(s);
    const digest = 'a'.repeat(64);
    const first = await c.request(submit('B1', digest, totals(10_000, 300)));
    const again = await c.request(submit('B1', digest, totals(10_000, 300)));
    expect(first.batchAck).toMatchObject({ batchId: 'B1', duplicate: false });
    expect(again.batchAck).toMatchObject({
      duplicate: true,
      settlementId: first.batchAck!.settlementId,
    });
    expect(s.ledger.settlementCount(T1, 'B1')).toBe(1);
    const subs = s.ledger.submissions({ terminalId: T1, batchId: 'B1' });
    expect(subs.map((x) => [x.outcome, x.duplicate])).toEqual([
      ['settled', false],
      ['duplicate', true],
    ]);
    expect(s.ledger.settledBatches(T1)[0]).toMatchObject({
      via: 'submit',
      settledTotals: { netAmount: 10_000, netFee: 300 },
    });
    // A new simulator on the same data directory and port finds its ledger as it was.
    const down = once(c, 'down');
    await s.stop();
    await down;
    const s2 = await AcquirerSimulator.start({ dataDir: s.dataDir, tlsDir, port: s.port });
    open.push({ close: () => s2.stop() });
    await c.waitUntilUp(5_000);
    const third = await c.request(submit('B1', digest, totals(10_000, 300)));
    expect(third.batchAck).toMatchObject({
      duplicate: true,
      settlementId: first.batchAck!.settlementId,
    });
    expect(s2.ledger.settlementCount(T1, 'B1')).toBe(1);
    expect(s2.ledger.submissions({ batchId: 'B1' })).toHaveLength(3);
  });

  it('rejects the same batch id with another digest and leaves the settlement alone', async () => {
    const s = await sim();
    const c = await channel(s);
    await c.request(submit('B1', 'a'.repeat(64), totals(10_000, 300)));
    const err = await c
      .request(submit('B1', 'b'.repeat(64), totals(99_999, 600)))
      .catch((e: unknown) => e);
    expect(isAgentError(err, 'PROTOCOL_PEER_ERROR') && err.context.peerCode).toBe(
      'SETTLEMENT_REJECTED',
    );
    expect(s.ledger.settlementCount(T1, 'B1')).toBe(1);
    expect(s.ledger.settlement(T1, 'B1')?.digest).toBe('a'.repeat(64));
    expect(s.ledger.submissions({ batchId: 'B1' }).map((x) => x.outcome)).toEqual([
      'settled',
      'rejected',
    ]);
  });

  it('takes the terminal from the certificate and refuses an envelope naming another', async () => {
    const s = await sim();
    const send = await rawClient(s, T1);
    const reply = await send(submit('B9', 'c'.repeat(64), totals(100, 300)), T2);
    expect(reply.error?.code).toBe('PROTOCOL_UNEXPECTED');
    expect(s.ledger.submissions()).toEqual([]);
    // Without an envelope terminal id the certificate still decides whose batch it is.
    const ok = await send(submit('B9', 'c'.repeat(64), totals(100, 300)), '');
    expect(ok.batchAck?.duplicate).toBe(false);
    expect(s.ledger.settlementCount(T1, 'B9')).toBe(1);
    expect(s.ledger.settlementCount(T2, 'B9')).toBe(0);
  });

  it('out of balance: claims, takes detail idempotently per chunk, settles on its own totals', async () => {
    const s = await sim({ behaviour: { settle: 'out-of-balance' } });
    const c = await channel(s);
    const row = (seq: number, type: string, amount: number, fee: number, status = 'approved') => ({
      seq,
      localId: `L${seq}`,
      type,
      amount,
      currency: 'CNY',
      fee,
      status,
      hash: `${seq}`.repeat(64).slice(0, 64),
      originalSeq: type === 'sale' ? 0 : 1,
      createdAtMs: 1,
    });
    const rows = [
      row(1, 'sale', 50_000, 300),
      row(2, 'sale', 7_000, 300, 'declined'),
      row(3, 'refund', 20_000, 120),
      row(4, 'sale', 100_000, 600),
    ];
    const digest = digestOf('B2', rows);
    // The terminal's claimed totals are wrong on purpose: only the rows decide.
    const claimed = totals(1, 1);
    const oob = await c.request(submit('B2', digest, claimed));
    expect(oob.outOfBalance?.acquirerTotals?.netAmount).toBe(101);
    expect((await c.request(submit('B2', digest, claimed))).outOfBalance).toBeTruthy();
    const chunk = (i: number) => ({
      batchDetailChunk: {
        batchId: 'B2',
        digest,
        chunkIndex: i,
        chunkCount: 2,
        rows: rows.slice(i * 2, i * 2 + 2),
      },
    });
    expect((await c.request(chunk(0))).detailAck).toMatchObject({ chunkIndex: 0, complete: false });
    expect((await c.request(chunk(0))).detailAck).toMatchObject({ chunkIndex: 0, complete: false });
    const last = (await c.request(chunk(1))).detailAck!;
    expect(last.complete).toBe(true);
    expect(s.ledger.settlementCount(T1, 'B2')).toBe(0);
    const ack = (await c.request(submit('B2', digest, claimed))).batchAck!;
    const expected = {
      transactionCount: 3,
      netAmount: 130_000,
      netFee: 780,
      netSettlement: 129_220,
      currency: 'CNY',
    };
    expect(last.acquirerTotals).toMatchObject(expected);
    expect(ack).toMatchObject({ duplicate: false, acquirerTotals: expected });
    expect(ack.acquirerTotals?.byType?.find((t) => t.type === 'sale')).toMatchObject({
      count: 2,
      amount: 150_000,
      fee: 900,
    });
    const settled = s.ledger.settlement(T1, 'B2')!;
    expect(settled).toMatchObject({
      via: 'detail',
      settledTotals: expected,
      settlementId: ack.settlementId,
    });
    expect(s.ledger.outOfBalance(T1, 'B2', digest)).toMatchObject({
      detailDigestOk: true,
      chunkCount: 2,
    });
    expect(s.ledger.detailRows(T1, 'B2', digest)).toHaveLength(4);
    expect(s.ledger.submissions({ batchId: 'B2' }).map((x) => x.outcome)).toEqual([
      'out-of-balance',
      'out-of-balance',
      'settled',
    ]);
  });

  it('refuses detail rows that do not hash to the batch digest, and settles nothing on them', async () => {
    const s = await sim({ behaviour: { settle: 'out-of-balance-once' } });
    const c = await channel(s);
    const digest = 'd'.repeat(64);
    await c.request(submit('B3', digest, totals(5_000, 300)));
    const rows = [
      {
        seq: 1,
        type: 'sale',
        amount: 5_000,
        fee: 300,
        status: 'approved',
        currency: 'CNY',
        hash: 'e'.repeat(64),
      },
    ];
    const err = await c
      .request({ batchDetailChunk: { batchId: 'B3', digest, chunkIndex: 0, chunkCount: 1, rows } })
      .catch((e: unknown) => e);
    expect(isAgentError(err) && err.context.peerCode).toBe('SETTLEMENT_REJECTED');
    expect(s.ledger.outOfBalance(T1, 'B3', digest)?.detailDigestOk).toBe(false);
    // 'once': a resend without proven detail is settled on the terminal's totals.
    expect((await c.request(submit('B3', digest, totals(5_000, 300)))).batchAck?.duplicate).toBe(
      false,
    );
    expect(s.ledger.settlement(T1, 'B3')?.via).toBe('submit');
  });
});

describe('acquirer simulator: activation and commands', () => {
  const terminalKey = generateKeyPairSync('ed25519');
  const activation = (code: string, key = rawEd25519(terminalKey.publicKey)): EnvelopeBody => ({
    activationRequest: {
      terminalId: T1,
      activationCode: code,
      terminalPublicKey: key,
      firmwareVersion: 'test',
    },
  });

  it('activation: a wrong code counts down, the right one grants, a used code is refused', async () => {
    const s = await sim();
    const c = await channel(s);
    const wrong = (await c.request(activation('000000'))).activationResponse!;
    expect(wrong).toMatchObject({
      accepted: false,
      errorCode: 'ACTIVATION_REFUSED',
      attemptsLeft: 4,
    });
    const ok = (await c.request(activation('123456'))).activationResponse!;
    expect(ok.accepted).toBe(true);
    const grant = decodeActivationGrant(ok.grant!);
    // Verified with plain node:crypto under the key the grant itself carries.
    expect(verify(null, ok.grant!, ed25519FromRaw(grant.commandPublicKey)!, ok.signature!)).toBe(
      true,
    );
    expect(Buffer.from(grant.commandPublicKey).equals(s.commandPublicKeyRaw)).toBe(true);
    expect(grant).toMatchObject({ terminalId: T1, merchantCategory: 'catering', currency: 'CNY' });
    expect(grant.feeSchedule?.version).toBe(DEFAULT_FEE_SCHEDULE.version);
    expect(
      grant.feeSchedule?.rules?.map((r) => [
        r.category,
        r.rateBp,
        Number(r.minimum),
        Number(r.cap),
      ]),
    ).toEqual(DEFAULT_FEE_SCHEDULE.rules.map((r) => [r.category, r.rateBp, r.minimum, r.cap ?? 0]));
    const other = generateKeyPairSync('ed25519').publicKey;
    const reused = (await c.request(activation('123456', rawEd25519(other)))).activationResponse!;
    expect(reused).toMatchObject({ accepted: false, errorCode: 'ACTIVATION_REFUSED' });
    // The same terminal key again is the lost response: the grant is given again.
    expect((await c.request(activation('123456'))).activationResponse?.accepted).toBe(true);
    expect(s.ledger.terminal(T1)).toMatchObject({
      codeUsed: true,
      status: 'active',
      failedAttempts: 1,
    });
  });

  it('activation: too many wrong codes block even the right one', async () => {
    const s = await sim({ behaviour: { maxActivationAttempts: 2 } });
    const c = await channel(s, T2);
    const req = (code: string): EnvelopeBody => ({
      activationRequest: {
        activationCode: code,
        terminalPublicKey: rawEd25519(terminalKey.publicKey),
      },
    });
    expect((await c.request(req('1'))).activationResponse).toMatchObject({
      errorCode: 'ACTIVATION_REFUSED',
      attemptsLeft: 1,
    });
    expect((await c.request(req('2'))).activationResponse).toMatchObject({
      errorCode: 'ACTIVATION_RETRY_LIMIT',
      attemptsLeft: 0,
    });
    expect((await c.request(req('654321'))).activationResponse).toMatchObject({
      accepted: false,
      errorCode: 'ACTIVATION_RETRY_LIMIT',
    });
  });

  it('signs commands that verify with node:crypto; altered or forged ones do not', async () => {
    const s = await sim();
    const first = s.issueCommand(T1, { lock: { reason: 'test' } }, { expiresInMs: 60_000 });
    const second = s.issueCommand(T1, { status: {} });
    expect(first.pushed).toBe(false);
    const bytes = first.signed.command!;
    expect(verify(null, bytes, s.commandPublicKey, first.signed.signature!)).toBe(true);
    const cmd = decodeCommand(bytes);
    expect(cmd).toMatchObject({ terminalId: T1, counter: 1, body: 'lock' });
    expect(Number(cmd.expiresAtMs) - Number(cmd.issuedAtMs)).toBe(60_000);
    expect(cmd.nonce).toHaveLength(16);
    expect(second.counter).toBe(2);
    const tampered = s.rawSignedCommand(T1, { lock: { reason: 'test' } }, { tamper: true });
    expect(
      verify(null, tampered.signed.command!, s.commandPublicKey, tampered.signed.signature!),
    ).toBe(false);
    const forged = s.rawSignedCommand(
      T1,
      { unlock: { source: 'risk' } },
      { signWith: generateKeyPairSync('ed25519').privateKey },
    );
    expect(verify(null, forged.signed.command!, s.commandPublicKey, forged.signed.signature!)).toBe(
      false,
    );
    const g = s.signUnlockGrant(T1, 'CHALLENGE', 123, 'risk');
    expect(verify(null, g.grant, s.commandPublicKey, g.signature)).toBe(true);
    expect(decodeUnlockGrant(g.grant)).toMatchObject({
      terminalId: T1,
      challenge: 'CHALLENGE',
      source: 'risk',
    });
    // Crafted commands use counters too (3 and 4). Counters and the key survive a restart.
    const key = s.commandPublicKeyRaw;
    await s.restart();
    expect(s.commandPublicKeyRaw.equals(key)).toBe(true);
    expect(s.issueCommand(T1, { status: {} }).counter).toBe(5);
  });

  it('queues commands for an offline terminal until it polls, and verifies its signed results', async () => {
    const s = await sim();
    const got: pos.v1.Command[] = [];
    const answer = (
      env: pos.v1.Envelope,
      reply: (b: EnvelopeBody) => void,
      key = terminalKey.privateKey,
    ) => {
      const cmd = decodeCommand(env.command!.command!);
      got.push(cmd);
      const body = encodeCommandResultBody({
        terminalId: T1,
        counter: cmd.counter,
        outcome: 'applied',
        atMs: Date.now(),
      });
      reply({ commandResult: { body, signature: sign(null, body, key) } });
    };
    const c = await channel(s, T1, (env, reply) => answer(env, reply));
    expect((await c.request(activation('123456'))).activationResponse?.accepted).toBe(true);
    await c.close();
    const queued = s.issueCommand(T1, { lock: { reason: 'queued while offline' } });
    expect(queued.pushed).toBe(false);
    const c2 = await channel(s, T1, (env, reply) => answer(env, reply));
    const done = await c2.request({ commandPoll: { afterCounter: 0 } });
    expect(done.commandPollDone?.sent).toBe(1);
    expect(got.map((x) => x.counter)).toEqual([1]);
    await waitFor(() => s.ledger.commandResults(T1).length === 1);
    expect(s.ledger.commandResults(T1)[0]).toMatchObject({
      counter: 1,
      outcome: 'applied',
      verified: true,
      commandId: queued.id,
    });
    expect((await c2.request({ commandPoll: { afterCounter: 1 } })).commandPollDone?.sent).toBe(0);
    // Online, a command is pushed at once; a result under another key is recorded unverified.
    c2.onUnsolicited = (env, reply) =>
      answer(env, reply, generateKeyPairSync('ed25519').privateKey);
    expect(s.issueCommand(T1, { status: {} }).pushed).toBe(true);
    await waitFor(() => s.ledger.commandResults(T1).length === 2);
    expect(s.ledger.commandResults(T1)[1]).toMatchObject({ counter: 2, verified: false });
    expect(s.ledger.commands(T1).map((x) => x.deliveredAt !== null)).toEqual([true, true]);
  });

  it('reviews deactivation requests, records risk reports, and answers with signed commands', async () => {
    const s = await sim({ behaviour: { deactivation: 'reject', riskFlagSeverity: 7 } });
    const got: pos.v1.Command[] = [];
    const c = await channel(s, T1, (env) => void got.push(decodeCommand(env.command!.command!)));
    const ack = await c.request({
      deactivationRequest: { reason: 'shop closes', requestedBy: 'tech1' },
    });
    expect(ack.deactivationRequestAck?.reviewId).toMatch(/^RV-/);
    await waitFor(() => got.length === 1);
    expect(got[0]?.deactivationDecision).toMatchObject({ approve: false });
    expect(s.ledger.reviews(T1)[0]).toMatchObject({ decision: 'rejected', reason: 'shop closes' });
    s.behave({ deactivation: 'manual' });
    await c.request({ deactivationRequest: { reason: 'again', requestedBy: 'tech1' } });
    s.decideDeactivation(T1, true, 'approved by hand');
    await waitFor(() => got.length === 2);
    expect(got[1]?.deactivationDecision).toMatchObject({
      approve: true,
      reason: 'approved by hand',
    });
    expect(
      (await c.request({ riskReport: { rule: 'decline-burst', detail: '5 declines', atMs: 1 } }))
        .riskReportAck,
    ).toBeTruthy();
    await waitFor(() => got.length === 3);
    expect(got[2]?.riskFlag).toMatchObject({ code: 'decline-burst', severity: 7 });
    expect(s.ledger.riskReports(T1)).toHaveLength(1);
  });

  it('a resent deactivation request (lost ack) opens no second review', async () => {
    const s = await sim({ behaviour: { deactivation: 'manual' } });
    const c = await channel(s, T1);
    const req = { reason: 'shop closes', requestedBy: 'tech1', requestId: 'req-1' };
    const first = await c.request({ deactivationRequest: req });
    const again = await c.request({ deactivationRequest: req });
    expect(again.deactivationRequestAck?.reviewId).toBe(first.deactivationRequestAck?.reviewId);
    expect(s.ledger.reviews(T1)).toHaveLength(1);
    await c.request({ deactivationRequest: { ...req, requestId: 'req-2' } });
    expect(s.ledger.reviews(T1)).toHaveLength(2);
  });

  it('answers Hello with its own clock, shifted for offset tests', async () => {
    const s = await sim({ clockOffsetMs: 90_000 });
    const c = await channel(s);
    expect(Math.abs((c.clockOffsetMs ?? 0) - 90_000)).toBeLessThan(1_000);
  });
});

describe('card simulator and CLI', () => {
  it('makes Luhn-valid test card numbers, the same for the same seed', () => {
    const a = new CardSim(7);
    const pans = Array.from({ length: 50 }, () => a.pan());
    for (const pan of pans) {
      expect(pan).toMatch(/^(400000|620000)\d{10}$/);
      expect(luhnCheckDigit(pan.slice(0, -1))).toBe(Number(pan.at(-1)));
    }
    expect(new CardSim(7).pan()).toBe(pans[0]);
    expect(luhnCheckDigit('7992739871')).toBe(3);
  });

  it('runs from the command line until told to stop', async () => {
    const lines: string[] = [];
    const stop = new AbortController();
    const dir = join(root, 'cli');
    const code = runAcquirerCli(
      ['--port', '0', '--data', dir, '--terminal', T1, '--code', '123456'],
      {
        out: (l) => lines.push(l),
        signal: stop.signal,
        logger: silentLogger(),
        onReady: () => stop.abort(),
      },
    );
    expect(await code).toBe(0);
    expect(lines.join('\n')).toContain(join(dir, 'tls', 'clients', `${T1}.crt`));
    expect(lines.join('\n')).toContain(join(dir, 'tls', 'ca.crt'));
  });
});

async function waitFor(cond: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
