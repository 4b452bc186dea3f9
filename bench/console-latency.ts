/**
 * Console command latency under settlement load: a technician logged in on the agent's console
 * (agent/runtime.ts createConsole, over an in-memory Duplex) types `status` + CR, and the time
 * until the next prompt is written back is one sample. Under load, samples are taken back to
 * back (with a few ms of think time) for as long as the out-of-balance settlement of the large
 * backlog runs; the baseline is the same loop on the same agent right after that settlement,
 * with nothing else running. p50 and p99 of each.
 */
import { Duplex } from 'node:stream';
import { createConsole } from '../agent/runtime/runtime.ts';
import { hashPin } from '../agent/console/auth.ts';
import type { Agent } from '../agent/runtime/agent.ts';
import type { Config } from '../agent/config.ts';
import type { Console } from '../agent/console/console.ts';
import { BENCH_TERMINAL, type BenchOptions } from './fixtures.ts';
import { ensureBacklog } from './journal-builder.ts';
import type { Figure } from './report.ts';
import { settleBacklog } from './settlement.ts';
import { distribution, msBetween, nowNs, sleep, type Distribution } from './stats.ts';

const TECH = 'bench';
const PIN = '738194';
/** The shell prompt: `BENCH0001 active> `, with locks in brackets when there are any. */
const PROMPT = new RegExp(`${BENCH_TERMINAL} [a-z-]+(?: \\[[^\\]]*\\])?> $`);

/** The technician's side of an in-memory serial line. */
class Keyboard {
  readonly stream: Duplex;
  private screen = '';
  /** When the console last wrote to the screen. */
  private wroteNs = 0n;
  private wake: (() => void) | undefined;

  constructor() {
    this.stream = new Duplex({
      read() {},
      write: (chunk: Buffer, _enc, done) => {
        this.wroteNs = nowNs();
        this.screen += chunk.toString('utf8');
        this.wake?.();
        done();
      },
    });
  }

  /**
   * Types `line` + CR at `at` (a technician's keystrokes reach the serial buffer then, even if
   * the agent's event loop is busy and reads them later) and resolves when the screen ends with
   * `until`. Returns the milliseconds from `at` to the console's write that completed `until`.
   */
  async type(line: string, until: RegExp, at = nowNs()): Promise<{ ms: number; end: bigint }> {
    const wait = Number(at - nowNs()) / 1e6;
    if (wait > 0) await sleep(wait);
    // Bytes arrive as I/O events, never in the same tick as the prompt's write.
    await new Promise((r) => setImmediate(r));
    this.screen = '';
    this.stream.push(line + '\r');
    while (!until.test(this.screen)) {
      if (msBetween(at) > 60_000) throw new Error(`no ${until} after ${line}: ${this.screen}`);
      const timer = setTimeout(() => this.wake?.(), 1000);
      await new Promise<void>((r) => (this.wake = r));
      clearTimeout(timer);
    }
    this.wake = undefined;
    return { ms: Number(this.wroteNs - at) / 1e6, end: this.wroteNs };
  }
}

/** A technician's pause before the next command: 2 to 10 ms. */
const think = (from: bigint): bigint => from + BigInt(Math.round((2 + Math.random() * 8) * 1e6));

async function login(agent: Agent, config: Config): Promise<{ keys: Keyboard; console: Console }> {
  const keys = new Keyboard();
  const console = createConsole(agent, config, keys.stream);
  console.start();
  await keys.type(TECH, /PIN: $/);
  await keys.type(PIN, PROMPT);
  return { keys, console };
}

interface Sampled {
  loaded: Distribution;
  idle: Distribution;
}

/** `status` typed all through `runs` settlements, then with none running, on the same agents. */
async function sample(opts: BenchOptions, rows: number, runs: number, beside: boolean) {
  const quiet = opts.quick ? 50 : 200;
  const backlog = await ensureBacklog(rows, opts);
  // Cheap scrypt parameters: the login is not what is measured.
  const pinHash = await hashPin(PIN, { N: 1024, r: 8, p: 1 });
  let session: { keys: Keyboard; console: Console } | undefined;
  const loaded: number[] = [];
  const idle: number[] = [];
  for (let run = 0; run < runs; run++) {
    try {
      const settled = await settleBacklog(backlog, 'out-of-balance', {
        acquirerElsewhere: !beside,
        extra: { console: { technicians: [{ id: TECH, pinHash }] } },
        before: async ({ agent, config }) => void (session = await login(agent, config)),
        during: async (_ctx, settling) => {
          let done = false;
          const stop = () => void (done = true);
          settling.then(stop, stop);
          // The first command is typed just after the settlement was asked for.
          let at = think(nowNs());
          while (!done) {
            const r = await session!.keys.type('status', PROMPT, at);
            loaded.push(r.ms);
            at = think(r.end);
          }
        },
        after: async () => {
          let at = think(nowNs());
          for (let i = 0; i < quiet / runs; i++) {
            const r = await session!.keys.type('status', PROMPT, at);
            idle.push(r.ms);
            at = think(r.end);
          }
        },
      });
      opts.log(
        `  ${loaded.length} samples during a ${settled.ms.toFixed(0)} ms settlement${beside ? ' (acquirer beside)' : ''}, ${idle.length} after`,
      );
    } finally {
      await session?.console.stop();
      session = undefined;
    }
  }
  return { loaded: distribution(loaded), idle: distribution(idle) };
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const rows = opts.quick ? 10_000 : 100_000;
  // Several settlements: one lasts about 0.4 s now, some 50 samples, too few for a p99.
  const runs = opts.quick ? 1 : 4;
  return [
    ...figures(await sample(opts, rows, runs, false), rows, ''),
    ...figures(await sample(opts, rows, runs, true), rows, ', acquirer beside'),
  ];
}

function figures({ loaded, idle }: Sampled, rows: number, where: string): Figure[] {
  const load = `settling a ${rows / 1000}k-sale backlog out of balance${where}`;
  const baselineIs = (p: string) =>
    `${p} of the same command on the same agent with no settlement running (${idle.n} samples)`;
  return (['p50', 'p99', 'max'] as const).map((p) => ({
    name: `console status ${p === 'max' ? 'worst' : p}, while ${load}`,
    value: loaded[p],
    unit: 'ms',
    baseline: idle[p],
    baselineIs: baselineIs(p === 'max' ? 'worst' : p),
    // Issue 15: p99 under 10 ms and the worst under 50 ms while a settlement runs, with the
    // acquirer where it runs in the field: on another machine. Beside it, no target: a reading.
    target:
      p === 'p50' || where
        ? undefined
        : ({ on: 'value', op: '<', limit: p === 'p99' ? 10 : 50 } as const),
    note: `${loaded.n} samples while settling, ${where ? 'the simulator beside the agent on the same 2 cores and disk' : 'the acquirer as if on another machine'}`,
  }));
}
