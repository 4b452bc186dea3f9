import type { Store } from '../../storage/store.ts';
import type { Batch, BatchState, BatchTotals } from '../../storage/batches.ts';
import type { TxnRow } from '../../storage/journal.ts';
import type { pos, EnvelopeBody, Envelope } from '../../protocol/messages.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';
import { batchDigest, computeTotals, totalsEqual } from './batch-totals.ts';
import { businessDate } from './business-date.ts';

/**
 * Cutover and exactly-once settlement. A batch moves
 *   open -> closed -> sent -> acked
 *                         \-> out-of-balance -> detail-uploaded -> resolved
 * and every step is persisted (with a chain event) before the next message goes out, so
 * after a crash the agent resumes from the step it had reached. Resending is always
 * safe: the acquirer settles on (terminal id, batch id, digest) once and answers every
 * resend of that key with the same settlement id.
 */

/** What settlement needs from the link to the acquirer. */
export interface AcquirerLink {
  readonly isUp: boolean;
  request(body: EnvelopeBody, opts?: { timeoutMs?: number }): Promise<Envelope>;
}

export type SettlementStep =
  'closed' | 'sent' | 'acked' | 'out-of-balance' | 'detail-chunk' | 'detail-uploaded' | 'resolved';

export interface SettlementDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  config: Pick<Config, 'currency' | 'timeZone' | 'settlement'>;
  link: AcquirerLink;
  /** Fault injection for crash tests: called after each step is durable. */
  afterStep?: (step: SettlementStep, batchId: string) => void;
  /**
   * Runs one step (at most one round trip). The agent passes its serial runner here, so a
   * command queued meanwhile (a lock) waits for one step, never for a whole backlog.
   */
  runStep?: <T>(step: () => Promise<T>) => Promise<T>;
}

export interface SettleReport {
  settled: string[];
  pending: string[];
  error?: AgentError;
}

export class Settlement {
  private readonly detailCursor = new Map<string, { next: number; after: number; count: number }>();
  /** A cutover that waited for offline advices: run it again once they are answered. */
  deferred: { force: boolean; reason: string } | undefined;

  constructor(private readonly d: SettlementDeps) {}

  /**
   * Closes the open batch. Without `force`, at most one cutover per business date: a
   * late or doubled cron tick finds the date already cut and does nothing. An empty
   * batch is never closed, nor one whose offline advices wait for the acquirer's answer
   * (`deferred` then remembers the cutover for when they are answered).
   */
  cutover(opts: { force?: boolean; reason: string }): Batch | null {
    const { store, clock, config } = this.d;
    this.deferred = undefined;
    const batch = store.atomically(() => {
      const now = clock.now();
      const date = businessDate(now, config.timeZone, config.settlement.businessDayStartHour);
      if (!opts.force && store.batches.lastBusinessDate() === date) return null;
      const open = store.batches.open(now);
      // A batch closes only once the acquirer has answered every offline advice in it (or
      // they expired): its totals then say what the acquirer accepted (docs/protocol.md).
      const unanswered = store.advices.unansweredIn(open.batchId);
      if (unanswered > 0) {
        this.deferred = { force: opts.force ?? false, reason: opts.reason };
        this.d.log.warn({ batchId: open.batchId, unanswered }, 'cutover waits for offline advices');
        return null;
      }
      // Totals and digest need six columns, not whole rows (bench/settlement.ts).
      const rows = store.journal.batchSums(open.batchId);
      if (rows.length === 0) return null;
      const totals = computeTotals(rows, config.currency);
      const digest = batchDigest(open.batchId, rows);
      const closed = store.batches.close(
        open.batchId,
        {
          businessDate: date,
          firstSeq: rows[0]!.seq,
          lastSeq: rows.at(-1)!.seq,
          txnCount: rows.length,
          totals,
          digest,
        },
        now,
      );
      store.journal.appendEvent(
        'batch-closed',
        { batchId: open.batchId, digest, businessDate: date, totals, reason: opts.reason },
        now,
      );
      return closed;
    });
    if (batch) {
      this.d.log.info({ batchId: batch.batchId, totals: batch.totals }, 'batch closed');
      this.d.afterStep?.('closed', batch.batchId);
    }
    return batch;
  }

  /** Settles every queued batch in order; stops at the first that cannot finish now. */
  async settleAll(): Promise<SettleReport> {
    const report: SettleReport = { settled: [], pending: [] };
    const queue = this.d.store.batches.unsettled();
    for (let i = 0; i < queue.length; i++) {
      const batch = queue[i]!;
      try {
        await this.settleOne(batch.batchId);
        report.settled.push(batch.batchId);
      } catch (e) {
        report.error =
          e instanceof AgentError ? e : new AgentError('SETTLEMENT_REJECTED', (e as Error).message);
        report.pending.push(...queue.slice(i).map((b) => b.batchId));
        this.d.log.warn(
          { batchId: batch.batchId, code: report.error.code, err: report.error.message },
          'settlement paused',
        );
        break;
      }
    }
    return report;
  }

  /** Drives one batch from wherever it stands to acked or resolved, one step at a time. */
  async settleOne(batchId: string): Promise<Batch> {
    const run = this.d.runStep ?? (<T>(step: () => Promise<T>) => step());
    for (;;) {
      const done = await run(() => this.advance(batchId));
      if (done) return done;
    }
  }

  /** Does the next step of a batch; returns the batch once it is settled. */
  private async advance(batchId: string): Promise<Batch | undefined> {
    const batch = this.d.store.batches.get(batchId);
    if (!batch) throw new AgentError('STORAGE_NOT_FOUND', `no batch ${batchId}`);
    switch (batch.state) {
      case 'acked':
      case 'resolved':
        this.detailCursor.delete(batchId);
        return batch;
      case 'open':
        throw new AgentError(
          'SETTLEMENT_REJECTED',
          `batch ${batchId} is still open; cut over first`,
        );
      case 'closed':
        this.step(batch, ['closed'], 'sent', 'batch-sent', {});
        return undefined;
      case 'sent':
      case 'detail-uploaded':
        await this.submit(batch);
        return undefined;
      case 'out-of-balance':
        await this.uploadNextChunk(batch);
        return undefined;
    }
  }

  private async submit(batch: Batch): Promise<void> {
    const reply = await this.d.link.request({
      batchSubmit: {
        batchId: batch.batchId,
        digest: batch.digest,
        businessDate: batch.businessDate,
        firstSeq: batch.firstSeq ?? 0,
        lastSeq: batch.lastSeq ?? 0,
        totals: batch.totals,
      },
    });
    if (reply.batchAck) {
      const ack = reply.batchAck;
      this.checkKey(batch, ack.batchId, ack.digest);
      const theirs = ack.acquirerTotals ? totalsFromWire(ack.acquirerTotals) : batch.totals!;
      if (batch.state === 'sent' && !totalsEqual(theirs, batch.totals!)) {
        // An ack whose totals disagree is treated as out of balance: we prove our rows.
        this.step(batch, ['sent'], 'out-of-balance', 'batch-out-of-balance', {
          acquirerTotals: theirs,
        });
        return;
      }
      const to: BatchState = batch.state === 'sent' ? 'acked' : 'resolved';
      this.step(batch, ['sent', 'detail-uploaded'], to, `batch-${to}`, {
        settlementId: ack.settlementId ?? '',
        acquirerTotals: theirs,
        duplicate: ack.duplicate ?? false,
      });
      return;
    }
    if (reply.outOfBalance) {
      const oob = reply.outOfBalance;
      this.checkKey(batch, oob.batchId, oob.digest);
      if (batch.state === 'detail-uploaded') {
        // Uploading the same rows again cannot change the acquirer's mind: a person must.
        throw new AgentError(
          'SETTLEMENT_REJECTED',
          `the acquirer still disputes batch ${batch.batchId} after its detail upload`,
        );
      }
      const theirs = oob.acquirerTotals ? totalsFromWire(oob.acquirerTotals) : undefined;
      this.step(batch, ['sent', 'detail-uploaded'], 'out-of-balance', 'batch-out-of-balance', {
        acquirerTotals: theirs,
      });
      return;
    }
    throw new AgentError(
      'PROTOCOL_UNEXPECTED',
      `the acquirer answered a batch with ${Object.keys(reply.toJSON()).join(',')}`,
    );
  }

  /**
   * Sends the next detail chunk of an out-of-balance batch. Chunks are read as they are
   * sent (a closed batch never changes), so a large batch is never held whole. Progress
   * is kept in memory only: after a restart the upload starts again from chunk 0, which
   * the acquirer takes idempotently.
   */
  private async uploadNextChunk(batch: Batch): Promise<void> {
    const { journal } = this.d.store;
    const size = this.d.config.settlement.detailChunkRows;
    const cursor = this.detailCursor.get(batch.batchId) ?? {
      next: 0,
      after: 0,
      count: Math.max(1, Math.ceil(journal.batchCount(batch.batchId) / size)),
    };
    const i = cursor.next;
    const rows = journal.batchRowsAfter(batch.batchId, cursor.after, size);
    const reply = await this.d.link.request({
      batchDetailChunk: {
        batchId: batch.batchId,
        digest: batch.digest,
        chunkIndex: i,
        chunkCount: cursor.count,
        rows: rows.map(detailRow),
      },
    });
    const ack = reply.detailAck;
    if (!ack || ack.chunkIndex !== i) {
      this.detailCursor.delete(batch.batchId);
      throw new AgentError(
        'PROTOCOL_UNEXPECTED',
        `chunk ${i} of batch ${batch.batchId} was not acknowledged`,
      );
    }
    this.checkKey(batch, ack.batchId, ack.digest);
    this.d.afterStep?.('detail-chunk', batch.batchId);
    if (i + 1 < cursor.count) {
      this.detailCursor.set(batch.batchId, {
        ...cursor,
        next: i + 1,
        after: rows.at(-1)?.seq ?? cursor.after,
      });
      return;
    }
    this.detailCursor.delete(batch.batchId);
    this.step(batch, ['out-of-balance'], 'detail-uploaded', 'batch-detail-uploaded', {
      chunks: cursor.count,
    });
  }

  private checkKey(
    batch: Batch,
    batchId: string | null | undefined,
    digest: string | null | undefined,
  ): void {
    if (batchId !== batch.batchId || digest !== batch.digest) {
      throw new AgentError(
        'PROTOCOL_UNEXPECTED',
        `the acquirer answered for batch ${batchId}/${digest?.slice(0, 8)}, not ${batch.batchId}`,
      );
    }
  }

  private step(
    batch: Batch,
    from: readonly BatchState[],
    to: BatchState,
    event: string,
    extra: { settlementId?: string; acquirerTotals?: BatchTotals; [k: string]: unknown },
  ): void {
    const { store, clock } = this.d;
    store.atomically(() => {
      const now = clock.now();
      store.batches.setState(batch.batchId, from, to, now, {
        settlementId: extra.settlementId,
        acquirerTotals: extra.acquirerTotals,
      });
      store.journal.appendEvent(
        event,
        { batchId: batch.batchId, digest: batch.digest, ...extra },
        now,
      );
    });
    this.d.log.info({ batchId: batch.batchId, from: batch.state, to }, 'batch step');
    this.d.afterStep?.(to as SettlementStep, batch.batchId);
  }

  /** Transactions the acquirer has not settled yet: the open batch and every queued one. */
  unsettledTransactions(): number {
    const { store, clock } = this.d;
    let n = store.journal.batchRows(store.batches.open(clock.now()).batchId).length;
    for (const b of store.batches.unsettled()) n += b.txnCount ?? 0;
    return n;
  }
}

function num(v: unknown, what: string): number {
  const n = typeof v === 'number' ? v : Number(v ?? 0);
  if (!Number.isSafeInteger(n))
    throw new AgentError('PROTOCOL_MALFORMED', `${what} is not a whole number of minor units`);
  return n;
}

/** Acquirer totals from the wire, with every amount checked to be a safe integer. */
export function totalsFromWire(t: pos.v1.IBatchTotals): BatchTotals {
  return {
    byType: (t.byType ?? []).map((x) => ({
      type: String(x.type) as 'sale',
      count: num(x.count, 'count'),
      amount: num(x.amount, 'amount'),
      fee: num(x.fee, 'fee'),
    })),
    transactionCount: num(t.transactionCount, 'transactionCount'),
    netAmount: num(t.netAmount, 'netAmount'),
    netFee: num(t.netFee, 'netFee'),
    netSettlement: num(t.netSettlement, 'netSettlement'),
    currency: String(t.currency ?? ''),
  };
}

export function detailRow(r: TxnRow): pos.v1.IDetailRow {
  return {
    seq: r.seq,
    localId: r.localId,
    type: r.type,
    amount: r.amount,
    currency: r.currency,
    fee: r.fee,
    status: r.status,
    maskedPan: r.maskedPan ?? '',
    panToken: r.panToken ?? '',
    authCode: r.authCode ?? '',
    originalSeq: r.originalSeq ?? 0,
    createdAtMs: r.createdAt,
    merchantCategory: r.category,
    hash: r.hash,
  };
}
