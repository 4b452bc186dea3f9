/**
 * Power cuts during deactivation (INVARIANTS 1, 2, 8, 9): the acquirer approves the review,
 * the agent runs its final settlement, commits 'deactivated' and destroys its credentials, and
 * the power goes at a random instant of that (test/fixtures/powercut: only what was fsynced
 * survives). The agent comes back on the durable image and must finish: deactivated, every
 * acknowledged row there, every batch settled exactly once, no credential left. Then a last
 * cut after a clean stop: a deactivated terminal stays deactivated, its keys stay gone.
 *
 * POWERCUT_CUTS scales it with the campaign (one instant per 3 cuts, at least 2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { Store } from '../../storage/store.ts';
import { AgentProcess } from '../fixtures/agent-process.ts';
import { installTls, sleep, until } from '../fixtures/lifecycle-rig.ts';
import { envInt, rng } from '../fixtures/torture-env.ts';
import { KEY_FILES, PowerCutTerminal } from '../fixtures/powercut/rig.ts';

const INSTANTS = Math.max(2, Math.ceil(envInt('POWERCUT_CUTS', 6) / 3));
const SEED = envInt('POWERCUT_SEED', 0x90c7, 0);

let root: string;
let sim: AcquirerSimulator;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-powercut-deact-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
});

afterAll(async () => {
  await sim?.stop();
  rmSync(root, { recursive: true, force: true });
});

type Event = Record<string, unknown>;

async function ask(p: AgentProcess, op: Event, pred: (e: Event) => boolean): Promise<Event> {
  const from = p.events.length;
  const e = await p.ask(op, (x) => p.events.indexOf(x) >= from && pred(x));
  if (typeof e.error === 'string' && !('settled' in e))
    throw new Error(`${String(op.op)} failed: ${JSON.stringify(e)}`);
  return e;
}

const stateOf = async (p: AgentProcess): Promise<string> =>
  ((await ask(p, { op: 'status' }, (e) => 'status' in e)).status as { state: string }).state;

describe(`power cuts during deactivation (${INSTANTS} instants, seed ${SEED})`, () => {
  it('comes back and finishes: deactivated, nothing lost, settled once, no credential left', async () => {
    const r = rng(SEED);
    const landed: string[] = [];
    for (let i = 0; i < INSTANTS; i++) {
      const terminalId = `TCUTD${i}`;
      const code = `CUT-DEACT-${i}`;
      sim.registerTerminal({ terminalId, activationCode: code });
      sim.behave({ settle: 'approve', deactivation: 'manual', slowMs: r.int(0, 30) });
      const term = new PowerCutTerminal(path.join(root, terminalId));
      installTls(sim, terminalId, term.dataDir);
      const config = {
        terminalId,
        dataDir: term.dataDir,
        acquirer: { port: sim.port, backoffInitialMs: 20, backoffMaxMs: 200 },
        paymentSocket: { path: '' },
        log: { level: 'silent' },
        risk: { declineBurst: 1_000, tinyBurst: 1_000 },
      };
      const label = `${terminalId}`;

      const first = await AgentProcess.start(config, term.nextEnv());
      await ask(first, { op: 'wait-up' }, (e) => e.up === true);
      await ask(first, { op: 'activate', code }, (e) => e.activated === true);
      await ask(first, { op: 'sales', count: 8 }, (e) => typeof e.sales === 'number');
      await ask(first, { op: 'settle' }, (e) => Array.isArray(e.settled));
      await ask(first, { op: 'sales', count: 6 }, (e) => typeof e.sales === 'number');
      await ask(first, { op: 'deactivate' }, (e) => e.requested === true);
      await until(() => sim.ledger.reviews(terminalId).length === 1, 'the review');
      sim.decideDeactivation(terminalId, true, 'approved on review');
      await sleep(r.int(0, 150));
      await term.cut(first);
      const acked = first.acks();
      const cutAt = Store.open(term.journal, { readonly: true });
      landed.push(cutAt.state.lifecycle()!.state);
      cutAt.close();
      expect(acked.length, label).toBeGreaterThanOrEqual(10);
      expect(term.witnessProblems(label)).toEqual([]);

      // Power back: the agent finishes what the cut interrupted, then stops cleanly.
      const second = await AgentProcess.start(config, term.nextEnv());
      const deadline = Date.now() + 60_000;
      while ((await stateOf(second)) !== 'deactivated') {
        if (Date.now() > deadline) throw new Error(`${label}: still not deactivated`);
        await sleep(50);
      }
      await ask(second, { op: 'stop' }, (e) => e.stopped === true);
      await second.exit();
      // ...and the power goes once more, with nothing running.
      term.powerOff();
      expect(term.witnessProblems(`${label} stopped`)).toEqual([]);

      const store = Store.open(term.journal, { readonly: true });
      try {
        expect(store.state.lifecycle()!.state, label).toBe('deactivated');
        for (const seq of acked)
          expect(store.journal.getTxn(seq), `${label} row ${seq}`).toBeDefined();
        const closed = store.batches.list().filter((b) => b.state !== 'open');
        expect(closed.length, label).toBeGreaterThanOrEqual(2);
        for (const b of closed) {
          expect(['acked', 'resolved'], b.batchId).toContain(b.state);
          expect(sim.ledger.settlementCount(terminalId, b.batchId), b.batchId).toBe(1);
        }
        expect(store.batches.unsettled()).toEqual([]);
      } finally {
        store.close();
      }
      for (const k of [...KEY_FILES, 'tls/terminal.key'])
        expect(existsSync(path.join(term.dataDir, k)), `${label}: ${k}`).toBe(false);
    }
    console.log(`power cuts during deactivation: the image held ${landed.join(', ')}`);
  }, 180_000);
});
