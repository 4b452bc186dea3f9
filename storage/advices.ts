import type { Statement } from 'better-sqlite3';
import { AgentError } from '../base/errors.ts';
import { guarded, statementCache, type Database } from './db.ts';
import type { Journal, TxnRow, TxnSumRow } from './journal.ts';

/**
 * The store-and-forward queue (migration 2). A trigger queues every offline approval, and
 * every refund, void or reversal of one, in the transaction that journals it. This file
 * reads the queue in journal order, keeps the delivery bookkeeping, and journals each
 * outcome as an event row that references the advised row by original_seq: the advised row
 * is never touched, and the outcome is hash-chained like everything else.
 */

export type AdviceOutcome = 'accepted' | 'declined' | 'expired';

/** One queued advice: the journal row it carries plus its delivery bookkeeping. */
export interface QueuedAdvice {
  seq: number;
  key: string;
  enqueuedAt: number;
  attempts: number;
  lastAttemptAt: number | null;
  nextAttemptAt: number;
  lastError: string | null;
  outcome: AdviceOutcome | null;
  outcomeSeq: number | null;
}

/** What the journal keeps of an answer. */
export interface AdviceAnswer {
  key: string;
  outcome: AdviceOutcome;
  /** The acquirer's reference of an accepted advice. */
  reference?: string;
  /** The acquirer's reason code of a decline, or EXPIRED. */
  reasonCode?: string;
  reason?: string;
  duplicate?: boolean;
}

export interface AdviceQueueStats {
  /** Advices without an answer yet. */
  pending: number;
  /** Enqueue time of the oldest of them (null when none). */
  oldestEnqueuedAt: number | null;
  lastError: string | null;
  accepted: number;
  declined: number;
  /** Advices that were never answered in time: each one a problem someone must look at. */
  expired: number;
}

interface RawAdvice {
  seq: number;
  advice_key: string;
  enqueued_at: number;
  attempts: number;
  last_attempt_at: number | null;
  next_attempt_at: number;
  last_error: string | null;
  outcome: AdviceOutcome | null;
  outcome_seq: number | null;
}

const toAdvice = (r: RawAdvice): QueuedAdvice => ({
  seq: r.seq,
  key: r.advice_key,
  enqueuedAt: r.enqueued_at,
  attempts: r.attempts,
  lastAttemptAt: r.last_attempt_at,
  nextAttemptAt: r.next_attempt_at,
  lastError: r.last_error,
  outcome: r.outcome,
  outcomeSeq: r.outcome_seq,
});

/** The journal event name of each outcome. */
const OUTCOME_EVENT: Record<AdviceOutcome, string> = {
  accepted: 'advice-accepted',
  declined: 'advice-declined',
  expired: 'advice-expired',
};

export class Advices {
  private readonly sql: (sql: string) => Statement;

  constructor(
    private readonly db: Database,
    private readonly journal: Journal,
  ) {
    this.sql = statementCache(db);
  }

  private present(): boolean {
    return (
      guarded(() =>
        this.sql(
          "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'advice_queue'",
        ).get(),
      ) !== undefined
    );
  }

  /** Up to `limit` unanswered advices, oldest journal row first, with their rows. */
  pending(limit: number): Array<QueuedAdvice & { row: TxnRow }> {
    const raws = guarded(() =>
      this.sql('SELECT * FROM advice_queue WHERE outcome IS NULL ORDER BY seq LIMIT ?').all(limit),
    ) as RawAdvice[];
    return raws.map((r) => ({ ...toAdvice(r), row: this.journal.getTxn(r.seq)! }));
  }

  get(seq: number): QueuedAdvice | undefined {
    const r = guarded(() => this.sql('SELECT * FROM advice_queue WHERE seq = ?').get(seq)) as
      RawAdvice | undefined;
    return r && toAdvice(r);
  }

  byKey(key: string): QueuedAdvice | undefined {
    const r = guarded(() =>
      this.sql('SELECT * FROM advice_queue WHERE advice_key = ?').get(key),
    ) as RawAdvice | undefined;
    return r && toAdvice(r);
  }

  /** Every advice (answered or not), newest `limit` of them, oldest first. */
  list(limit = 50, only?: AdviceOutcome | 'pending'): QueuedAdvice[] {
    if (!this.present()) return [];
    const where =
      only === undefined ? '' : only === 'pending' ? 'WHERE outcome IS NULL' : 'WHERE outcome = ?';
    const args = only === undefined || only === 'pending' ? [limit] : [only, limit];
    const raws = guarded(() =>
      this.sql(`SELECT * FROM advice_queue ${where} ORDER BY seq DESC LIMIT ?`).all(...args),
    ) as RawAdvice[];
    return raws.reverse().map(toAdvice);
  }

  /** Advices answered (or expired) by journal rows after `afterSeq`, in that order. */
  answeredAfter(afterSeq: number, limit: number): QueuedAdvice[] {
    const raws = guarded(() =>
      this.sql('SELECT * FROM advice_queue WHERE outcome_seq > ? ORDER BY outcome_seq LIMIT ?').all(
        afterSeq,
        limit,
      ),
    ) as RawAdvice[];
    return raws.map(toAdvice);
  }

  /**
   * Rows of a batch, between its first and last sequence numbers, whose advice was declined or
   * expired: they move no money. Read from the queue's side (CROSS JOIN keeps that order): left
   * to itself SQLite walked every row of the batch to find the few advices among them.
   */
  unpaidIn(batchId: string, firstSeq: number, lastSeq: number): TxnSumRow[] {
    if (!this.present()) return [];
    return guarded(() =>
      this.sql(
        `SELECT j.seq, j.hash, j.type, j.status, COALESCE(j.amount, 0) AS amount,
                COALESCE(j.fee, 0) AS fee
           FROM advice_queue q CROSS JOIN journal j ON j.seq = q.seq
          WHERE q.seq BETWEEN ? AND ? AND q.outcome IN ('declined', 'expired')
            AND j.kind = 'txn' AND j.batch_id = ?
          ORDER BY q.seq`,
      ).all(firstSeq, lastSeq, batchId),
    ) as TxnSumRow[];
  }

  /**
   * Unanswered advices of one batch: a batch is not closed while it has any. Read from the
   * pending advices' index (CROSS JOIN keeps that order): left to itself SQLite scanned the
   * whole journal, 20 ms for 100,000 rows inside the cutover's transaction.
   */
  unansweredIn(batchId: string): number {
    const r = guarded(() =>
      this.sql(
        `SELECT COUNT(*) AS n FROM advice_queue q CROSS JOIN journal j ON j.seq = q.seq
          WHERE q.outcome IS NULL AND j.batch_id = ?`,
      ).get(batchId),
    ) as { n: number };
    return r.n;
  }

  stats(): AdviceQueueStats {
    // A journal opened as evidence (no migrations) may predate the queue.
    if (!this.present())
      return {
        pending: 0,
        oldestEnqueuedAt: null,
        lastError: null,
        accepted: 0,
        declined: 0,
        expired: 0,
      };
    const r = guarded(() =>
      this.sql(
        `SELECT COALESCE(SUM(outcome IS NULL), 0) AS pending,
                MIN(CASE WHEN outcome IS NULL THEN enqueued_at END) AS oldest,
                COALESCE(SUM(outcome = 'accepted'), 0) AS accepted,
                COALESCE(SUM(outcome = 'declined'), 0) AS declined,
                COALESCE(SUM(outcome = 'expired'), 0) AS expired
           FROM advice_queue`,
      ).get(),
    ) as {
      pending: number;
      oldest: number | null;
      accepted: number;
      declined: number;
      expired: number;
    };
    const err = guarded(() =>
      this.sql(
        `SELECT last_error FROM advice_queue WHERE last_error IS NOT NULL
          ORDER BY last_attempt_at DESC, seq DESC LIMIT 1`,
      ).get(),
    ) as { last_error: string } | undefined;
    return {
      pending: r.pending,
      oldestEnqueuedAt: r.oldest,
      lastError: r.pending > 0 ? (err?.last_error ?? null) : null,
      accepted: r.accepted,
      declined: r.declined,
      expired: r.expired,
    };
  }

  /** Notes a failed delivery round for these advices and when to try them again. */
  noteFailure(seqs: readonly number[], error: string, now: number, nextAt: number): void {
    const st = this.sql(
      `UPDATE advice_queue SET attempts = attempts + 1, last_attempt_at = ?, last_error = ?,
              next_attempt_at = ? WHERE seq = ? AND outcome IS NULL`,
    );
    for (const seq of seqs) guarded(() => st.run(now, error.slice(0, 200), nextAt, seq));
  }

  /**
   * Journals an answer as an event row referencing the advised row, and marks the queue.
   * The caller owns the surrounding transaction. A second answer for an advice already
   * answered (a duplicate reply, a resend after a crash) changes nothing and returns false.
   */
  answer(a: AdviceAnswer, now: number): boolean {
    const q = this.byKey(a.key);
    if (!q) throw new AgentError('STORAGE_NOT_FOUND', `no advice ${a.key}`);
    if (q.outcome !== null) return false;
    const detail: Record<string, unknown> = { key: a.key };
    if (a.reference) detail.reference = a.reference;
    if (a.reasonCode) detail.reasonCode = a.reasonCode;
    if (a.reason) detail.reason = a.reason;
    if (a.duplicate) detail.duplicate = true;
    const row = this.journal.appendEventAbout(OUTCOME_EVENT[a.outcome], q.seq, detail, now);
    guarded(() =>
      this.sql(
        'UPDATE advice_queue SET outcome = ?, outcome_seq = ?, last_error = NULL WHERE seq = ? AND outcome IS NULL',
      ).run(a.outcome, row.seq, q.seq),
    );
    return true;
  }

  /** Unanswered advices queued at or before `before`, oldest first. */
  dueToExpire(before: number): QueuedAdvice[] {
    const raws = guarded(() =>
      this.sql(
        'SELECT * FROM advice_queue WHERE outcome IS NULL AND enqueued_at <= ? ORDER BY seq',
      ).all(before),
    ) as RawAdvice[];
    return raws.map(toAdvice);
  }

  /**
   * The offline allowance in use: offline sales the acquirer has not answered yet, plus
   * expired ones until the acquirer has settled the batch that left them out (only then
   * has the acquirer answered for them), plus offline sales journaled before advices
   * existed that still wait in an unsettled batch.
   */
  offlineAllowanceUsed(): number {
    // CROSS JOIN keeps the small side first (pending advices by their index, batches not yet
    // settled): left to itself SQLite walked every journal row for the first sum and every
    // batch row's index entry for the last, inside each offline sale's transaction (30 to
    // 40 ms per 100,000 rows).
    const r = guarded(() =>
      this.sql(
        `SELECT
           (SELECT COALESCE(SUM(j.amount), 0) FROM advice_queue q CROSS JOIN journal j ON j.seq = q.seq
             WHERE q.outcome IS NULL AND j.type = 'sale')
         + (SELECT COALESCE(SUM(j.amount), 0) FROM advice_queue q JOIN journal j ON j.seq = q.seq
              JOIN batches b ON b.batch_id = j.batch_id
             WHERE q.outcome = 'expired' AND j.type = 'sale' AND b.state NOT IN ('acked', 'resolved'))
         + (SELECT COALESCE(SUM(j.amount), 0) FROM batches b CROSS JOIN journal j ON j.batch_id = b.batch_id
             WHERE b.state NOT IN ('open', 'acked', 'resolved') AND j.kind = 'txn'
               AND j.type = 'sale' AND j.status = 'pending-offline'
               AND NOT EXISTS (SELECT 1 FROM advice_queue q WHERE q.seq = j.seq)) AS total`,
      ).get(),
    ) as { total: number };
    return r.total;
  }
}
