/**
 * The console over a mocked serial port (@serialport/binding-mock), the way
 * zigbee-herdsman tests its adapters: bytes go in with `emitData`, what the console
 * wrote is read from the port's recording, real timers throughout.
 */

import { createRequire } from 'node:module';
import { PassThrough } from 'node:stream';
import type { MockBindingInterface, MockPortBinding } from '@serialport/binding-mock' with {
  'resolution-mode': 'require',
};
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SerialPort } from 'serialport';
import { ManualClock } from '../../base/clock.ts';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { createLogger } from '../../base/log.ts';
import {
  hashPin,
  LoginThrottle,
  MemoryThrottleStore,
  parsePinHash,
  validateTechnicians,
  verifyPin,
  type ThrottleStore,
} from '../../agent/console/auth.ts';
import { parseArgs, splitCommandLine } from '../../agent/console/command-line.ts';
import { CommandRegistry } from '../../agent/console/commands.ts';
import { Console, type ConsoleOptions } from '../../agent/console/console.ts';
import { openSerialConsoleStream, stdioStream } from '../../agent/console/port.ts';
import { formatMinor, table } from '../../agent/console/table.ts';

// The package's "exports" hide its types from ESM resolution, so it is loaded the
// CommonJS way, which is also how serialport's own SerialPortMock loads it.
const { MockBinding } = createRequire(import.meta.url)('@serialport/binding-mock') as {
  MockBinding: MockBindingInterface;
};

const PATH = '/dev/ttyMOCK';
const PIN = '738194';
const FAST = { N: 1024, r: 8, p: 1 };
let pinHash = '';

beforeAll(async () => {
  pinHash = await hashPin(PIN, FAST);
});

interface Harness {
  console: Console;
  port: SerialPort;
  mock: MockPortBinding;
  clock: ManualClock;
  store: ThrottleStore;
  audits: Array<{ event: string; detail: Record<string, unknown> }>;
  logs: string[];
  state: { mutations: number[]; aborted: boolean };
  send(data: string | Buffer): void;
  /** Waits until the output since the last match matches `pattern`; returns that output. */
  expectOutput(pattern: string | RegExp, timeoutMs?: number): Promise<string>;
  /** All output since the last match, after letting the console settle. */
  rest(settleMs?: number): Promise<string>;
  login(): Promise<void>;
}

const open: Harness[] = [];

afterEach(async () => {
  for (const h of open.splice(0)) {
    await h.console.stop();
    if (h.port.isOpen) await new Promise((resolve) => h.port.close(resolve));
  }
  MockBinding.reset();
});

function testCommands(state: Harness['state']): CommandRegistry {
  return new CommandRegistry()
    .register({
      name: 'mutate',
      summary: 'change test state',
      usage: 'mutate N',
      minArgs: 1,
      maxArgs: 1,
      run(ctx) {
        state.mutations.push(Number(ctx.args[0]));
        return `mutated ${ctx.args[0]}`;
      },
    })
    .register({
      name: 'stats',
      summary: 'show test state',
      usage: 'stats [--json]',
      readOnly: true,
      run: () => ({ mutations: state.mutations.length, last: state.mutations.at(-1) ?? null }),
    })
    .register({
      name: 'txns',
      summary: 'a table',
      usage: 'txns [--json]',
      readOnly: true,
      run: () =>
        table(
          ['id', 'merchant', 'amount'],
          [
            ['t1', 'Shop', formatMinor(1234)],
            ['t2', 'Noodles', formatMinor(-5)],
          ],
        ),
    })
    .register({
      name: 'echo',
      summary: 'print the parsed arguments',
      usage: 'echo [--tag T] [--loud] ARGS...',
      readOnly: true,
      flags: { tag: 'string', loud: 'boolean' },
      run: (ctx) => JSON.stringify({ args: ctx.args, flags: ctx.flags }),
    })
    .register({
      name: 'boom',
      summary: 'throws a plain error',
      usage: 'boom',
      run() {
        throw new Error('kaput');
      },
    })
    .register({
      name: 'refuse',
      summary: 'throws an AgentError',
      usage: 'refuse',
      run() {
        throw new AgentError('LIFECYCLE_LOCKED', 'the terminal is locked by risk');
      },
    })
    .register({
      name: 'slow',
      summary: 'takes a while, stops on Ctrl-C',
      usage: 'slow MS',
      readOnly: true,
      async run(ctx) {
        ctx.print('slow: started');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Number(ctx.args[0] ?? 100));
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            state.aborted = true;
            resolve();
          });
        });
        return ctx.signal.aborted ? 'slow: aborted' : 'slow: done';
      },
    });
}

async function startConsole(
  overrides: Partial<ConsoleOptions> & { store?: ThrottleStore; clock?: ManualClock } = {},
): Promise<Harness> {
  MockBinding.createPort(PATH, { echo: false, record: true });
  const port = await openSerialConsoleStream({ path: PATH, binding: MockBinding });
  const mock = port.port as unknown as MockPortBinding;
  const clock = overrides.clock ?? new ManualClock();
  const store = overrides.store ?? new MemoryThrottleStore();
  const audits: Harness['audits'] = [];
  const logs: string[] = [];
  const state = { mutations: [] as number[], aborted: false };
  const console = new Console({
    stream: port,
    commands: testCommands(state),
    auth: {
      technicians: [{ id: 'T0001', pinHash }],
      throttle: new LoginThrottle({ clock, store }),
    },
    clock,
    logger: createLogger({ level: 'debug' }, { write: (s: string) => void logs.push(s) }),
    audit: (event, detail) => audits.push({ event, detail }),
    banner: 'ACME POS technician console\nterminal T0001',
    prompt: () => 'T0001 active> ',
    idleTimeoutMs: 60_000,
    maxLineBytes: 64,
    ...overrides,
  });
  let mark = 0;
  const text = (): string => mock.recording.subarray(mark).toString('utf8');
  const h: Harness = {
    console,
    port,
    mock,
    clock,
    store,
    audits,
    logs,
    state,
    send: (data) => mock.emitData(data),
    async expectOutput(pattern, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const out = text();
        const m =
          typeof pattern === 'string' ? out.indexOf(pattern) : (out.match(pattern)?.index ?? -1);
        if (m >= 0) {
          const len =
            typeof pattern === 'string' ? pattern.length : (out.match(pattern)?.[0].length ?? 0);
          const seen = out.slice(0, m + len);
          mark += Buffer.byteLength(seen);
          return seen;
        }
        if (Date.now() > deadline)
          throw new Error(
            `timed out waiting for ${String(pattern)}; output was ${JSON.stringify(out)}`,
          );
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async rest(settleMs = 100) {
      await new Promise((r) => setTimeout(r, settleMs));
      const out = text();
      mark = mock.recording.length;
      return out;
    },
    async login() {
      h.send('T0001\r');
      await h.expectOutput('PIN: ');
      h.send(`${PIN}\r`);
      await h.expectOutput('T0001 active> ');
    },
  };
  open.push(h);
  console.start();
  return h;
}

describe('before login', () => {
  it('shows the banner and the login prompt, with CRLF line ends', async () => {
    const h = await startConsole();
    const out = await h.expectOutput('login: ');
    expect(out).toBe('ACME POS technician console\r\nterminal T0001\r\nlogin: ');
  });

  it('says why it refuses a line at login, runs nothing, and counts no failed login', async () => {
    const h = await startConsole();
    await h.expectOutput('login: ');
    h.send('mutate 1\r');
    expect(await h.expectOutput('login: ')).toBe(
      "mutate 1\r\nrefused (CONSOLE_LOGIN_REQUIRED): not logged in: 'mutate' is a command. Type your technician id, then your PIN\r\nlogin: ",
    );
    h.send('stats --json\r\x03\x1b[A\r\n\r');
    expect(await h.rest()).toBe(
      "stats --json\r\nrefused (CONSOLE_LOGIN_REQUIRED): not logged in: 'stats' is a command. Type your technician id, then your PIN\r\nlogin: ^C\r\nlogin: \r\nlogin: \r\nlogin: ",
    );
    h.send('who am i?\r');
    expect(await h.expectOutput('login: ')).toBe(
      'who am i?\r\nrefused (CONSOLE_LOGIN_REQUIRED): that is not a technician id (letters, digits, dot, dash, underscore); type your id, then your PIN\r\nlogin: ',
    );
    // A command name is not taken as an id: no PIN prompt, and so no failure to count.
    h.send('help\r');
    expect(await h.expectOutput('login: ')).toBe(
      "help\r\nrefused (CONSOLE_LOGIN_REQUIRED): not logged in: 'help' is a command. Type your technician id, then your PIN\r\nlogin: ",
    );
    expect(h.state.mutations).toEqual([]);
    expect(h.audits).toEqual([]);
    // An unknown id that could be one still gets the PIN prompt (ids are not revealed).
    h.send('nobody\r');
    await h.expectOutput('PIN: ');
    h.send('whoami\r');
    expect(await h.expectOutput('login: ')).toBe(
      '******\r\nrefused (CONSOLE_LOGIN_FAILED): wrong technician id or PIN\r\nlogin: ',
    );
    expect(h.audits).toEqual([
      { event: 'login-failed', detail: { technician: '(unknown)', failures: 1 } },
    ]);
  });

  it('masks the PIN and never echoes, logs or audits it', async () => {
    const h = await startConsole();
    await h.login();
    const all = h.mock.recording.toString('utf8');
    expect(all).toContain('PIN: ******\r\n');
    expect(all).not.toContain(PIN);
    expect(h.logs.join('\n')).not.toContain(PIN);
    expect(JSON.stringify(h.audits)).not.toContain(PIN);
    expect(h.audits).toEqual([{ event: 'login', detail: { technician: 'T0001' } }]);
  });

  it('accepts the technician id in any case and Ctrl-C at the PIN prompt goes back to login', async () => {
    const h = await startConsole();
    await h.expectOutput('login: ');
    h.send('t0001\r');
    await h.expectOutput('PIN: ');
    h.send('12\x03');
    expect(await h.expectOutput('login: ')).toBe('**^C\r\nlogin: ');
    await h.login();
    expect(h.console.technician).toBe('T0001');
  });
});

describe('login throttle', () => {
  async function failOnce(h: Harness): Promise<string> {
    h.send('T0001\r');
    await h.expectOutput('PIN: ');
    h.send('0000\r');
    return h.expectOutput('login: ');
  }

  it('delays after three failures, then locks out, and lets the right PIN in only after the lock-out', async () => {
    const h = await startConsole();
    await h.expectOutput('login: ');
    expect(await failOnce(h)).not.toContain('try again');
    expect(await failOnce(h)).not.toContain('try again');
    expect(await failOnce(h)).toContain(
      'refused (CONSOLE_LOGIN_THROTTLED): a login failed just now; try again in 1 s',
    );

    // While delayed, even the right technician gets no PIN prompt.
    h.send('T0001\r');
    expect(await h.expectOutput('login: ')).toBe(
      'T0001\r\nrefused (CONSOLE_LOGIN_THROTTLED): a login failed just now; try again in 1 s\r\nlogin: ',
    );
    h.clock.advance(1000);
    expect(await failOnce(h)).toContain('try again in 2 s');
    h.clock.advance(2000);
    expect(await failOnce(h)).toContain(
      'refused (CONSOLE_LOCKED_OUT): too many failed logins; try again in 15 min',
    );

    h.clock.advance(14 * 60_000);
    h.send('T0001\r');
    expect(await h.expectOutput('login: ')).toContain('CONSOLE_LOCKED_OUT');
    h.clock.advance(60_000);
    await h.login();

    const events = h.audits.map((a) => a.event);
    expect(events.filter((e) => e === 'login-failed')).toHaveLength(5);
    expect(events.filter((e) => e === 'login-locked-out')).toHaveLength(1);
    expect(events.filter((e) => e === 'login-refused')).toHaveLength(2);
    expect(events.at(-1)).toBe('login');
    expect(h.audits.find((a) => a.event === 'login-locked-out')?.detail).toEqual({
      technician: 'T0001',
      failures: 5,
      lockoutMs: 15 * 60_000,
    });
  });

  it('keeps the lock-out for a new session on the same console', async () => {
    const store = new MemoryThrottleStore();
    const clock = new ManualClock();
    const first = await startConsole({ store, clock });
    await first.expectOutput('login: ');
    for (let i = 0; i < 5; i++) {
      clock.advance(60_000);
      await failOnce(first);
    }
    await first.console.stop();
    await new Promise((resolve) => first.port.close(resolve));
    MockBinding.reset();

    const second = await startConsole({ store, clock });
    await second.expectOutput('login: ');
    second.send('T0001\r');
    expect(await second.expectOutput('login: ')).toContain('refused (CONSOLE_LOCKED_OUT)');
  });
});

describe('logged in', () => {
  it('lists commands with help, aligned, and explains one', async () => {
    const h = await startConsole();
    await h.login();
    h.send('help\r');
    const out = await h.expectOutput('T0001 active> ');
    const lines = out.split('\r\n');
    const mutate = lines.find((l) => l.startsWith('mutate'));
    const whoami = lines.find((l) => l.startsWith('whoami'));
    expect(mutate).toBe('mutate  change test state');
    expect(whoami).toBe('whoami  show who is logged in');
    h.send('help mutate\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'usage: mutate N\r\nchange test state\r\n',
    );
    h.send('mutate --help\r');
    expect(await h.expectOutput('T0001 active> ')).toContain('usage: mutate N');
    expect(h.state.mutations).toEqual([]);
  });

  it('refuses an unknown command in the agreed words', async () => {
    const h = await startConsole();
    await h.login();
    h.send('xyz 1 2\r');
    expect(await h.expectOutput('T0001 active> ')).toBe(
      "xyz 1 2\r\nrefused (CONSOLE_UNKNOWN_COMMAND): unknown command 'xyz'; type help\r\nT0001 active> ",
    );
    expect(h.audits.at(-1)).toEqual({
      event: 'command',
      // An unknown word is not kept: it could be a PIN typed at the wrong prompt.
      detail: {
        technician: 'T0001',
        command: '(unknown)',
        line: '(not a command)',
        outcome: 'refused',
        code: 'CONSOLE_UNKNOWN_COMMAND',
        result: 'refused (CONSOLE_UNKNOWN_COMMAND)',
      },
    });
  });

  it('runs a registered command, prints --json for read-only ones and refuses it for the others', async () => {
    const h = await startConsole();
    await h.login();
    h.send('mutate 7\r');
    expect(await h.expectOutput('T0001 active> ')).toBe('mutate 7\r\nmutated 7\r\nT0001 active> ');
    h.send('stats --json\r');
    expect(await h.expectOutput('T0001 active> ')).toBe(
      'stats --json\r\n{"mutations":1,"last":7}\r\nT0001 active> ',
    );
    h.send('stats\r');
    expect(await h.expectOutput('T0001 active> ')).toBe(
      'stats\r\nmutations: 1\r\nlast:      7\r\nT0001 active> ',
    );
    h.send('txns\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      't1  Shop       12.34\r\nt2  Noodles    -0.05\r\n',
    );
    h.send('txns --json\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      '[{"id":"t1","merchant":"Shop","amount":"12.34"},',
    );
    h.send('mutate 8 --json\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'refused (CONSOLE_BAD_ARGUMENTS): --json is only for read-only commands, and mutate is not one',
    );
    h.send('mutate\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'refused (CONSOLE_BAD_ARGUMENTS): usage: mutate N',
    );
    h.send('mutate 1 2\r');
    h.send('mutate --force 9\r');
    expect(await h.expectOutput(/unknown flag --force\r\nT0001 active> $/)).toContain(
      'usage: mutate N',
    );
    expect(h.state.mutations).toEqual([7]);
  });

  it('journals what may change something before its prompt, what only read just after, in the order typed', async () => {
    const seen: string[] = [];
    const h = await startConsole({
      audit: (event, detail) => void seen.push(`${event} ${String(detail.command ?? '')}`.trim()),
    });
    await h.login();
    const write = h.port.write.bind(h.port) as (chunk: unknown) => boolean;
    h.port.write = ((chunk: unknown) => {
      if (String(chunk).endsWith('T0001 active> ')) seen.push('prompt');
      return write(chunk);
    }) as typeof h.port.write;
    seen.length = 0;
    for (const line of ['stats', 'mutate 3', 'refuse']) {
      h.send(`${line}\r`);
      await h.expectOutput('T0001 active> ');
    }
    // Typed ahead: the read-only one waits for no disk, and is still journaled before the next.
    h.send('echo x\rmutate 4\r');
    await h.expectOutput(/active> [^]*active> $/);
    h.send('stats\r');
    await h.expectOutput('T0001 active> ');
    // Stopping the console writes what still waits (here, with its logout after it).
    await h.console.stop();
    expect(seen).toEqual([
      'prompt',
      'command stats',
      'command mutate',
      'prompt',
      'command refuse',
      'prompt',
      'prompt',
      'command echo',
      'command mutate',
      'prompt',
      'prompt',
      'command stats',
      'logout',
    ]);
  });

  it('parses quotes and flags, and refuses unbalanced quotes', async () => {
    const h = await startConsole();
    await h.login();
    h.send(`echo "a b" 'c "d"' --tag=x --loud -- --not-a-flag\r`);
    expect(await h.expectOutput('T0001 active> ')).toContain(
      '{"args":["a b","c \\"d\\"","--not-a-flag"],"flags":{"tag":"x","loud":true}}',
    );
    h.send('echo "open\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'refused (CONSOLE_BAD_ARGUMENTS): unbalanced double quote',
    );
  });

  it('prints AgentErrors as refusals and other failures as internal errors, and keeps going', async () => {
    const h = await startConsole();
    await h.login();
    h.send('refuse\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'refused (LIFECYCLE_LOCKED): the terminal is locked by risk\r\n',
    );
    h.send('boom\r');
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'error (INTERNAL): kaput; see the log\r\n',
    );
    expect(h.logs.some((l) => l.includes('kaput') && l.includes('"command":"boom"'))).toBe(true);
    h.send('whoami --json\r');
    expect(await h.expectOutput('T0001 active> ')).toMatch(
      /\{"technician":"T0001","loggedInAt":"2026-01-15T10:00:00.000Z"\}/,
    );
  });

  it('runs one command at a time: a line typed during a command waits for it', async () => {
    const h = await startConsole();
    await h.login();
    h.send('slow 150\r');
    await h.expectOutput('slow: started');
    h.send('mutate 3\r');
    const out = await h.expectOutput(/mutated 3\r\nT0001 active> /);
    expect(out).toBe('\r\nslow: done\r\nT0001 active> mutate 3\r\nmutated 3\r\nT0001 active> ');
  });

  it('aborts a running command on Ctrl-C and discards what was typed ahead', async () => {
    const h = await startConsole();
    await h.login();
    h.send('slow 5000\r');
    await h.expectOutput('slow: started');
    h.send('mutate 4');
    h.send(Buffer.from([0x03]));
    expect(await h.expectOutput(/\^C\r\nT0001 active> /)).toBe(
      '\r\nslow: aborted\r\nT0001 active> mutate 4^C\r\nT0001 active> ',
    );
    expect(h.state.aborted).toBe(true);
    expect(h.state.mutations).toEqual([]);
  });

  it('logs out on logout, and then runs nothing', async () => {
    const h = await startConsole();
    await h.login();
    h.send('logout\r\n');
    expect(await h.expectOutput('login: ')).toBe(
      'logout\r\nlogged out\r\nACME POS technician console\r\nterminal T0001\r\nlogin: ',
    );
    h.send('mutate 1\r');
    await h.expectOutput('login: ');
    expect(h.state.mutations).toEqual([]);
    expect(h.audits.at(-1)).toEqual({
      event: 'logout',
      detail: { technician: 'T0001', reason: 'command' },
    });
  });

  it('keeps order and loses nothing when input floods in during a command', async () => {
    const h = await startConsole();
    await h.login();
    h.send('slow 100\r');
    await h.expectOutput('slow: started');
    const expected: number[] = [];
    let flood = '';
    for (let i = 0; i < 1500; i++) {
      flood += `${'x'.repeat(i % 7 === 0 ? 200 : 40)}\r`;
      if (i % 10 === 0) {
        flood += `mutate ${i}\r`;
        expected.push(i);
      }
    }
    expect(flood.length).toBeGreaterThan(64 * 1024);
    h.send(flood);
    h.send('stats --json\r');
    await h.expectOutput(`{"mutations":${expected.length},"last":${expected.at(-1)}}`, 20_000);
    expect(h.state.mutations).toEqual(expected);
  });

  it('logs out by itself after the idle timeout', async () => {
    const h = await startConsole({ idleTimeoutMs: 200 });
    await h.login();
    h.send('mut');
    const out = await h.expectOutput('login: ', 2000);
    expect(out).toBe(
      'mut\r\nno input for 1 s; logged out\r\nACME POS technician console\r\nterminal T0001\r\nlogin: ',
    );
    expect(h.audits.at(-1)).toEqual({
      event: 'logout',
      detail: { technician: 'T0001', reason: 'idle' },
    });
    // The half-typed line died with the session.
    h.send('ate 1\r');
    await h.expectOutput('login: ');
    expect(h.state.mutations).toEqual([]);
  });
});

describe('line editing over the wire', () => {
  it('handles backspace, DEL, arrows, Ctrl-U, Ctrl-C and split CRLF', async () => {
    const h = await startConsole();
    await h.login();
    h.send('mutx\x7f\x08tate 1\r');
    expect(await h.expectOutput('T0001 active> ')).toBe(
      'mutx\b \b\b \btate 1\r\nmutated 1\r\nT0001 active> ',
    );
    // Up recalls "mutate 1"; backspace and 2 make it "mutate 2".
    h.send('\x1b[A\x7f2\r');
    await h.expectOutput('mutated 2');
    h.send('garbage\x15mutate 3\r');
    await h.expectOutput('mutated 3');
    h.send('mutate 4\x03');
    await h.expectOutput('^C\r\nT0001 active> ');
    h.send('mutate 5\r');
    h.send('\n');
    await h.expectOutput('mutated 5\r\nT0001 active> ');
    expect(await h.rest()).toBe('');
    expect(h.state.mutations).toEqual([1, 2, 3, 5]);
  });

  it('refuses an over-long line without running any part of it', async () => {
    const h = await startConsole();
    await h.login();
    h.send(`mutate ${'9'.repeat(100)}\r`);
    expect(await h.expectOutput('T0001 active> ')).toContain(
      'refused (CONSOLE_LINE_TOO_LONG): the line is longer than 64 bytes; nothing was run\r\n',
    );
    expect(h.state.mutations).toEqual([]);
  });

  it('uses CRLF for every line end it writes', async () => {
    const h = await startConsole();
    await h.login();
    h.send('help\rtxns\rstats\rboom\r');
    await h.expectOutput(/INTERNAL.*\r\nT0001 active> /);
    const all = h.mock.recording.toString('utf8');
    expect(all.match(/(?<!\r)\n/g)).toBeNull();
  });
});

describe('auth, argument parsing and streams used by the console', () => {
  it('hashes and verifies PINs with scrypt, refusing malformed hashes', async () => {
    expect(await verifyPin(PIN, pinHash)).toBe(true);
    expect(await verifyPin('738195', pinHash)).toBe(false);
    expect(parsePinHash(pinHash).params).toEqual(FAST);
    for (const bad of [
      '',
      'bcrypt$x',
      'scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==',
      'scrypt$1024$8$1$!!$AA==',
    ]) {
      expect(() => parsePinHash(bad)).toThrow(AgentError);
    }
    await expect(hashPin('12')).rejects.toThrow(AgentError);
  });

  it('reports every bad technician entry at once', () => {
    let err: unknown;
    try {
      validateTechnicians([
        { id: 'T0001', pinHash },
        { id: 't0001', pinHash },
        { id: 'bad id', pinHash: 'nope' },
      ]);
    } catch (e) {
      err = e;
    }
    expect(isAgentError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as AgentError).context.problems).toHaveLength(3);
  });

  it('fails closed on a corrupt throttle record and is not stretched by a clock set back', () => {
    const clock = new ManualClock();
    const store = new MemoryThrottleStore({ failures: -1, lastFailureAt: NaN });
    const throttle = new LoginThrottle({ clock, store });
    expect(throttle.check()).toMatchObject({ allowed: false, code: 'CONSOLE_LOCKED_OUT' });
    clock.advance(15 * 60_000);
    expect(throttle.check().allowed).toBe(true);

    const back = new LoginThrottle({
      clock,
      store: new MemoryThrottleStore({ failures: 5, lastFailureAt: clock.now() + 3_600_000 }),
    });
    expect(back.check()).toMatchObject({ allowed: false, waitMs: 15 * 60_000 });
  });

  it('splits words and flags the way the shell would', () => {
    expect(splitCommandLine(`a  "b c" 'd e' f\\ g "" "x\\"y" 'z\\'`)).toEqual([
      'a',
      'b c',
      'd e',
      'f g',
      '',
      'x"y',
      'z\\',
    ]);
    expect(() => splitCommandLine(`say 'open`)).toThrow('unbalanced single quote');
    expect(() => splitCommandLine('trailing \\')).toThrow(AgentError);
    const spec = { limit: 'string', all: 'boolean', json: 'boolean' } as const;
    expect(parseArgs(['--limit', '5', '-3', '--all', 'x'], spec)).toEqual({
      args: ['-3', 'x'],
      flags: { limit: '5', all: true },
    });
    expect(parseArgs(['--limit=a=b'], spec).flags).toEqual({ limit: 'a=b' });
    for (const bad of [
      ['--limit'],
      ['--limit', '--all'],
      ['--all=1'],
      ['--nope'],
      ['--all', '--all'],
      ['--__proto__'],
    ]) {
      expect(() => parseArgs(bad, spec), bad.join(' ')).toThrow(AgentError);
    }
  });

  it('joins stdin and stdout into one stream, raw while it lives, and restores the terminal', async () => {
    const stdin = Object.assign(new PassThrough(), {
      isTTY: true,
      isRaw: false,
      setRawMode(mode: boolean) {
        stdin.isRaw = mode;
        return stdin;
      },
    });
    const stdout = new PassThrough();
    const written: string[] = [];
    stdout.on('data', (d: Buffer) => written.push(d.toString()));
    const duplex = stdioStream(stdin, stdout);
    expect(stdin.isRaw).toBe(true);
    const got: string[] = [];
    duplex.on('data', (d: Buffer) => got.push(d.toString()));
    stdin.write('ab\x03');
    await new Promise<void>((resolve) => duplex.write('out\r\n', () => resolve()));
    expect(got.join('')).toBe('ab\x03');
    expect(written.join('')).toBe('out\r\n');
    duplex.destroy();
    expect(stdin.isRaw).toBe(false);
    expect(stdin.destroyed).toBe(false);
    expect(stdout.destroyed).toBe(false);
  });

  it('refuses to open a serial device that does not exist, with a typed error', async () => {
    await expect(
      openSerialConsoleStream({ path: '/dev/ttyNOPE', binding: MockBinding }),
    ).rejects.toMatchObject({ code: 'CONSOLE_PORT_UNAVAILABLE' });
  });
});
