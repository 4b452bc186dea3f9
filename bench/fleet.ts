/**
 * The fleet figure: one acquirer simulator (its own process, one ledger, loopback mutual TLS)
 * and N terminals that all cut over at the same instant, as a nightly cron at 23:00 on
 * synchronised clocks makes them do. Each terminal is the full Agent on its own journal with
 * its own client certificate, linked up before the cutover; each settles a batch of
 * `SALES` sales (a small shop's day). Measured: batches settled per second (N over the time
 * from the shared start to the last ack) and the worst terminal's time from the start to its
 * ack. Baselines: one terminal alone, same harness, same run. Every run ends checked against
 * the acquirer's ledger: each terminal's batch settled exactly once, same digest.
 *
 * All the agents run in this one process. One process per agent would cost about 50 MB of
 * RSS and a few hundred ms of start each (50 GB for 1,000), and on this 2-core machine it
 * would only add scheduling; a real terminal is its own device, so what a fleet loads is the
 * acquirer. One process keeps the fleet on one core and leaves the other to the simulator,
 * whose throughput is what this figure is about.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent } from '../agent/runtime/agent.ts';
import type { Config } from '../agent/config.ts';
import { applyActivation, openCore } from '../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE } from '../agent/policy/fees.ts';
import {
  benchConfig,
  benchIdentity,
  cacheDir,
  copyDataDir,
  isBuilt,
  sale,
  type BenchOptions,
} from './fixtures.ts';
import type { Figure } from './report.ts';
import { SimHost } from './sim-host.ts';
import { msBetween, nowNs, perSecond } from './stats.ts';

const SALES = 100;

const terminalId = (i: number) => `FLEET${String(i + 1).padStart(4, '0')}`;

/** N activated journals, each with one open batch of SALES sales; built once, then copied. */
function ensureFleet(n: number, opts: BenchOptions): string {
  const dir = cacheDir(`fleet-${n}x${SALES}`);
  if (isBuilt(dir)) return dir;
  rmSync(dir, { recursive: true, force: true });
  const t0 = nowNs();
  for (let i = 0; i < n; i++) {
    const id = terminalId(i);
    const core = openCore(benchConfig(path.join(dir, id), { terminalId: id }));
    try {
      applyActivation(core, { ...benchIdentity(), terminalId: id }, DEFAULT_FEE_SCHEDULE, 'bench');
      // One commit for the day's sales: building a fleet is not what is measured.
      core.store.atomically(() => {
        for (let s = 0; s < SALES; s++) core.payments.record(sale(i * SALES + s));
      });
    } finally {
      core.close();
    }
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'built.txt'), `${n} terminals x ${SALES} sales\n`);
  opts.log(`  built a fleet of ${n} journals in ${(msBetween(t0) / 1000).toFixed(1)} s`);
  return dir;
}

function fleetConfig(dataDir: string, id: string, sim: SimHost): Config {
  const tls = sim.tlsDir;
  return benchConfig(dataDir, {
    terminalId: id,
    acquirer: {
      host: '127.0.0.1',
      port: sim.port,
      servername: 'localhost',
      caFile: path.join(tls, 'ca.crt'),
      certFile: path.join(tls, 'clients', `${id}.crt`),
      keyFile: path.join(tls, 'clients', `${id}.key`),
      backoffInitialMs: 200,
      backoffMaxMs: 2_000,
      requestTimeoutMs: 120_000,
    },
  });
}

interface FleetRun {
  n: number;
  /** From the shared start to the last ack. */
  totalMs: number;
  /** Each terminal's time from the shared start to its ack, sorted. */
  ackMs: number[];
  /** Time to start N agents and get every link up. */
  upMs: number;
  rssMb: number;
  /** CPU time of the simulator's process and of the agents' process over the settlement. */
  simCpuMs: number;
  fleetCpuMs: number;
}

/** N agents against one simulator, every link up, then every settleNow at the same instant. */
async function runFleet(n: number, opts: BenchOptions): Promise<FleetRun> {
  const ids = Array.from({ length: n }, (_, i) => terminalId(i));
  const fleet = copyDataDir(ensureFleet(n, opts), `fleet-${n}`);
  const sim = await SimHost.start({ terminals: ids });
  const agents: Agent[] = [];
  try {
    const t0 = nowNs();
    for (const id of ids) {
      const agent = new Agent({
        config: fleetConfig(path.join(fleet, id), id, sim),
        schedules: false,
      });
      agents.push(agent);
      await agent.start();
    }
    await Promise.all(agents.map((a) => a.channel.waitUntilUp(600_000)));
    await Promise.all(agents.map((a) => a.runner.idle()));
    const upMs = msBetween(t0);
    // The cron fires on every terminal in the same instant.
    const simCpu0 = await sim.cpuMs();
    const cpu0 = process.cpuUsage();
    const start = nowNs();
    const ackMs = await Promise.all(
      agents.map(async (a) => {
        const r = await a.settleNow('nightly cutover');
        if (r.error || !r.closed || r.pending.length)
          throw new Error(`${a.core.config.terminalId}: ${r.error?.message ?? 'not settled'}`);
        return msBetween(start);
      }),
    );
    const totalMs = msBetween(start);
    const simCpuMs = (await sim.cpuMs()) - simCpu0;
    const c = process.cpuUsage(cpu0);
    const fleetCpuMs = (c.user + c.system) / 1000;
    const rssMb = process.memoryUsage().rss / 2 ** 20;
    const check = await sim.fleetCheck(
      agents.map((a) => {
        const b = a.core.store.batches.list().find((x) => x.state === 'acked')!;
        return { terminalId: a.core.config.terminalId, batchId: b.batchId, digest: b.digest! };
      }),
    );
    if (check.wrong.length)
      throw new Error(`not settled exactly once: ${check.wrong.slice(0, 5).join(', ')}`);
    return {
      n,
      totalMs,
      ackMs: ackMs.sort((a, b) => a - b),
      upMs,
      rssMb,
      simCpuMs,
      fleetCpuMs,
    };
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => {})));
    await sim.stop();
  }
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const sizes = opts.quick ? [10, 50] : [100, 1_000];
  // One terminal alone, twice (the first warms the JIT and the TLS session code); the second is
  // the baseline.
  await runFleet(1, opts);
  const alone = await runFleet(1, opts);
  opts.log(`  one terminal alone: ack in ${alone.totalMs.toFixed(1)} ms`);
  const figures: Figure[] = [];
  for (const n of sizes) {
    const f = await runFleet(n, opts);
    const median = f.ackMs[Math.floor(f.ackMs.length / 2)]!;
    opts.log(
      `  ${n} terminals: links up in ${(f.upMs / 1000).toFixed(1)} s; all acked in ${f.totalMs.toFixed(0)} ms, median terminal ${median.toFixed(0)} ms; RSS ${f.rssMb.toFixed(0)} MB`,
    );
    const facts =
      `${n} full agents in one process (RSS ${f.rssMb.toFixed(0)} MB), ${SALES} sales each, one simulator process; ` +
      `median terminal acked at ${median.toFixed(0)} ms, last at ${f.totalMs.toFixed(0)} ms; over that time the simulator used ` +
      `${f.simCpuMs.toFixed(0)} ms of CPU and the agents' process ${f.fleetCpuMs.toFixed(0)} ms (3 durable commits per terminal, one thread)`;
    figures.push(
      {
        name: `fleet of ${n} terminals cutting over at once: batches settled per second`,
        value: perSecond(n, f.totalMs),
        unit: 'batches/s',
        baseline: perSecond(1, alone.totalMs),
        baselineIs: `one terminal alone, same harness (${alone.totalMs.toFixed(1)} ms to its ack)`,
        note: facts,
      },
      {
        name: `fleet of ${n} terminals cutting over at once: worst terminal's time to ack`,
        value: f.totalMs,
        unit: 'ms',
        baseline: alone.totalMs,
        baselineIs: 'one terminal alone, same harness, from its cutover to its ack',
        note: facts,
      },
    );
  }
  return figures;
}
