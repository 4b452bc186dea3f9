/**
 * Timing and percentiles for the benchmarks. Times come from process.hrtime.bigint(), which is
 * CLOCK_MONOTONIC on Linux: one clock for the whole machine, so a stamp taken in the simulator's
 * child process can be subtracted from one taken in the agent's process.
 */

/** Now, in nanoseconds on the machine-wide monotonic clock. */
export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Milliseconds between two nanosecond stamps (or from `from` until now). */
export function msBetween(from: bigint, to: bigint = nowNs()): number {
  return Number(to - from) / 1e6;
}

/** The p-th percentile (0..100) of samples, nearest-rank on a sorted copy. */
function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** A latency distribution in milliseconds. */
export interface Distribution {
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function distribution(samples: readonly number[]): Distribution {
  const sum = samples.reduce((a, b) => a + b, 0);
  return {
    n: samples.length,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    max: samples.length ? Math.max(...samples) : Number.NaN,
    mean: samples.length ? sum / samples.length : Number.NaN,
  };
}

/** Rate per second of `count` things done in `ms` milliseconds. */
export function perSecond(count: number, ms: number): number {
  return ms > 0 ? (count * 1000) / ms : Number.NaN;
}

/**
 * Runs `step` (which does `batch` units of work) until `ms` of wall time has passed and
 * returns units per second. Time is checked between steps only.
 */
export async function rateFor(
  ms: number,
  batch: number,
  step: () => void | Promise<void>,
): Promise<{ rate: number; units: number; ms: number }> {
  const start = nowNs();
  let units = 0;
  while (msBetween(start) < ms) {
    await step();
    units += batch;
  }
  const took = msBetween(start);
  return { rate: perSecond(units, took), units, ms: took };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The longest job a serial runner ran while watched: what a command queued behind it waits. */
export interface JobWatch {
  /** Longest job, wall and on-CPU (this process), and its name. */
  longest(): { name: string; wallMs: number; cpuMs: number; jobs: number };
  stop(): void;
}

/**
 * Times every job of a runner (bench-only instrumentation: wraps its `run`). The on-CPU time
 * of a job is what it costs on a quiet machine; the wall time also holds other processes' load.
 */
export function watchJobs(runner: {
  run: <T>(name: string, job: () => Promise<T> | T) => Promise<T>;
}): JobWatch {
  const original = runner.run.bind(runner);
  let worst = { name: '', wallMs: 0, cpuMs: 0 };
  let jobs = 0;
  runner.run = <T>(name: string, job: () => Promise<T> | T) =>
    original(name, () => {
      const t0 = nowNs();
      const c0 = process.cpuUsage();
      const done = () => {
        const wallMs = msBetween(t0);
        const c = process.cpuUsage(c0);
        jobs++;
        if (wallMs > worst.wallMs) worst = { name, wallMs, cpuMs: (c.user + c.system) / 1000 };
      };
      const r = job();
      if (r instanceof Promise) return r.finally(done);
      done();
      return r;
    });
  return {
    longest: () => ({ ...worst, jobs }),
    stop: () => void (runner.run = original),
  };
}
