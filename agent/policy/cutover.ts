import type { Store } from '../../storage/store.ts';
import type { Batch } from '../../storage/batches.ts';
import type { Clock } from '../../base/clock.ts';
import type { Config } from '../config.ts';
import { forgetTally, openBatchTally } from './open-batch-tally.ts';
import { paidTotals } from './advice-totals.ts';
import { businessDate } from './business-date.ts';

/** A cutover asked for while offline advices of the open batch still wait for answers. */
export type DeferredCutover = { force: boolean; reason: string };

/**
 * Closes the open batch in one transaction with its `batch-closed` event: totals and digest
 * from the open-batch tally (only rows since its last look are read here). Without `force`,
 * nothing happens on a business date already cut. An empty batch is never closed, nor one
 * whose offline advices wait for answers: that cutover is returned as `deferred`.
 */
export function closeOpenBatch(
  d: { store: Store; clock: Clock; config: Pick<Config, 'timeZone' | 'settlement' | 'currency'> },
  opts: { force?: boolean; reason: string },
): { batch: Batch | null; deferred?: DeferredCutover } {
  const { store, clock, config } = d;
  let deferred: DeferredCutover | undefined;
  let batch: Batch | null;
  try {
    batch = store.atomically(() => {
      const now = clock.now();
      const date = businessDate(now, config.timeZone, config.settlement.businessDayStartHour);
      if (!opts.force && store.batches.lastBusinessDate() === date) return null;
      const waits = store.advices.unansweredIn(store.batches.open(now).batchId) > 0;
      if (waits) deferred = { force: opts.force ?? false, reason: opts.reason };
      if (waits) return null;
      const { tally } = openBatchTally(store, now);
      if (tally.rows === 0) return null;
      const totals = paidTotals(store, tally, tally.totals(config.currency));
      const digest = tally.digest();
      const closed = store.batches.close(
        tally.batchId,
        {
          businessDate: date,
          firstSeq: tally.firstSeq!,
          lastSeq: tally.lastSeq,
          txnCount: tally.rows,
          totals,
          digest,
        },
        now,
      );
      store.journal.appendEvent(
        'batch-closed',
        { batchId: tally.batchId, digest, businessDate: date, totals, reason: opts.reason },
        now,
      );
      return closed;
    });
  } catch (e) {
    // A failed close may leave the tally ahead of what it believes: start it afresh.
    forgetTally(store);
    throw e;
  }
  if (batch) forgetTally(store);
  return { batch, deferred };
}
