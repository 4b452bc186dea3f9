/**
 * Builds the large journals the benchmarks need, once, into bench/.cache/ (reused while the
 * `built.txt` marker is there; delete the directory to rebuild):
 *
 * - a settlement backlog: N sales in one open batch, recorded through the agent's own entry
 *   point with group commit (recordAsync lanes), so every row is exactly what the agent writes;
 * - a history: ~N rows of a terminal that traded for months, 10,000 sales per batch, every
 *   closed batch acked, with its batch-closed/sent/acked events, and today's batch still open.
 *   Written with raw inserts in large transactions (minutes faster than the entry point), but
 *   with the agent's own row hash, totals and digest, so `journal verify` passes on it.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { journalPath } from '../agent/runtime/core.ts';
import { SelfTest } from '../agent/policy/selftest.ts';
import { batchDigest, computeTotals } from '../agent/policy/batch-totals.ts';
import { protectCard } from '../agent/policy/card.ts';
import { DEFAULT_FEE_SCHEDULE, saleFee } from '../agent/policy/fees.ts';
import { loadDriver } from '../storage/db.ts';
import { JOURNAL_COLUMNS, rowHash, type TxnRow } from '../storage/journal.ts';
import { eventContent } from '../storage/journal-rows.ts';
import {
  benchConfig,
  cacheDir,
  isBuilt,
  openActivatedCore,
  sale,
  TEST_PAN,
  type BenchOptions,
} from './fixtures.ts';
import { msBetween, nowNs } from './stats.ts';

const MARKER = 'built.txt';

/** Sales in one open batch, through `payments.recordAsync`; returns the cached data dir. */
export async function ensureBacklog(rows: number, opts: BenchOptions): Promise<string> {
  const dir = cacheDir(`backlog-${rows}`);
  if (isBuilt(dir, MARKER)) return dir;
  rmSync(dir, { recursive: true, force: true });
  const t0 = nowNs();
  const core = openActivatedCore(dir);
  try {
    let next = 0;
    const lane = async (): Promise<void> => {
      for (let i = next++; i < rows; i = next++) {
        // One sale in twenty declined: journaled and in the digest, but moving no money.
        await core.payments.recordAsync({
          ...sale(i),
          status: i % 20 === 7 ? 'declined' : 'approved',
        });
      }
    };
    await Promise.all(Array.from({ length: 256 }, lane));
    // The checkpoint the agent's quick self-test starts from, as after a normal start.
    new SelfTest({
      store: core.store,
      clock: core.clock,
      log: core.log,
      config: core.config,
      terminal: core.terminal,
      clockOffsetMs: () => null,
    }).run({ full: false });
  } finally {
    core.close();
  }
  writeFileSync(path.join(dir, MARKER), `${rows} sales in one open batch\n`);
  opts.log(`  built a ${rows}-sale backlog in ${(msBetween(t0) / 1000).toFixed(1)} s`);
  return dir;
}

/** The self-test's checkpoint key in `meta` (agent/selftest.ts). */
const META_VERIFY_CHECKPOINT = 'verify_checkpoint';

export interface History {
  dir: string;
  rows: number;
  /** Where the last start's self-test left its checkpoint: before today's open batch. */
  checkpoint: { seq: number; hash: string };
}

const BATCH_SALES = 10_000;
const DAY_MS = 24 * 3600_000;

/** ~`rows` journal rows of history; returns the cached data dir and the checkpoint to reset to. */
export function ensureHistory(rows: number, opts: BenchOptions): History {
  const dir = cacheDir(`history-${rows}`);
  const file = path.join(dir, 'checkpoint.txt');
  if (isBuilt(dir, MARKER))
    return {
      dir,
      rows,
      checkpoint: JSON.parse(readFileSync(file, 'utf8')) as History['checkpoint'],
    };
  rmSync(dir, { recursive: true, force: true });
  const t0 = nowNs();
  const core = openActivatedCore(dir);
  const card = protectCard({ pan: TEST_PAN }, core.tokenKeys.load(true));
  core.close();

  const { db, insertRow, insertBatch } = openForBuild(dir);
  let head = db.prepare('SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1').get() as {
    seq: number;
    hash: string;
  };
  const append = (content: Columns): string => {
    const hash = rowHash(head.hash, content as Parameters<typeof rowHash>[1]);
    insertRow.run({ ...content, prev_hash: head.hash, hash });
    head = { seq: content.seq as number, hash };
    return hash;
  };
  const event = (at: number, name: string, detail: Record<string, unknown>): void =>
    void append(eventColumns(head.seq + 1, at, name, detail));

  // Today's open batch gets the remainder: about half a batch, ~1% of a million-row journal.
  const closedBatches = Math.max(
    0,
    Math.floor((rows - head.seq - BATCH_SALES / 2) / (BATCH_SALES + 3)),
  );
  const start = Date.now() - (closedBatches + 1) * DAY_MS;
  let checkpoint = head;
  for (let number = 1; number <= closedBatches + 1; number++) {
    const open = number === closedBatches + 1;
    const sales = open ? Math.max(1, rows - head.seq) : BATCH_SALES;
    const batchId = `B${String(number).padStart(6, '0')}-${randomBytes(3).toString('hex').toUpperCase()}`;
    const day = start + (number - 1) * DAY_MS;
    if (open) checkpoint = head;
    db.transaction(() => {
      const txns: TxnRow[] = [];
      for (let i = 0; i < sales; i++) {
        const r = saleColumns(head.seq + 1, day + i * 5000, batchId, card);
        txns.push(saleRow(r, append(r)));
      }
      const closedAt = day + DAY_MS - 3600_000;
      const settlementId = `STL-${randomBytes(8).toString('hex').toUpperCase()}`;
      insertBatch.run(batchRecord({ batchId, number, open, day, closedAt, txns, settlementId }));
      if (open) return;
      const totals = computeTotals(txns, 'CNY');
      const digest = batchDigest(batchId, txns);
      event(closedAt, 'batch-closed', { batchId, digest, totals, reason: 'nightly cutover' });
      event(closedAt + 10, 'batch-sent', { batchId, digest });
      event(closedAt + 50, 'batch-acked', {
        batchId,
        digest,
        settlementId,
        acquirerTotals: totals,
        duplicate: false,
      });
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  writeFileSync(file, JSON.stringify(checkpoint) + '\n');
  writeFileSync(
    path.join(dir, MARKER),
    `${head.seq} journal rows, ${closedBatches} acked batches + 1 open\n`,
  );
  opts.log(`  built a ${head.seq}-row history in ${(msBetween(t0) / 1000).toFixed(1)} s`);
  return { dir, rows, checkpoint };
}

/** The journal file opened for a fast build, with its two insert statements. */
function openForBuild(dir: string) {
  const db = new (loadDriver())(journalPath(benchConfig(dir)));
  db.pragma('journal_mode = WAL');
  // A build step, not a measurement: the finished file is checkpointed and closed after.
  db.pragma('synchronous = OFF');
  const cols = JOURNAL_COLUMNS;
  const insertRow = db.prepare(
    `INSERT INTO journal (${cols.join(', ')}, prev_hash, hash) VALUES (${cols.map((c) => '@' + c).join(', ')}, @prev_hash, @hash)`,
  );
  const insertBatch = db.prepare(
    `INSERT INTO batches (batch_id, number, state, business_date, opened_at, closed_at, first_seq, last_seq,
       txn_count, totals, digest, settlement_id, acquirer_totals, updated_at)
     VALUES (@batch_id, @number, @state, @business_date, @opened_at, @closed_at, @first_seq, @last_seq,
       @txn_count, @totals, @digest, @settlement_id, @acquirer_totals, @updated_at)`,
  );
  return { db, insertRow, insertBatch };
}

type Columns = Record<(typeof JOURNAL_COLUMNS)[number], unknown>;

/** The journal columns of one approved sale of the history, priced by the reference tariff. */
function saleColumns(
  seq: number,
  at: number,
  batchId: string,
  card: { maskedPan: string; panToken: string },
): Columns & { seq: number; created_at: number; amount: number; fee: number } {
  const amount = 1000 + (seq % 5000);
  return {
    seq,
    kind: 'txn',
    created_at: at,
    local_id: `L${seq}`,
    type: 'sale',
    original_seq: null,
    amount,
    currency: 'CNY',
    category: 'default',
    fee: saleFee(DEFAULT_FEE_SCHEDULE, 'default', amount),
    fee_version: DEFAULT_FEE_SCHEDULE.version,
    masked_pan: card.maskedPan,
    pan_token: card.panToken,
    auth_code: null,
    status: 'approved',
    batch_id: batchId,
    event: null,
    detail: null,
  };
}

/** The same sale as the journal reads it back, for the batch totals and digest. */
function saleRow(c: ReturnType<typeof saleColumns>, hash: string): TxnRow {
  return {
    seq: c.seq,
    createdAt: c.created_at,
    hash,
    localId: `L${c.seq}`,
    type: 'sale',
    originalSeq: null,
    amount: c.amount,
    currency: 'CNY',
    category: 'default',
    fee: c.fee,
    feeVersion: DEFAULT_FEE_SCHEDULE.version,
    maskedPan: c.masked_pan as string,
    panToken: c.pan_token as string,
    authCode: null,
    status: 'approved',
    batchId: c.batch_id as string,
  };
}

/** The journal columns of one event row. */
function eventColumns(
  seq: number,
  at: number,
  name: string,
  detail: Record<string, unknown>,
): Columns {
  return { ...eventContent(name, null, detail, at), seq };
}

/** The batches row of one history batch: today's open one, or an earlier one settled and acked. */
function batchRecord(b: {
  batchId: string;
  number: number;
  open: boolean;
  day: number;
  closedAt: number;
  txns: TxnRow[];
  settlementId: string;
}): Record<string, unknown> {
  const { open, day, closedAt, txns } = b;
  const totals = computeTotals(txns, 'CNY');
  return {
    batch_id: b.batchId,
    number: b.number,
    state: open ? 'open' : 'acked',
    business_date: open ? null : new Date(day).toISOString().slice(0, 10),
    opened_at: day,
    closed_at: open ? null : closedAt,
    first_seq: open ? null : txns[0]!.seq,
    last_seq: open ? null : txns.at(-1)!.seq,
    txn_count: open ? null : txns.length,
    totals: open ? null : JSON.stringify(totals),
    digest: open ? null : batchDigest(b.batchId, txns),
    settlement_id: open ? null : b.settlementId,
    acquirer_totals: open ? null : JSON.stringify(totals),
    updated_at: open ? day : closedAt,
  };
}

/** Puts the self-test checkpoint where `at` says (the state a restart finds). */
export function resetCheckpoint(dataDir: string, at: { seq: number; hash: string } | null): void {
  const db = new (loadDriver())(journalPath(benchConfig(dataDir)));
  try {
    if (at === null) db.prepare('DELETE FROM meta WHERE key = ?').run(META_VERIFY_CHECKPOINT);
    else
      db.prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ).run(META_VERIFY_CHECKPOINT, JSON.stringify(at));
  } finally {
    db.close();
  }
}
