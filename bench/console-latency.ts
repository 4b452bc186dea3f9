/**
 * Console command latency under settlement load: a technician logged in on the agent's console
 * (agent/runtime.ts createConsole, over a Unix socket typed into by another process) types
 * `status` + CR, and the time until the next prompt is read back is one sample. Under load, samples are taken back to
 * back (with a few ms of think time) for as long as the out-of-balance settlement of the large
 * backlog runs; the baseline is the same loop on the same agent right after that settlement,
 * with nothing else running. p50 and p99 of each.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { createConsole } from '../agent/runtime/runtime.ts';
import { hashPin } from '../agent/console/auth.ts';
import type { Agent } from '../agent/runtime/agent.ts';
import type { Config } from '../agent/config.ts';
import type { Console } from '../agent/console/console.ts';
import { BENCH_TERMINAL, tempDir, type BenchOptions } from './fixtures.ts';
import type { Typed, TypistReply, TypistRequest } from './console-typist.ts';

/** One command: ms to the agent's prompt on the line, and to the typist's read of it. */
interface Sample {
  ms: number;
  readMs: number;
}
import { ensureBacklog } from './journal-builder.ts';
import type { Figure } from './report.ts';
import { settleBacklog } from './settlement.ts';
import { distribution, type Distribution } from './stats.ts';

const TECH = 'bench';
const PIN = '738194';
/** The shell prompt: `BENCH0001 active> `, with locks in brackets when there are any. */
const PROMPT = new RegExp(`${BENCH_TERMINAL} [a-z-]+(?: \\[[^\\]]*\\])?> $`);

/**
 * The technician's side of the line: bench/console-typist.ts in a process of its own, typing
 * into a Unix socket the console serves, so keys reach the agent as kernel I/O, as from a serial
 * port. A sample runs from the typist's write of CR to the agent's write of the prompt that
 * ends the answer (both on the machine-wide monotonic clock): what the agent puts on the line.
 * When the typist, on the same two busy cores, gets to read it is its own scheduling, not the
 * agent's; it is kept for the note.
 */
class Typist {
  private constructor(
    private readonly child: ChildProcess,
    private readonly server: net.Server,
    readonly console: Console,
    /** When the agent wrote each prompt to the line, in ms on the monotonic clock. */
    private readonly prompts: number[],
  ) {}

  /** Stamps each write of the agent that completes a prompt (the bench's socket, not product code). */
  private static stampPrompts(line: net.Socket, prompts: number[]): net.Socket {
    const write = line.write.bind(line) as (chunk: unknown, ...rest: unknown[]) => boolean;
    let screen = '';
    line.write = ((chunk: unknown, ...rest: unknown[]) => {
      screen += String(chunk);
      if (PROMPT.test(screen)) {
        prompts.push(Number(process.hrtime.bigint()) / 1e6);
        screen = '';
      }
      return write(chunk, ...rest);
    }) as net.Socket['write'];
    return line;
  }

  static async login(agent: Agent, config: Config): Promise<Typist> {
    const socketPath = path.join(tempDir('console-line'), 'line.sock');
    const server = net.createServer();
    const served = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const child = fork(path.join(import.meta.dirname, 'console-typist.ts'), [socketPath], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    const prompts: number[] = [];
    const line = Typist.stampPrompts(await served, prompts);
    const console = createConsole(agent, config, line);
    console.start();
    const typist = new Typist(child, server, console, prompts);
    await typist.type(TECH, /PIN: $/);
    await typist.type(PIN, PROMPT);
    return typist;
  }

  private ask<R extends TypistReply['op']>(
    m: TypistRequest,
    op: R,
  ): Promise<Extract<TypistReply, { op: R }>> {
    return new Promise((resolve, reject) => {
      const onMessage = (r: TypistReply) => {
        if (r.op !== op) return;
        this.child.off('exit', onExit);
        this.child.off('message', onMessage);
        resolve(r as Extract<TypistReply, { op: R }>);
      };
      const onExit = (code: number | null) => reject(new Error(`the typist exited (${code})`));
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send(m);
    });
  }

  type(line: string, until: RegExp): Promise<unknown> {
    return this.ask({ op: 'type', line, until: until.source }, 'typed');
  }

  /** `status` typed back to back (2 to 10 ms of thought between) until `done` settles. */
  async whileRunning(done: Promise<unknown>): Promise<Sample[]> {
    this.prompts.length = 0;
    const samples = this.ask({ op: 'loop', line: 'status', until: PROMPT.source }, 'samples');
    await done.catch(() => {});
    this.child.send({ op: 'stop' } satisfies TypistRequest);
    return this.paired((await samples).typed);
  }

  async times(count: number): Promise<Sample[]> {
    this.prompts.length = 0;
    const m = { op: 'loop', line: 'status', until: PROMPT.source, count } as const;
    return this.paired((await this.ask(m, 'samples')).typed);
  }

  /** Each command with the prompt that answered it: one prompt per command, in order. */
  private paired(typed: Typed[]): Sample[] {
    if (this.prompts.length !== typed.length)
      throw new Error(`${typed.length} commands typed, ${this.prompts.length} prompts written`);
    return typed.map((t, i) => {
      const ms = this.prompts[i]! - t.sentMs;
      if (ms < 0 || ms > t.readMs) throw new Error(`prompt ${i} does not answer its command`);
      return { ms, readMs: t.readMs };
    });
  }

  async close(): Promise<void> {
    await this.console.stop();
    this.child.kill();
    this.server.close();
  }
}

interface Sampled {
  loaded: Distribution;
  idle: Distribution;
  /** The same samples as the typist read them, on its own share of the two cores. */
  loadedRead: Distribution;
}

/** `status` typed all through `runs` settlements, then with none running, on the same agents. */
async function sample(opts: BenchOptions, rows: number, runs: number, beside: boolean) {
  const quiet = opts.quick ? 50 : 200;
  const backlog = await ensureBacklog(rows, opts);
  // Cheap scrypt parameters: the login is not what is measured.
  const pinHash = await hashPin(PIN, { N: 1024, r: 8, p: 1 });
  let typist: Typist | undefined;
  const loaded: Sample[] = [];
  const idle: Sample[] = [];
  for (let run = 0; run < runs; run++) {
    try {
      const settled = await settleBacklog(backlog, 'out-of-balance', {
        acquirerElsewhere: !beside,
        extra: { console: { technicians: [{ id: TECH, pinHash }] } },
        before: async ({ agent, config }) => void (typist = await Typist.login(agent, config)),
        during: async (_ctx, settling) =>
          void loaded.push(...(await typist!.whileRunning(settling))),
        after: async () => void idle.push(...(await typist!.times(quiet / runs))),
      });
      opts.log(
        `  ${loaded.length} samples during a ${settled.ms.toFixed(0)} ms settlement${beside ? ' (acquirer beside)' : ''}, ${idle.length} after`,
      );
    } finally {
      await typist?.close();
      typist = undefined;
    }
  }
  return {
    loaded: distribution(loaded.map((x) => x.ms)),
    idle: distribution(idle.map((x) => x.ms)),
    loadedRead: distribution(loaded.map((x) => x.readMs)),
  };
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

function figures({ loaded, idle, loadedRead }: Sampled, rows: number, where: string): Figure[] {
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
    note: `${loaded.n} samples while settling, ${where ? 'the simulator beside the agent on the same 2 cores and disk' : 'the acquirer as if on another machine'}; from the typist's CR to the agent's prompt on the line (as the typist read it: p50 ${loadedRead.p50.toFixed(2)}, p99 ${loadedRead.p99.toFixed(2)}, worst ${loadedRead.max.toFixed(2)} ms)`,
  }));
}
