/**
 * Durable journal append: rows acknowledged per second through the agent's entry point
 * (`core.payments.record`, durable on return: WAL, synchronous=FULL), one lane and with
 * concurrent lanes on `recordAsync` (group commit), against raw better-sqlite3 inserts into
 * the same journal table (same migration, same indexes) with the same pragmas and one
 * commit per row. Agent and raw windows alternate so drift hits both alike.
 */
import path from 'node:path';
import type { Database, Statement } from 'better-sqlite3';
import { loadDriver } from '../storage/db.ts';
import { migrations } from '../storage/migrations.ts';
import type { Core } from '../agent/core.ts';
import { openActivatedCore, sale, tempDir, type BenchOptions } from './fixtures.ts';
import type { Figure } from './report.ts';
import { median, msBetween, nowNs, perSecond, rateFor } from './stats.ts';

/** A fresh file holding the journal's own table, opened the way the agent opens it. */
function openRawJournal(dir: string): { db: Database; insert: Statement; next: () => number } {
  const Driver = loadDriver();
  const db = new Driver(path.join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(migrations[0]!.sql);
  const insert = db.prepare(
    `INSERT INTO journal (seq, kind, created_at, local_id, type, amount, currency, category, fee,
       fee_version, masked_pan, pan_token, status, batch_id, prev_hash, hash)
     VALUES (?, 'txn', ?, ?, 'sale', ?, 'CNY', 'default', ?, 'std-2026.1', '411111******1111', ?,
       'approved', 'B000001-ABCDEF', ?, ?)`,
  );
  let seq = 0;
  return { db, insert, next: () => ++seq };
}

const HEX = 'a'.repeat(64);

/** One raw insert, its own autocommit transaction: one durable commit per row. */
function rawAppend(raw: ReturnType<typeof openRawJournal>): void {
  const seq = raw.next();
  raw.insert.run(seq, Date.now(), `R${seq}`, 1000 + (seq % 5000), 300, HEX, HEX, HEX);
}

/** `lanes` payment apps, each awaiting its own acknowledgement before its next record. */
async function lanesRate(core: Core, lanes: number, ms: number): Promise<number> {
  let stop = false;
  let acks = 0;
  let i = 0;
  const start = nowNs();
  const lane = async (): Promise<void> => {
    while (!stop) {
      await core.payments.recordAsync(sale(i++));
      acks++;
    }
  };
  const running = Array.from({ length: lanes }, lane);
  setTimeout(() => (stop = true), ms);
  await Promise.all(running);
  return perSecond(acks, msBetween(start));
}

export async function run(opts: BenchOptions): Promise<Figure[]> {
  const rounds = opts.quick ? 1 : 3;
  const windowMs = opts.quick ? 800 : 2500;
  const raw = openRawJournal(tempDir('append-raw'));
  const core = openActivatedCore(tempDir('append-agent'));
  const rawRates: number[] = [];
  const agentRates = new Map<number, number[]>([
    [1, []],
    [8, []],
    [32, []],
  ]);
  try {
    // Warm-up: statements prepared, pages cached, JIT done, on both sides.
    for (let i = 0; i < 200; i++) rawAppend(raw);
    for (let i = 0; i < 200; i++) core.payments.record(sale(i));
    for (let r = 0; r < rounds; r++) {
      rawRates.push((await rateFor(windowMs, 1, () => rawAppend(raw))).rate);
      let i = 0;
      agentRates
        .get(1)!
        .push((await rateFor(windowMs, 1, () => void core.payments.record(sale(i++)))).rate);
      for (const lanes of [8, 32])
        agentRates.get(lanes)!.push(await lanesRate(core, lanes, windowMs));
      opts.log(
        `  round ${r + 1}/${rounds}: raw ${rawRates.at(-1)!.toFixed(0)} rows/s, agent ` +
          [...agentRates].map(([l, v]) => `${l} lane(s) ${v.at(-1)!.toFixed(0)}`).join(', '),
      );
    }
  } finally {
    raw.db.close();
    core.close();
  }
  const baseline = median(rawRates);
  const baselineIs =
    'raw better-sqlite3 INSERT into the same journal table, WAL + synchronous=FULL, one commit per row, same run';
  const note = `median of ${rounds} alternating ${windowMs} ms windows`;
  const target = { on: 'ratio', op: '>=', limit: 1 } as const;
  return [
    {
      name: 'journal append, 1 lane (payments.record)',
      value: median(agentRates.get(1)!),
      unit: 'rows/s',
      baseline,
      baselineIs,
      target,
      note,
    },
    ...[8, 32].map((lanes) => ({
      name: `journal append, ${lanes} lanes (recordAsync group commit)`,
      value: median(agentRates.get(lanes)!),
      unit: 'rows/s',
      baseline,
      baselineIs,
      target,
      note: `${note}; each lane awaits its own durable ack`,
    })),
  ];
}
