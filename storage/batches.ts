import { randomBytes } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import type { Statement } from 'better-sqlite3';
import { guarded, statementCache, type Database } from './db.ts';

/**
 * Batches: a transaction gets the open batch's id when it is appended, so membership is
 * fixed at write time and covered by the row hash. Cutover closes the open batch and
 * opens the next one in the same SQLite transaction.
 */

export type BatchState =
  | 'open'
  | 'closed'
  | 'sent'
  | 'acked'
  | 'out-of-balance'
  | 'detail-uploaded'
  | 'resolved'
  | 'disputed';

export interface TypeTotal {
  type: 'sale' | 'refund' | 'void' | 'reversal';
  count: number;
  amount: number;
  fee: number;
}

export interface BatchTotals {
  byType: TypeTotal[];
  transactionCount: number;
  netAmount: number;
  netFee: number;
  netSettlement: number;
  currency: string;
}

export interface Batch {
  batchId: string;
  number: number;
  state: BatchState;
  businessDate: string | null;
  openedAt: number;
  closedAt: number | null;
  firstSeq: number | null;
  lastSeq: number | null;
  txnCount: number | null;
  totals: BatchTotals | null;
  digest: string | null;
  settlementId: string | null;
  acquirerTotals: BatchTotals | null;
  updatedAt: number;
  /** Why the acquirer refused it for good (state 'disputed'). */
  problem: string | null;
}

interface RawBatch {
  batch_id: string;
  number: number;
  state: BatchState;
  business_date: string | null;
  opened_at: number;
  closed_at: number | null;
  first_seq: number | null;
  last_seq: number | null;
  txn_count: number | null;
  totals: string | null;
  digest: string | null;
  settlement_id: string | null;
  acquirer_totals: string | null;
  updated_at: number;
  problem: string | null;
}

function toBatch(r: RawBatch): Batch {
  return {
    batchId: r.batch_id,
    number: r.number,
    state: r.state,
    businessDate: r.business_date,
    openedAt: r.opened_at,
    closedAt: r.closed_at,
    firstSeq: r.first_seq,
    lastSeq: r.last_seq,
    txnCount: r.txn_count,
    totals: r.totals ? (JSON.parse(r.totals) as BatchTotals) : null,
    digest: r.digest,
    settlementId: r.settlement_id,
    acquirerTotals: r.acquirer_totals ? (JSON.parse(r.acquirer_totals) as BatchTotals) : null,
    updatedAt: r.updated_at,
    problem: r.problem ?? null,
  };
}

/** States from which a batch still has to reach the acquirer. */
const UNSETTLED_STATES: readonly BatchState[] = [
  'closed',
  'sent',
  'out-of-balance',
  'detail-uploaded',
];

export class Batches {
  private readonly sql: (sql: string) => Statement;
  constructor(
    private readonly db: Database,
    private readonly incarnation: () => string = () => '00000000',
  ) {
    this.sql = statementCache(db);
  }

  /**
   * The open batch (read on every payment), kept in memory between writes to batches; Store
   * drops it after a rolled-back transaction (forget). Callers get a copy.
   */
  private openBatch: Batch | undefined;

  forget(): void {
    this.openBatch = undefined;
  }

  /** The open batch, creating the first one on a fresh journal. */
  open(now: number): Batch {
    return this.openIfAny() ?? { ...(this.openBatch = this.create(now)) };
  }

  /** The open batch, or undefined when the next transaction has to open one (a write). */
  openIfAny(): Batch | undefined {
    if (!this.openBatch) {
      const row = guarded(() => this.sql("SELECT * FROM batches WHERE state = 'open'").get()) as
        RawBatch | undefined;
      if (!row) return undefined;
      this.openBatch = toBatch(row);
    }
    return { ...this.openBatch };
  }

  private create(now: number): Batch {
    this.openBatch = undefined;
    const last = guarded(() => this.sql('SELECT MAX(number) AS n FROM batches').get()) as {
      n: number | null;
    };
    const number = (last.n ?? 0) + 1;
    // The journal's incarnation keeps a new incarnation (after a rollback was recovered), whose
    // numbers may repeat, from ever reusing a batch id the acquirer settled; the random part
    // does the same for a re-installed terminal.
    const batchId = `B${String(number).padStart(6, '0')}-${this.incarnation().slice(0, 8)}${randomBytes(2).toString('hex').toUpperCase()}`;
    guarded(() =>
      this.sql(
        "INSERT INTO batches (batch_id, number, state, opened_at, updated_at) VALUES (?, ?, 'open', ?, ?)",
      ).run(batchId, number, now, now),
    );
    return this.get(batchId)!;
  }

  get(batchId: string): Batch | undefined {
    const row = guarded(() => this.sql('SELECT * FROM batches WHERE batch_id = ?').get(batchId)) as
      RawBatch | undefined;
    return row && toBatch(row);
  }

  /** Every batch, oldest first (or the newest `limit`). */
  list(limit = 1000): Batch[] {
    const rows = guarded(() =>
      this.sql('SELECT * FROM batches ORDER BY number DESC LIMIT ?').all(limit),
    ) as RawBatch[];
    return rows.reverse().map(toBatch);
  }

  /** Batches the acquirer has not settled yet, oldest first: they settle in this order. */
  unsettled(): Batch[] {
    const marks = UNSETTLED_STATES.map(() => '?').join(', ');
    const rows = guarded(() =>
      this.sql(`SELECT * FROM batches WHERE state IN (${marks}) ORDER BY number`).all(
        ...UNSETTLED_STATES,
      ),
    ) as RawBatch[];
    return rows.map(toBatch);
  }

  /** Closes the open batch with its computed totals; the caller opens the next one. */
  close(
    batchId: string,
    facts: {
      businessDate: string;
      firstSeq: number | null;
      lastSeq: number | null;
      txnCount: number;
      totals: BatchTotals;
      digest: string;
    },
    now: number,
  ): Batch {
    this.openBatch = undefined;
    const res = guarded(() =>
      this.sql(
        `UPDATE batches SET state = 'closed', business_date = ?, closed_at = ?, first_seq = ?, last_seq = ?,
             txn_count = ?, totals = ?, digest = ?, updated_at = ?
           WHERE batch_id = ? AND state = 'open'`,
      ).run(
        facts.businessDate,
        now,
        facts.firstSeq,
        facts.lastSeq,
        facts.txnCount,
        JSON.stringify(facts.totals),
        facts.digest,
        now,
        batchId,
      ),
    );
    if (res.changes !== 1) throw new AgentError('SETTLEMENT_BUSY', `batch ${batchId} is not open`);
    this.create(now);
    return this.get(batchId)!;
  }

  /** Moves a batch from one of `from` to `to`; refuses a move from any other state. */
  setState(
    batchId: string,
    from: readonly BatchState[],
    to: BatchState,
    now: number,
    extra: { settlementId?: string; acquirerTotals?: BatchTotals; problem?: string } = {},
  ): Batch {
    this.openBatch = undefined;
    const marks = from.map(() => '?').join(', ');
    const res = guarded(() =>
      this.sql(
        `UPDATE batches SET state = ?, updated_at = ?,
             settlement_id = COALESCE(?, settlement_id), acquirer_totals = COALESCE(?, acquirer_totals),
             problem = COALESCE(?, problem)
           WHERE batch_id = ? AND state IN (${marks})`,
      ).run(
        to,
        now,
        extra.settlementId ?? null,
        extra.acquirerTotals ? JSON.stringify(extra.acquirerTotals) : null,
        extra.problem ?? null,
        batchId,
        ...from,
      ),
    );
    const batch = this.get(batchId);
    if (res.changes !== 1 || !batch) {
      throw new AgentError(
        'SETTLEMENT_REJECTED',
        `batch ${batchId} cannot move to ${to} from ${batch?.state ?? 'nowhere'}`,
      );
    }
    return batch;
  }

  /** Batches the acquirer refused for good, oldest first. */
  disputed(): Batch[] {
    const rows = guarded(() =>
      this.sql("SELECT * FROM batches WHERE state = 'disputed' ORDER BY number").all(),
    ) as RawBatch[];
    return rows.map(toBatch);
  }

  /** The business date of the newest closed batch, for one-cutover-per-day. */
  lastBusinessDate(): string | null {
    const r = guarded(() =>
      this.sql(
        'SELECT business_date AS d FROM batches WHERE business_date IS NOT NULL ORDER BY number DESC LIMIT 1',
      ).get(),
    ) as { d: string } | undefined;
    return r?.d ?? null;
  }
}
