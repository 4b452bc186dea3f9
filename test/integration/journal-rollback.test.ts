import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  closeSync,
  writeSync,
  writeFileSync,
  readdirSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { AcquirerSimulator } from '../../simulator/acquirer.ts';
import type { pos } from '../../protocol/messages.ts';
import { AgentProcess } from '../fixtures/agent-process.ts';
import { agentConfig } from '../fixtures/torture-env.ts';
import { sha } from '../fixtures/journal-faults.ts';
import { loadDriver } from '../../storage/db.ts';

/**
 * The journal cannot be rolled back unnoticed (issue 11). Each scenario runs real agent
 * processes on a real data directory against the acquirer simulator, damages the directory
 * from outside while the agent is down (a deleted WAL, an older copy put back, a byte of an
 * old row changed, a 0-byte journal, a lost witness), starts the agent again and checks that
 * it ends locked with a source that says why, takes nothing new (sales, and retries of
 * acknowledged local ids, are refused), settles nothing, leaves journal.db byte-identical,
 * and that the simulator's ledger did not change.
 */

let root: string;
let sim: AcquirerSimulator;
let n = 0;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-rollback-'));
  sim = await AcquirerSimulator.start({ dataDir: path.join(root, 'acquirer') });
});

afterAll(async () => {
  await sim.stop();
  rmSync(root, { recursive: true, force: true });
});

interface Terminal {
  terminalId: string;
  dataDir: string;
  config: Record<string, unknown>;
  journal: string;
  /** Every ack event the agents printed: what the payment app was told is recorded. */
  acked: Array<Record<string, unknown>>;
}

async function newTerminal(): Promise<Terminal> {
  const terminalId = `TR${String(++n).padStart(3, '0')}`;
  const code = `ROLL${n}X`;
  sim.registerTerminal({ terminalId, activationCode: code });
  const dataDir = path.join(root, terminalId);
  const config = agentConfig(sim, terminalId, dataDir);
  const t = { terminalId, dataDir, config, journal: path.join(dataDir, 'journal.db'), acked: [] };
  // First life: activation and some sales, stopped cleanly (the WAL is checkpointed).
  const a = await AgentProcess.start(config);
  await a.ask({ op: 'wait-up' }, (e) => e.up === true);
  await a.ask({ op: 'activate', code }, (e) => e.activated === true);
  await sales(a, t, 12);
  await a.ask({ op: 'stop' }, (e) => e.stopped === true);
  await a.exit();
  return t;
}

async function sales(
  p: AgentProcess,
  t: Terminal,
  count: number,
): Promise<Record<string, unknown>> {
  const before = p.events.length;
  const r = await p.ask(
    { op: 'sales', count, mix: { sale: 1 } },
    (e) => typeof e.sales === 'number',
  );
  t.acked.push(...p.events.slice(before).filter((e) => typeof e.ack === 'number'));
  return r;
}

/** Second life: more sales (optionally settled), then killed: its last rows sit in the WAL. */
async function secondLifeKilled(t: Terminal, settle: boolean): Promise<void> {
  const b = await AgentProcess.start(t.config);
  await b.ask({ op: 'wait-up' }, (e) => e.up === true);
  await sales(b, t, 9);
  if (settle) {
    const r = await b.ask({ op: 'settle' }, (e) => Array.isArray(e.settled));
    expect(r.error).toBe(null);
    expect((r.settled as string[]).length).toBeGreaterThan(0);
  }
  await b.kill();
  expect(existsSync(`${t.journal}-wal`)).toBe(true);
}

function ledgerView(terminalId: string): string {
  return JSON.stringify({
    settled: sim.ledger.settledBatches(terminalId),
    submissions: sim.ledger.submissions({ terminalId }).length,
  });
}

/**
 * Starts the agent on the damaged directory and checks everything the issue asks of it.
 * Returns the status the agent reported.
 */
async function expectLockedAndInert(
  t: Terminal,
  source: 'journal-rollback' | 'journal-broken',
  reason: RegExp,
  o: { byteIdentical?: boolean } = {},
): Promise<Record<string, unknown>> {
  const ledgerBefore = ledgerView(t.terminalId);
  const fileBefore = existsSync(t.journal) ? sha(t.journal) : 'absent';
  // The acquirer's view: the heartbeats it receives carry the terminal's locks.
  let heardLock = false;
  const listen = (cn: string, env: pos.v1.Envelope) => {
    if (cn === t.terminalId && env.body === 'heartbeat' && env.heartbeat?.locks?.includes(source))
      heardLock = true;
  };
  sim.on('received', listen);
  const p = await AgentProcess.start(t.config);
  try {
    await p.ask({ op: 'wait-up' }, (e) => e.up === true);
    const { status } = (await p.ask({ op: 'status' }, (e) => 'status' in e)) as {
      status: { locks: string[]; mayTransact: boolean; reason: string };
    };
    expect(status.locks).toContain(source);
    expect(status.mayTransact).toBe(false);
    expect(status.reason).toMatch(reason);
    // New sales are refused...
    const r = await sales(p, t, 3);
    expect(r).toMatchObject({ sales: 0, refused: 3 });
    // ...and so is a retry of an acknowledged sale: never recorded again as new.
    const last = t.acked.at(-1)!;
    const retry = await p.ask(
      {
        op: 'record',
        input: {
          type: 'sale',
          amount: last.amount,
          localId: last.localId,
          card: { pan: '4000001234567899' },
        },
      },
      (e) => 'recorded' in e,
    );
    expect(retry).toMatchObject({
      error: expect.stringMatching(/^(STORAGE_FROZEN|LIFECYCLE_LOCKED)$/),
    });
    // Nothing is settled from a journal behind what the acquirer may have settled.
    const settled = await p.ask({ op: 'settle' }, (e) => Array.isArray(e.settled));
    expect(settled.error).toBe('STORAGE_FROZEN');
    expect(settled.settled ?? []).toEqual([]);
    for (let i = 0; i < 150 && !heardLock; i++) await new Promise((r) => setTimeout(r, 100));
    expect(heardLock, 'a heartbeat told the acquirer about the lock').toBe(true);
    await p.ask({ op: 'stop' }, (e) => e.stopped === true);
    expect(await p.exit()).toBe(0);
    if (o.byteIdentical !== false)
      expect(existsSync(t.journal) ? sha(t.journal) : 'absent').toBe(fileBefore);
    expect(ledgerView(t.terminalId)).toBe(ledgerBefore);
    return status;
  } finally {
    sim.off('received', listen);
    if (p.child.exitCode === null) await p.kill();
  }
}

function deleteWal(t: Terminal): void {
  rmSync(`${t.journal}-wal`);
  rmSync(`${t.journal}-shm`, { force: true });
}

describe('a rolled-back journal locks the terminal and takes nothing new', () => {
  it('the WAL deleted before a settlement', async () => {
    const t = await newTerminal();
    await secondLifeKilled(t, false);
    deleteWal(t);
    await expectLockedAndInert(t, 'journal-rollback', /behind row \d+ that the witness saw/);
  }, 120_000);

  it('the WAL deleted after a settlement', async () => {
    const t = await newTerminal();
    await secondLifeKilled(t, true);
    deleteWal(t);
    await expectLockedAndInert(t, 'journal-rollback', /behind row \d+ that the witness saw/);
  }, 120_000);

  it('an older copy of the journal restored', async () => {
    const t = await newTerminal();
    const backup = path.join(root, `${t.terminalId}-backup`);
    cpSync(t.dataDir, backup, { recursive: true });
    const b = await AgentProcess.start(t.config);
    await b.ask({ op: 'wait-up' }, (e) => e.up === true);
    await sales(b, t, 5);
    await b.ask({ op: 'settle' }, (e) => Array.isArray(e.settled));
    await b.ask({ op: 'stop' }, (e) => e.stopped === true);
    await b.exit();
    // The backup's journal put back; the witness (kept apart from it) remembers the newer head.
    for (const f of ['journal.db', 'journal.db-wal', 'journal.db-shm']) {
      rmSync(path.join(t.dataDir, f), { force: true });
      if (existsSync(path.join(backup, f))) cpSync(path.join(backup, f), path.join(t.dataDir, f));
    }
    await expectLockedAndInert(t, 'journal-rollback', /behind row \d+ that the witness saw/);
  }, 120_000);

  it('one byte of an old row changed', async () => {
    const t = await newTerminal();
    // The stored hash of row 5, one hex digit changed in place: SQLite sees nothing wrong.
    const db = new (loadDriver())(t.journal, { readonly: true });
    const { hash } = db.prepare('SELECT hash FROM journal WHERE seq = 5').get() as { hash: string };
    db.close();
    // Every copy of it (row 5's hash, row 6's link, stale copies in free pages).
    const bytes = readFileSync(t.journal);
    const fd = openSync(t.journal, 'r+');
    let flipped = 0;
    for (let at = bytes.indexOf(hash); at >= 0; at = bytes.indexOf(hash, at + 1), flipped++)
      writeSync(fd, Buffer.from(hash[0] === 'a' ? 'b' : 'a'), 0, 1, at);
    closeSync(fd);
    expect(flipped).toBeGreaterThan(0);
    await expectLockedAndInert(t, 'journal-broken', /chain is broken at row [56]/);
  }, 120_000);

  it('a 0-byte journal', async () => {
    const t = await newTerminal();
    truncateSync(t.journal, 0);
    const status = await expectLockedAndInert(t, 'journal-rollback', /empty or missing/);
    expect(readFileSync(t.journal).length).toBe(0);
    expect(status).toMatchObject({ state: 'unactivated' });
  }, 120_000);

  it('the whole data directory restored, witness included: the acquirer says so', async () => {
    const t = await newTerminal();
    const backup = path.join(root, `${t.terminalId}-whole`);
    cpSync(t.dataDir, backup, { recursive: true });
    const b = await AgentProcess.start(t.config);
    await b.ask({ op: 'wait-up' }, (e) => e.up === true);
    await sales(b, t, 5);
    const last = t.acked.at(-1)!.ack as number;
    // A heartbeat carries the head to the acquirer (every second in this config).
    const deadline = Date.now() + 15_000;
    while ((sim.reportedHead(t.terminalId)?.seq ?? 0) < last && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(sim.reportedHead(t.terminalId)?.seq).toBeGreaterThanOrEqual(last);
    await b.ask({ op: 'stop' }, (e) => e.stopped === true);
    await b.exit();
    rmSync(t.dataDir, { recursive: true });
    cpSync(backup, t.dataDir, { recursive: true });
    // The local witness agrees with its own journal; the acquirer's does not. (Before the
    // first contact the agent has written its self-test checkpoint: not byte-identical.)
    await expectLockedAndInert(t, 'journal-rollback', /the acquirer saw this journal reach row/, {
      byteIdentical: false,
    });
    expect(sim.reportedHead(t.terminalId)?.behind).toMatch(/behind row \d+ it reported/);
    // The hold is kept in the witness: locked at the next start before any contact.
    const verdict = cli('recovery', 'report', '--data', t.dataDir);
    expect(verdict.code).toBe(1);
    expect(verdict.out).toMatch(/ROLLBACK: .*reported by the acquirer/);
  }, 120_000);

  it('a lost witness', async () => {
    const t = await newTerminal();
    rmSync(path.join(t.dataDir, 'journal.witness'));
    await expectLockedAndInert(t, 'journal-rollback', /witness is missing/);
  }, 120_000);
});

const REPO = path.resolve(import.meta.dirname, '..', '..');

/** The production CLI as a real process: its exit code, stdout and stderr. */
function cli(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['bin/pos-agent.mjs', ...args], { cwd: REPO });
  return { code: r.status, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe('recovery, end to end', () => {
  it('report, export, a forged grant refused, a new incarnation under the acquirer grant, trading again', async () => {
    const t = await newTerminal();
    await secondLifeKilled(t, true);
    deleteWal(t);
    const settledBefore = sim.ledger.settledBatches(t.terminalId);
    expect(settledBefore.length).toBeGreaterThan(0);
    const journalSha = sha(t.journal);

    // What was lost, from the files alone: the witness says the journal is behind.
    const plain = cli('recovery', 'report', '--data', t.dataDir);
    expect(plain.code).toBe(1);
    expect(plain.out).toMatch(/ROLLBACK: the journal ends at row \d+, behind row \d+/);

    // With the acquirer's grant: its settled batch is open here again (or gone).
    const grantFile = path.join(root, `${t.terminalId}-grant.json`);
    writeFileSync(grantFile, sim.signRecoveryGrant(t.terminalId));
    const withGrant = cli(
      'recovery',
      'report',
      '--data',
      t.dataDir,
      '--grant',
      grantFile,
      '--json',
    );
    const report = JSON.parse(withGrant.out) as {
      acquirer: { settled: Array<{ batchId: string; local: string }> };
    };
    expect(report.acquirer.settled).toEqual(
      settledBefore.map((b) => ({
        batchId: b.batchId,
        local: expect.stringMatching(/^(reborn-open|missing)$/),
      })),
    );
    expect(report.acquirer.settled.some((s) => s.local === 'reborn-open')).toBe(true);

    // Evidence out, nothing changed.
    const out = path.join(root, `${t.terminalId}-export`);
    const exported = cli('recovery', 'export', '--data', t.dataDir, '--out', out);
    expect(exported.code).toBe(0);
    expect(sha(path.join(out, 'journal.db'))).toBe(journalSha);
    expect(existsSync(path.join(out, 'manifest.json'))).toBe(true);

    // A grant not signed by the acquirer is refused and moves nothing.
    const forger = generateKeyPairSync('ed25519');
    const body = Buffer.from(JSON.parse(readFileSync(grantFile, 'utf8')).grant, 'base64url');
    const forged = path.join(root, `${t.terminalId}-forged.json`);
    writeFileSync(
      forged,
      JSON.stringify({
        grant: body.toString('base64url'),
        signature: sign(null, body, forger.privateKey).toString('base64url'),
      }),
    );
    const refused = cli('recovery', 'start', '--data', t.dataDir, '--grant', forged);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/not signed by the acquirer/);
    expect(sha(t.journal)).toBe(journalSha);

    // The real grant: the old files move to forensics/, a new incarnation starts.
    const started = cli('recovery', 'start', '--data', t.dataDir, '--grant', grantFile);
    expect(started.code, started.err).toBe(0);
    const forensics = path.join(t.dataDir, 'forensics');
    const [kept] = readdirSync(forensics);
    expect(sha(path.join(forensics, kept!, 'original-journal.db'))).toBe(journalSha);

    // Trading again: unlocked, a new batch id (new incarnation) settled exactly once, and the
    // acquirer's earlier settlements untouched.
    const p = await AgentProcess.start(t.config);
    await p.ask({ op: 'wait-up' }, (e) => e.up === true);
    const { status } = (await p.ask({ op: 'status' }, (e) => 'status' in e)) as {
      status: { locks: string[]; mayTransact: boolean; state: string };
    };
    expect(status).toMatchObject({ state: 'active', locks: [], mayTransact: true });
    expect(await sales(p, t, 4)).toMatchObject({ sales: 4, refused: 0 });
    const settled = await p.ask({ op: 'settle' }, (e) => Array.isArray(e.settled));
    expect(settled.error).toBe(null);
    const newIds = settled.settled as string[];
    expect(newIds).toHaveLength(1);
    expect(settledBefore.map((b) => b.batchId)).not.toContain(newIds[0]);
    expect(sim.ledger.settlementCount(t.terminalId, newIds[0]!)).toBe(1);
    for (const b of settledBefore)
      expect(sim.ledger.settlementCount(t.terminalId, b.batchId)).toBe(1);
    await p.ask({ op: 'stop' }, (e) => e.stopped === true);
    await p.exit();
  }, 180_000);
});
