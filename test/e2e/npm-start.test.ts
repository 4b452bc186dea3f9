/**
 * What a developer or technician actually runs: `npm start` (the demo: agent, embedded acquirer
 * and card simulators, console on stdin/stdout) driven through a pipe as a person would type,
 * twice on one data directory; then the offline CLI on that directory, including a tampered
 * journal that `journal verify` must name.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'pos-agent.mjs');
const data = mkdtempSync(path.join(tmpdir(), 'pa-e2e-'));
const terminalDir = path.join(data, 'terminal');

afterAll(() => rmSync(data, { recursive: true, force: true }));

/** The demo as `npm start` runs it, with stdin a pipe the test types into. */
function startDemo() {
  const child = spawn(process.execPath, [BIN, 'demo', '--data', data], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let mark = 0;
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const kill = () => child.exitCode === null && child.kill('SIGKILL');
  /** Waits for `text` after the previous match; returns what came in between. */
  const expectOut = async (text: string, timeoutMs = 30_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    while (out.indexOf(text, mark) < 0) {
      if (Date.now() > deadline || child.exitCode !== null) {
        kill();
        throw new Error(`no ${JSON.stringify(text)} from the demo; it said:\n${out.slice(mark)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const end = out.indexOf(text, mark) + text.length;
    const seen = out.slice(mark, end);
    mark = end;
    return seen;
  };
  /** Types a line and returns its answer: the lines between the echo and the next prompt. */
  const command = async (line: string, prompt: string): Promise<string[]> => {
    child.stdin.write(`${line}\n`);
    const lines = (await expectOut(prompt)).split('\r\n');
    expect(lines[0]).toBe(line);
    expect(lines.at(-1)).toBe(prompt);
    return lines.slice(1, -1);
  };
  const login = async (prompt: string): Promise<void> => {
    await expectOut('login: ');
    child.stdin.write('tech\n');
    await expectOut('PIN: ');
    child.stdin.write('1234\n');
    expect(await expectOut(prompt)).toBe(
      `****\r\nlogged in as tech; type help for the commands\r\n${prompt}`,
    );
  };
  return { child, exited, kill, expectOut, command, login, output: () => out };
}

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Fingerprints of every key and certificate file the two parts made. */
function keyFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const f = path.join(dir, name);
      if (statSync(f).isDirectory()) walk(f);
      else if (/\.(pem|key|crt)$/.test(name))
        out[path.relative(data, f)] = createHash('sha256').update(readFileSync(f)).digest('hex');
    }
  };
  walk(data);
  return out;
}

const PROMPT = 'T0001 active> ';
const LOCKED = 'T0001 active [technician]> ';
let keysAfterFirstRun: Record<string, string> = {};

describe('npm start', () => {
  it('is `node bin/pos-agent.mjs demo`', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.start).toBe('node bin/pos-agent.mjs demo');
  });

  it('first run: activates, sells, settles, then a technician works the console', async () => {
    const demo = startDemo();
    try {
      const intro = await demo.expectOut('then type help.');
      expect(intro).toContain('link to the acquirer is up (mutual TLS)');
      expect(intro).toContain('activated with code DEMO-2026: M-T0001 Noodle House (catering)');
      expect(intro).toMatch(/card simulator: 6 transactions journaled through the payment socket/);
      expect(intro).toMatch(/settled batches: B000001-\w+\n/);
      expect(intro).toContain('log in as "tech" with PIN 1234');
      await demo.login(PROMPT);

      const status = (await demo.command('status', PROMPT)).join('\n');
      expect(status).toMatch(/^state: +active$/m);
      expect(status).toMatch(/^locks: +none$/m);
      expect(status).toMatch(/^link: +up, clock offset -?\d+ ms$/m);
      // The demo settled its sales already: nothing is left to close.
      expect(await demo.command('settle', PROMPT)).toEqual([
        'cutting over and settling...',
        'nothing new to close',
        'settled: none',
      ]);
      const verify = await demo.command('journal verify', PROMPT);
      expect(verify).toHaveLength(1);
      expect(verify[0]).toMatch(/^journal ok: \d+ rows verified, head \d+ [0-9a-f]{16}$/);
      expect(await demo.command('lock', LOCKED)).toEqual(['technician lock set']);
      const json = await demo.command('status --json', LOCKED);
      expect(json).toHaveLength(1);
      expect(JSON.parse(json[0]!)).toMatchObject({
        terminalId: 'T0001',
        state: 'active',
        locks: ['technician'],
        mayTransact: false,
        link: { up: true },
      });
      demo.child.stdin.write('quit\n');
      await demo.expectOut('stopping');
      expect(await demo.exited).toBe(0);
    } finally {
      demo.kill();
    }
    keysAfterFirstRun = keyFiles();
    expect(Object.keys(keysAfterFirstRun)).toEqual(
      expect.arrayContaining([
        'terminal/keys/terminal-ed25519.pem',
        'acquirer/command-key.pem',
        'acquirer/tls/ca.crt',
        'acquirer/tls/clients/T0001.key',
      ]),
    );
  });

  it('second run on the same data: same keys, same activation, the lock still there', async () => {
    const demo = startDemo();
    try {
      const intro = await demo.expectOut('then type help.');
      expect(intro).not.toContain('activated with code');
      expect(intro).toContain(
        'the terminal is active and locked by technician: no sales this time',
      );
      await demo.login(LOCKED);
      const status = (await demo.command('status', LOCKED)).join('\n');
      expect(status).toMatch(/^locks: +technician$/m);
      expect(status).toMatch(/^merchant: +M-T0001 Noodle House \(catering\)$/m);
      expect(await demo.command('unlock', PROMPT)).toEqual(['technician lock cleared']);
      expect((await demo.command('journal verify', PROMPT))[0]).toMatch(/^journal ok: /);
      demo.child.stdin.write('quit\n');
      expect(await demo.exited).toBe(0);
    } finally {
      demo.kill();
    }
    expect(keyFiles()).toEqual(keysAfterFirstRun);
  });

  it('stops with exit 0 when stdin closes at the console', async () => {
    const demo = startDemo();
    try {
      await demo.expectOut('login: ');
      demo.child.stdin.end();
      const code = await Promise.race([
        demo.exited,
        new Promise((r) => setTimeout(() => r('still running 15 s after stdin closed'), 15_000)),
      ]);
      expect(code).toBe(0);
    } finally {
      demo.kill();
    }
  });
});

describe('the offline CLI on the demo data', () => {
  it('--help', () => {
    const r = cli('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage:');
    expect(r.stdout).toContain('pos-agent journal verify --data DIR');
  });

  it('status, journal tail, batch list', () => {
    const status = cli('status', '--data', terminalDir);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^terminal: +T0001$/m);
    expect(status.stdout).toMatch(/^state: +active$/m);
    expect(status.stdout).toMatch(/^locks: +none$/m);
    const json = cli('status', '--data', terminalDir, '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ state: 'active', locks: [] });

    // The console's own audit rows are hidden unless asked for.
    const plain = cli('journal', 'tail', '--data', terminalDir, '-n', '1000');
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).not.toContain('console-');
    const sales = cli('journal', 'tail', '--data', terminalDir, '--type', 'sale', '--json');
    const saleRows = JSON.parse(sales.stdout) as Array<{ what: string; amount: number }>;
    expect(saleRows.length).toBeGreaterThan(0);
    expect(saleRows.every((r) => r.what === 'sale' && Number.isInteger(r.amount))).toBe(true);
    const tail = cli('journal', 'tail', '--data', terminalDir, '-n', '30', '--audit');
    expect(tail.stdout).toMatch(/ console-command .*tech: status/);
    expect(tail.code, tail.stderr).toBe(0);
    const lines = tail.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^seq +time \(UTC\) +what +amount +fee +status +card \/ detail$/);
    expect(lines).toHaveLength(2 + 30);
    // Yuan with two decimals, as on the console.
    expect(tail.stdout).toMatch(/ sale +\d+\.\d\d +\d+\.\d\d +approved +\d{6}\*+\d{4}\n/);
    // Piped output is for scripts and for evidence: nothing cut to fit an 80-column screen.
    expect(tail.stdout).not.toContain('…');
    for (const row of lines.slice(2))
      expect(row).toMatch(/^ *\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\S/);

    const batches = cli('batch', 'list', '--data', terminalDir);
    expect(batches.code, batches.stderr).toBe(0);
    expect(batches.stdout).toMatch(/^B000001-\w+ +acked +\d{4}-\d\d-\d\d +6 /m);
    expect(batches.stdout).toMatch(/^B\d+-\w+ +open/m);

    // batch show and journal show: readable, in yuan, as on the console.
    const id = /^(B000001-\w+)/m.exec(batches.stdout)![1]!;
    const batch = cli('batch', 'show', id, '--data', terminalDir);
    expect(batch.code, batch.stderr).toBe(0);
    expect(batch.stdout).toMatch(/^state: +acked$/m);
    expect(batch.stdout).toMatch(/^net amount: +\d+\.\d\d CNY$/m);
    expect(batch.stdout).toMatch(/^net +6 +\d+\.\d\d +\d+\.\d\d$/m);
    expect(batch.stdout).toContain("the acquirer's totals: the same");
    expect(batch.stdout).toMatch(/^transactions \(6\)$/m);
    const shown = JSON.parse(cli('batch', 'show', id, '--data', terminalDir, '--json').stdout) as {
      netAmount: number;
    };
    expect(Number.isInteger(shown.netAmount)).toBe(true); // fen in --json
    const saleSeq = /^ *(\d+) .* sale /m.exec(batch.stdout)![1]!;
    const row = cli('journal', 'show', saleSeq, '--data', terminalDir);
    expect(row.code, row.stderr).toBe(0);
    expect(row.stdout).toMatch(/^what: +sale$/m);
    expect(row.stdout).toMatch(/^amount: +\d+\.\d\d CNY$/m);
    expect(row.stdout).toMatch(/^card: +\d{6}\*+\d{4}$/m);
    expect(cli('batch', 'show', 'NOPE', '--data', terminalDir).code).toBe(2);
  });

  it('journal verify: exit 0, then exit 1 naming the row changed behind its back', () => {
    const ok = cli('journal', 'verify', '--data', terminalDir);
    expect(ok.code, ok.stderr).toBe(0);
    const rows = Number(/^journal ok: (\d+) rows, head \1 [0-9a-f]{64}$/m.exec(ok.stdout)?.[1]);
    expect(rows).toBeGreaterThan(10);

    const db = new Database(path.join(terminalDir, 'journal.db'));
    const { seq } = db
      .prepare("SELECT seq FROM journal WHERE kind = 'txn' ORDER BY seq LIMIT 1 OFFSET 2")
      .get() as { seq: number };
    db.exec('DROP TRIGGER journal_immutable_update');
    db.prepare('UPDATE journal SET amount = amount + 1 WHERE seq = ?').run(seq);
    db.close();

    const bad = cli('journal', 'verify', '--data', terminalDir);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      `journal BROKEN at row ${seq}: its content does not match its hash (${seq - 1} rows before it verify)`,
    );
  });
});
