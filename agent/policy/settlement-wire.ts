import type { Batch, BatchTotals } from '../../storage/batches.ts';
import type { TxnRow } from '../../storage/journal.ts';
import type { pos } from '../../protocol/messages.ts';
import { AgentError } from '../../base/errors.ts';

/**
 * Settlement's messages to and from the wire: acquirer totals read with every amount checked
 * to be a whole number of minor units, and a journal row as the detail row the acquirer gets.
 */

/** The acquirer totals a BatchAck or OutOfBalance must carry. */
export function requiredTotals(
  t: pos.v1.IBatchTotals | null | undefined,
  what: string,
  batch: Batch,
): pos.v1.IBatchTotals {
  if (!t) {
    throw new AgentError(
      'PROTOCOL_MALFORMED',
      `the acquirer's ${what} for batch ${batch.batchId} carries no acquirer_totals`,
    );
  }
  return t;
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
