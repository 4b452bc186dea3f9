import type { BatchTotals } from '../../storage/batches.ts';
import type { Store } from '../../storage/store.ts';

/**
 * A batch's totals as the acquirer pays them: an offline row whose advice the acquirer
 * declined, or that expired unanswered, moves no money and carries no fee (docs/store-and-
 * forward.md). The open batch's running tally counts rows as journaled (a row never changes,
 * its answer comes later as a row of its own), so those rows are taken out here, at cutover
 * and in status.
 */
export function paidTotals(
  store: Store,
  rows: { batchId: string; firstSeq: number | undefined; lastSeq: number },
  totals: BatchTotals,
): BatchTotals {
  if (rows.firstSeq === undefined) return totals;
  const unpaid = store.advices.unpaidIn(rows.batchId, rows.firstSeq, rows.lastSeq);
  if (unpaid.length === 0) return totals;
  const byType = totals.byType.map((t) => ({ ...t }));
  let netAmount = BigInt(totals.netAmount);
  let netFee = BigInt(totals.netFee);
  let count = totals.transactionCount;
  for (const r of unpaid) {
    if (r.status === 'declined') continue;
    const t = byType.find((x) => x.type === r.type)!;
    t.count--;
    t.amount -= r.amount;
    t.fee -= r.fee;
    count--;
    const sign = r.type === 'sale' ? 1n : -1n;
    netAmount -= sign * BigInt(r.amount);
    netFee -= sign * BigInt(r.fee);
  }
  return {
    ...totals,
    byType,
    transactionCount: count,
    netAmount: Number(netAmount),
    netFee: Number(netFee),
    netSettlement: Number(netAmount - netFee),
  };
}
