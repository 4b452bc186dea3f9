/**
 * Lock latency: from a signed lock command leaving the acquirer until the lock is durable and a
 * transaction is refused, over lock/unlock cycles, p50 and p99.
 *
 * - Over TLS: the simulator (its own process) pushes the command with issueCommand; the send is
 *   stamped in the simulator, the refusal in the agent, both on CLOCK_MONOTONIC. The span covers
 *   TLS, frame decode, the serial runner, signature check, counter + lock + chain event in one
 *   commit (synchronous=FULL), then `payments.record` of a sale refused with LIFECYCLE_LOCKED
 *   (its refusal is journaled too, one more commit: the figure is an upper bound).
 * - Direct: the same kind of signed command handed to `agent.commands.handle`, then the refusal.
 * - While settling: lock/unlock cycles pushed over TLS one after another all through an
 *   out-of-balance settlement of the large backlog (commands share the serial runner with it).
 *
 * Baseline: one raw better-sqlite3 UPDATE of a one-row table, WAL + synchronous=FULL, sampled
 * between the agent's cycles so both see the same disk.
 */
import path from 'node:path';
import { isAgentError } from '../base/errors.ts';
import type { Agent } from '../agent/runtime/agent.ts';
import { loadDriver } from '../storage/db.ts';
import type { pos } from '../protocol/messages.ts';
import { sale, tempDir, type BenchOptions } from './fixtures.ts';
import { ensureBacklog } from './journal-builder.ts';
import type { Figure, Target } from './report.ts';
import { settleBacklog } from './settlement.ts';
import { benchAgentConfig, SimHost, startBenchAgent } from './sim-host.ts';
import {
  distribution,
  msBetween,
  nowNs,
  sleep,
  watchJobs,
  type Distribution,
  type JobWatch,
} from './stats.ts';

const CODE = 'BENCHLOCK1';
const LOCK = { lock: { reason: 'bench lock' } };
const UNLOCK = { unlock: { source: 'remote', reason: 'bench unlock' } };

/** A raw durable single-row update, timed. */
function rawUpdater(dir: string): { sample: () => number; close: () => void } {
  const db = new (loadDriver())(path.join(dir, 'raw-lock.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(
    "CREATE TABLE lifecycle (id INTEGER PRIMARY KEY, locks TEXT NOT NULL, version INTEGER NOT NULL); INSERT INTO lifecycle VALUES (1, '[]', 1)",
  );
  const update = db.prepare('UPDATE lifecycle SET locks = ?, version = version + 1 WHERE id = 1');
  let locked = false;
  return {
    sample: () => {
      locked = !locked;
      const t0 = nowNs();
      update.run(locked ? '["remote"]' : '[]');
      return msBetween(t0);
    },
    close: () => db.close(),
  };
}

/** Throws unless a sale is refused because the terminal is locked. */
function expectRefused(agent: Agent): void {
  try {
    agent.core.payments.record(sale(1));
  } catch (e) {
    if (isAgentError(e) && e.code === 'LIFECYCLE_LOCKED') return;
    throw e;
  }
  throw new Error('a sale was recorded while the terminal should be locked');
}

interface Handled {
  counter: number;
  /** When the refusal was seen (for a lock) or the command was handled. */
  at: bigint;
}

/**
 * Wraps the agent's command processor: after each command is handled (inside the command job,
 * before its result goes back), a lock is checked by a refused sale and the time is stamped.
 */
class CommandProbe {
  private waiting: { resolve: (h: Handled) => void; reject: (e: Error) => void } | undefined;
  private readonly original: Agent['commands']['handle'];

  constructor(private readonly agent: Agent) {
    this.original = agent.commands.handle.bind(agent.commands);
    agent.commands.handle = (signed: pos.v1.ISignedCommand) => {
      const out = this.original(signed);
      const w = this.waiting;
      this.waiting = undefined;
      try {
        if (!out.applied) throw new Error(`command refused: ${out.error?.message}`);
        if (out.body.locks?.includes('remote')) expectRefused(agent);
        w?.resolve({ counter: Number(out.body.counter), at: nowNs() });
      } catch (e) {
        w?.reject(e as Error);
      }
      return out;
    };
  }

  /** The next handled command; ask before sending it. */
  next(): Promise<Handled> {
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Sends a command from the simulator and resolves when the agent handled it. */
  async push(sim: SimHost, body: typeof LOCK | typeof UNLOCK): Promise<number> {
    const handled = this.next();
    const sent = await sim.issue(body);
    const h = await handled;
    if (!sent.pushed || h.counter !== sent.counter) throw new Error('the command did not arrive');
    return Number(h.at - sent.sentNs) / 1e6;
  }

  undo(): void {
    this.agent.commands.handle = this.original;
  }
}

async function unloaded(opts: BenchOptions, cycles: number) {
  const sim = await SimHost.start(CODE);
  const raw = rawUpdater(tempDir('lock-raw'));
  const agent = await startBenchAgent(benchAgentConfig(tempDir('lock'), sim));
  try {
    await agent.activate(CODE, 'bench');
    const probe = new CommandProbe(agent);
    const rawSamples: number[] = [];
    const tls: number[] = [];
    for (let i = 0; i < cycles + 5; i++) {
      const ms = await probe.push(sim, LOCK);
      // The first cycles warm up TLS buffers, statements and the JIT.
      if (i >= 5) tls.push(ms);
      await probe.push(sim, UNLOCK);
      rawSamples.push(raw.sample());
    }
    probe.undo();
    // Direct: genuine signed commands crafted ahead (next counters), handed to the processor.
    const crafted: pos.v1.SignedCommand[] = [];
    for (let i = 0; i < cycles; i++) {
      crafted.push((await sim.craft(LOCK)).signed, (await sim.craft(UNLOCK)).signed);
    }
    const direct: number[] = [];
    for (let i = 0; i < cycles; i++) {
      const t0 = nowNs();
      const locked = agent.commands.handle(crafted[2 * i]!);
      expectRefused(agent);
      direct.push(msBetween(t0));
      if (!locked.applied || !agent.commands.handle(crafted[2 * i + 1]!).applied)
        throw new Error('a crafted command was refused');
      rawSamples.push(raw.sample());
    }
    const d = {
      tls: distribution(tls),
      direct: distribution(direct),
      raw: distribution(rawSamples),
    };
    opts.log(
      `  over TLS p50 ${d.tls.p50.toFixed(2)} p99 ${d.tls.p99.toFixed(2)} ms; direct p50 ${d.direct.p50.toFixed(2)} p99 ${d.direct.p99.toFixed(2)} ms; raw p50 ${d.raw.p50.toFixed(2)} ms`,
    );
    return d;
  } finally {
    await agent.stop();
    await sim.stop();
    raw.close();
  }
}

/**
 * Locks pushed all through each out-of-balance settlement of the backlog: the first 20 ms in
 * (during the cutover's slices), then one lock/unlock cycle after another, a few ms apart, until
 * the settlement finishes, so every kind of settlement job (cutover slice, chunk read and send,
 * ack taken, step commit) gets a lock queued behind it.
 */
async function whileSettling(opts: BenchOptions, rows: number, runs: number, beside: boolean) {
  const backlog = await ensureBacklog(rows, opts);
  const samples: number[] = [];
  const settleMs: number[] = [];
  let longest = { name: '', wallMs: 0, cpuMs: 0, jobs: 0 };
  for (let r = 0; r < runs; r++) {
    let probe: CommandProbe | undefined;
    let watch: JobWatch | undefined;
    const settled = await settleBacklog(backlog, 'out-of-balance', {
      acquirerElsewhere: !beside,
      // The backlog's terminal was activated offline: pin the simulator's key as activation would.
      before: async ({ agent, sim }) => {
        agent.commands.pinKey(await sim.commandPublicKey());
        probe = new CommandProbe(agent);
        watch = watchJobs(agent.runner);
      },
      during: async ({ sim }, settling) => {
        let done = false;
        void settling.finally(() => (done = true)).catch(() => {});
        await sleep(20);
        while (!done) {
          samples.push(await probe!.push(sim, LOCK));
          await probe!.push(sim, UNLOCK);
          await sleep(3 + Math.random() * 7);
        }
      },
    });
    settleMs.push(settled.ms);
    const l = watch!.longest();
    if (l.wallMs > longest.wallMs) longest = l;
  }
  const d = distribution(samples);
  opts.log(
    `  while settling${beside ? ', acquirer beside' : ''}: ${d.n} locks, p50 ${d.p50.toFixed(2)} p99 ${d.p99.toFixed(2)} worst ${d.max.toFixed(2)} ms`,
  );
  return { samples: d, settleMs: distribution(settleMs), longest };
}

type Settling = Awaited<ReturnType<typeof whileSettling>>;

function settlingNote(x: Settling, where: string): string {
  const { samples: d, settleMs, longest } = x;
  return `${where}; ${d.n} locks pushed one after another all through ${settleMs.n} out-of-balance settlements of ${settleMs.p50.toFixed(0)} ms (median), p50 ${d.p50.toFixed(2)} ms, p99 ${d.p99.toFixed(2)} ms; a command waits in the serial runner for at most one settlement job (a cutover slice, one chunk slice read or sent, one ack taken): the longest of ${longest.jobs} jobs was '${longest.name}', ${longest.wallMs.toFixed(1)} ms wall, ${longest.cpuMs.toFixed(1)} ms on CPU`;
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const d = await unloaded(opts, opts.quick ? 50 : 200);
  const rows = opts.quick ? 10_000 : 100_000;
  const busy = await whileSettling(opts, rows, opts.quick ? 1 : 4, false);
  const beside = await whileSettling(opts, rows, opts.quick ? 1 : 2, true);
  const under10: Target = { on: 'value', op: '<', limit: 10 };
  const raw = d.raw;
  const baselineIs = (p: string) =>
    `${p} of a raw better-sqlite3 single-row UPDATE, WAL + synchronous=FULL (${raw.n} samples between the agent's cycles)`;
  const f = (
    name: string,
    x: Distribution,
    p: 'p50' | 'p99' | 'max',
    note: string,
    target?: Target,
  ): Figure => ({
    name,
    value: x[p],
    unit: 'ms',
    baseline: raw[p === 'max' ? 'p99' : p],
    baselineIs: baselineIs(p === 'max' ? 'p99' : p),
    target,
    note,
  });
  return [
    f('lock latency p50, pushed over TLS', d.tls, 'p50', `${d.tls.n} lock/unlock cycles`),
    f(
      'lock latency p99, pushed over TLS',
      d.tls,
      'p99',
      `${d.tls.n} cycles, max ${d.tls.max.toFixed(2)} ms`,
      under10,
    ),
    f('lock latency p50, commands.handle direct', d.direct, 'p50', `${d.direct.n} cycles`),
    f(
      'lock latency p99, commands.handle direct',
      d.direct,
      'p99',
      `${d.direct.n} cycles, max ${d.direct.max.toFixed(2)} ms`,
      under10,
    ),
    f(
      `lock latency, pushed over TLS while settling a ${rows / 1000}k-sale backlog (worst)`,
      busy.samples,
      'max',
      settlingNote(busy, 'the acquirer as if on another machine'),
      under10,
    ),
    f(
      `lock latency, pushed over TLS while settling a ${rows / 1000}k-sale backlog, acquirer beside (worst)`,
      beside.samples,
      'max',
      settlingNote(beside, 'the simulator beside the agent on the same 2 cores and disk'),
    ),
  ];
}
