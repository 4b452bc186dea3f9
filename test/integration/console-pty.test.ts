/**
 * The console on a real pseudo-terminal, opened through serialport's native binding as
 * a technician's serial line would be. socat joins two ptys back to back: the console
 * owns one end, the test plays the technician's terminal on the other.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../base/clock.ts';
import { hashPin, LoginThrottle } from '../../agent/console/auth.ts';
import { CommandRegistry } from '../../agent/console/commands.ts';
import { Console } from '../../agent/console/console.ts';
import { openSerialConsoleStream } from '../../agent/console/port.ts';

const consoleLink = join(tmpdir(), `pos-console-${process.pid}-agent`);
const technicianLink = join(tmpdir(), `pos-console-${process.pid}-tech`);
const PIN = '5291';

let socat: ChildProcess | undefined;
let socatLog = '';
let agentSide: SerialPort | undefined;
let techSide: SerialPort | undefined;
let console_: Console | undefined;
let received = '';
let mark = 0;
const audits: string[] = [];
const mutations: string[] = [];

async function waitUntil(what: string, ok: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits for `text` in what the technician's terminal received since the last match. */
async function expectOutput(text: string, timeoutMs = 5000): Promise<string> {
  await waitUntil(
    `${JSON.stringify(text)}; got ${JSON.stringify(received.slice(mark))}`,
    () => received.indexOf(text, mark) >= 0,
    timeoutMs,
  );
  const end = received.indexOf(text, mark) + text.length;
  const seen = received.slice(mark, end);
  mark = end;
  return seen;
}

function type(text: string | Buffer): void {
  techSide?.write(text);
}

beforeAll(async () => {
  const probe = spawnSync('socat', ['-V'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      'socat is not installed, and this test needs it to make a real pty pair: run `apt-get install -y socat` ' +
        `(${probe.error?.message ?? `exit ${probe.status}`})`,
    );
  }
  // -T 30: socat ends itself after 30 s without traffic, so a worker killed before
  // afterAll cannot leave it running; the exit hook covers a worker that exits early.
  socat = spawn(
    'socat',
    [
      '-d',
      '-d',
      '-T',
      '30',
      `pty,raw,echo=0,link=${consoleLink}`,
      `pty,raw,echo=0,link=${technicianLink}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const child = socat;
  process.once('exit', () => child.kill('SIGTERM'));
  socat.stderr?.on('data', (d: Buffer) => (socatLog += d.toString()));
  await waitUntil(
    `socat to create both pty links (${socatLog})`,
    () => existsSync(consoleLink) && existsSync(technicianLink),
  );
  // Both links exist once socat logs "starting data transfer loop"; before that a write can be lost.
  await waitUntil('socat to start its transfer loop', () =>
    socatLog.includes('starting data transfer loop'),
  );

  const registry = new CommandRegistry().register({
    name: 'mutate',
    summary: 'change test state',
    usage: 'mutate N',
    minArgs: 1,
    maxArgs: 1,
    run: (ctx) => {
      mutations.push(ctx.args[0] as string);
      return `mutated ${ctx.args[0]}`;
    },
  });
  const clock = new ManualClock();
  agentSide = await openSerialConsoleStream({ path: realpathSync(consoleLink), baudRate: 115200 });
  console_ = new Console({
    stream: agentSide,
    commands: registry,
    auth: {
      technicians: [{ id: 'T0042', pinHash: await hashPin(PIN, { N: 1024, r: 8, p: 1 }) }],
      throttle: new LoginThrottle({ clock }),
    },
    clock,
    audit: (event) => audits.push(event),
    banner: 'pty console',
    prompt: () => 'T0042> ',
  });

  techSide = await new Promise<SerialPort>((resolve, reject) => {
    const p: SerialPort = new SerialPort(
      { path: realpathSync(technicianLink), baudRate: 115200 },
      (err) => (err ? reject(err) : resolve(p)),
    );
  });
  techSide.on('data', (d: Buffer) => (received += d.toString('utf8')));
  console_.start();
});

afterAll(async () => {
  await console_?.stop();
  for (const p of [agentSide, techSide]) {
    if (p?.isOpen) await new Promise((resolve) => p.close(resolve));
  }
  if (socat && socat.exitCode === null) {
    const exited = new Promise((resolve) => socat?.once('exit', resolve));
    socat.kill('SIGTERM');
    await exited;
  }
});

describe('console on a real pty (socat)', () => {
  it('shows the banner and logs in with a masked PIN', async () => {
    expect(await expectOutput('login: ')).toBe('pty console\r\nlogin: ');
    type('T0042\r');
    expect(await expectOutput('PIN: ')).toBe('T0042\r\nPIN: ');
    type(`${PIN}\r\n`);
    const out = await expectOutput('T0042> ');
    expect(out).toBe('****\r\nlogged in as T0042; type help for the commands\r\nT0042> ');
    expect(received).not.toContain(PIN);
  });

  it('runs a command and answers with CRLF line ends', async () => {
    type('mutate 1\r');
    expect(await expectOutput('T0042> ')).toBe('mutate 1\r\nmutated 1\r\nT0042> ');
    type('help\r');
    const help = await expectOutput('T0042> ');
    expect(help).toContain('mutate  change test state\r\n');
    expect(received.match(/(?<!\r)\n/g)).toBeNull();
  });

  it('cancels a line on Ctrl-C and edits with DEL', async () => {
    type('mutate 2');
    type(Buffer.from([0x03]));
    expect(await expectOutput('T0042> ')).toBe('mutate 2^C\r\nT0042> ');
    type('mutate 39\x7f\r');
    expect(await expectOutput('T0042> ')).toBe('mutate 39\b \b\r\nmutated 3\r\nT0042> ');
    expect(mutations).toEqual(['1', '3']);
  });

  it('edits the line with the keys picocom and screen send: history, left/right, home/end', async () => {
    // picocom passes the terminal's xterm keys through: ESC [ A/B/C/D, ESC [ H / ESC [ F.
    type('\x1b[A');
    expect(await expectOutput('mutate 3')).toBe('mutate 3'); // the last line, as it was run
    type('\x1b[A\x1b[B'); // back to `help`, forward to `mutate 3`
    type('\x1b[D1\r');
    expect(await expectOutput('T0042> ')).toContain('\r\nmutated 13\r\nT0042> ');
    type('utate 4\x1b[H');
    type('m\x1b[F5\r');
    expect(await expectOutput('T0042> ')).toBe(
      'utate 4\b\b\b\b\b\b\bmutate 4\b\b\b\b\b\b\butate 45\r\nmutated 45\r\nT0042> ',
    );
    // screen (TERM=screen) sends ESC [ 1 ~ and ESC [ 4 ~ for home and end, and ESC O A/D for
    // the arrows in application cursor mode; Delete is ESC [ 3 ~.
    type('xmutate 6\x1b[1~\x1b[3~\x1b[4~\x1bOD7\x1bOC\r');
    expect(await expectOutput('T0042> ')).toContain('\r\nmutated 76\r\nT0042> ');
    type('\x1bOA\x1bOA\r');
    expect(await expectOutput('T0042> ')).toContain('\r\nmutated 45\r\nT0042> ');
    expect(mutations).toEqual(['1', '3', '13', '45', '76', '45']);
  });

  it('logs out', async () => {
    type('logout\r');
    expect(await expectOutput('login: ')).toBe('logout\r\nlogged out\r\npty console\r\nlogin: ');
    expect(audits).toEqual(['login', ...Array(8).fill('command'), 'logout']);
  });
});
