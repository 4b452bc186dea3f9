/**
 * docs/protocol.md's payment app section, proved from outside: test/interop/payment_app.py, a
 * payment app in Python written from that page alone (standard library, hand-rolled protobuf,
 * nothing of this repository), drives a real agent in a child process over its real Unix socket,
 * with the acquirer simulator as the acquirer. The test checks what the app printed against what
 * the page promises, then the agent's journal file: every record the app saw acknowledged is
 * there exactly once, and no full card number is anywhere in the journal or its WAL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import { installTls } from '../fixtures/lifecycle-rig.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const APP = path.join(ROOT, 'test', 'interop', 'payment_app.py');
const CHILD = path.join(ROOT, 'test', 'fixtures', 'runtime-child.ts');
const PANS = ['4111111111111111', '5500005555555559', '4012888888881881'];
const TERMINAL = 'TPYAPP01';

type Line = Record<string, unknown> & { step: string };

let tmp: string;
let sim: AcquirerSimulator;
let agent: ChildProcess;
let dataDir: string;
let lines: Line[] = [];
let appStderr = '';
let socketMode = 0;

/** The hex of the worked example's request block in docs/protocol.md. */
function docExampleHex(): string {
  const doc = readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8');
  const marker = doc.indexOf('<!-- payment-example: request -->');
  expect(marker).toBeGreaterThan(0);
  const start = doc.indexOf('```\n', marker) + 4;
  return doc
    .slice(start, doc.indexOf('```', start))
    .split('\n')
    .map((l) => l.split('#')[0]!.replace(/\s+/g, ''))
    .join('');
}

function startAgent(config: Record<string, unknown>): Promise<string> {
  agent = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: tmp,
    env: { ...process.env, POS_CHILD_CONFIG: JSON.stringify(config), POS_CHILD_CODE: 'PYAPP-1' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  agent.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent not ready: ${err}`)), 30_000);
    agent.once('exit', (code) => reject(new Error(`agent exited ${code}: ${err}`)));
    readline.createInterface({ input: agent.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as { ready?: boolean; socket?: string };
      if (e.ready) {
        clearTimeout(timer);
        resolve(e.socket!);
      }
    });
  });
}

/** Runs the Python app to its end; its JSON lines. Asynchronously: the simulator lives here. */
async function runApp(socket: string, ...extra: string[]): Promise<Line[]> {
  const app = spawn('python3', [APP, socket, 'PY', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  app.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  app.stderr.on('data', (d: Buffer) => (appStderr += d.toString()));
  const killer = setTimeout(() => app.kill('SIGKILL'), 30_000);
  await new Promise((resolve) => app.once('close', resolve));
  clearTimeout(killer);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'pa-pyapp-'));
  dataDir = path.join(tmp, 'data');
  sim = await AcquirerSimulator.start({ dataDir: path.join(tmp, 'acquirer') });
  sim.registerTerminal({ terminalId: TERMINAL, activationCode: 'PYAPP-1' });
  // Offline sales above 200.00 yuan are declined: the app must learn that from the socket.
  sim.behave({ advice: { declineOver: 20_000 } });
  installTls(sim, TERMINAL, dataDir);
  const config = {
    terminalId: TERMINAL,
    dataDir,
    paymentSocket: { path: 'payment.sock' },
    acquirer: { host: '127.0.0.1', port: sim.port, backoffInitialMs: 50, backoffMaxMs: 400 },
    log: { level: 'info', file: path.join(tmp, 'agent.log') },
  };
  const socket = await startAgent(config);
  socketMode = statSync(socket).mode;
  lines = await runApp(socket);
  // SIGKILL, a new agent on the same files: the app resends a record as after a lost reply.
  agent.kill('SIGKILL');
  await new Promise((resolve) => agent.once('exit', resolve));
  const again = await startAgent(config);
  lines.push(...(await runApp(again, '--after-restart')));
  agent.stdin!.write('stop\n');
  await new Promise((resolve) => agent.once('exit', resolve));
}, 60_000);

afterAll(async () => {
  if (agent && agent.exitCode === null) agent.kill('SIGKILL');
  await sim?.stop();
  if (!process.env.KEEP) rmSync(tmp, { recursive: true, force: true });
  else console.log('TMP', tmp);
});

const step = (name: string): Line => {
  const found = lines.find((l) => l.step === name);
  expect(found, `the app printed no "${name}" step; stderr: ${appStderr}`).toBeDefined();
  return found!;
};

describe('a payment app in Python written from docs/protocol.md', () => {
  it('finds the socket where the config says, a socket only the agent user and group may use', () => {
    expect(socketMode & 0o170000).toBe(0o140000);
    expect(socketMode & 0o777).toBe(0o660);
  });

  it('ran to the end', () => {
    expect(appStderr).toBe('');
    expect(lines.map((l) => l.step).slice(-3)).toEqual([
      'acknowledged',
      'after_restart',
      'query_local_id',
    ]);
  });

  it("encodes the page's worked example to the page's bytes", () => {
    expect(step('example')).toMatchObject({
      hex: docExampleHex(),
      may_transact_hex: '00000005' + '0a016d5a00',
    });
  });

  it('asks may_transact and records a sale, a refund of it, a void and offline sales', () => {
    expect(step('may_transact')).toMatchObject({
      may_transact: { allowed: true, state: 'active', locks: [], reason: '' },
    });
    const sale = step('sale').record as Record<string, unknown>;
    // 0.60 % of 128.00 is 0.77, below the 3.00 minimum of the reference tariff.
    expect(sale).toMatchObject({
      fee: 300,
      fee_schedule_version: 'std-2026.1',
      masked_pan: '411111******1111',
      status: 'approved',
      local_id: 'PY-S1',
      duplicate: false,
    });
    expect(sale.batch_id).toMatch(/^B\d{6}-/);
    expect(step('refund').record).toMatchObject({
      status: 'approved',
      local_id: 'PY-R1',
      masked_pan: '411111******1111',
      duplicate: false,
    });
    expect(step('void').record).toMatchObject({
      local_id: 'PY-V1',
      masked_pan: '550000******5559',
    });
    expect(step('offline').record).toMatchObject({ status: 'pending-offline', local_id: 'PY-O1' });
    expect(step('offline_big').record).toMatchObject({ status: 'pending-offline' });
  });

  it('a repeat of a local_id gets the first result with duplicate=true, after a SIGKILL too', () => {
    const first = step('sale').record as Record<string, unknown>;
    expect(step('repeat').record).toEqual({ ...first, duplicate: true });
    expect(step('after_restart').record).toEqual({ ...first, duplicate: true });
    // A lost reply learned without resending: the same transaction, asked for by local_id.
    expect(step('query_local_id').transaction).toMatchObject({
      seq: first.seq,
      local_id: first.local_id,
      amount: 12800,
      status: 'approved',
    });
  });

  it('queries by seq, and an unknown seq is STORAGE_NOT_FOUND', () => {
    const sale = step('sale').record as { seq: number; batch_id: string };
    expect(step('query').transaction).toMatchObject({
      seq: sale.seq,
      local_id: 'PY-S1',
      type: 'sale',
      amount: 12_800,
      currency: 'CNY',
      fee: 300,
      status: 'approved',
      masked_pan: '411111******1111',
      auth_code: 'AUTH01',
      original_seq: 0,
      batch_id: sale.batch_id,
      advice_state: '',
    });
    expect(step('query_missing').error).toMatchObject({ code: 'STORAGE_NOT_FOUND' });
  });

  it('gets the typed errors the page lists for bad records', () => {
    expect(step('refund_no_original').error).toMatchObject({ code: 'TXN_ORIGINAL_NOT_FOUND' });
    expect(step('zero_amount').error).toMatchObject({ code: 'TXN_INVALID_AMOUNT' });
    expect(step('huge_amount').error).toMatchObject({ code: 'TXN_INVALID_AMOUNT' });
    expect(step('negative_amount').error).toMatchObject({ code: 'TXN_INVALID_AMOUNT' });
    expect(step('cvv').error).toMatchObject({ code: 'CARD_SENSITIVE_DATA' });
    expect(step('no_local_id').error).toMatchObject({ code: 'TXN_INVALID' });
    expect(step('refund_too_much').error).toMatchObject({ code: 'TXN_EXCEEDS_ORIGINAL' });
  });

  it('pipelines five requests on one connection and matches the replies by request_id', () => {
    const p = step('pipeline');
    expect(p.order).toEqual(p.sent);
    expect(p.kinds).toEqual(['may_transact', 'transaction', 'record', 'error', 'advice_outcomes']);
    expect(p.record).toMatchObject({ local_id: 'PY-P1', status: 'approved' });
    expect(p.error).toMatchObject({ code: 'TXN_INVALID_AMOUNT' });
    expect(p.queried).toBe((step('sale').record as { seq: number }).seq);
  });

  it('learns by polling advice_outcomes that one offline sale was accepted and one declined', () => {
    const o = step('outcomes');
    expect(o.timeout).toBeUndefined();
    expect(o.outcomes).toMatchObject([
      { local_id: 'PY-O1', type: 'sale', amount: 5_000, outcome: 'accepted', reason_code: '' },
      { local_id: 'PY-O2', amount: 30_000, outcome: 'declined', reason_code: 'AMOUNT_LIMIT' },
    ]);
    expect((o.outcomes as Array<{ reference: string }>)[0]!.reference).not.toBe('');
    expect(o.pending).toBe(0);
  });

  it('a malformed frame and an oversized length: one error with an empty request_id, then the close', () => {
    expect(step('malformed')).toMatchObject({
      replies: [{ request_id: '', error: { code: 'PROTOCOL_MALFORMED' } }],
      closed: true,
    });
    expect(step('oversized')).toMatchObject({
      replies: [{ request_id: '', error: { code: 'PROTOCOL_FRAME_TOO_LARGE' } }],
      closed: true,
    });
  });

  it('the journal holds every acknowledged record once, and no full card number', () => {
    const acked = step('acknowledged').local_ids as string[];
    expect(new Set(acked)).toEqual(
      new Set(['PY-S1', 'PY-R1', 'PY-S2', 'PY-V1', 'PY-O1', 'PY-O2', 'PY-P1']),
    );
    const journal = path.join(dataDir, 'journal.db');
    const db = new Database(journal, { readonly: true });
    try {
      const rows = db
        .prepare("SELECT local_id, COUNT(*) AS n FROM journal WHERE kind = 'txn' GROUP BY local_id")
        .all() as Array<{ local_id: string; n: number }>;
      const count = new Map(rows.map((r) => [r.local_id, r.n]));
      for (const id of acked) expect(count.get(id), id).toBe(1);
      // The refused ones left no transaction row.
      for (const id of ['PY-E1', 'PY-E2', 'PY-E3', 'PY-E4', 'PY-E5', 'PY-E6', 'PY-P2'])
        expect(count.has(id)).toBe(false);
    } finally {
      db.close();
    }
    const bytes = [journal, `${journal}-wal`]
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f).toString('latin1'))
      .join('');
    // What is kept is there (so these are the right bytes to look in), what is not is not.
    expect(bytes).toContain('411111******1111');
    for (const pan of PANS) expect(bytes.includes(pan), pan).toBe(false);
  });
});
