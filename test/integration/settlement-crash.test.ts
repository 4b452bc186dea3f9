import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { Store } from '../../storage/store.ts';
import { AgentProcess } from '../fixtures/agent-process.ts';
import { totalsEqual } from '../../agent/policy/batch-totals.ts';
import type { BatchTotals } from '../../storage/batches.ts';

/**
 * A real agent process killed with SIGKILL at each settlement step, then restarted on the
 * same journal: every acknowledged transaction survives, and the acquirer's own ledger
 * shows every batch settled exactly once with totals equal to the terminal's.
 */

let root: string;
let sim: AcquirerSimulator;
let n = 0;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-setcrash-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
});

afterAll(async () => {
  await sim.stop();
  rmSync(root, { recursive: true, force: true });
});

function terminalConfig(terminalId: string) {
  const tls = sim.clientTls(terminalId);
  return {
    terminalId,
    dataDir: path.join(root, terminalId),
    acquirer: {
      port: sim.port,
      caFile: path.join(sim.tls.dir, 'ca.crt'),
      certFile: path.join(sim.tls.dir, 'clients', `${terminalId}.crt`),
      keyFile: path.join(sim.tls.dir, 'clients', `${terminalId}.key`),
      backoffInitialMs: 50,
      backoffMaxMs: 500,
      requestTimeoutMs: 3000,
      servername: tls.servername,
    },
    paymentSocket: { path: '' },
    log: { level: 'silent' },
  };
}

async function crashAt(step: string, outOfBalance: boolean): Promise<void> {
  const terminalId = `TC${String(++n).padStart(3, '0')}`;
  const code = `CODE${n}X`;
  sim.registerTerminal({ terminalId, activationCode: code });
  sim.behave({ settle: outOfBalance ? 'out-of-balance' : 'approve' });
  const config = terminalConfig(terminalId);

  const first = await AgentProcess.start(config, { POS_CRASH_AT: step });
  await first.ask({ op: 'wait-up' }, (e) => e.up === true);
  await first.ask({ op: 'activate', code }, (e) => e.activated === true);
  await first.ask({ op: 'sales', count: 12 }, (e) => typeof e.sales === 'number');
  const acknowledged = first.acks();
  first.send({ op: 'settle' });
  const exitCode = await first.exit();
  expect(exitCode, `the agent should have died at step ${step}`).toBe(null);
  expect(first.events.some((e) => e.step === step)).toBe(true);

  const second = await AgentProcess.start(config);
  await second.ask({ op: 'wait-up' }, (e) => e.up === true);
  const settled = await second.ask({ op: 'settle' }, (e) => Array.isArray(e.settled));
  expect(settled.error).toBe(null);
  await second.ask({ op: 'stop' }, (e) => e.stopped === true);
  await second.exit();

  const store = Store.open(path.join(config.dataDir, 'journal.db'));
  try {
    for (const seq of acknowledged)
      expect(store.journal.getTxn(seq), `acknowledged row ${seq}`).toBeDefined();
    expect(store.journal.verify().ok).toBe(true);
    expect(store.integrityCheck()).toEqual(['ok']);
    const batches = store.batches.list().filter((b) => b.state !== 'open');
    expect(batches.length).toBeGreaterThan(0);
    for (const b of batches) {
      expect(['acked', 'resolved']).toContain(b.state);
      expect(sim.ledger.settlementCount(terminalId, b.batchId)).toBe(1);
      const record = sim.ledger.settlement(terminalId, b.batchId)!;
      expect(record.digest).toBe(b.digest);
      expect(totalsEqual(record.settledTotals as unknown as BatchTotals, b.totals!)).toBe(true);
    }
  } finally {
    store.close();
  }
}

describe('SIGKILL at each settlement step, then restart', () => {
  for (const step of ['closed', 'sent', 'acked']) {
    it(`converges exactly once after a kill at ${step}`, () => crashAt(step, false), 90_000);
  }
  for (const step of ['out-of-balance', 'detail-chunk', 'detail-uploaded', 'resolved']) {
    it(
      `converges exactly once after a kill at ${step} (out-of-balance path)`,
      () => crashAt(step, true),
      90_000,
    );
  }
});
