import type { Statement } from 'better-sqlite3';
import { AgentError } from '../base/errors.ts';
import { guarded, statementCache, type Database } from './db.ts';
import { walkChain } from './chain-walk.ts';
import { BATCH_SLICE_SQL, toBatchSlice, type BatchSlice } from './batch-slice.ts';
import {
  CHAIN_SQL,
  GENESIS_HASH,
  JOURNAL_COLUMNS,
  chainHash,
  eventContent,
  toEntry,
  type Content,
  type EventRow,
  type JournalEntry,
  type RawRow,
  type TxnDetailRow,
  type TxnDetailTuple,
  type TxnRecord,
  type TxnRow,
  type TxnSumRow,
} from './journal-rows.ts';

export { CHAIN_SQL, GENESIS_HASH, JOURNAL_COLUMNS, rowHash } from './journal-rows.ts';
export type {
  EventRow,
  JournalEntry,
  TxnDetailRow,
  TxnDetailTuple,
  TxnRecord,
  TxnRow,
  TxnStatus,
  TxnSumRow,
  TxnType,
} from './journal-rows.ts';

/**
 * The hash-chained journal. Each row's hash is SHA-256 over the previous row's hash and
 * the row's canonical content (every column but the hashes, in a fixed order), so a
 * change to any byte of any row, or a removed or reordered row, breaks the chain at
 * that row.
 */

export interface VerifyResult {
  ok: boolean;
  checked: number;
  headSeq: number;
  headHash: string;
  /** The first row whose hash or link does not match. */
  firstBad?: { seq: number; reason: string };
}

export class Journal {
  private readonly sql: (sql: string) => Statement;
  private readonly insert: Statement;
  private readonly head: Statement;
  private readonly bySeq: Statement;
  private readonly byLocalId: Statement;
  private readonly settledAgainst: Statement;

  constructor(private readonly db: Database) {
    this.sql = statementCache(db);
    this.insert = db.prepare(
      `INSERT INTO journal (${JOURNAL_COLUMNS.join(', ')}, prev_hash, hash)
       VALUES (${JOURNAL_COLUMNS.map(() => '?').join(', ')}, ?, ?)`,
    );
    this.head = db.prepare('SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1');
    this.bySeq = db.prepare('SELECT * FROM journal WHERE seq = ?');
    this.byLocalId = db.prepare('SELECT * FROM journal WHERE local_id = ?');
    this.settledAgainst = db.prepare(
      `SELECT COALESCE(SUM(amount), 0) AS amount, COALESCE(SUM(fee), 0) AS fee, COUNT(*) AS n,
              COALESCE(SUM(type IN ('void', 'reversal')), 0) AS cancels
         FROM journal WHERE kind = 'txn' AND original_seq = ? AND status != 'declined'`,
    );
  }

  /**
   * The newest row, kept in memory from the last append (read three times per payment); Store
   * drops it after a rolled-back transaction (forget), so the next read goes to the file.
   */
  private known: { seq: number; hash: string } | undefined;

  forget(): void {
    this.known = undefined;
  }

  /** The newest row's sequence number and hash (GENESIS when empty). */
  headOf(): { seq: number; hash: string } {
    if (!this.known) {
      const row = guarded(() => this.head.get()) as { seq: number; hash: string } | undefined;
      this.known = row ?? { seq: 0, hash: GENESIS_HASH };
    }
    return { ...this.known };
  }

  /** Appends a transaction row; the caller owns the surrounding SQLite transaction. */
  appendTxn(rec: TxnRecord, createdAt: number): TxnRow {
    const row = this.write({
      kind: 'txn',
      created_at: createdAt,
      local_id: rec.localId,
      type: rec.type,
      original_seq: rec.originalSeq,
      amount: rec.amount,
      currency: rec.currency,
      category: rec.category,
      fee: rec.fee,
      fee_version: rec.feeVersion,
      masked_pan: rec.maskedPan,
      pan_token: rec.panToken,
      auth_code: rec.authCode,
      status: rec.status,
      batch_id: rec.batchId,
      event: null,
      detail: null,
    });
    return { ...rec, seq: row.seq, createdAt, hash: row.hash };
  }

  /** Appends an event row (transition, refusal, command, batch step, login...). */
  appendEvent(event: string, detail: Record<string, unknown>, createdAt: number): EventRow {
    return this.appendEventAbout(event, null, detail, createdAt);
  }

  /**
   * Appends an event row about an earlier row (an acquirer's answer to an advice): the
   * reference is the row's original_seq, so it is covered by the hash like the rest.
   */
  appendEventAbout(
    event: string,
    originalSeq: number | null,
    detail: Record<string, unknown>,
    createdAt: number,
  ): EventRow {
    const row = this.write(eventContent(event, originalSeq, detail, createdAt));
    return { seq: row.seq, createdAt, event, detail, hash: row.hash };
  }

  /** Rows written so far under `soleAppend`; undefined outside it. */
  private soleWrites: number | undefined;

  /**
   * Runs fn allowing it one row (Store.appendAlone commits without BEGIN/COMMIT): a second
   * row would commit apart from the first, so it is refused before it is written.
   */
  soleAppend<T>(fn: () => T): T {
    this.soleWrites = 0;
    try {
      return fn();
    } finally {
      this.soleWrites = undefined;
    }
  }

  /** True when an append failed only because its local id is already in the journal. */
  static isLocalIdTaken(e: unknown): boolean {
    if (!(e instanceof AgentError) || e.context.sqlite !== 'SQLITE_CONSTRAINT_UNIQUE') return false;
    return `${e.message} ${String(e.context.detail)}`.includes('journal.local_id');
  }

  private write(content: Omit<Content, 'seq'>): { seq: number; hash: string } {
    if (this.soleWrites !== undefined && this.soleWrites > 0)
      throw new AgentError(
        'STORAGE_IO',
        'a second journal row was asked for in a write that may only add one; nothing was written',
      );
    const head = this.headOf();
    const full: Content = { ...content, seq: head.seq + 1 };
    // One array serves the hash (its canonical JSON, as rowHash) and the positional insert.
    const values = JOURNAL_COLUMNS.map((c) => full[c] ?? null);
    const hash = chainHash(head.hash, JSON.stringify(values));
    try {
      guarded(() => this.insert.run(...values, head.hash, hash));
    } catch (e) {
      this.known = undefined;
      throw e;
    }
    this.known = { seq: full.seq, hash };
    if (this.soleWrites !== undefined) this.soleWrites++;
    return { seq: full.seq, hash };
  }

  get(seq: number): JournalEntry | undefined {
    const raw = guarded(() => this.bySeq.get(seq)) as RawRow | undefined;
    return raw && toEntry(raw);
  }

  getTxn(seq: number): TxnRow | undefined {
    const e = this.get(seq);
    return e?.kind === 'txn' ? e : undefined;
  }

  findByLocalId(localId: string): TxnRow | undefined {
    const raw = guarded(() => this.byLocalId.get(localId)) as RawRow | undefined;
    const e = raw && toEntry(raw);
    return e?.kind === 'txn' ? e : undefined;
  }

  /** What later rows (refunds, voids, reversals) already took back from an original. */
  takenFrom(originalSeq: number): {
    amount: number;
    fee: number;
    count: number;
    cancelled: boolean;
  } {
    const r = guarded(() => this.settledAgainst.get(originalSeq)) as {
      amount: number;
      fee: number;
      n: number;
      cancels: number;
    };
    return { amount: r.amount, fee: r.fee, count: r.n, cancelled: r.cancels > 0 };
  }

  /** The newest entries, newest last. */
  tail(n: number, kind?: 'txn' | 'event'): JournalEntry[] {
    const where = kind ? 'WHERE kind = ?' : '';
    const rows = guarded(() =>
      this.sql(`SELECT * FROM journal ${where} ORDER BY seq DESC LIMIT ?`).all(
        ...(kind ? [kind, n] : [n]),
      ),
    ) as RawRow[];
    return rows.reverse().map(toEntry);
  }

  /** Transactions of one batch in sequence order. */
  batchRows(batchId: string): TxnRow[] {
    const rows = guarded(() =>
      this.sql("SELECT * FROM journal WHERE kind = 'txn' AND batch_id = ? ORDER BY seq").all(
        batchId,
      ),
    ) as RawRow[];
    return rows.map((r) => toEntry(r) as { kind: 'txn' } & TxnRow);
  }

  /** How many transactions a batch has. */
  batchCount(batchId: string): number {
    const r = guarded(() =>
      this.sql("SELECT COUNT(*) AS n FROM journal WHERE kind = 'txn' AND batch_id = ?").get(
        batchId,
      ),
    ) as { n: number };
    return r.n;
  }

  /** Up to `limit` transactions of a batch after sequence number `afterSeq`, in order. */
  batchRowsAfter(batchId: string, afterSeq: number, limit: number): TxnRow[] {
    const rows = guarded(() =>
      this.sql(
        "SELECT * FROM journal WHERE kind = 'txn' AND batch_id = ? AND seq > ? ORDER BY seq LIMIT ?",
      ).all(batchId, afterSeq, limit),
    ) as RawRow[];
    return rows.map((r) => toEntry(r) as { kind: 'txn' } & TxnRow);
  }

  /** The sequence number of a batch's transaction at `offset` (0-based) in order; 0 if none. */
  batchSeqAt(batchId: string, offset: number): number {
    if (offset < 0) return 0;
    const r = guarded(() =>
      this.sql(
        "SELECT seq FROM journal WHERE kind = 'txn' AND batch_id = ? ORDER BY seq LIMIT 1 OFFSET ?",
      ).get(batchId, offset),
    ) as { seq: number } | undefined;
    return r?.seq ?? 0;
  }

  /**
   * The same rows as batchRows, but only the six columns a batch's totals and digest need:
   * closing (or showing) a 100,000-row batch then reads a fraction of the bytes and builds
   * no full row objects, so it blocks the event loop for far less time.
   */
  batchSums(batchId: string): TxnSumRow[] {
    if (!this.hasAdviceQueue()) {
      // A journal opened as evidence (no migrations) may predate store-and-forward.
      return guarded(() =>
        this.sql(
          `SELECT seq, hash, type, status, COALESCE(amount, 0) AS amount, COALESCE(fee, 0) AS fee
             FROM journal WHERE kind = 'txn' AND batch_id = ? ORDER BY seq`,
        ).all(batchId),
      ) as TxnSumRow[];
    }
    return guarded(() =>
      this.sql(
        // A row whose offline advice the acquirer declined (or that expired unanswered) moves
        // no money: it counts as declined, so it leaves the totals and carries no fee.
        `SELECT j.seq, j.hash, j.type,
                CASE WHEN q.outcome IN ('declined', 'expired') THEN 'declined' ELSE j.status END AS status,
                COALESCE(j.amount, 0) AS amount, COALESCE(j.fee, 0) AS fee
             FROM journal j LEFT JOIN advice_queue q ON q.seq = j.seq
            WHERE j.kind = 'txn' AND j.batch_id = ? ORDER BY j.seq`,
      ).all(batchId),
    ) as TxnSumRow[];
  }

  private adviceQueue: boolean | undefined;
  private hasAdviceQueue(): boolean {
    return (this.adviceQueue ??=
      guarded(() =>
        this.sql(
          "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'advice_queue'",
        ).get(),
      ) !== undefined);
  }

  /**
   * Up to `limit` transactions of a batch after `afterSeq`, in order, as the detail upload
   * sends them: only the columns it sends, named as it sends them, nulls as empty values, so
   * a 100,000-row upload builds one object per row and maps nothing.
   */
  batchDetailAfter(batchId: string, afterSeq: number, limit: number): TxnDetailRow[] {
    return guarded(() =>
      this.sql(
        `SELECT seq, local_id AS localId, type, amount, currency, fee, status,
                COALESCE(masked_pan, '') AS maskedPan, COALESCE(pan_token, '') AS panToken,
                COALESCE(auth_code, '') AS authCode, COALESCE(original_seq, 0) AS originalSeq,
                created_at AS createdAtMs, category AS merchantCategory, hash
           FROM journal WHERE kind = 'txn' AND batch_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
      ).all(batchId, afterSeq, limit),
    ) as TxnDetailRow[];
  }

  /** batchDetailAfter's rows as arrays in DetailRow field order (TxnDetailTuple): no objects. */
  batchDetailTuplesAfter(batchId: string, afterSeq: number, limit: number): TxnDetailTuple[] {
    const stmt = this.sql(
      `SELECT seq, local_id, type, amount, currency, fee, status, COALESCE(masked_pan, ''),
              COALESCE(pan_token, ''), COALESCE(auth_code, ''), COALESCE(original_seq, 0),
              created_at, category, hash
         FROM journal WHERE kind = 'txn' AND batch_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
    );
    return guarded(() => stmt.raw(true).all(batchId, afterSeq, limit)) as TxnDetailTuple[];
  }

  /**
   * What the open batch's tally takes from up to `limit` transactions of a batch after
   * `afterSeq`: their counts, sums and digest text, summed by SQLite (storage/batch-slice.ts).
   */
  batchSlice(batchId: string, afterSeq: number, limit: number): BatchSlice | undefined {
    const r = guarded(() => this.sql(BATCH_SLICE_SQL).get(batchId, afterSeq, limit)) as Record<
      string,
      number | string | null
    >;
    return toBatchSlice(r);
  }

  /** Events of one name, newest last, for audits and tests. */
  events(name: string, limit = 1000): EventRow[] {
    const rows = guarded(() =>
      this.sql(
        "SELECT * FROM journal WHERE kind = 'event' AND event = ? ORDER BY seq DESC LIMIT ?",
      ).all(name, limit),
    ) as RawRow[];
    return rows.reverse().map((r) => toEntry(r) as { kind: 'event' } & EventRow);
  }

  /**
   * Walks the chain from `from` (a trusted checkpoint, or genesis) and names the first
   * row that does not match. Iterates so a million rows never sit in memory at once.
   */
  verify(from: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }): VerifyResult {
    try {
      const rows = guarded(() => this.sql(CHAIN_SQL).raw(true).iterate(from.seq)) as Iterable<
        unknown[]
      >;
      return walkChain(rows, from, JOURNAL_COLUMNS.length, chainHash);
    } catch (e) {
      throw new AgentError(
        'STORAGE_CORRUPT',
        `the journal could not be read while verifying: ${(e as Error).message}`,
      );
    }
  }
}
