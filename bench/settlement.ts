/**
 * Settlement of a large backlog: N sales in one open batch (recorded through the agent's entry
 * point, cached), settled by the full Agent against the acquirer simulator in its own process
 * over loopback mutual TLS. `agent.settleNow()` is timed from the call to its answer: cutover
 * (rows read, totals, digest, close), each durable batch step, the submit round trip and, on
 * the out-of-balance path, the detail upload in chunks and the resubmit. The figure is rows per
 * second, against protobufjs encoding the same rows as DetailRow messages (the raw cost of
 * putting them on the wire). Every run ends checked against the simulator's own ledger.
 */
import type { Agent } from '../agent/runtime/agent.ts';
import type { Config } from '../agent/config.ts';
import { Store } from '../storage/store.ts';
import { journalPath } from '../agent/runtime/core.ts';
import { detailRow, type SettlementStep } from '../agent/policy/settlement.ts';
import { forgetTally, warmOpenBatchTally } from '../agent/policy/open-batch-tally.ts';
import { pos } from '../protocol/messages.ts';
import { benchConfig, copyDataDir, type BenchOptions } from './fixtures.ts';
import { ensureBacklog } from './journal-builder.ts';
import type { Figure } from './report.ts';
import { benchAgentConfig, SimHost, startBenchAgent } from './sim-host.ts';
import { median, msBetween, nowNs, perSecond } from './stats.ts';

export type SettleMode = 'approve' | 'out-of-balance';

/**
 * `warm`: the open batch's running tally is up to date when settleNow is asked for, as in a
 * terminal that has been running (status and the start-up warm-up keep it current), so the
 * cutover reads only the tail. `cold`: the tally is dropped first, so the cutover reads the
 * whole batch (in slices), as on the first cutover right after a start.
 */
export type Tally = 'warm' | 'cold';

export interface SettleRun {
  ms: number;
  /** Milliseconds from the call to each durable step (the first time it was reached). */
  steps: Partial<Record<SettlementStep, number>>;
  chunks: number;
}

/** What a hook gets: the running agent, its config and the simulator it settles with. */
export interface SettleContext {
  agent: Agent;
  config: Config;
  sim: SimHost;
}

/** Hooks for a benchmark that measures something else while a settlement runs. */
export interface SettleHooks {
  /** Config sections to add (e.g. console technicians). */
  extra?: Record<string, unknown>;
  /** Runs on the started agent, link up, before the settlement is asked for. */
  before?: (ctx: SettleContext) => Promise<void>;
  /** Runs once the settlement has started; awaited before the agent stops. */
  during?: (ctx: SettleContext, settling: Promise<unknown>) => Promise<void>;
  /** The simulator as if on another machine (SimHost.start): for figures about the agent. */
  acquirerElsewhere?: boolean;
  /** Runs after the settlement finished, on the same agent (no load). */
  after?: (ctx: SettleContext) => Promise<void>;
}

/** Settles a fresh copy of the backlog with the full agent against a fresh simulator. */
export async function settleBacklog(
  backlogDir: string,
  mode: SettleMode,
  hooks: SettleHooks = {},
  tally: Tally = 'warm',
): Promise<SettleRun> {
  const dataDir = copyDataDir(backlogDir, 'settle');
  const sim = await SimHost.start(undefined, { elsewhere: hooks.acquirerElsewhere });
  try {
    await sim.behave({ settle: mode });
    let t0 = nowNs();
    const steps: SettleRun['steps'] = {};
    let chunks = 0;
    const config = benchAgentConfig(dataDir, sim, hooks.extra);
    const agent = await startBenchAgent(config, {
      faultHook: (step) => {
        if (step === 'deactivated') return;
        if (step === 'detail-chunk') chunks++;
        steps[step] ??= msBetween(t0);
      },
    });
    try {
      const ctx = { agent, config, sim };
      await hooks.before?.(ctx);
      const now = () => agent.core.clock.now();
      if (tally === 'warm') await warmOpenBatchTally(agent.core.store, now);
      else forgetTally(agent.core.store);
      t0 = nowNs();
      const settling = agent.settleNow('bench');
      const watching = hooks.during?.(ctx, settling);
      const r = await settling;
      const ms = msBetween(t0);
      await watching;
      const batch = r.closed ? agent.core.store.batches.get(r.closed) : undefined;
      const theirs = batch && (await sim.settlement(batch.batchId));
      const want = mode === 'approve' ? 'acked' : 'resolved';
      if (r.error || !batch || batch.state !== want || theirs?.digest !== batch.digest)
        throw new Error(
          `settlement did not finish: ${r.error?.message ?? `batch ${batch?.state}, acquirer ${theirs?.digest}`}`,
        );
      await hooks.after?.(ctx);
      return { ms, steps, chunks };
    } finally {
      await agent.stop();
    }
  } finally {
    await sim.stop();
  }
}

/** The backlog's rows as DetailRow messages, read untimed. */
function detailRows(backlogDir: string): pos.v1.IDetailRow[] {
  const store = Store.open(journalPath(benchConfig(backlogDir)), { readonly: true });
  try {
    const open = store.batches.list().find((b) => b.state === 'open')!;
    return store.journal.batchRows(open.batchId).map(detailRow);
  } finally {
    store.close();
  }
}

/** Rows per second protobufjs encodes, one DetailRow message each; median of `repeats`. */
function encodeRate(rows: readonly pos.v1.IDetailRow[], repeats: number): number {
  const rates: number[] = [];
  let bytes = 0;
  for (let r = 0; r < repeats + 1; r++) {
    const t0 = nowNs();
    for (const row of rows) bytes += pos.v1.DetailRow.encode(row).finish().length;
    // The first pass is warm-up (JIT); it is not counted.
    if (r > 0) rates.push(perSecond(rows.length, msBetween(t0)));
  }
  if (bytes === 0) throw new Error('nothing was encoded');
  return median(rates);
}

function describe(run: SettleRun): string {
  const s = run.steps;
  const at = (k: SettlementStep) => (s[k] === undefined ? '?' : s[k]!.toFixed(0));
  return run.chunks
    ? `closed at ${at('closed')} ms, out-of-balance at ${at('out-of-balance')} ms, ${run.chunks} detail chunks uploaded by ${at('detail-uploaded')} ms, resolved at ${at('resolved')} ms`
    : `closed at ${at('closed')} ms, sent at ${at('sent')} ms, acked at ${at('acked')} ms`;
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const rows = opts.quick ? 10_000 : 100_000;
  const repeats = opts.quick ? 1 : 3;
  const backlog = await ensureBacklog(rows, opts);
  const detail = detailRows(backlog);
  const figures: Figure[] = [];
  const variants = [
    { mode: 'approve', tally: 'warm' },
    { mode: 'approve', tally: 'cold' },
    { mode: 'out-of-balance', tally: 'warm' },
  ] as const;
  for (const { mode, tally } of variants) {
    const runs: SettleRun[] = [];
    const encodes: number[] = [];
    for (let r = 0; r < repeats; r++) {
      // Baseline and agent alternate, so both see the same machine.
      encodes.push(encodeRate(detail, 3));
      runs.push(await settleBacklog(backlog, mode, {}, tally));
      opts.log(
        `  ${mode} (${tally}): ${runs.at(-1)!.ms.toFixed(0)} ms (${describe(runs.at(-1)!)})`,
      );
    }
    const mid = [...runs].sort((a, b) => a.ms - b.ms)[Math.floor(runs.length / 2)]!;
    const what =
      mode === 'approve'
        ? `approved${tally === 'cold' ? ', cold tally (first cutover after a start)' : ''}`
        : 'out of balance + windowed detail upload';
    figures.push({
      name: `settlement of a ${rows / 1000}k-sale backlog, ${what} (TLS)`,
      value: perSecond(rows, mid.ms),
      unit: 'rows/s',
      baseline: median(encodes),
      baselineIs: 'protobufjs pos.v1.DetailRow.encode of the same rows, one message each, same run',
      target: { on: 'ratio', op: '>=', limit: mode === 'approve' ? 0.8 : 0.5 },
      note: `median of ${runs.length} settleNow() runs, ${mid.ms.toFixed(0)} ms: ${describe(mid)}`,
    });
  }
  return figures;
}
