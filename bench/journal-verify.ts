/**
 * The full chain verify the agent runs at every start and on a schedule
 * (agent/runtime/journal-guard.ts): the whole hash chain of the 1M-row bench history, walked
 * on a worker thread (`checkJournalInWorker`, worker start-up included), against a raw
 * baseline in the same run: better-sqlite3 iterating the same rows (same columns, raw arrays)
 * and node:crypto SHA-256 over the same bytes (each row's JSON), on the main thread, with no
 * checks at all. Agent and raw runs alternate; the figure is the round with the median ratio.
 */
import { createHash } from 'node:crypto';
import { journalPath } from '../agent/runtime/core.ts';
import { loadDriver } from '../storage/db.ts';
import { CHAIN_SQL } from '../storage/journal.ts';
import { checkJournalInWorker } from '../storage/page-check.ts';
import { benchConfig, type BenchOptions } from './fixtures.ts';
import { ensureHistory } from './journal-builder.ts';
import type { Figure } from './report.ts';
import { msBetween, nowNs } from './stats.ts';

/** Reads every row the verify reads and hashes its bytes: the floor for any walk. */
function rawWalk(file: string): { rows: number; ms: number } {
  const t0 = nowNs();
  const db = new (loadDriver())(file, { readonly: true, fileMustExist: true });
  let rows = 0;
  try {
    for (const row of db.prepare(CHAIN_SQL).raw(true).iterate(0) as Iterable<unknown[]>) {
      createHash('sha256').update(JSON.stringify(row)).digest('hex');
      rows++;
    }
  } finally {
    db.close();
  }
  return { rows, ms: msBetween(t0) };
}

async function agentWalk(file: string): Promise<{ rows: number; ms: number }> {
  const t0 = nowNs();
  const r = await checkJournalInWorker(file, { pages: false, chainFrom: 'genesis' });
  const ms = msBetween(t0);
  if (!r.chain?.ok) throw new Error(`the bench journal does not verify: ${JSON.stringify(r)}`);
  return { rows: r.chain.checked, ms };
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const history = ensureHistory(opts.quick ? 100_000 : 1_000_000, opts);
  const file = journalPath(benchConfig(history.dir));
  const rounds = opts.quick ? 1 : 3;
  rawWalk(file); // warm the page cache for both sides
  const pairs: Array<{ agent: number; raw: number; rows: number }> = [];
  for (let i = 0; i < rounds; i++) {
    const a = await agentWalk(file);
    const r = rawWalk(file);
    if (a.rows !== r.rows) throw new Error(`agent walked ${a.rows} rows, raw ${r.rows}`);
    pairs.push({ agent: a.ms, raw: r.ms, rows: a.rows });
    opts.log(
      `  round ${i + 1}/${rounds}: worker verify ${a.ms.toFixed(0)} ms, raw ${r.ms.toFixed(0)} ms`,
    );
  }
  const order = [...pairs].sort((x, y) => x.agent / x.raw - y.agent / y.raw);
  const mid = order[Math.floor(order.length / 2)]!;
  return [
    {
      name: `full chain verify, ${mid.rows} rows (worker thread)`,
      value: mid.agent,
      unit: 'ms',
      baseline: mid.raw,
      baselineIs:
        'better-sqlite3 iterating the same rows (raw arrays) + node:crypto SHA-256 over each row, main thread, same run',
      target: { on: 'ratio', op: '<', limit: 2 },
      note: `round with the median ratio of ${rounds}; ratios ${order.map((p) => (p.agent / p.raw).toFixed(2)).join(', ')}; includes the worker's start-up`,
    },
  ];
}
