/**
 * `npm start` on a real terminal: the demo runs under socat with a pty as its stdin, stdout
 * and controlling terminal, as in a person's shell, and the test types on the other end.
 * Ctrl-C, Ctrl-D and `quit` must leave it cleanly whatever it is doing (starting up, at the
 * login prompt after wrong PINs, logged in), releasing its lock; the banner names the paths;
 * `sell` makes more sales through the payment socket; `--fresh` starts over.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'pos-agent.mjs');
const tmp = mkdtempSync(path.join(tmpdir(), 'pa-demo-pty-'));
const data = path.join(tmp, 'demo');
let links = 0;
const running: ChildProcess[] = [];

beforeAll(() => {
  const probe = spawnSync('socat', ['-V']);
  if (probe.status !== 0)
    throw new Error('socat is needed for this test: apt-get install -y socat');
});
afterEach(async () => {
  // A failed test leaves its demo running: closing the pty hangs it up (SIGHUP), and it leaves.
  for (const c of running.splice(0)) {
    if (c.exitCode !== null) continue;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
    if (c.exitCode === null) c.kill('SIGKILL');
  }
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

async function until(
  what: string | (() => string),
  ok: () => boolean,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The demo with a pty for a terminal; `type` writes keystrokes, `expectOut` waits for text. */
async function startDemo(...args: string[]) {
  const link = path.join(tmp, `tty-${links}`);
  const go = path.join(tmp, `go-${links++}`);
  const socat = spawn(
    'socat',
    [
      '-d',
      '-d',
      '-d',
      `pty,raw,echo=0,link=${link}`,
      // The demo waits for `go`: opening the far end of a pty flushes what was already sent.
      `SYSTEM:while [ ! -e ${go} ]; do sleep 0.05; done; exec ${process.execPath} ${BIN} demo --data ${data} ${args.join(' ')},pty,setsid,ctty,stderr`,
    ],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  running.push(socat);
  let log = '';
  socat.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const socatExited = new Promise<void>((r) => socat.once('exit', () => r()));
  await until('socat to make the pty', () => existsSync(link) && log.includes('transfer loop'));
  let out = '';
  let mark = 0;
  const port = await new Promise<SerialPort>((resolve, reject) => {
    const p: SerialPort = new SerialPort({ path: realpathSync(link), baudRate: 115200 }, (err) =>
      err ? reject(err) : resolve(p),
    );
  });
  port.on('data', (d: Buffer) => (out += d.toString('utf8')));
  port.on('error', () => {});
  writeFileSync(go, '');
  // Node's raw mode keeps ONLCR, so the console's CRLF reaches the terminal as CR CR LF
  // (harmless on a screen): compare lines, not line ends.
  const text = () => out.replace(/\r*\n/g, '\n');
  const expectOut = async (want: string, timeoutMs = 30_000): Promise<string> => {
    await until(
      () => `${JSON.stringify(want)}; got ${JSON.stringify(text().slice(mark))}`,
      () => text().includes(want, mark),
      timeoutMs,
    );
    const all = text();
    const end = all.indexOf(want, mark) + want.length;
    const seen = all.slice(mark, end);
    mark = end;
    return seen;
  };
  /** The demo's own exit status, as socat saw its child end. */
  const exitStatus = async (): Promise<number> => {
    await Promise.race([socatExited, until('the demo to exit', () => false, 20_000)]);
    if (port.isOpen) await new Promise((r) => port.close(r));
    const m = /child \d+ exited with status (\d+)/.exec(log);
    if (!m) throw new Error(`no exit status in socat's log:\n${log}`);
    return Number(m[1]);
  };
  return {
    type: (s: string) => port.write(s),
    expectOut,
    exitStatus,
    output: () => out,
  };
}

const PROMPT = 'T0001 active> ';

async function login(demo: Awaited<ReturnType<typeof startDemo>>): Promise<void> {
  await demo.expectOut('login: ');
  demo.type('tech\r');
  await demo.expectOut('PIN: ');
  demo.type('1234\r');
  await demo.expectOut(PROMPT);
}

describe('the demo on a real terminal', () => {
  it('names the exact paths, and Ctrl-D leaves it at the login prompt', async () => {
    const demo = await startDemo();
    const intro = await demo.expectOut('login: ');
    const terminalDir = path.join(data, 'terminal');
    expect(intro).toContain(`terminal data:   ${terminalDir}`);
    expect(intro).toContain(`status --data ${terminalDir}`);
    expect(intro).toContain(`journal tail --data ${terminalDir}`);
    expect(intro).toContain('start over: npm start -- --fresh');
    expect(intro).toContain('Ctrl-C, Ctrl-D or quit leave the demo');
    // The CLI line from the banner works as printed.
    const cliLine = /\n {4}(node \S+) status --data (\S+)\r?\n/.exec(intro)!;
    const status = spawnSync(process.execPath, [BIN, 'status', '--data', cliLine[2]!], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(status.status, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^state: +active$/m);
    demo.type('\x04');
    await demo.expectOut('demo stopped');
    expect(await demo.exitStatus()).toBe(0);
    expect(existsSync(path.join(data, '.lock'))).toBe(false);
  });

  it('logged in: sell makes sales through the payment socket, history recalls it, Ctrl-C leaves', async () => {
    const demo = await startDemo();
    // A command at the login prompt is refused in words and is not taken as an id.
    await demo.expectOut('login: ');
    demo.type('status\r');
    expect(await demo.expectOut('login: ')).toContain(
      "refused (CONSOLE_LOGIN_REQUIRED): not logged in: 'status' is a command",
    );
    demo.type('tech\r');
    await demo.expectOut('PIN: ');
    demo.type('1234\r');
    await demo.expectOut(PROMPT);
    demo.type('sell 2\r');
    expect(await demo.expectOut(PROMPT)).toMatch(
      /2 transactions journaled through the payment socket \(2 sales\), net \d+\.\d\d CNY, fees \d+\.\d\d CNY/,
    );
    // Up arrow (as xterm and picocom send it) recalls `sell 2`; Enter runs it again.
    demo.type('\x1b[A\r');
    expect(await demo.expectOut(PROMPT)).toMatch(/sell 2\n2 transactions journaled/);
    demo.type('journal tail 4 --type sale\r');
    const tail = (await demo.expectOut(PROMPT)).split('\n');
    expect(tail.filter((l) => / sale +\d+\.\d\d +\d+\.\d\d +approved /.test(l))).toHaveLength(4);
    demo.type('unlock\r');
    expect(await demo.expectOut(PROMPT)).toContain('no lock is held; nothing changed');
    demo.type('stat');
    await demo.expectOut('stat');
    demo.type('\x03');
    await demo.expectOut('demo stopped');
    expect(await demo.exitStatus()).toBe(0);
    // One info line per command in the log, with its line and result; nothing at warn.
    const log = readFileSync(path.join(data, 'agent.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; line?: string; result?: string });
    const commands = log.filter((l) => l.msg === 'console command');
    expect(commands.map((l) => [l.level, l.line])).toEqual([
      [30, 'sell 2'],
      [30, 'sell 2'],
      [30, 'journal tail 4 --type sale'],
      [30, 'unlock'],
    ]);
    expect(commands[3]!.result).toBe('no lock is held; nothing changed');
    expect(log.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
  });

  it('after wrong PINs, Ctrl-C still leaves, and --fresh starts over', async () => {
    const demo = await startDemo();
    await demo.expectOut('login: ');
    for (let i = 0; i < 2; i++) {
      demo.type('tech\r');
      await demo.expectOut('PIN: ');
      demo.type('0000\r');
      await demo.expectOut('CONSOLE_LOGIN_FAILED');
      await demo.expectOut('login: ');
    }
    demo.type('\x03');
    await demo.expectOut('demo stopped');
    expect(await demo.exitStatus()).toBe(0);

    const fresh = await startDemo('--fresh');
    const intro = await fresh.expectOut('technician console (demo)');
    expect(intro).toContain(`started over: removed the demo's data under ${data}`);
    expect(intro).toContain('activated with code DEMO-2026');
    // The failed logins went with the old data: the right PIN is let in at once.
    await login(fresh);
    fresh.type('quit\r');
    await fresh.expectOut('demo stopped');
    expect(await fresh.exitStatus()).toBe(0);
  });

  it('Ctrl-C while it is still starting up stops it cleanly', async () => {
    const demo = await startDemo();
    await demo.expectOut('pos-agent demo: acquirer simulator on');
    // The console is not reading yet: the terminal turns Ctrl-C into SIGINT.
    demo.type('\x03');
    await demo.expectOut('demo stopped');
    expect(await demo.exitStatus()).toBe(0);
    expect(existsSync(path.join(data, '.lock'))).toBe(false);
    expect(existsSync(path.join(data, 'acquirer', '.lock'))).toBe(false);
  });

  it('the seed flow: deactivate on the console, a reviewer approves in the back office, the console tells', async () => {
    const demo = await startDemo('--fresh');
    const intro = await demo.expectOut('technician console (demo)');
    const office = /back office: (http:\/\/127\.0\.0\.1:\d+)/.exec(intro)![1]!;
    await login(demo);
    demo.type('deactivate closing the shop\r');
    await demo.expectOut('T0001 deactivation-pending> ');
    await approveAsReviewer(office, 'final settlement, then close');
    expect(await demo.expectOut('T0001 deactivated> ')).toMatch(
      /^\nnotice: the terminal is now deactivated \(.+\)\nT0001 deactivated> $/,
    );
    demo.type('status\r');
    expect(await demo.expectOut('T0001 deactivated> ')).toMatch(/^state: +deactivated$/m);
    demo.type('\x04');
    await demo.expectOut('demo stopped');
    expect(await demo.exitStatus()).toBe(0);
  });
});

/** What a reviewer does in the browser, as plain form posts with the session cookie and CSRF token. */
async function approveAsReviewer(url: string, note: string): Promise<void> {
  const cookies = new Map<string, string>();
  const keep = (r: Response) => {
    for (const c of r.headers.getSetCookie()) {
      const [kv] = c.split(';');
      const eq = kv!.indexOf('=');
      cookies.set(kv!.slice(0, eq), kv!.slice(eq + 1));
    }
    return r;
  };
  const cookie = () => [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const get = async (p: string) =>
    (await fetch(url + p, { headers: { cookie: cookie() }, redirect: 'manual' }).then(keep)).text();
  const post = (p: string, body: Record<string, string>) =>
    fetch(url + p, {
      method: 'POST',
      headers: { cookie: cookie(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(body),
      redirect: 'manual',
    }).then(keep);
  const csrf = (html: string) => /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
  const login = await get('/login');
  const loggedIn = await post('/login', {
    _csrf: csrf(login),
    username: 'reviewer',
    password: 'reviewer-demo',
  });
  expect(loggedIn.status).toBe(303);
  const queue = await get('/review');
  const review = /RV-[A-F0-9]{12}/.exec(queue)![0];
  const decided = await post(`/review/${review}/decide`, {
    _csrf: csrf(queue),
    decision: 'approve',
    note,
  });
  expect(decided.status).toBe(303);
}
