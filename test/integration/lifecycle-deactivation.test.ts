/**
 * Deactivation against a real acquirer simulator over mutual TLS: the seed's request -> review
 * -> approved (final cutover and settlement, then deactivated and credentials destroyed) or
 * rejected (back to active, reason shown), the violation path that skips review but not
 * settlement, an online authorisation still at its host when the approval lands, and the
 * acquirer going down in the middle of the final settlement. Each scenario ends by reading the
 * acquirer's own ledger (every batch settled exactly once) and the terminal's journal file.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { CardSim } from '../../simulator/card-sim.ts';
import { totalsEqual } from '../../agent/policy/batch-totals.ts';
import type { Agent } from '../../agent/runtime/agent.ts';
import { terminalCommands } from '../../agent/console/terminal-commands.ts';
import type { BatchTotals } from '../../storage/batches.ts';
import { Store } from '../../storage/store.ts';
import {
  PAN,
  codeOf,
  existingCredentials,
  sell,
  sleep,
  startAgent,
  until,
  type AgentRig,
} from '../fixtures/lifecycle-rig.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const MIX = { sale: 6, refund: 2, void: 1, declined: 1 };
let root: string;
let sim: AcquirerSimulator;
const rigs: AgentRig[] = [];
const connects = new Map<string, number>();

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-deact-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
  sim.on('connected', (cn) => connects.set(cn, (connects.get(cn) ?? 0) + 1));
});
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.agent.stop();
  if (!sim.running) await sim.restart();
  sim.removeAllListeners('received');
  sim.removeAllListeners('settled');
  sim.behave({ dropAfterAck: 0, dropBeforeAck: 0 });
});
afterAll(async () => {
  await sim.stop();
  rmSync(root, { recursive: true, force: true });
});

/** An activated terminal that settled one batch and holds unsettled sales in its open batch. */
async function terminalWithHistory(terminalId: string, seed: number): Promise<AgentRig> {
  sim.registerTerminal({ terminalId, activationCode: `CODE-${terminalId}` });
  const r = await startAgent(sim, terminalId, path.join(root, terminalId));
  rigs.push(r);
  await r.agent.activate(`CODE-${terminalId}`, 'console:tech1');
  const cards = new CardSim(seed);
  const amount = { min: 500, max: 80_000 };
  await cards.drive(r.agent.core.payments, { count: 20, mix: MIX, amount });
  const first = await r.agent.settleNow('day one');
  expect(first.settled).toHaveLength(1);
  await cards.drive(r.agent.core.payments, { count: 15, mix: MIX, amount });
  // Seeded: a drive whose declines trip the local risk rule would test something else.
  expect(r.agent.core.terminal.status().locks).toEqual([]);
  return r;
}

const state = (a: Agent) => a.core.terminal.status().state;
const txnCount = (s: Store) =>
  (s.db.prepare("SELECT COUNT(*) AS n FROM journal WHERE kind = 'txn'").get() as { n: number }).n;

/** Everything "deactivated" promises, read from the files and the acquirer's ledger. */
function expectCleanlyDeactivated(r: AgentRig): void {
  expect(existingCredentials(r.dataDir)).toEqual([]);
  const store = Store.open(path.join(r.dataDir, 'journal.db'));
  try {
    expect(store.state.lifecycle()?.state).toBe('deactivated');
    expect(store.journal.verify().ok).toBe(true);
    expect(store.integrityCheck()).toEqual(['ok']);
    const closed = store.batches.list().filter((b) => b.state !== 'open');
    expect(closed.length).toBeGreaterThanOrEqual(2);
    for (const b of closed) {
      expect(['acked', 'resolved'], b.batchId).toContain(b.state);
      expect(sim.ledger.settlementCount(r.terminalId, b.batchId), b.batchId).toBe(1);
      const record = sim.ledger.settlement(r.terminalId, b.batchId)!;
      expect(record.digest).toBe(b.digest);
      expect(totalsEqual(record.settledTotals as unknown as BatchTotals, b.totals!)).toBe(true);
    }
    expect(sim.ledger.settledBatches(r.terminalId)).toHaveLength(closed.length);
    // Every transaction is in a settled batch; none was written after the final transition.
    expect(closed.reduce((n, b) => n + (b.txnCount ?? 0), 0)).toBe(txnCount(store));
    const final = store.state.transitions().at(-1)!;
    expect([final.fromState, final.toState]).toEqual(['deactivating', 'deactivated']);
    const acked = [
      ...store.journal.events('batch-acked'),
      ...store.journal.events('batch-resolved'),
    ];
    expect(Math.max(...acked.map((e) => e.seq))).toBeLessThan(final.journalSeq);
    const lastTxn = store.db.prepare("SELECT MAX(seq) AS s FROM journal WHERE kind = 'txn'").get();
    expect((lastTxn as { s: number }).s).toBeLessThan(final.journalSeq);
    expect(store.journal.events('credentials-destroyed')).toHaveLength(1);
    const cutovers = store.journal.events('batch-closed').map((e) => e.detail.reason);
    expect(cutovers).toContain('final cutover before deactivation');
  } finally {
    store.close();
  }
}

/** Every kind of transaction, by every entry point, is refused with LIFECYCLE_DEACTIVATED. */
async function expectRefusesEverything(agent: Agent, saleSeq: number): Promise<void> {
  const p = agent.core.payments;
  const before = txnCount(agent.core.store);
  let hostAsked = false;
  const attempts: Array<[string, () => unknown]> = [
    ['sale', () => p.record({ type: 'sale', amount: 1_000, card: { pan: PAN } })],
    ['refund', () => p.record({ type: 'refund', amount: 10, originalSeq: saleSeq })],
    ['void', () => p.record({ type: 'void', amount: 10, originalSeq: saleSeq })],
    ['reversal', () => p.record({ type: 'reversal', amount: 10, originalSeq: saleSeq })],
    ['async sale', () => p.recordAsync({ type: 'sale', amount: 1_000, card: { pan: PAN } })],
    [
      'authorised sale',
      () =>
        p.authorize({ type: 'sale', amount: 1_000, card: { pan: PAN } }, async () => {
          hostAsked = true;
          return { approved: true };
        }),
    ],
  ];
  for (const [name, attempt] of attempts)
    expect(await codeOf(attempt), name).toBe('LIFECYCLE_DEACTIVATED');
  expect(hostAsked).toBe(false);
  expect(txnCount(agent.core.store)).toBe(before);
  // Nothing but status: no new lifecycle, no lock, no second activation.
  const others: Array<[string, () => unknown, string]> = [
    ['activate', () => agent.activate('CODE-AGAIN', 'console:tech1'), 'LIFECYCLE_REFUSED'],
    ['deactivate again', () => agent.requestDeactivation('again', 'c'), 'LIFECYCLE_DEACTIVATED'],
    ['maintenance', () => agent.enterMaintenance('console:tech1'), 'LIFECYCLE_DEACTIVATED'],
  ];
  for (const [name, attempt, code] of others) expect(await codeOf(attempt), name).toBe(code);
  expect(agent.core.terminal.status()).toMatchObject({ state: 'deactivated', locks: [] });
  // None of the refusals brings a key back.
  expect(existingCredentials(path.dirname(agent.core.store.file))).toEqual([]);
}

describe('deactivation approved', () => {
  it('request -> review -> approved -> final settlement -> deactivated, credentials destroyed, status only', async () => {
    const r = await terminalWithHistory('TD01', 11);
    const { agent } = r;
    const aSale = agent.core.store.journal
      .tail(200, 'txn')
      .find((t) => t.kind === 'txn' && t.type === 'sale' && t.status === 'approved')!.seq;
    expect(await codeOf(() => agent.requestDeactivation('x', 'console:tech1'))).toBe(
      'CONSOLE_BAD_ARGUMENTS',
    );
    await agent.requestDeactivation('closing the shop', 'console:tech1');
    expect(state(agent)).toBe('deactivation-pending');
    expect(await codeOf(() => sell(agent, 1))).toBe('LIFECYCLE_NOT_ACTIVE');
    const [review] = sim.ledger.reviews('TD01');
    expect(review).toMatchObject({
      reason: 'closing the shop',
      requestedBy: 'console:tech1',
      decision: null,
    });
    expect(existingCredentials(r.dataDir)).toHaveLength(3);
    sim.decideDeactivation('TD01', true, 'approved on review');
    await until(() => state(agent) === 'deactivated', 'deactivated');
    await agent.runner.idle();
    expect(
      agent.core.store.state
        .transitions()
        .slice(-3)
        .map((t) => `${t.fromState}>${t.toState}`),
    ).toEqual([
      'active>deactivation-pending',
      'deactivation-pending>deactivating',
      'deactivating>deactivated',
    ]);
    expectCleanlyDeactivated(r);
    await expectRefusesEverything(agent, aSale);
    expect(agent.status()).toMatchObject({ state: 'deactivated', mayTransact: false });
    await until(() => !sim.connectedTerminals().includes('TD01'), 'the link to close');
    await agent.stop();
    rigs.splice(0);
    // Status-only reads by the CLI on the file.
    const cli = (...args: string[]) =>
      execFileSync(process.execPath, ['bin/pos-agent.mjs', ...args], { cwd: REPO }).toString();
    const status = JSON.parse(cli('status', '--data', r.dataDir, '--json')) as Record<
      string,
      unknown
    >;
    expect(status).toMatchObject({ state: 'deactivated', mayTransact: false, queuedBatches: 0 });
    expect(cli('journal', 'verify', '--data', r.dataDir)).toMatch(/^journal ok/);
    // A restart stays deactivated, opens no link and creates no key.
    const seen = connects.get('TD01') ?? 0;
    const again = await startAgent(sim, 'TD01', r.dataDir, { waitUp: false });
    rigs.push(again);
    await sleep(400);
    expect(connects.get('TD01') ?? 0).toBe(seen);
    expect(again.agent.channel.isUp).toBe(false);
    expect(state(again.agent)).toBe('deactivated');
    await expectRefusesEverything(again.agent, aSale);
    expect(existingCredentials(r.dataDir)).toEqual([]);
  });

  it('rejected: back to active with the reason shown; sales work again', async () => {
    const r = await terminalWithHistory('TD02', 12);
    await r.agent.requestDeactivation('moving premises', 'console:tech1');
    sim.decideDeactivation('TD02', false, 'lease contract still running');
    await until(() => state(r.agent) === 'active', 'rejected');
    expect(r.agent.status().reason).toMatch(/rejected: lease contract still running/);
    // ... and the technician sees it on the console's status, though the terminal may transact.
    const console = terminalCommands(r.agent, r.config, () => {}).get('status')!;
    const shown = await console.run({
      name: 'status',
      args: [],
      flags: {},
      json: false,
      technician: 'tech1',
      loggedInAt: 0,
      signal: new AbortController().signal,
      print: () => {},
      logout: () => {},
      clearScreen: () => {},
    });
    expect(shown).toMatchObject({ 'may transact': 'yes' });
    expect(Object.values(shown as object).join('\n')).toMatch(/lease contract still running/);
    expect(sim.ledger.reviews('TD02')[0]).toMatchObject({ decision: 'rejected' });
    expect(sell(r.agent, 2)).toHaveLength(2);
    expect(existingCredentials(r.dataDir)).toHaveLength(3);
    expect(r.agent.core.store.journal.events('batch-closed')).toHaveLength(1);
    const settled = await r.agent.settleNow('day two');
    expect(settled.settled).toHaveLength(1);
  });
});

describe('an authorisation in flight when the approval lands', () => {
  it('is journaled and reversed, and settled, before the terminal is deactivated', async () => {
    const r = await terminalWithHistory('TD06', 17);
    const { agent } = r;
    let release!: () => void;
    let asked = false;
    const gate = new Promise<void>((res) => (release = res));
    const pending = agent.core.payments.authorize(
      { type: 'sale', amount: 42_000, card: { pan: PAN }, localId: 'POS-INFLIGHT' },
      async () => ((asked = true), await gate, { approved: true, authCode: 'LATE01' }),
    );
    await until(() => asked, 'the host');
    await agent.requestDeactivation('closing the shop', 'console:tech1');
    sim.decideDeactivation('TD06', true, 'approved on review');
    await until(() => state(agent) !== 'deactivation-pending', 'the approval');
    await agent.runner.idle();
    // The host's approval is still out: the terminal may not call itself deactivated yet.
    expect(state(agent)).toBe('deactivating');
    expect(existingCredentials(r.dataDir)).toHaveLength(3);
    release();
    const answer = await pending;
    expect(answer.status).toBe('declined');
    expect(agent.core.store.journal.getTxn(answer.reversedSeq!)?.type).toBe('reversal');
    await agent.heartbeatTick(); // the cron's next contact finishes the job
    await until(() => state(agent) === 'deactivated', 'deactivated');
    await agent.runner.idle();
    expectCleanlyDeactivated(r);
    const last = agent.core.store.batches
      .list()
      .filter((b) => b.state !== 'open')
      .at(-1)!;
    expect(agent.core.store.journal.batchRows(last.batchId).map((t) => t.seq)).toEqual([
      answer.seq,
      answer.reversedSeq,
    ]);
  });
});

describe('deactivate command for a violation', () => {
  it('skips the review but still settles everything before deactivated', async () => {
    const r = await terminalWithHistory('TD03', 13);
    sim.issueCommand('TD03', { deactivate: { violation: true, reason: 'fraud confirmed' } });
    await until(() => state(r.agent) === 'deactivated', 'deactivated');
    await r.agent.runner.idle();
    expect(sim.ledger.reviews('TD03')).toEqual([]);
    const path2 = r.agent.core.store.state.transitions().slice(-2);
    expect(path2.map((t) => `${t.fromState}>${t.toState}`)).toEqual([
      'active>deactivating',
      'deactivating>deactivated',
    ]);
    expect(path2[0]!.cause).toBe('fraud confirmed');
    expectCleanlyDeactivated(r);
  });
});

describe('the acquirer goes down during the final settlement', () => {
  async function approveThenFail(
    terminalId: string,
    seed: number,
    fault: 'stop-on-submit' | 'settle-then-lose-ack',
  ): Promise<void> {
    const r = await terminalWithHistory(terminalId, seed);
    const { agent } = r;
    await agent.requestDeactivation('closing the shop', 'console:tech1');
    let stopping: Promise<void> | undefined;
    if (fault === 'stop-on-submit') {
      sim.on('received', (cn, env) => {
        if (cn === terminalId && env.body === 'batchSubmit') stopping ??= sim.stop();
      });
    } else {
      sim.behave({ dropAfterAck: 1 });
      sim.on('settled', (s) => {
        if (s.terminalId === terminalId) stopping ??= sim.stop();
      });
    }
    sim.decideDeactivation(terminalId, true, 'approved on review');
    await until(() => stopping !== undefined, 'the acquirer to go down');
    await stopping;
    await until(() => !agent.channel.isUp, 'the link to drop');
    await agent.runner.idle();
    await sleep(300); // reconnect attempts meet a closed port
    expect(state(agent)).toBe('deactivating');
    const unsettled = agent.core.store.batches.unsettled();
    expect(unsettled).toHaveLength(1);
    const pendingId = unsettled[0]!.batchId;
    expect(await codeOf(() => sell(agent, 1))).toBe('LIFECYCLE_NOT_ACTIVE');
    // The credentials are what will finish the settlement: they must still be there.
    expect(existingCredentials(r.dataDir)).toHaveLength(3);
    await sim.restart();
    if (fault === 'settle-then-lose-ack') {
      // The acquirer settled it; the terminal never heard so, and is still not deactivated.
      expect(sim.ledger.settlementCount(terminalId, pendingId)).toBe(1);
    } else {
      expect(sim.ledger.settlementCount(terminalId, pendingId)).toBe(0);
    }
    await until(() => state(agent) === 'deactivated', 'deactivated after the acquirer returns');
    await agent.runner.idle();
    expectCleanlyDeactivated(r);
    if (fault === 'settle-then-lose-ack') {
      const subs = sim.ledger.submissions({ terminalId, batchId: pendingId });
      expect(subs.length).toBeGreaterThanOrEqual(2);
      expect(subs.some((s) => s.duplicate)).toBe(true);
    }
  }

  it('stopped before the final batch is handled: stays deactivating, finishes on return', () =>
    approveThenFail('TD04', 14, 'stop-on-submit'));

  it('settled but the ack is lost and the acquirer stops: deactivated only after the ack', () =>
    approveThenFail('TD05', 15, 'settle-then-lose-ack'));
});
