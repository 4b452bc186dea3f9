import { createHash } from 'node:crypto';
import type { TxnRow, TxnType } from '../../storage/journal.ts';
import type { BatchTotals, TypeTotal } from '../../storage/batches.ts';

/**
 * Batch totals and digest, computed from journal rows only. Declined rows are journaled
 * but move no money, so totals skip them; the digest covers every row of the batch, so
 * the acquirer's detail check sees exactly what the terminal journaled.
 */

const TYPES: readonly TxnType[] = ['sale', 'refund', 'void', 'reversal'];

export function computeTotals(
  rows: readonly Pick<TxnRow, 'type' | 'status' | 'amount' | 'fee'>[],
  currency: string,
): BatchTotals {
  const by = new Map<TxnType, TypeTotal>(
    TYPES.map((t) => [t, { type: t, count: 0, amount: 0, fee: 0 }]),
  );
  let count = 0;
  let sales = 0n;
  let takenBack = 0n;
  let feesCharged = 0n;
  let feesReturned = 0n;
  for (const r of rows) {
    if (r.status === 'declined') continue;
    const t = by.get(r.type)!;
    t.count++;
    t.amount += r.amount;
    t.fee += r.fee;
    count++;
    if (r.type === 'sale') {
      sales += BigInt(r.amount);
      feesCharged += BigInt(r.fee);
    } else {
      takenBack += BigInt(r.amount);
      feesReturned += BigInt(r.fee);
    }
  }
  const netAmount = sales - takenBack;
  const netFee = feesCharged - feesReturned;
  return {
    byType: [...by.values()],
    transactionCount: count,
    netAmount: Number(netAmount),
    netFee: Number(netFee),
    netSettlement: Number(netAmount - netFee),
    currency,
  };
}

/** SHA-256 over the batch id and every row hash in sequence order. */
export function batchDigest(
  batchId: string,
  rows: readonly Pick<TxnRow, 'seq' | 'hash'>[],
): string {
  const h = createHash('sha256').update(batchId);
  for (const r of rows) h.update('\n').update(String(r.seq)).update(':').update(r.hash);
  return h.digest('hex');
}

/**
 * Totals equal, field by field, ignoring order of by-type entries. A type with no rows may be
 * listed with zeros (we always list all four) or left out (the schema allows each type at most
 * once, so an acquirer may list only the types it saw): both mean the same.
 */
export function totalsEqual(a: BatchTotals, b: BatchTotals): boolean {
  const key = (t: BatchTotals) =>
    JSON.stringify([
      t.transactionCount,
      t.netAmount,
      t.netFee,
      t.netSettlement,
      t.currency,
      t.byType
        .filter((x) => x.count !== 0 || x.amount !== 0 || x.fee !== 0)
        .sort((x, y) => x.type.localeCompare(y.type))
        .map((x) => [x.type, x.count, x.amount, x.fee]),
    ]);
  return key(a) === key(b);
}
