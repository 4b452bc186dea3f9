/**
 * A real agent process (test/fixtures/agent-child.ts) killed with SIGKILL at each instant of
 * deactivation, then restarted on the same files against the same acquirer simulator:
 * - at each durable step of the final settlement (POS_CRASH_AT closed/sent/acked and the
 *   out-of-balance path) and right after the final transition commits ('deactivated'),
 * - right after the deactivation request (link up, and link refused so it was never sent),
 * - at the instant the approval is pushed, and right after the terminal answered it.
 * Whatever the instant: no acknowledged transaction is lost, the lifecycle never moves
 * backwards, the terminal is never deactivated with anything unsettled, and once restarted it
 * ends deactivated with every batch settled exactly once and every credential destroyed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { Store } from '../../storage/store.ts';
import { totalsEqual } from '../../agent/policy/batch-totals.ts';
import type { BatchTotals } from '../../storage/batches.ts';
import { AgentProcess } from '../fixtures/agent-process.ts';
import { existingCredentials, installTls, sleep, until } from '../fixtures/lifecycle-rig.ts';

const RANK: Record<string, number> = {
  unactivated: 0,
  active: 1,
  'deactivation-pending': 2,
  deactivating: 3,
  deactivated: 4,
};

type Kill =
  | { kind: 'step'; step: string; count: number; outOfBalance?: boolean }
  | { kind: 'after-request'; offline: boolean }
  | { kind: 'at-approval' }
  | { kind: 'after-approval' };

let root: string;
let sim: AcquirerSimulator;
let n = 0;
const connects = new Map<string, number>();

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-deactcrash-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
  sim.on('connected', (cn) => connects.set(cn, (connects.get(cn) ?? 0) + 1));
});
afterAll(async () => {
  await sim.stop();
  rmSync(root, { recursive: true, force: true });
});

function childConfig(terminalId: string, dataDir: string): Record<string, unknown> {
  installTls(sim, terminalId, dataDir);
  return {
    terminalId,
    dataDir,
    acquirer: {
      port: sim.port,
      backoffInitialMs: 20,
      backoffMaxMs: 200,
      requestTimeoutMs: 3_000,
      heartbeatIntervalMs: 60_000,
    },
    paymentSocket: { path: '' },
    log: { level: 'silent' },
    // The card simulator's random declines must not trip the local risk rules here: a risk lock
    // before the second day's sales leaves nothing for the final settlement to close, and the
    // rules have their own tests (lifecycle-locks). Seeds come from the child's pid.
    risk: { declineBurst: 1_000, tinyBurst: 1_000 },
  };
}

type Event = Record<string, unknown>;

// The child reports a failed op as {error: CODE}; a settle report carries error: null.
const isError = (e: Event) => typeof e.error === 'string' && !('settled' in e);

/** Sends an op and waits for its answer among the events that arrive after it (never a stale one). */
async function ask(p: AgentProcess, op: Event, pred: (e: Event) => boolean): Promise<Event> {
  const from = p.events.length;
  p.send(op);
  const e = await p.waitFor((x) => p.events.indexOf(x) >= from && (pred(x) || isError(x)));
  if (isError(e)) throw new Error(`${String(op.op)} failed: ${JSON.stringify(e)}`);
  return e;
}

const isStatus = (e: Event) => 'status' in e;
const stateOf = (e: Event) => (e.status as { state: string }).state;

/** Reads the journal file: what must hold at any instant, crashed or not. */
function inspect(dataDir: string, terminalId: string) {
  const store = Store.open(path.join(dataDir, 'journal.db'));
  try {
    expect(store.journal.verify().ok).toBe(true);
    expect(store.integrityCheck()).toEqual(['ok']);
    const transitions = store.state.transitions();
    for (let i = 0; i < transitions.length; i++) {
      const t = transitions[i]!;
      expect(RANK[t.toState]!, `${t.event}`).toBeGreaterThanOrEqual(RANK[t.fromState]!);
      if (i > 0) expect(t.fromState).toBe(transitions[i - 1]!.toState);
    }
    const state = store.state.lifecycle()!.state;
    expect(transitions.at(-1)!.toState).toBe(state);
    const closed = store.batches.list().filter((b) => b.state !== 'open');
    if (state === 'deactivated') {
      // Invariant 8 at every instant: deactivated only with every batch settled and acked.
      expect(store.batches.unsettled()).toEqual([]);
      const open = store.batches.list().find((b) => b.state === 'open');
      if (open) expect(store.journal.batchRows(open.batchId)).toEqual([]);
    }
    return { store, state, closed, transitions, terminalId };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** Runs a scenario; a failure carries the children's last events and stderr, to be diagnosable. */
async function scenario(kill: Kill): Promise<void> {
  const children: AgentProcess[] = [];
  const start = async (config: Event, env?: Record<string, string>) => {
    const p = await AgentProcess.start(config, env);
    children.push(p);
    return p;
  };
  try {
    await run(kill, start);
  } catch (e) {
    const tail = children.map(
      (c, i) => `child ${i + 1}: ${JSON.stringify(c.events.slice(-6))} ${c.stderr.slice(-400)}`,
    );
    (e as Error).message += `\n${tail.join('\n')}`;
    throw e;
  } finally {
    for (const c of children)
      if (c.child.exitCode === null && c.child.signalCode === null) await c.kill();
  }
}

async function run(
  kill: Kill,
  start: (config: Event, env?: Record<string, string>) => Promise<AgentProcess>,
): Promise<void> {
  const terminalId = `TK${String(++n).padStart(3, '0')}`;
  const code = `CODE-${terminalId}`;
  const dataDir = path.join(root, terminalId);
  sim.registerTerminal({ terminalId, activationCode: code });
  sim.behave({
    settle: 'approve',
    refuseConnections: false,
    deactivation: kill.kind === 'step' ? 'approve' : 'manual',
  });
  const config = childConfig(terminalId, dataDir);
  const env: Record<string, string> =
    kill.kind === 'step' ? { POS_CRASH_AT: kill.step, POS_CRASH_COUNT: String(kill.count) } : {};

  const first = await start(config, env);
  await ask(first, { op: 'wait-up' }, (e) => e.up === true);
  await ask(first, { op: 'activate', code }, (e) => e.activated === true);
  await ask(first, { op: 'sales', count: 10 }, (e) => typeof e.sales === 'number');
  const day1 = await ask(first, { op: 'settle' }, (e) => Array.isArray(e.settled));
  expect(day1.settled).toHaveLength(1);
  await ask(first, { op: 'sales', count: 8 }, (e) => typeof e.sales === 'number');
  if (kill.kind === 'step' && kill.outOfBalance) sim.behave({ settle: 'out-of-balance' });

  if (kill.kind === 'step') {
    first.send({ op: 'deactivate', reason: 'closing the shop' });
    expect(await first.exit(), `the agent should have died at ${kill.step}`).toBe(null);
    expect(first.events.some((e) => e.step === kill.step)).toBe(true);
  } else if (kill.kind === 'after-request') {
    if (kill.offline) {
      sim.behave({ refuseConnections: true });
      for (;;) {
        const s = await ask(first, { op: 'status' }, isStatus);
        if (!(s.status as { link: { up: boolean } }).link.up) break;
        await sleep(20);
      }
    }
    await ask(first, { op: 'deactivate', reason: 'closing the shop' }, (e) => e.requested === true);
    await first.kill();
    expect(sim.ledger.reviews(terminalId)).toHaveLength(kill.offline ? 0 : 1);
  } else {
    await ask(first, { op: 'deactivate', reason: 'closing the shop' }, (e) => e.requested === true);
    await until(() => sim.ledger.reviews(terminalId).length === 1, 'the review');
    if (kill.kind === 'after-approval') {
      sim.on('received', function onResult(cn, e) {
        if (cn !== terminalId || e.body !== 'commandResult') return;
        sim.off('received', onResult);
        first.child.kill('SIGKILL');
      });
    }
    sim.decideDeactivation(terminalId, true, 'approved on review');
    if (kill.kind === 'at-approval') first.child.kill('SIGKILL');
    expect(await first.exit()).toBe(null);
  }
  const acknowledged = first.acks();
  expect(acknowledged.length).toBeGreaterThanOrEqual(5);

  // Right after the crash: a consistent instant, never a half-applied one.
  const crashed = inspect(dataDir, terminalId);
  expect(['deactivation-pending', 'deactivating', 'deactivated']).toContain(crashed.state);
  crashed.store.close();

  // Restart against a healthy acquirer and let contact finish what the crash interrupted.
  sim.behave({ refuseConnections: false });
  const second = await start(config);
  const ready = second.events.find((e) => e.ready === true)!;
  if (ready.state !== 'deactivated') {
    await ask(second, { op: 'wait-up' }, (e) => e.up === true);
    if (ready.state === 'deactivation-pending' && kill.kind === 'after-request') {
      await until(
        () => sim.ledger.reviews(terminalId).some((r) => r.decision === null),
        'the review, sent on contact',
      );
      sim.decideDeactivation(terminalId, true, 'approved on review');
    }
    // Generous: on a loaded 2-core box each contact and child start takes seconds.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = await ask(second, { op: 'status' }, isStatus);
      if (stateOf(s) === 'deactivated') break;
      if (Date.now() > deadline) throw new Error(`still ${stateOf(s)} after restart`);
      await sleep(50);
    }
  }
  await ask(second, { op: 'stop' }, (e) => e.stopped === true);
  await second.exit();

  // A third start on the deactivated files: status only, no link. (Only where the crash came
  // closest to the credentials, to keep the file fast; lifecycle-deactivation covers the rest.)
  if (kill.kind !== 'step' || kill.step === 'deactivated') {
    const seen = connects.get(terminalId) ?? 0;
    const third = await start(config);
    expect(third.events.find((e) => e.ready === true)?.state).toBe('deactivated');
    await sleep(300);
    const s3 = await ask(third, { op: 'status' }, isStatus);
    expect(s3.status).toMatchObject({ state: 'deactivated', mayTransact: false });
    expect(connects.get(terminalId) ?? 0).toBe(seen);
    await ask(third, { op: 'stop' }, (e) => e.stopped === true);
    await third.exit();
  }

  const { store, closed, transitions } = inspect(dataDir, terminalId);
  try {
    expect(store.state.lifecycle()!.state).toBe('deactivated');
    for (const seq of acknowledged)
      expect(store.journal.getTxn(seq), `acknowledged row ${seq}`).toBeDefined();
    expect(closed.length).toBeGreaterThanOrEqual(2);
    for (const b of closed) {
      expect(['acked', 'resolved'], b.batchId).toContain(b.state);
      expect(sim.ledger.settlementCount(terminalId, b.batchId), b.batchId).toBe(1);
      const record = sim.ledger.settlement(terminalId, b.batchId)!;
      expect(record.digest).toBe(b.digest);
      expect(totalsEqual(record.settledTotals as unknown as BatchTotals, b.totals!)).toBe(true);
    }
    expect(sim.ledger.settledBatches(terminalId)).toHaveLength(closed.length);
    const txns = store.db
      .prepare("SELECT COUNT(*) AS n, MAX(seq) AS last FROM journal WHERE kind = 'txn'")
      .get() as {
      n: number;
      last: number;
    };
    expect(closed.reduce((sum, b) => sum + (b.txnCount ?? 0), 0)).toBe(txns.n);
    const final = transitions.filter((t) => t.toState === 'deactivated');
    expect(final).toHaveLength(1);
    const settledEvents = [
      ...store.journal.events('batch-acked'),
      ...store.journal.events('batch-resolved'),
    ];
    expect(Math.max(...settledEvents.map((e) => e.seq))).toBeLessThan(final[0]!.journalSeq);
    expect(txns.last).toBeLessThan(final[0]!.journalSeq);
    expect(existingCredentials(dataDir)).toEqual([]);
    expect(store.journal.events('credentials-destroyed')).toHaveLength(1);
  } finally {
    store.close();
  }
}

// Each scenario starts two or three real agent processes: 9-18 s alone, over 40 s beside a
// busy machine (load 6 on 2 cores), hence the generous limit.
describe('SIGKILL during deactivation, then restart', { timeout: 150_000 }, () => {
  for (const step of ['closed', 'sent', 'acked']) {
    it(`a kill at ${step} of the final settlement converges`, () =>
      scenario({ kind: 'step', step, count: 2 }));
  }
  for (const step of ['out-of-balance', 'detail-uploaded', 'resolved']) {
    it(`a kill at ${step} of an out-of-balance final settlement converges`, () =>
      scenario({ kind: 'step', step, count: 1, outOfBalance: true }));
  }
  it('a kill right after the final transition, before credentials are destroyed, converges', () =>
    scenario({ kind: 'step', step: 'deactivated', count: 1 }));
  it('a kill right after the request was sent converges', () =>
    scenario({ kind: 'after-request', offline: false }));
  it('a kill right after a request the acquirer never received converges', () =>
    scenario({ kind: 'after-request', offline: true }));
  it('a kill at the instant the approval is pushed converges', () =>
    scenario({ kind: 'at-approval' }));
  it('a kill right after the terminal answered the approval converges', () =>
    scenario({ kind: 'after-approval' }));
});
