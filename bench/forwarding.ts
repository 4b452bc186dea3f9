/**
 * Store-and-forward: 10,000 queued offline advices forwarded by the real agent over mutual TLS
 * to the acquirer simulator (in its own process), each answered and its answer journaled
 * (durable: synchronous=FULL, one commit per round of `forwarding.batchSize`), against raw
 * protobufjs encoding of the same advices into the same AdviceBatch envelopes in the same run.
 * The ratio says what the wire, TLS, the acquirer's own ledger and the journal cost on top of
 * building the bytes.
 */
import { applyActivation, openCore } from '../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE } from '../agent/policy/fees.ts';
import { detailRow } from '../agent/policy/settlement.ts';
import { pos } from '../protocol/messages.ts';
import { benchConfig, benchIdentity, sale, tempDir, type BenchOptions } from './fixtures.ts';
import type { Figure } from './report.ts';
import { SimHost, benchAgentConfig, startBenchAgent } from './sim-host.ts';
import { msBetween, nowNs, perSecond } from './stats.ts';

const OFFLINE = { maxAmount: 100_000, maxTotal: 1e12, maxAgeMs: 24 * 3600_000 };
const BATCH = 200;

/** A journal holding `n` offline sales, all queued as advices (one commit). */
function queuedJournal(n: number): string {
  const dir = tempDir('forwarding');
  const core = openCore(benchConfig(dir, { offline: OFFLINE }));
  applyActivation(core, benchIdentity(), DEFAULT_FEE_SCHEDULE, 'bench');
  core.store.atomically(() => {
    for (let i = 0; i < n; i++) core.payments.record({ ...sale(i), status: 'pending-offline' });
  });
  core.close();
  return dir;
}

/** The same advices the agent sends, encoded as its envelopes: the raw baseline. */
function encodeAll(dir: string): { ms: number; advices: number; bytes: number } {
  const core = openCore(benchConfig(dir, { offline: OFFLINE }));
  try {
    const queued = core.store.advices.pending(Number.MAX_SAFE_INTEGER);
    const start = nowNs();
    let bytes = 0;
    for (let i = 0; i < queued.length; i += BATCH) {
      const advices = queued
        .slice(i, i + BATCH)
        .map((a) => ({ key: a.key, row: detailRow(a.row), originalKey: '' }));
      bytes += pos.v1.Envelope.encode({
        messageId: `m${i}`,
        terminalId: core.config.terminalId,
        sentAtMs: Date.now(),
        adviceBatch: { advices },
      }).finish().length;
    }
    return { ms: msBetween(start), advices: queued.length, bytes };
  } finally {
    core.close();
  }
}

export async function run(o: BenchOptions): Promise<Figure[]> {
  const n = o.quick ? 2_000 : 10_000;
  o.log(`[forwarding] queueing ${n} offline sales`);
  const dir = queuedJournal(n);
  const raw = encodeAll(dir);
  const sim = await SimHost.start();
  try {
    // The first contact must not forward before the clock starts: the acquirer ignores it.
    await sim.behave({ advice: { mode: 'ignore' } });
    const config = benchAgentConfig(dir, sim, {
      offline: OFFLINE,
      forwarding: { batchSize: BATCH, backoffInitialMs: 60_000, backoffMaxMs: 60_000 },
    });
    const agent = await startBenchAgent(config);
    try {
      await sim.behave({ advice: { mode: 'accept' } });
      const start = nowNs();
      let rounds = 0;
      while (agent.core.store.advices.stats().pending > 0) {
        const r = await agent.forwardAdvices({ ignoreBackoff: true });
        if (r.error) throw r.error;
        if (++rounds > n) throw new Error('the advices did not drain');
      }
      const ms = msBetween(start);
      const s = agent.core.store.advices.stats();
      if (s.accepted !== n) throw new Error(`${s.accepted} of ${n} advices accepted`);
      const value = perSecond(n, ms);
      const baseline = perSecond(raw.advices, raw.ms);
      o.log(`[forwarding] ${n} advices in ${(ms / 1000).toFixed(2)} s`);
      return [
        {
          name: `advices forwarded and answered (${n} queued)`,
          value,
          unit: 'advices/s',
          baseline,
          baselineIs: 'raw protobufjs encode of the same AdviceBatch envelopes',
          target: { on: 'value', op: '>=', limit: 1_000 },
          note:
            `${n} advices in ${(ms / 1000).toFixed(2)} s, ${Math.ceil(n / BATCH)} rounds of ${BATCH} ` +
            `(TLS, acquirer ledger, one durable journal commit per round); encode alone ` +
            `${raw.ms.toFixed(1)} ms for ${(raw.bytes / 1024).toFixed(0)} KiB`,
        },
      ];
    } finally {
      await agent.stop();
    }
  } finally {
    await sim.stop();
  }
}
