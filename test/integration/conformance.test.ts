/**
 * The conformance kit as an acquirer runs it: `pos-agent conformance` from bin/pos-agent.mjs as a
 * real process (the compiled bundle), over real mutual TLS against the acquirer simulator on
 * 127.0.0.1. It must pass a healthy simulator, and fail one that settles a resend twice and
 * pushes a command signed by a stranger: a kit that cannot fail proves nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { generateEd25519 } from '../../agent/policy/keys.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'pos-agent.mjs');
let root: string;
let sim: AcquirerSimulator;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-conformance-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
});
afterAll(async () => {
  await sim.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Registers a terminal, writes its TLS files and queues a lock and an unlock for it. */
function prepare(terminalId: string): string[] {
  sim.registerTerminal({ terminalId, activationCode: `CODE-${terminalId}` });
  const tls = sim.clientTls(terminalId);
  const dir = path.join(root, terminalId);
  mkdirSync(dir, { recursive: true });
  const file = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text, { mode: 0o600 });
    return path.join(dir, name);
  };
  return [
    'conformance',
    '--acquirer',
    `127.0.0.1:${sim.port}`,
    '--ca',
    file('ca.crt', tls.ca),
    '--cert',
    file('terminal.crt', tls.cert),
    '--key',
    file('terminal.key', tls.key),
    '--servername',
    'localhost',
    '--activation-code',
    `CODE-${terminalId}`,
  ];
}

/** Runs the CLI without blocking this process's event loop (the simulator lives here). */
function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

function row(out: string, check: string): string {
  return out.split('\n').find((l) => l.startsWith(check)) ?? `(no row ${check})`;
}

const CHECKS = [
  'mutual TLS',
  'hello and time',
  'heartbeats',
  'activation (command key)',
  'batch submit',
  'resend same key',
  'same batch id, other digest',
  'out of balance',
  'detail upload, then settled',
  'commands pushed on poll',
  'command signatures',
  'command counters and times',
  'command results',
  'bad frame: error then close',
];

describe('pos-agent conformance', () => {
  it('passes every check against the simulator; exit 0', async () => {
    const args = prepare('TCONF01');
    sim.issueCommand('TCONF01', { lock: { reason: 'conformance lock' } });
    sim.issueCommand('TCONF01', { unlock: { source: 'remote', reason: 'conformance unlock' } });
    const r = await run(args);
    // The table as run against the simulator, in the test log for the record.
    console.log(r.out);
    expect(r.err).toBe('');
    for (const check of CHECKS) expect(row(r.out, check), check).toMatch(/ PASS /);
    expect(r.out).toContain(`conformance: PASS (${CHECKS.length} checks)`);
    expect(r.code).toBe(0);
    // The simulator's ledger agrees: both commands answered with results it verified.
    const results = sim.ledger.db
      .prepare('SELECT verified FROM command_results WHERE terminal_id = ?')
      .all('TCONF01') as Array<{ verified: number }>;
    expect(results.map((x) => x.verified)).toEqual([1, 1]);
  });

  it('fails an acquirer that settles a resend again and signs with another key; exit 1', async () => {
    const args = prepare('TCONF02');
    sim.issueCommand('TCONF02', { lock: { reason: 'genuine' } });
    const stranger = generateEd25519();
    const forged = sim.rawSignedCommand(
      'TCONF02',
      { unlock: { source: 'remote', reason: 'forged' } },
      { signWith: stranger.privateKey },
    );
    sim.deliverSignedCommand('TCONF02', forged);
    sim.behave({ resendSettlesAgain: true });
    try {
      const r = await run(args);
      console.log(r.out);
      expect(row(r.out, 'resend same key')).toMatch(/ FAIL .*not marked duplicate|settled twice/);
      expect(row(r.out, 'command signatures')).toMatch(/ FAIL .*not signed by the pinned key/);
      expect(row(r.out, 'batch submit')).toMatch(/ PASS /);
      expect(row(r.out, 'out of balance')).toMatch(/ PASS /);
      expect(r.out).toMatch(/conformance: FAIL \(\d+ of 14 checks failed\)/);
      expect(r.code).toBe(1);
    } finally {
      sim.behave({ resendSettlesAgain: false });
    }
  });
});
