/**
 * Settlement scenarios: the real agent (core + Settlement + AcquirerChannel over mutual TLS on
 * 127.0.0.1) against the acquirer simulator, with card-sim driving the payments. The network and
 * the acquirer misbehave in each scenario; every scenario ends by reading the simulator's ledger:
 * each batch settled exactly once, with totals equal to the terminal's to the fen.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openCore, type Core } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { isAgentError } from '../../base/errors.ts';
import { Settlement, type SettleReport } from '../../agent/policy/settlement.ts';
import { AcquirerChannel } from '../../protocol/channel.ts';
import { ensureTlsMaterial } from '../../protocol/tls-material.ts';
import type { Batch } from '../../storage/batches.ts';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import type { BehaviourPatch } from '../../simulator/behaviour.ts';
import { CardSim, type DriveReport, type OperationMix } from '../../simulator/card-sim.ts';

const TID = 'T0001';
const MIX: OperationMix = { sale: 6, refund: 2, void: 1, declined: 1 };
const root = mkdtempSync(join(tmpdir(), 'pos-settle-'));
const tlsDir = join(root, 'tls');
const rigs: Rig[] = [];

beforeAll(() => {
  ensureTlsMaterial(tlsDir, [TID]);
});
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** One terminal, its link and the acquirer: the scenario's world. */
interface Rig {
  sim: AcquirerSimulator;
  core: Core;
  channel: AcquirerChannel;
  settlement: Settlement;
  cards: CardSim;
  drives: DriveReport[];
  protocolErrors: number;
  /** Sells `count` operations and closes the batch. */
  batch(count: number): Promise<Batch>;
  close(): Promise<void>;
}

async function rig(behaviour: BehaviourPatch = {}, seed = 1): Promise<Rig> {
  const dir = mkdtempSync(join(root, 'scenario-'));
  const sim = await AcquirerSimulator.start({
    dataDir: join(dir, 'acquirer'),
    tlsDir,
    clientIds: [TID],
    behaviour,
  });
  // Small detail chunks, so an out-of-balance batch goes up in several.
  const core = openCore({
    terminalId: TID,
    dataDir: join(dir, 'agent'),
    settlement: { detailChunkRows: 7 },
  });
  activateForTest(core);
  const channel = new AcquirerChannel({
    terminalId: TID,
    tls: sim.clientTls(TID),
    helloFactory: () => ({ firmwareVersion: 'test', lifecycleState: 'active' }),
    backoff: { initialMs: 10, maxMs: 100 },
    requestTimeoutMs: 5_000,
    heartbeatIntervalMs: 60_000,
  });
  const settlement = new Settlement({
    store: core.store,
    clock: core.clock,
    log: core.log,
    config: core.config,
    link: channel,
  });
  const r: Rig = {
    sim,
    core,
    channel,
    settlement,
    cards: new CardSim(seed),
    drives: [],
    protocolErrors: 0,
    async batch(count) {
      r.drives.push(await r.cards.drive(core.payments, { count, mix: MIX }));
      const closed = settlement.cutover({ force: true, reason: 'test' });
      expect(closed).not.toBeNull();
      return closed!;
    },
    async close() {
      await channel.close();
      core.close();
      await sim.stop();
    },
  };
  channel.on('protocol-error', () => (r.protocolErrors += 1));
  channel.start();
  await channel.waitUntilUp(5_000);
  rigs.push(r);
  return r;
}

/** Runs settleAll until nothing is pending, waiting for the link between tries. */
async function settleUntilDone(r: Rig, deadlineMs = 10_000): Promise<SettleReport[]> {
  const reports: SettleReport[] = [];
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (!r.channel.isUp) await r.channel.waitUntilUp(Math.max(1, end - Date.now()));
    const report = await r.settlement.settleAll();
    reports.push(report);
    if (report.pending.length === 0) return reports;
    if (Date.now() > end) throw new Error(`settlement did not converge: ${report.error?.message}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/**
 * The acquirer's side of exactly-once: every closed batch settled once in the ledger, with the
 * terminal's totals to the fen and the same settlement id the terminal recorded; and the money
 * the acquirer settled equals what card-sim sold, counted independently of both.
 */
function expectLedgerMatches(r: Rig): Batch[] {
  const batches = r.core.store.batches.list().filter((b) => b.state !== 'open');
  const ledger = r.sim.ledger;
  expect(ledger.settledBatches(TID)).toHaveLength(batches.length);
  for (const b of batches) {
    expect(['acked', 'resolved']).toContain(b.state);
    expect(ledger.settlementCount(TID, b.batchId)).toBe(1);
    const s = ledger.settlement(TID, b.batchId)!;
    expect(s.digest).toBe(b.digest);
    expect(s.settlementId).toBe(b.settlementId);
    expect(sorted(s.settledTotals)).toEqual(sorted(b.totals!));
    expect(sorted(b.acquirerTotals!)).toEqual(sorted(s.settledTotals));
  }
  const settled = ledger.settledBatches(TID);
  const sum = (f: (t: (typeof settled)[number]['settledTotals']) => number) =>
    settled.reduce((a, s) => a + f(s.settledTotals), 0);
  expect(sum((t) => t.netAmount)).toBe(r.drives.reduce((a, d) => a + d.netAmount, 0));
  expect(sum((t) => t.netFee)).toBe(r.drives.reduce((a, d) => a + d.netFee, 0));
  expect(sum((t) => t.transactionCount)).toBe(
    r.drives.reduce(
      (a, d) => a + d.byType.sale.count + d.byType.refund.count + d.byType.void.count,
      0,
    ),
  );
  return batches;
}

function sorted<T extends { byType: Array<{ type: string }> }>(t: T): T {
  return { ...t, byType: [...t.byType].sort((a, b) => a.type.localeCompare(b.type)) };
}

const outcomes = (r: Rig, batchId: string) =>
  r.sim.ledger.submissions({ terminalId: TID, batchId }).map((s) => s.outcome);

describe('settlement against the acquirer simulator', () => {
  it('settles a batch once, totals equal to the fen', async () => {
    const r = await rig();
    const b = await r.batch(40);
    const report = await r.settlement.settleAll();
    expect(report).toMatchObject({ settled: [b.batchId], pending: [] });
    expect(outcomes(r, b.batchId)).toEqual(['settled']);
    expect(r.drives[0]!.refused).toEqual([]);
    expect(r.drives[0]!.declined).toBeGreaterThan(0);
    expectLedgerMatches(r);
  });

  it('lost ack: settled at the acquirer, the resend is a flagged duplicate, still one settlement', async () => {
    const r = await rig({ dropAfterAck: 1 });
    const b = await r.batch(25);
    const first = await r.settlement.settleAll();
    expect(first.pending).toEqual([b.batchId]);
    expect(isAgentError(first.error, 'PROTOCOL_DISCONNECTED')).toBe(true);
    expect(r.sim.ledger.settlementCount(TID, b.batchId)).toBe(1);
    await settleUntilDone(r);
    const subs = r.sim.ledger.submissions({ batchId: b.batchId });
    expect(subs.map((s) => [s.outcome, s.duplicate])).toEqual([
      ['settled', false],
      ['duplicate', true],
    ]);
    const acked = r.core.store.journal.events('batch-acked').map((e) => e.detail);
    expect(acked).toMatchObject([{ batchId: b.batchId, duplicate: true }]);
    expectLedgerMatches(r);
  });

  it('dropped before the ack: nothing settled, the retry settles once', async () => {
    const r = await rig({ dropBeforeAck: 1 });
    const b = await r.batch(25);
    expect((await r.settlement.settleAll()).pending).toEqual([b.batchId]);
    expect(r.sim.ledger.settlementCount(TID, b.batchId)).toBe(0);
    await settleUntilDone(r);
    expect(outcomes(r, b.batchId)).toEqual(['dropped', 'settled']);
    expectLedgerMatches(r);
  });

  it('duplicate acks are harmless, also to the next batch', async () => {
    const r = await rig({ duplicateAcks: true });
    const b1 = await r.batch(20);
    const b2 = await r.batch(20);
    expect(await r.settlement.settleAll()).toMatchObject({
      settled: [b1.batchId, b2.batchId],
      pending: [],
    });
    expect(outcomes(r, b1.batchId)).toEqual(['settled']);
    expect(outcomes(r, b2.batchId)).toEqual(['settled']);
    expectLedgerMatches(r);
  });

  it('acquirer restarts mid-batch, before and after settling: converges once', async () => {
    const r = await rig();
    // Before: the submit is received and the acquirer goes down while still thinking.
    const b1 = await r.batch(20);
    r.sim.behave({ slowMs: 5_000 });
    let restarting: Promise<void> | undefined;
    r.sim.once('received', (_t, env) => {
      expect(env.body).toBe('batchSubmit');
      r.sim.behave({ slowMs: 0 });
      restarting = r.sim.restart();
    });
    expect((await r.settlement.settleAll()).pending).toEqual([b1.batchId]);
    await restarting;
    expect(r.sim.ledger.settlementCount(TID, b1.batchId)).toBe(0);
    await settleUntilDone(r);
    expect(outcomes(r, b1.batchId)).toEqual(['settled']);
    // After: the acquirer settles, then dies before its ack leaves.
    const b2 = await r.batch(20);
    r.sim.once('settled', () => void (restarting = r.sim.restart()));
    expect((await r.settlement.settleAll()).pending).toEqual([b2.batchId]);
    await restarting;
    await settleUntilDone(r);
    expect(outcomes(r, b2.batchId)).toEqual(['settled', 'duplicate']);
    expectLedgerMatches(r);
  });

  it('out of balance: detail uploaded in chunks, resolved on the acquirer totals', async () => {
    const r = await rig({ settle: 'out-of-balance' });
    const b = await r.batch(30);
    expect(await r.settlement.settleAll()).toMatchObject({ settled: [b.batchId], pending: [] });
    const resolved = r.core.store.batches.get(b.batchId)!;
    expect(resolved.state).toBe('resolved');
    const oob = r.sim.ledger.outOfBalance(TID, b.batchId, b.digest!)!;
    expect(oob).toMatchObject({ detailDigestOk: true, chunkCount: Math.ceil(b.txnCount! / 7) });
    expect(r.sim.ledger.detailRows(TID, b.batchId, b.digest!)).toHaveLength(b.txnCount!);
    expect(r.sim.ledger.settlement(TID, b.batchId)?.via).toBe('detail');
    expect(outcomes(r, b.batchId)).toEqual(['out-of-balance', 'settled']);
    expectLedgerMatches(r);
  });

  it('acquirer down: queued batches settle in batch order once it is back', async () => {
    const r = await rig();
    await r.sim.stop();
    const queued = [await r.batch(15), await r.batch(15), await r.batch(15)];
    const down = await r.settlement.settleAll();
    expect(down.pending).toEqual(queued.map((b) => b.batchId));
    await r.sim.restart();
    await settleUntilDone(r);
    const settled = r.sim.ledger.settledBatches(TID);
    expect(settled.map((s) => s.batchId)).toEqual(queued.map((b) => b.batchId));
    const times = settled.map((s) => s.settledAt);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(queued.map((b) => b.number)).toEqual(
      [...queued.map((b) => b.number)].sort((a, b) => a - b),
    );
    expectLedgerMatches(r);
  });

  it('refused connections, then garbage instead of acks: the link drops, reconnects, settles once', async () => {
    const r = await rig();
    r.sim.behave({ refuseConnections: true });
    const b1 = await r.batch(15);
    expect((await r.settlement.settleAll()).pending).toEqual([b1.batchId]);
    r.sim.behave({
      refuseConnections: false,
      garbage: { kind: 'oversized', times: 1, on: 'batchSubmit' },
    });
    await settleUntilDone(r);
    r.sim.behave({ garbage: { kind: 'random', times: 1, on: 'batchSubmit' } });
    const b2 = await r.batch(15);
    await settleUntilDone(r);
    expect(r.protocolErrors).toBe(2);
    // The garbage replaced acks of handled submits: each resend found its batch settled.
    expect(outcomes(r, b1.batchId)).toEqual(['settled', 'duplicate']);
    expect(outcomes(r, b2.batchId)).toEqual(['settled', 'duplicate']);
    expectLedgerMatches(r);
  });
});
