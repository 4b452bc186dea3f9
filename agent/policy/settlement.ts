import type { Store } from '../../storage/store.ts';
import type { Batch, BatchState, BatchTotals } from '../../storage/batches.ts';
import type { EnvelopeBody, Envelope } from '../../protocol/messages.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';
import { totalsEqual } from './batch-totals.ts';
import { openBatchTally } from './open-batch-tally.ts';
import { businessDate } from './business-date.ts';
import { DetailUpload, type DetailLink } from './detail-upload.ts';
import * as dispute from './settlement-dispute.ts';
import { requiredTotals, totalsFromWire } from './settlement-wire.ts';
import { closeOpenBatch } from './cutover.ts';

export { detailRow, totalsFromWire } from './settlement-wire.ts';

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
export interface AcquirerLink extends DetailLink {
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
  /** Locks the terminal (settlement-dispute) when the acquirer refuses a batch for good. */
  terminal?: dispute.Locker;
  /** Fault injection for crash tests: called after each step is durable. */
  afterStep?: (step: SettlementStep, batchId: string) => void;
  /**
   * Runs one step (at most one round trip). The agent passes its serial runner here, so a
   * command queued meanwhile (a lock) waits for one step, never for a whole backlog.
   */
  runStep?: <T>(step: () => Promise<T>) => Promise<T>;
}

/** Reading time per cutover slice, in ms (one runner job each). */
const CUTOVER_SLICE_MS = 4;

/** Rows read per job while a detail chunk is assembled (a chunk is up to 3,000 rows). */
const DETAIL_READ_SLICE = 500;

/**
 * One event-loop turn. Runner jobs chain through promises (microtasks), so without it a drive
 * would run slice after slice and never let the loop read a socket: a lock frame would sit
 * unread until the whole cutover or a window of chunks was done. After a turn, a command that
 * arrived meanwhile is queued ahead of the next settlement job.
 */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** How a request ended, caught at once so a rejection is never left unhandled. */
type Outcome = { ok: true; reply: Envelope } | { ok: false; error: unknown };

function caught(p: Promise<Envelope>): Promise<Outcome> {
  return p.then(
    (reply): Outcome => ({ ok: true, reply }),
    (error: unknown): Outcome => ({ ok: false, error }),
  );
}

/**
 * What one runner job decided: finished, go on, or wait (off the runner) for the acquirer's
 * answer, which resolves to the work that takes it (run as the next job).
 */
type Move =
  | { kind: 'done'; batch: Batch }
  | { kind: 'again' }
  | { kind: 'wait'; answer: Promise<() => void> };

export interface SettleReport {
  settled: string[];
  pending: string[];
  disputed?: string[]; // refused for good in this run: now 'disputed'
  error?: AgentError;
}

export class Settlement {
  /** Detail uploads under way, by batch id (progress is in memory: see DetailUpload). */
  private readonly uploads = new Map<string, DetailUpload>();
  /** The drive of each batch being settled, so two callers never drive one batch twice. */
  private readonly driving = new Map<string, Promise<Batch>>();
  /** A cutover that waited for offline advices, to run once they are answered (docs/protocol.md). */
  deferred: { force: boolean; reason: string } | undefined;

  constructor(private readonly d: SettlementDeps) {}

  /**
   * Closes the open batch. Without `force`, at most one cutover per business date: a
   * late or doubled cron tick finds the date already cut and does nothing. An empty
   * batch is never closed, nor one whose offline advices wait for answers (see `deferred`).
   * Reads every row not yet tallied in one go: the agent uses cutoverInSlices.
   */
  cutover(opts: { force?: boolean; reason: string }): Batch | null {
    return this.closeTallied(opts);
  }

  /**
   * The same cutover, with the rows read in slices of `sliceRows`, one runner job each, so
   * a command or a console line waits for one slice, not for a 100,000-row batch. Only the
   * rows appended since the last slice are read inside the closing transaction.
   */
  async cutoverInSlices(
    opts: { force?: boolean; reason: string },
    sliceMs = CUTOVER_SLICE_MS,
  ): Promise<Batch | null> {
    const run = this.d.runStep ?? (<T>(step: () => Promise<T>) => step());
    // Rows per slice adapt to the machine: about `sliceMs` of reading per job (a job is what a
    // queued command waits for), and no more event-loop turns than that needs.
    let rows = 1_000;
    for (;;) {
      await turn();
      const r = await run(async () => {
        const now = this.d.clock.now();
        if (!opts.force && this.cutToday(now)) return { batch: null };
        const t0 = performance.now();
        if (!openBatchTally(this.d.store, now, rows).caughtUp) {
          const perRow = Math.max(performance.now() - t0, 0.01) / rows;
          // At most double: a small slice's cost per row flatters a large one's.
          rows = Math.min(rows * 2, 20_000, Math.max(200, Math.round(sliceMs / perRow)));
          return undefined;
        }
        return { batch: this.closeTallied(opts) };
      });
      if (r) return r.batch;
    }
  }

  private cutToday(now: number): boolean {
    const { store, config } = this.d;
    const date = businessDate(now, config.timeZone, config.settlement.businessDayStartHour);
    return store.batches.lastBusinessDate() === date;
  }

  private closeTallied(opts: { force?: boolean; reason: string }): Batch | null {
    this.deferred = undefined;
    const { batch, deferred } = closeOpenBatch(this.d, opts);
    this.deferred = deferred;
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
        if (dispute.setAsideIfFinal(this.d, batch, e, report)) continue;
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

  /**
   * Drives one batch from wherever it stands to acked or resolved. One drive per batch at a
   * time: a second caller (a settle-now command during a nightly run) shares the first's.
   */
  settleOne(batchId: string): Promise<Batch> {
    const running = this.driving.get(batchId);
    if (running) return running;
    const drive = this.drive(batchId).finally(() => this.driving.delete(batchId));
    this.driving.set(batchId, drive);
    return drive;
  }

  /**
   * Each step is one short job on the runner (read, decide, send, or apply an answer and
   * commit); waiting for the acquirer happens between jobs, so a command queued meanwhile
   * (a lock) waits for at most one short job, never for a round trip.
   */
  private async drive(batchId: string): Promise<Batch> {
    const run = this.d.runStep ?? (<T>(step: () => Promise<T>) => step());
    for (;;) {
      await turn();
      const move = await run(async () => this.advance(batchId));
      if (move.kind === 'done') return move.batch;
      if (move.kind === 'wait') {
        const take = await move.answer;
        await run(async () => take());
      }
    }
  }

  /** Decides and starts the next step of a batch (never waits for the acquirer). */
  private advance(batchId: string): Move {
    const batch = this.d.store.batches.get(batchId);
    if (!batch) throw new AgentError('STORAGE_NOT_FOUND', `no batch ${batchId}`);
    switch (batch.state) {
      case 'acked':
      case 'resolved':
        this.uploads.delete(batchId);
        return { kind: 'done', batch };
      case 'open':
        throw new AgentError(
          'SETTLEMENT_REJECTED',
          `batch ${batchId} is still open; cut over first`,
        );
      case 'closed':
        this.step(batch, ['closed'], 'sent', 'batch-sent', {});
        return { kind: 'again' };
      case 'sent':
      case 'detail-uploaded':
        return this.submitStep(batch);
      case 'out-of-balance':
        return this.uploadStep(batch);
      case 'disputed':
        throw dispute.alreadyDisputed(batch);
    }
  }

  /** Sends the batch; its answer is applied in a later job. */
  private submitStep(batch: Batch): Move {
    const answer = caught(
      this.d.link.request({
        batchSubmit: {
          batchId: batch.batchId,
          digest: batch.digest,
          businessDate: batch.businessDate,
          firstSeq: batch.firstSeq ?? 0,
          lastSeq: batch.lastSeq ?? 0,
          totals: batch.totals,
        },
      }),
    );
    const take = (o: Outcome) => (): void => {
      if (!o.ok) throw o.error;
      // Nothing else drives this batch (settleOne); should it have moved, the loop re-reads it.
      const now = this.d.store.batches.get(batch.batchId);
      if (now?.state === batch.state) this.onSubmitReply(now, o.reply);
    };
    return { kind: 'wait', answer: answer.then(take) };
  }

  private onSubmitReply(batch: Batch, reply: Envelope): void {
    if (reply.batchAck) {
      const ack = reply.batchAck;
      this.checkKey(batch, ack.batchId, ack.digest);
      // The acquirer must say what it settled on; an ack without it is a protocol error, never
      // read as agreement with our totals (docs/protocol.md, BatchAck).
      const theirs = totalsFromWire(requiredTotals(ack.acquirerTotals, 'BatchAck', batch));
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
        throw dispute.permanentRefusal(`detail upload did not end the dispute of ${batch.batchId}`);
      }
      const theirs = totalsFromWire(requiredTotals(oob.acquirerTotals, 'OutOfBalance', batch));
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
   * One job of the windowed detail upload (agent/policy/detail-upload.ts): send the next
   * chunk if the window has room, else wait for the oldest chunk's ack (outside the runner)
   * and take it; once every chunk is acknowledged, the batch moves to detail-uploaded.
   */
  private uploadStep(batch: Batch): Move {
    const { journal } = this.d.store;
    const { detailChunkRows: size, detailWindow } = this.d.config.settlement;
    let up = this.uploads.get(batch.batchId);
    if (!up) {
      const count = Math.max(1, Math.ceil(journal.batchCount(batch.batchId) / size));
      up = new DetailUpload(batch.batchId, batch.digest!, count, size, detailWindow);
      this.uploads.set(batch.batchId, up);
    }
    if (up.done) {
      this.uploads.delete(batch.batchId);
      this.step(batch, ['out-of-balance'], 'detail-uploaded', 'batch-detail-uploaded', {
        chunks: up.count,
      });
      return { kind: 'again' };
    }
    if (up.canSend) {
      // A slice of the next chunk per job; the chunk goes out in the job after its last slice.
      if (!up.prepare(journal, DETAIL_READ_SLICE, this.d.link)) return { kind: 'again' };
      up.sendPrepared(this.d.link);
      return { kind: 'again' };
    }
    if (up.canReadAhead) {
      // The window is full: read the next chunks while the acks are on their way.
      up.readAhead(journal, DETAIL_READ_SLICE, this.d.link);
      return { kind: 'again' };
    }
    const upload = up;
    const answer = upload.oldest().then(({ index, outcome }) => (): void => {
      upload.settle(index, outcome);
      this.d.afterStep?.('detail-chunk', batch.batchId);
    });
    return { kind: 'wait', answer };
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
    let n = openBatchTally(store, clock.now()).tally.rows;
    for (const b of store.batches.unsettled()) n += b.txnCount ?? 0;
    return n;
  }
}
