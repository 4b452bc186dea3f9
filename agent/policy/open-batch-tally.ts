import { createHash, type Hash } from 'node:crypto';
import type { BatchTotals } from '../../storage/batches.ts';
import type { Store } from '../../storage/store.ts';
import type { TxnType } from '../../storage/journal.ts';
import type { BatchSlice } from '../../storage/batch-slice.ts';
import { businessDate } from './business-date.ts';

/**
 * Running totals and digest of the open batch, advanced by reading only the rows appended
 * since the last look (keyset on seq: journal rows never change and seq only grows). The
 * console's `status` and the cutover both read through it, so neither reads a 100,000-row
 * batch whole on the event loop: status reads the few rows since the previous status, and the
 * cutover reads the rest in slices between other jobs, then only the tail inside its commit.
 *
 * Produces exactly what computeTotals and batchDigest (batch-totals.ts) produce over the same
 * rows; test/unit/open-batch-tally.test.ts holds it to that.
 */

const TYPES: readonly TxnType[] = ['sale', 'refund', 'void', 'reversal'];

export class BatchTally {
  private readonly hash: Hash;
  private readonly counts = new Map<TxnType, { count: number; amount: number; fee: number }>(
    TYPES.map((t) => [t, { count: 0, amount: 0, fee: 0 }]),
  );
  private sales = 0n;
  private takenBack = 0n;
  private feesCharged = 0n;
  private feesReturned = 0n;
  private counted = 0;
  /** Rows taken (declined included): the batch's txnCount. */
  rows = 0;
  firstSeq: number | undefined;
  lastSeq = 0;

  constructor(readonly batchId: string) {
    this.hash = createHash('sha256').update(batchId);
  }

  /** Takes a slice of rows summed by SQLite (Journal.batchSlice), all after lastSeq. */
  add(slice: BatchSlice | undefined): void {
    if (!slice) return;
    this.hash.update(slice.digestText);
    for (const type of TYPES) {
      const s = slice.byType[type];
      const t = this.counts.get(type)!;
      t.count += s.count;
      t.amount += s.amount;
      t.fee += s.fee;
      this.counted += s.count;
      if (type === 'sale') {
        this.sales += BigInt(s.amount);
        this.feesCharged += BigInt(s.fee);
      } else {
        this.takenBack += BigInt(s.amount);
        this.feesReturned += BigInt(s.fee);
      }
    }
    this.firstSeq ??= slice.firstSeq;
    this.lastSeq = slice.lastSeq;
    this.rows += slice.rows;
  }

  totals(currency: string): BatchTotals {
    const netAmount = this.sales - this.takenBack;
    const netFee = this.feesCharged - this.feesReturned;
    return {
      byType: TYPES.map((type) => ({ type, ...this.counts.get(type)! })),
      transactionCount: this.counted,
      netAmount: Number(netAmount),
      netFee: Number(netFee),
      netSettlement: Number(netAmount - netFee),
      currency,
    };
  }

  /** The batch digest over every row taken so far (the tally can go on taking rows). */
  digest(): string {
    return this.hash.copy().digest('hex');
  }
}

const tallies = new WeakMap<Store, BatchTally>();

/**
 * The open batch's tally, advanced by at most `limit` rows. `caughtUp` is false when rows
 * remain: call again (the cutover does, one slice per job).
 */
export function openBatchTally(
  store: Store,
  now: number,
  limit = Number.MAX_SAFE_INTEGER,
): { tally: BatchTally; caughtUp: boolean } {
  const open = store.batches.open(now);
  let tally = tallies.get(store);
  if (tally?.batchId !== open.batchId) {
    tally = new BatchTally(open.batchId);
    tallies.set(store, tally);
  }
  const slice = store.journal.batchSlice(open.batchId, tally.lastSeq, limit);
  tally.add(slice);
  return { tally, caughtUp: (slice?.rows ?? 0) < limit };
}

/** Forgets a store's tally (after its batch closed, or a rollback that may have undone rows). */
export function forgetTally(store: Store): void {
  tallies.delete(store);
}

/**
 * Brings the tally up to date in the background, `sliceRows` at a time with an event-loop
 * turn between slices, so the first `status` or cutover after a start with a large open batch
 * reads only the rows since. The business date's formatter for `day` is made here too: the
 * first one in a process costs about 10 ms, which the first cutover would otherwise pay inside
 * its closing transaction. Stops quietly when the store closes.
 */
export async function warmOpenBatchTally(
  store: Store,
  now: () => number,
  day?: { timeZone: string; startHour: number },
  sliceRows = 2_000,
): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (day) businessDate(now(), day.timeZone, day.startHour);
  for (;;) {
    // A turn first: the caller (the agent's start) is not held up by the first slice.
    await new Promise((resolve) => setImmediate(resolve));
    // A closed store, or one kept unchanged for forensics, has nothing to warm.
    if (!store.db.open || store.frozen) return;
    if (openBatchTally(store, now(), sliceRows).caughtUp) return;
  }
}
