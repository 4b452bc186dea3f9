/**
 * The technician's real commands on a real pty: an in-process Agent (journal, channel over
 * mutual TLS, settlement, commands) against the acquirer simulator, and createConsole from
 * the runtime on a pty made by socat and opened through serialport, as a serial line is.
 * socat joins that pty to a Unix socket where the test types as the technician's terminal,
 * and the test checks both what the screen shows and what the agent did.
 *
 * The technician's end is a socket, not a second serialport-opened pty: @serialport/bindings-cpp
 * 13's Poller restarts uv_poll with only the newest event, so a port that waits to write and
 * then to read stops writing until more input comes. Two such ports facing each other through
 * socat can starve each other for good, which would test the harness, not the console.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import type { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/runtime/agent.ts';
import { parseConfig, type Config } from '../../agent/config.ts';
import { hashPin } from '../../agent/console/auth.ts';
import type { Console } from '../../agent/console/console.ts';
import { openSerialConsoleStream } from '../../agent/console/port.ts';
import { createConsole } from '../../agent/runtime/runtime.ts';
import { formatUnlockCode } from '../../agent/policy/unlock-code.ts';
import { formatMinor } from '../../agent/console/table.ts';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { seededRandom } from '../../simulator/card-sim.ts';

const TID = 'TCON1';
const CODE = 'CODE-CON-1';
const TECH = 'T0042';
const PIN = '5291';
const PAN = '4111111111111111';
const root = mkdtempSync(path.join(tmpdir(), 'pa-conterm-'));
const consoleLink = path.join(root, 'agent-tty');
const techSock = path.join(root, 'tech.sock');
/** Every prompt: `TCON1 active> `, `TCON1 active [technician]> `, ... */
const PROMPT = new RegExp(`${TID} ([a-z-]+)(?: \\[([a-z,-]+)\\])?> $`);

let sim: AcquirerSimulator;
let agent: Agent;
let config: Config;
let socat: ChildProcess | undefined;
let socatLog = '';
let agentSide: SerialPort | undefined;
let techSide: net.Socket | undefined;
let console_: Console | undefined;
let received = '';
let mark = 0;

/** Polls `ok`; on timeout says what it waited for and what the screen showed since `mark`. */
async function waitUntil(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}; got …${JSON.stringify(received.slice(-1500))}`,
      );
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits for `text` in what the technician's screen received since the last match. */
async function expectOutput(text: string, timeoutMs = 10_000): Promise<string> {
  await waitUntil(JSON.stringify(text), () => received.indexOf(text, mark) >= 0, timeoutMs);
  const end = received.indexOf(text, mark) + text.length;
  const seen = received.slice(mark, end);
  mark = end;
  return seen;
}

function type(text: string | Buffer): void {
  techSide?.write(text);
}

/** Types a command, waits for the next prompt; returns the lines between echo and prompt. */
async function run(line: string, timeoutMs = 15_000): Promise<string[]> {
  type(`${line}\r`);
  await waitUntil(`the prompt after ${line}`, () => PROMPT.test(received.slice(mark)), timeoutMs);
  const seen = received.slice(mark);
  mark = received.length;
  const lines = seen.split('\r\n');
  expect(lines[0]).toBe(line);
  return lines.slice(1, -1);
}

const lastPrompt = (): string => PROMPT.exec(received)?.[0] ?? '';
const txnCount = (): number => agent.core.store.journal.tail(1e6, 'txn').length;

beforeAll(async () => {
  const probe = spawnSync('socat', ['-V'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0)
    throw new Error('this test needs socat to make a real pty: apt-get install -y socat');

  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
  sim.registerTerminal({ terminalId: TID, activationCode: CODE, merchantName: 'Pty Noodles' });
  const tls = sim.clientTls(TID);
  config = parseConfig({
    terminalId: TID,
    dataDir: path.join(root, 'terminal'),
    acquirer: {
      port: sim.port,
      servername: tls.servername,
      caFile: path.join(sim.tls.dir, 'ca.crt'),
      certFile: path.join(sim.tls.dir, 'clients', `${TID}.crt`),
      keyFile: path.join(sim.tls.dir, 'clients', `${TID}.key`),
      backoffInitialMs: 50,
      backoffMaxMs: 500,
    },
    paymentSocket: { path: '' },
    log: { level: 'silent' },
    console: {
      technicians: [{ id: TECH, pinHash: await hashPin(PIN, { N: 1024, r: 8, p: 1 }) }],
      maxFailures: 2,
      lockoutAfter: 3,
      lockoutMs: 60_000,
    },
  });
  agent = new Agent({ config, schedules: false });
  await agent.start();
  await agent.channel.waitUntilUp(15_000);
  await agent.activate(CODE, 'test');
  for (let i = 0; i < 5; i++)
    agent.core.payments.record({ type: 'sale', amount: 10_000 + i * 1_111, card: { pan: PAN } });

  const pty = (link: string) => `pty,raw,echo=0,link=${link}`;
  // -T 60: socat ends itself after a minute of silence if this worker dies before afterAll.
  socat = spawn('socat', ['-d', '-d', '-T', '60', pty(consoleLink), `unix-listen:${techSock}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const child = socat;
  process.once('exit', () => child.kill('SIGTERM'));
  socat.stderr?.on('data', (d: Buffer) => (socatLog += d.toString()));
  // The socket file appears at bind, before listen: wait for socat to say it listens, or a
  // connect on a loaded machine is refused.
  await waitUntil(
    'socat to listen',
    () => existsSync(consoleLink) && existsSync(techSock) && socatLog.includes('listening on'),
    30_000,
  );
  techSide = net.createConnection(techSock);
  techSide.on('data', (d: Buffer) => (received += d.toString('utf8')));
  await waitUntil(
    'socat to start its transfer loop',
    () => socatLog.includes('starting data transfer loop'),
    30_000,
  );
  agentSide = await openSerialConsoleStream({ path: realpathSync(consoleLink) });
  console_ = createConsole(agent, config, agentSide);
  console_.start();
});

afterAll(async () => {
  await console_?.stop();
  techSide?.destroy();
  if (agentSide?.isOpen) {
    agentSide.on('error', () => {}); // a read still pending when the port closes says "Canceled"
    await new Promise((resolve) => agentSide?.close(resolve));
  }
  if (socat && socat.exitCode === null) {
    const exited = new Promise((resolve) => socat?.once('exit', resolve));
    socat.kill('SIGTERM');
    await exited;
  }
  // Bounded, so an agent wedged by a failed beforeAll still leaves no temp dir behind.
  const bounded = (p: Promise<unknown> | undefined) =>
    Promise.race([p, new Promise((r) => setTimeout(r, 10_000))]);
  await bounded(agent?.stop());
  await bounded(sim?.stop());
  rmSync(root, { recursive: true, force: true });
});

describe('technician commands on a real pty', () => {
  it('logs in with the configured technician', async () => {
    expect(await expectOutput('login: ')).toBe(
      `pos-agent 0.1.0 technician console, terminal ${TID}\r\nlogin: `,
    );
    type(`${TECH}\r`);
    expect(await expectOutput('PIN: ')).toBe(`${TECH}\r\nPIN: `);
    type(`${PIN}\r`);
    expect(await expectOutput(`${TID} active> `)).toBe(
      `****\r\nlogged in as ${TECH}; type help for the commands\r\n${TID} active> `,
    );
    expect(agent.core.store.journal.events('console-login').at(-1)?.detail).toEqual({
      technician: TECH,
    });
  });

  it('status shows state, locks, open batch and link', async () => {
    const out = (await run('status')).join('\n');
    expect(out).toMatch(new RegExp(`^terminal: +${TID}$`, 'm'));
    expect(out).toMatch(/^state: +active$/m);
    expect(out).toMatch(/^locks: +none$/m);
    expect(out).toMatch(/^may transact: +yes$/m);
    expect(out).toMatch(/^merchant: +M-TCON1 Pty Noodles/m);
    expect(out).toMatch(/^open batch: +B000001-\w+: 5 txns, net 611\.10, fees \d+\.\d\d CNY$/m);
    expect(out).toMatch(/^link: +up, clock offset -?\d+ ms$/m);
  });

  it('journal tail / show / verify', async () => {
    const tail = await run('journal tail 3');
    expect(tail[0]).toMatch(/^seq +time \(UTC\) +what +amount +fee +status +card \/ detail$/);
    const rows = tail.filter((l) => /^ *\d+ +\d\d-\d\d /.test(l));
    expect(rows).toHaveLength(3);
    expect(tail.join('\n')).not.toContain(PAN);
    const sale = agent.core.store.journal.getTxn(agent.core.store.journal.tail(1, 'txn')[0]!.seq)!;
    const show = (await run(`journal show ${sale.seq}`)).join('\n');
    expect(show).toMatch(new RegExp(`^seq: +${sale.seq}$`, 'm'));
    expect(show).toMatch(/^what: +sale$/m);
    expect(show).toMatch(/^card: +411111\*{6}1111$/m);
    expect(show).toMatch(new RegExp(`^amount: +${formatMinor(sale.amount)} CNY$`, 'm'));
    expect(await run('journal show 999999')).toEqual([
      'refused (STORAGE_NOT_FOUND): no journal row 999999',
    ]);
    const head = agent.core.store.journal.headOf();
    expect(await run('journal verify')).toEqual([
      `journal ok: ${head.seq} rows verified, head ${head.seq} ${head.hash.slice(0, 16)}`,
    ]);
  });

  it('batch list / show, settle, then the batch is acked at both ends', async () => {
    const open = agent.core.store.batches.list().find((b) => b.state === 'open')!;
    expect((await run('batch list')).join('\n')).toMatch(
      new RegExp(`^${open.batchId} +open$`, 'm'),
    );
    const settled = await run('settle');
    expect(settled).toEqual([
      'cutting over and settling...',
      `closed batch ${open.batchId}`,
      `settled: ${open.batchId}`,
    ]);
    expect((await run('batch list')).join('\n')).toMatch(
      new RegExp(`^${open.batchId} +acked +\\S+ +5 +611\\.10 +\\d+\\.\\d\\d +\\d+\\.\\d\\d$`, 'm'),
    );
    const show = (await run(`batch show ${open.batchId}`)).join('\n');
    expect(show).toMatch(/^state: +acked$/m);
    expect(show).toMatch(/^transactions \(5\)$/m);
    expect(show).toMatch(/^net +5 +611\.10 +\d+\.\d\d$/m);
    expect(sim.ledger.settlementCount(TID, open.batchId)).toBe(1);
    expect(await run('batch show NOPE')).toEqual(['refused (STORAGE_NOT_FOUND): no batch NOPE']);
  });

  it('selftest passes every check', async () => {
    const out = await run('selftest');
    expect(out[0]).toMatch(/^check +result +detail$/);
    for (const check of ['journal pages', 'hash chain', 'disk space', 'clock'])
      expect(out.join('\n')).toMatch(new RegExp(`^${check} +ok +\\S`, 'm'));
    expect(out.join('\n')).not.toContain('FAILED');
    expect(agent.core.terminal.status().locks).toEqual([]);
  });

  it('lock / unlock technician changes the prompt and the payment path', async () => {
    expect(await run('lock')).toEqual(['technician lock set']);
    expect(lastPrompt()).toBe(`${TID} active [technician]> `);
    expect(agent.core.terminal.mayTransact().allowed).toBe(false);
    expect(() =>
      agent.core.payments.record({ type: 'sale', amount: 5_000, card: { pan: PAN } }),
    ).toThrow(/locked by technician/);
    expect((await run('status')).join('\n')).toMatch(/^locks: +technician$/m);
    expect(await run('unlock technician')).toEqual(['technician lock cleared']);
    expect(lastPrompt()).toBe(`${TID} active> `);
    expect(agent.core.terminal.mayTransact().allowed).toBe(true);
  });

  it('a risk lock: unlock refused in plain words, cleared only by the acquirer-signed code', async () => {
    for (let i = 0; i < 5; i++)
      agent.core.payments.record({ type: 'sale', amount: 50, card: { pan: PAN } });
    expect(agent.core.terminal.status().locks).toEqual(['risk']);
    const refused = await run('unlock risk');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^refused \(LIFECYCLE_REFUSED\): [a-z ]+risk lock [a-z -]+$/);
    expect(agent.core.terminal.status().locks).toEqual(['risk']);
    expect(agent.core.store.journal.events('lifecycle-refused').at(-1)?.detail).toMatchObject({
      code: 'LIFECYCLE_REFUSED',
      source: `console:${TECH}`,
    });
    const shown = await run('unlock-code');
    const challenge = /^challenge: ([A-Z2-9]{10})$/.exec(shown[0] ?? '')?.[1];
    expect(challenge, shown.join('\n')).toBeDefined();
    expect(shown[1]).toBe(`read it to the acquirer; then type: unlock-code ${challenge} <code>`);
    const forged = `${(Date.now() + 60_000).toString(36)}.${'A'.repeat(86)}`;
    expect(await run(`unlock-code ${challenge} ${forged}`)).toEqual([
      'refused (UNLOCK_CODE_INVALID): the code was not signed by the acquirer for this challenge and terminal',
    ]);
    const expiresAt = Date.now() + 5 * 60_000;
    const { signature } = sim.signUnlockGrant(TID, challenge!, expiresAt);
    const code = formatUnlockCode(expiresAt, signature);
    expect(await run(`unlock-code ${challenge} ${code}`)).toEqual(['risk lock cleared']);
    expect(agent.core.terminal.status().locks).toEqual([]);
  });

  it('config show hides PIN hashes; status --json parses; time; version', async () => {
    const cfg = (await run('config show')).join('\n');
    expect(cfg).toContain(TECH);
    expect(cfg).toContain('[redacted]');
    expect(cfg).not.toContain('scrypt$');
    expect(cfg).not.toContain(config.console.technicians[0]!.pinHash.split('$')[4]);
    const json = await run('status --json');
    expect(json).toHaveLength(1);
    const s = JSON.parse(json[0]!) as Record<string, unknown>;
    expect(s).toMatchObject({ terminalId: TID, state: 'active', locks: [], mayTransact: true });
    expect(s.link).toMatchObject({ up: true });
    const time = (await run('time')).join('\n');
    // Local time in the configured zone (Asia/Shanghai is UTC+8 all year), and the business date.
    const now = agent.core.clock.now();
    const local = new Date(now + 8 * 3600_000).toISOString();
    expect(time).toMatch(
      /^local time: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 \(Asia\/Shanghai\)$/m,
    );
    expect(time).toMatch(new RegExp(`^local time: +${local.slice(0, 13).replace('T', ' ')}:`, 'm'));
    expect(time).toMatch(
      new RegExp(
        `^business date: +${local.slice(0, 10)} \\(a new one starts at 00:00 local\\)$`,
        'm',
      ),
    );
    expect(time).toMatch(/^acquirer clock: +[-+]\d+ ms from ours: /m);
    const version = (await run('version')).join('\n');
    expect(version).toMatch(/^agent: +0\.1\.0$/m);
    expect(version).toMatch(new RegExp(`^node: +${process.versions.node}$`, 'm'));
    expect(version).toMatch(/^sqlite: +3\.\d+\.\d+$/m);
  });

  it('thousands of random byte lines: no crash, no hang, no state change', async () => {
    const state = agent.core.terminal.status();
    const txns = txnCount();
    const batches = JSON.stringify(agent.core.store.batches.list());
    // Seeded, so a failure replays; 32-bit integers like the generator's raw output.
    const random = seededRandom(0x0c0ffee);
    const rnd = (): number => Math.floor(random() * 4_294_967_296);
    const LINES = Number(process.env.CONSOLE_GARBAGE_LINES ?? 3_000);
    const from = received.length;
    const prompt = `${TID} active> `;
    let expected = 0;
    let nudges = 0;
    /**
     * Every CR and every Ctrl-C ends in exactly one prompt, so the test waits for exactly those.
     * A screen that stops moving gets a NUL (ignored by the line editor), as a technician would
     * press a key: that is the serialport freeze the header describes, not a console hang.
     */
    const settle = async (): Promise<void> => {
      const deadline = Date.now() + 30_000;
      let seen = received.length;
      let still = Date.now();
      while (received.slice(from).split(prompt).length - 1 < expected) {
        if (Date.now() > deadline) throw new Error(`console stuck after ${expected} prompts`);
        if (received.length !== seen) {
          seen = received.length;
          still = Date.now();
        } else if (Date.now() - still > 1_000) {
          type(Buffer.from([0]));
          nudges++;
          still = Date.now();
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    for (let i = 0; i < LINES; i += 25) {
      const lines: Buffer[] = [];
      for (let j = 0; j < 25; j++) {
        // One line in 25 is long printable text, so the over-long path is exercised too.
        const bytes =
          rnd() % 25 === 0
            ? Buffer.from(Array.from({ length: 257 + (rnd() % 400) }, () => 0x21 + (rnd() % 94)))
            : Buffer.from(Array.from({ length: rnd() % 400 }, () => rnd() % 256));
        // CR and LF end lines: keep them out so each random line is exactly one line.
        lines.push(Buffer.from(bytes.filter((b) => b !== 0x0d && b !== 0x0a)), Buffer.from('\r'));
      }
      const chunk = Buffer.concat(lines);
      expected += chunk.filter((b) => b === 0x0d || b === 0x03).length;
      type(chunk);
      await settle();
    }
    // The marker runs only after every line before it, and must still get its answer.
    type('version\r');
    const done = new RegExp(
      `> version\r\nagent: +0\\.1\\.0\r\nnode: +[\\d.]+\r\nsqlite: +[\\d.]+\r\n${prompt}$`,
    );
    await waitUntil('the marker command after the garbage', () => done.test(received), 10_000);
    expect(nudges, 'screens that froze until a NUL keystroke').toBeLessThanOrEqual(3);
    mark = received.length;
    expect(received).toContain('refused (CONSOLE_UNKNOWN_COMMAND)');
    expect(received).toContain('refused (CONSOLE_LINE_TOO_LONG)');
    expect(agent.core.terminal.status()).toEqual(state);
    expect(txnCount()).toBe(txns);
    expect(JSON.stringify(agent.core.store.batches.list())).toBe(batches);
    expect(console_?.technician).toBe(TECH);
    expect(agent.core.store.journal.verify().ok).toBe(true);
  });

  it('deactivate REASON puts the terminal in review; logout ends the session', async () => {
    expect(await run('deactivate closing the shop')).toEqual([
      'deactivation requested; the terminal takes no transactions while the acquirer reviews it',
    ]);
    expect(agent.core.terminal.status().state).toBe('deactivation-pending');
    expect(lastPrompt()).toBe(`${TID} deactivation-pending> `);
    expect((await run('status')).join('\n')).toMatch(/^state: +deactivation-pending$/m);
    // The acquirer's reviewer decides; the console tells the technician unprompted, above a
    // fresh prompt, and keeps what was being typed.
    type('stat');
    await expectOutput('stat');
    sim.decideDeactivation(TID, false, 'the shop stays open');
    expect(await expectOutput(`${TID} active> stat`, 20_000)).toMatch(
      new RegExp(
        `^\r\nnotice: the terminal is now active \\(.*the shop stays open.*\\)\r\n${TID} active> stat$`,
      ),
    );
    type('\x15');
    await expectOutput('\b\b\b\b    \b\b\b\b');
    type('logout\r');
    expect(await expectOutput('login: ')).toBe(
      `logout\r\nlogged out\r\npos-agent 0.1.0 technician console, terminal ${TID}\r\nlogin: `,
    );
    expect(agent.core.store.journal.events('console-logout').at(-1)?.detail).toEqual({
      technician: TECH,
      reason: 'command',
    });
  });
});

describe('login lock-out', () => {
  it('repeated wrong PINs are throttled, then locked out, each journaled', async () => {
    const wrong = async (): Promise<string> => {
      type(`${TECH}\r`);
      await expectOutput('PIN: ');
      type('0000\r');
      return expectOutput('login: ');
    };
    expect(await wrong()).toBe(
      '****\r\nrefused (CONSOLE_LOGIN_FAILED): wrong technician id or PIN\r\nlogin: ',
    );
    expect(await wrong()).toMatch(
      /CONSOLE_LOGIN_FAILED.*\r\nrefused \(CONSOLE_LOGIN_THROTTLED\): a login failed just now; try again in 1 s\r\nlogin: $/s,
    );
    type(`${TECH}\r`);
    expect(await expectOutput('login: ')).toMatch(/refused \(CONSOLE_LOGIN_THROTTLED\)/);
    await new Promise((r) => setTimeout(r, 1_100));
    expect(await wrong()).toMatch(
      /refused \(CONSOLE_LOCKED_OUT\): too many failed logins; try again in 60 s\r\nlogin: $/,
    );
    // Even the right PIN is not asked for while locked out.
    type(`${TECH}\r`);
    expect(await expectOutput('login: ')).toMatch(/^T0042\r\nrefused \(CONSOLE_LOCKED_OUT\)/);
    expect(console_?.technician).toBeUndefined();

    const events = (name: string) => agent.core.store.journal.events(name).map((e) => e.detail);
    expect(events('console-login-failed')).toEqual([
      { technician: TECH, failures: 1 },
      { technician: TECH, failures: 2 },
      { technician: TECH, failures: 3 },
    ]);
    // lockoutMs is the wait left when it was journaled: the lock-out less the save's few ms.
    const lockedOut = events('console-login-locked-out');
    expect(lockedOut).toMatchObject([{ technician: TECH, failures: 3 }]);
    expect(lockedOut[0]!.lockoutMs).toBeGreaterThan(50_000);
    expect(events('console-login-refused').map((d) => d.code)).toEqual([
      'CONSOLE_LOGIN_THROTTLED',
      'CONSOLE_LOCKED_OUT',
    ]);
  });
});
