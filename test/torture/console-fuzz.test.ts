/**
 * Garbage against the console: random bytes, control characters, escape sequences,
 * over-long lines, invalid UTF-8 and near-miss commands, from a seeded PRNG so every
 * failure replays. The console must neither crash nor hang, must run exactly the
 * well-formed commands it was sent (logged in) or nothing at all (before login), and
 * must never pass an escape sequence through to the technician's screen.
 *
 * CONSOLE_FUZZ_LINES sets the number of garbage lines (default 3000),
 * CONSOLE_FUZZ_SEED the seed.
 */

import { Duplex, PassThrough } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../base/clock.ts';
import { AgentError } from '../../base/errors.ts';
import { hashPin, LoginThrottle } from '../../agent/console/auth.ts';
import { CommandRegistry } from '../../agent/console/commands.ts';
import { Console } from '../../agent/console/console.ts';
import { seededRandom } from '../../simulator/card-sim.ts';

const LINES = Number(process.env.CONSOLE_FUZZ_LINES ?? 3000);
const SEED = Number(process.env.CONSOLE_FUZZ_SEED ?? 0x5eed1e55);
const BATCH = 25;
const MAX_LINE = 256;
const PIN = '602817';
let pinHash = '';

beforeAll(async () => {
  pinHash = await hashPin(PIN, { N: 1024, r: 8, p: 1 });
});

/** A seeded generator with the helpers the fuzzer needs, reproducible from a seed. */
function prng(seed: number): {
  next(): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
} {
  const next = seededRandom(seed);
  const int = (n: number): number => Math.floor(next() * n);
  return { next, int, pick: (xs) => xs[int(xs.length)] as (typeof xs)[number] };
}

type Rng = ReturnType<typeof prng>;

const escapes = [
  '\x1b[A',
  '\x1b[1;5D',
  '\x1b[200~',
  '\x1b[?25l',
  '\x1bOP',
  '\x1b]0;title\x07',
  '\x1bP1$r',
  '\x1b',
  '\x1b[',
  '\x1b]',
  '\x1b\\',
  '\x1bc',
  '\x1b(B',
  '\x9b2J',
];
const invalidUtf8 = [
  [0x80],
  [0xbf],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5],
  [0xfe],
  [0xff],
  [0xe4, 0xb8],
  [0xf0, 0x9f, 0x98],
];
/** Lines that look like the state-changing command but must be refused. */
const nearMisses = [
  'mutat 1',
  'mutate',
  'mutate 1 2',
  'mutate --json 1',
  'mutate --force 1',
  'mutate "1',
  "mutate '1",
  'mutate 1\\',
  'mutate 1\x03',
  'mutate 1\x15',
  'mutate 1\x17\x17\x17',
  `mutate ${'1'.repeat(MAX_LINE)}`,
  'mutate=1',
  '"mutate 1',
];
const terminators = ['\r', '\n', '\r\n', '\n\r', ''];

/** One garbage line; it may hold several line ends of its own, or none. */
function garbage(rng: Rng): Buffer {
  const parts: number[] = [];
  const printable = (): number => 0x20 + rng.int(0x5f);
  switch (rng.int(7)) {
    case 0: // uniformly random bytes
      for (let i = rng.int(120); i > 0; i--) parts.push(rng.int(256));
      break;
    case 1: // control-heavy
      for (let i = rng.int(60); i > 0; i--)
        parts.push(rng.next() < 0.6 ? rng.pick([...Array(32).keys(), 0x7f]) : printable());
      break;
    case 2: // escape sequences between words
      for (let i = rng.int(12); i > 0; i--) {
        parts.push(...Buffer.from(rng.pick(escapes), 'latin1'));
        for (let j = rng.int(6); j > 0; j--) parts.push(printable());
      }
      break;
    case 3: // very long
      for (let i = MAX_LINE + rng.int(5000); i > 0; i--)
        parts.push(rng.next() < 0.02 ? rng.int(256) : printable());
      break;
    case 4: // invalid UTF-8 mixed with valid multi-byte text
      for (let i = rng.int(20); i > 0; i--) {
        parts.push(
          ...(rng.next() < 0.5
            ? rng.pick(invalidUtf8)
            : Buffer.from(rng.pick(['中', 'é', '😀', 'x']))),
        );
      }
      break;
    case 5:
      // Killed before and ended after, so neighbouring garbage cannot complete it into a
      // valid line (`"` + `"mutate 1` is `""mutate 1`, which is `mutate 1`, as in a shell).
      return Buffer.from(`\x15${rng.pick(nearMisses)}\r`, 'utf8');
    default: // printable words, quotes and flags: mostly unknown commands
      for (let i = rng.int(80); i > 0; i--)
        parts.push(rng.pick([printable(), 0x22, 0x27, 0x5c, 0x2d, 0x20]));
  }
  return Buffer.concat([Buffer.from(parts), Buffer.from(rng.pick(terminators))]);
}

/** An in-memory terminal: what the technician types and what the console wrote back. */
function memoryTerminal(): {
  stream: Duplex;
  type(b: Buffer | string): void;
  all(): Buffer;
  waitFor(text: string, timeoutMs: number): Promise<void>;
} {
  const toConsole = new PassThrough();
  const fromConsole = new PassThrough();
  const chunks: Buffer[] = [];
  let since = Buffer.alloc(0);
  let waiter: { text: string; resolve(): void } | undefined;
  fromConsole.on('data', (c: Buffer) => {
    chunks.push(c);
    since = Buffer.concat([since, c]);
    if (waiter && since.includes(waiter.text)) {
      since = since.subarray(since.indexOf(waiter.text) + Buffer.byteLength(waiter.text));
      const w = waiter;
      waiter = undefined;
      w.resolve();
    }
  });
  return {
    stream: Duplex.from({ readable: toConsole, writable: fromConsole }),
    type: (b) => void toConsole.write(b),
    all: () => Buffer.concat(chunks),
    waitFor(text, timeoutMs) {
      if (since.includes(text)) {
        since = since.subarray(since.indexOf(text) + Buffer.byteLength(text));
        return Promise.resolve();
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`console hung: no ${JSON.stringify(text)} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiter = {
          text,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      });
    },
  };
}

function setup(): {
  term: ReturnType<typeof memoryTerminal>;
  console: Console;
  mutations: number[];
  pings: number[];
  audits: Array<{ event: string; detail: Record<string, unknown> }>;
  clock: ManualClock;
} {
  const term = memoryTerminal();
  const clock = new ManualClock();
  const mutations: number[] = [];
  const pings: number[] = [];
  const audits: Array<{ event: string; detail: Record<string, unknown> }> = [];
  const commands = new CommandRegistry()
    .register({
      name: 'mutate',
      summary: 'the state-changing test command',
      usage: 'mutate N',
      minArgs: 1,
      maxArgs: 1,
      run(ctx) {
        // Garbage can complete a near-miss into `mutate <word>`; a real command refuses that.
        if (!/^\d+$/.test(ctx.args[0] ?? ''))
          throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'N must be a number');
        mutations.push(Number(ctx.args[0]));
        return `mutated ${ctx.args[0]}`;
      },
    })
    .register({
      name: 'ping',
      summary: 'sync marker',
      usage: 'ping N',
      readOnly: true,
      run(ctx) {
        pings.push(Number(ctx.args[0]));
        return `pong ${ctx.args[0]}`;
      },
    });
  const console = new Console({
    stream: term.stream,
    commands,
    auth: {
      technicians: [{ id: 'T0001', pinHash }],
      // Generous limits so that garbage keeps reaching PIN verification instead of a lock-out.
      throttle: new LoginThrottle({ clock, policy: { maxFailures: 1e9, lockoutAfter: 1e9 } }),
    },
    clock,
    audit: (event, detail) => audits.push({ event, detail }),
    banner: 'fuzz',
    prompt: () => 'T0001> ',
    idleTimeoutMs: 0,
    maxLineBytes: MAX_LINE,
  });
  return { term, console, mutations, pings, audits, clock };
}

/** What a garbage-fed console may write: text, CR, LF, BS (erase) and BEL (line full); never ESC. */
function expectSafeOutput(out: Buffer): void {
  const bad = [...out].findIndex((b) => b < 0x20 && ![0x0d, 0x0a, 0x08, 0x07].includes(b));
  expect(bad, `control byte 0x${out[bad]?.toString(16)} at ${bad}`).toBe(-1);
  expect(out.includes(0x7f)).toBe(false);
  expect(Buffer.from(out.toString('utf8'), 'utf8').equals(out), 'output is valid UTF-8').toBe(true);
  expect(out.toString('utf8')).not.toMatch(/[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/);
}

describe(`console fuzz (seed ${SEED}, ${LINES} lines)`, () => {
  it('logged in: runs exactly the well-formed commands, stays up, never passes escapes through', async () => {
    const rng = prng(SEED);
    const { term, console, mutations, pings, audits } = setup();
    console.start();
    await term.waitFor('login: ', 2000);
    term.type('T0001\r');
    await term.waitFor('PIN: ', 2000);
    term.type(`${PIN}\r`);
    await term.waitFor('T0001> ', 2000);

    const started = Date.now();
    const expected: number[] = [];
    let sent = 0;
    for (let batch = 0; sent < LINES; batch++) {
      for (let i = 0; i < BATCH && sent < LINES; i++, sent++) {
        term.type(garbage(rng));
        if (rng.next() < 0.1) {
          // Ctrl-U first: whatever the garbage left half-typed is killed, as a technician would.
          term.type(`\x15mutate ${expected.length}\r`);
          expected.push(expected.length);
        }
      }
      term.type(`\x15ping ${batch}\r`);
      await term.waitFor(`pong ${batch}\r\n`, 10_000);
    }
    const elapsed = Date.now() - started;

    // An up-arrow in the garbage can recall an earlier line, and Enter then runs it again, as
    // at any shell: such a re-run repeats a number already seen. Apart from those, exactly the
    // well-formed commands ran, in order.
    const firstRuns = (xs: number[]) => xs.filter((x, i) => xs.indexOf(x) === i);
    expect(firstRuns(mutations)).toEqual(expected);
    expect(firstRuns(pings)).toEqual([...firstRuns(pings).keys()]);
    expect(console.technician).toBe('T0001');
    expect(audits.some((a) => a.event === 'logout')).toBe(false);
    expect(audits.filter((a) => a.event === 'command' && a.detail.outcome === 'error')).toEqual([]);
    expectSafeOutput(term.all());
    expect(elapsed).toBeLessThan(Math.max(30_000, LINES * 20));
    await console.stop();
  }, 300_000);

  it('before login: nothing is ever executed and the PIN is never audited', async () => {
    const rng = prng(SEED ^ 0xa5a5a5a5);
    const { term, console, mutations, pings, audits, clock } = setup();
    console.start();
    await term.waitFor('login: ', 2000);
    let sent = 0;
    for (let batch = 0; sent < LINES; batch++) {
      for (let i = 0; i < BATCH && sent < LINES; i++, sent++) {
        const r = rng.next();
        // Near-miss logins: the right id with a wrong or cancelled PIN, or the PIN typed as
        // the id. Each starts with Ctrl-C, or the garbage before could turn `PIN\r` into
        // a correct answer at a "PIN:" prompt.
        if (r < 0.1) term.type('\x03T0001\r');
        else if (r < 0.12) term.type(`\x03T0001\r${PIN}\x03`);
        else if (r < 0.14) term.type(`\x03T0001\r${PIN}0\r`);
        else if (r < 0.16) term.type(`\x03${PIN}\r`);
        else if (r < 0.2) term.type('mutate 1\r');
        term.type(garbage(rng));
        clock.advance(rng.int(5000));
      }
      // Cancel whatever is pending, then a unique id: its echo proves the batch was read.
      term.type(`\x15\x03sync-${batch}\r\x03`);
      await term.waitFor(`sync-${batch}\r\n`, 10_000);
    }
    expect(mutations).toEqual([]);
    expect(pings).toEqual([]);
    expect(console.technician).toBeUndefined();
    expect(
      audits.filter(
        (a) => !['login-failed', 'login-refused', 'login-locked-out'].includes(a.event),
      ),
    ).toEqual([]);
    expect(audits.length).toBeGreaterThan(LINES / 10);
    expect(JSON.stringify(audits)).not.toContain(PIN);
    expectSafeOutput(term.all());
    await console.stop();
  }, 300_000);

  it('does the same thing however the bytes are chunked', async () => {
    const rng = prng(SEED + 1);
    const lines: Buffer[] = [];
    for (let i = 0; i < Math.min(LINES, 400); i++) {
      lines.push(garbage(rng));
      if (i % 7 === 0) lines.push(Buffer.from(`\x15mutate ${i}\r`));
    }
    const stream = Buffer.concat([
      Buffer.from(`T0001\r${PIN}\r`),
      ...lines,
      Buffer.from('\x15ping 0\r'),
    ]);
    const outputs: string[] = [];
    for (const chunking of ['whole', 'random', 'bytes'] as const) {
      const { term, console } = setup();
      console.start();
      let at = 0;
      while (at < stream.length) {
        const n = chunking === 'whole' ? stream.length : chunking === 'bytes' ? 1 : 1 + rng.int(64);
        term.type(stream.subarray(at, at + n));
        at += n;
      }
      await term.waitFor('pong 0\r\n', 30_000);
      outputs.push(term.all().toString('latin1'));
      await console.stop();
    }
    expect(outputs[1]).toBe(outputs[0]);
    expect(outputs[2]).toBe(outputs[0]);
  }, 300_000);
});
