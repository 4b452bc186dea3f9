import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../../storage/store.ts';
import { openCore } from '../../agent/runtime/core.ts';
import { seededRandom } from '../../simulator/card-sim.ts';
import { activateForTest } from '../fixtures/core.ts';

/**
 * INVARIANTS 1 and 9 under SIGKILL: a child appends transactions through Payments.record
 * and prints each acknowledged seq; we kill it at random moments, check the journal from
 * this process, and restart it on the same journal.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD = path.join(ROOT, 'test/fixtures/append-child.ts');
const KILLS = 24;
const SEED = Number(process.env.CRASH_SEED ?? 0x0c0ffee);

const prng = seededRandom;

interface RunResult {
  acks: Array<{ seq: number; localId: string }>;
  dups: Array<{ seq: number; localId: string }>;
  refused: number;
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
}

/** Starts the child, kills it `delayMs` after its first acknowledgement, returns what it said. */
function runAndKill(dir: string, run: number, delayMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      cwd: ROOT,
      env: { ...process.env, APPEND_CHILD_DIR: dir, APPEND_CHILD_RUN: String(run) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let armed = false;
    const startTimeout = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`run ${run}: no acknowledgement within 15 s; stderr: ${err}`));
    }, 15_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (!armed && /^ack /m.test(out)) {
        armed = true;
        clearTimeout(startTimeout);
        setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.stderr.on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(startTimeout);
      // only complete lines count: a torn last line was never acknowledged
      const lines = out.split('\n').slice(0, -1);
      const res: RunResult = { acks: [], dups: [], refused: 0, signal, code, stderr: err };
      for (const l of lines) {
        const [kind, a, b] = l.split(' ');
        if (kind === 'ack') res.acks.push({ seq: Number(a), localId: b! });
        else if (kind === 'dup') res.dups.push({ seq: Number(a), localId: b! });
        else if (kind === 'refused') res.refused++;
      }
      resolve(res);
    });
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('SIGKILL while appending', () => {
  it(`loses and duplicates nothing across ${KILLS} kills`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pos-crash-'));
    dirs.push(dir);
    const file = path.join(dir, 'journal.db');
    const rnd = prng(SEED);
    const acked = new Map<string, number>();
    let maxAcked = 0;
    let lost = 0;
    let duplicated = 0;
    let chainBreaks = 0;
    let refusals = 0;
    let retries = 0;
    const problems: string[] = [];

    for (let run = 0; run < KILLS; run++) {
      const delay = 20 + Math.floor(rnd() * 281);
      const r = await runAndKill(dir, run, delay);
      if (r.signal !== 'SIGKILL') {
        throw new Error(
          `run ${run} ended by itself (code ${r.code}, signal ${r.signal}): ${r.stderr}`,
        );
      }
      expect(r.acks.length).toBeGreaterThan(0);
      refusals += r.refused;
      retries += r.dups.length;

      // This run resumed the same journal: its rows come after everything acknowledged before.
      if (r.acks[0]!.seq <= maxAcked)
        problems.push(`run ${run}: first seq ${r.acks[0]!.seq} <= ${maxAcked}`);
      for (const a of r.acks) {
        if (acked.has(a.localId))
          problems.push(`run ${run}: localId ${a.localId} acknowledged twice`);
        acked.set(a.localId, a.seq);
        maxAcked = Math.max(maxAcked, a.seq);
      }
      for (const d of r.dups) {
        if (acked.has(d.localId) && acked.get(d.localId) !== d.seq) {
          problems.push(
            `run ${run}: retry of ${d.localId} gave ${d.seq}, acknowledged as ${acked.get(d.localId)}`,
          );
        }
      }

      // Alternate read-only inspection (the next child recovers the WAL) and read-write.
      const store = Store.open(file, { readonly: run % 2 === 0 });
      try {
        const rows = store.db
          .prepare("SELECT seq, local_id AS localId FROM journal WHERE kind = 'txn'")
          .all() as Array<{ seq: number; localId: string }>;
        const bySeq = new Map(rows.map((x) => [x.localId, x.seq]));
        for (const [localId, seq] of acked) {
          const found = bySeq.get(localId);
          if (found === undefined) {
            lost++;
            problems.push(`run ${run}: acknowledged ${localId} (seq ${seq}) is missing`);
          } else if (found !== seq) {
            duplicated++;
            problems.push(
              `run ${run}: ${localId} acknowledged as seq ${seq}, journaled as ${found}`,
            );
          }
        }
        const twice = store.db
          .prepare(
            'SELECT local_id, count(*) AS n FROM journal WHERE local_id IS NOT NULL GROUP BY local_id HAVING n > 1',
          )
          .all();
        duplicated += twice.length;
        if (twice.length)
          problems.push(`run ${run}: localIds journaled twice: ${JSON.stringify(twice)}`);

        const v = store.journal.verify();
        const head = store.journal.headOf();
        if (!v.ok || v.checked !== head.seq) {
          chainBreaks++;
          problems.push(`run ${run}: chain ${JSON.stringify(v)}`);
        }
        const integrity = store.integrityCheck();
        if (integrity.join() !== 'ok')
          problems.push(`run ${run}: integrity_check ${integrity.join('; ')}`);

        // No refund ever took back more than its sale, in amount or fee.
        const over = store.db
          .prepare(
            `SELECT s.seq FROM journal s JOIN journal r ON r.original_seq = s.seq AND r.status != 'declined'
              WHERE s.type = 'sale' GROUP BY s.seq HAVING SUM(r.amount) > s.amount OR SUM(r.fee) > s.fee`,
          )
          .all();
        if (over.length) problems.push(`run ${run}: over-refunded sales ${JSON.stringify(over)}`);
        const life = store.state.lifecycle();
        if (life?.state !== 'active' || life.locks.length)
          problems.push(`run ${run}: lifecycle ${JSON.stringify(life)}`);
      } finally {
        store.close();
      }
      if (problems.length) break;
    }

    // After all that, the terminal still opens and takes a sale on the same chain.
    let unacknowledged = 0;
    const core = openCore({ dataDir: dir });
    try {
      if (core.terminal.status().state === 'unactivated') {
        activateForTest(core);
      }
      // rows committed by a child killed before it could print the acknowledgement
      const journaled = core.store.db
        .prepare("SELECT local_id AS id FROM journal WHERE kind = 'txn' AND local_id LIKE 'r%'")
        .all() as Array<{ id: string }>;
      unacknowledged = journaled.filter((x) => !acked.has(x.id)).length;
      const last = core.payments.record({
        type: 'sale',
        amount: 1_000,
        card: { pan: '4111111111111111' },
      });
      expect(last.seq).toBeGreaterThan(maxAcked);
      expect(core.store.journal.verify()).toMatchObject({ ok: true, checked: last.seq });
    } finally {
      core.close();
    }

    console.log(
      `crash: ${KILLS} kills, ${acked.size} acknowledged, ${lost} lost, ${duplicated} duplicated, ${chainBreaks} chain breaks` +
        ` (${retries} retries answered from the journal, ${refusals} refusals,` +
        ` ${unacknowledged} committed but killed before the ack, seed ${SEED})`,
    );
    expect(problems).toEqual([]);
    expect(acked.size).toBeGreaterThan(KILLS * 5);
    expect(retries).toBeGreaterThan(0);
  }, 90_000);
});
