/**
 * The acquirer's own arithmetic over batch totals and detail rows. Deliberately written again
 * here instead of importing agent/batch-totals.ts: a simulator that reused the agent's sums
 * could never catch a mistake in them. Money is integer minor units; sums run in bigint and are
 * checked back into safe integers, so no float and no silent overflow touches an amount.
 */
import { createHash } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import type { pos } from '../protocol/messages.ts';

/** The transaction types, in the order the acquirer lists them. */
const TXN_TYPES = ['sale', 'refund', 'void', 'reversal'] as const;

/** Count, amount and fee of one transaction type. */
interface TypeTotalRecord {
  type: string;
  count: number;
  amount: number;
  fee: number;
}

/** Batch totals as the acquirer keeps them (same shape as the wire's BatchTotals). */
export interface TotalsRecord {
  byType: TypeTotalRecord[];
  transactionCount: number;
  netAmount: number;
  netFee: number;
  netSettlement: number;
  currency: string;
}

/** A detail row as the acquirer stores it: the wire fields it reasons about. */
export interface DetailRowRecord {
  seq: number;
  localId: string;
  type: string;
  amount: number;
  currency: string;
  fee: number;
  status: string;
  maskedPan: string;
  originalSeq: number;
  createdAtMs: number;
  merchantCategory: string;
  hash: string;
}

function whole(v: unknown, what: string): number {
  const n = typeof v === 'number' ? v : Number(v ?? 0);
  if (!Number.isSafeInteger(n)) {
    throw new AgentError('PROTOCOL_MALFORMED', `${what} is not a whole number of minor units`, {
      field: what,
    });
  }
  return n;
}

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new AgentError('PROTOCOL_MALFORMED', `${what} overflows`, { field: what });
  }
  return Number(v);
}

/** Totals from the wire, every amount checked to be a safe integer. */
export function totalsFromWire(t: pos.v1.IBatchTotals | null | undefined): TotalsRecord {
  if (!t) throw new AgentError('PROTOCOL_MALFORMED', 'the batch arrived without totals');
  return {
    byType: (t.byType ?? []).map((x, i) => ({
      type: String(x.type ?? ''),
      count: whole(x.count, `byType[${i}].count`),
      amount: whole(x.amount, `byType[${i}].amount`),
      fee: whole(x.fee, `byType[${i}].fee`),
    })),
    transactionCount: whole(t.transactionCount, 'transactionCount'),
    netAmount: whole(t.netAmount, 'netAmount'),
    netFee: whole(t.netFee, 'netFee'),
    netSettlement: whole(t.netSettlement, 'netSettlement'),
    currency: String(t.currency ?? ''),
  };
}

/** Totals for the wire: a copy, so later changes to the record never alter a sent message. */
export function totalsToWire(t: TotalsRecord): pos.v1.IBatchTotals {
  return {
    byType: t.byType.map((x) => ({ type: x.type, count: x.count, amount: x.amount, fee: x.fee })),
    transactionCount: t.transactionCount,
    netAmount: t.netAmount,
    netFee: t.netFee,
    netSettlement: t.netSettlement,
    currency: t.currency,
  };
}

/** A detail row from the wire, amounts checked. */
export function detailRowFromWire(r: pos.v1.IDetailRow, index: number): DetailRowRecord {
  const where = `rows[${index}]`;
  const seq = whole(r.seq, `${where}.seq`);
  if (seq <= 0) throw new AgentError('PROTOCOL_MALFORMED', `${where}.seq must be positive`);
  return {
    seq,
    localId: String(r.localId ?? ''),
    type: String(r.type ?? ''),
    amount: whole(r.amount, `${where}.amount`),
    currency: String(r.currency ?? ''),
    fee: whole(r.fee, `${where}.fee`),
    status: String(r.status ?? ''),
    maskedPan: String(r.maskedPan ?? ''),
    originalSeq: whole(r.originalSeq, `${where}.originalSeq`),
    createdAtMs: whole(r.createdAtMs, `${where}.createdAtMs`),
    merchantCategory: String(r.merchantCategory ?? ''),
    hash: String(r.hash ?? ''),
  };
}

/**
 * The acquirer's totals over detail rows: declined rows move no money and are left out; sales
 * add, every other type takes back; fees likewise; the merchant is paid net amount minus net fee.
 */
export function totalsFromDetail(
  rows: ReadonlyArray<Pick<DetailRowRecord, 'seq' | 'type' | 'status' | 'amount' | 'fee'>>,
  currency: string,
): TotalsRecord {
  const sums = new Map<string, { count: number; amount: bigint; fee: bigint }>(
    TXN_TYPES.map((t) => [t, { count: 0, amount: 0n, fee: 0n }]),
  );
  let count = 0;
  let netAmount = 0n;
  let netFee = 0n;
  for (const r of rows) {
    if (r.status === 'declined') continue;
    const s = sums.get(r.type);
    if (!s) {
      throw new AgentError(
        'PROTOCOL_MALFORMED',
        `detail row ${r.seq} has unknown type "${r.type}"`,
      );
    }
    s.count += 1;
    s.amount += BigInt(r.amount);
    s.fee += BigInt(r.fee);
    count += 1;
    const sign = r.type === 'sale' ? 1n : -1n;
    netAmount += sign * BigInt(r.amount);
    netFee += sign * BigInt(r.fee);
  }
  return {
    byType: [...sums].map(([type, s]) => ({
      type,
      count: s.count,
      amount: safe(s.amount, `${type}.amount`),
      fee: safe(s.fee, `${type}.fee`),
    })),
    transactionCount: count,
    netAmount: safe(netAmount, 'netAmount'),
    netFee: safe(netFee, 'netFee'),
    netSettlement: safe(netAmount - netFee, 'netSettlement'),
    currency,
  };
}

/**
 * The batch digest recomputed from detail rows, to check the rows are the batch the terminal
 * closed: SHA-256 over the batch id, then for each row in sequence order "\n<seq>:<row hash>".
 */
export function digestFromDetail(batchId: string, rows: readonly DetailRowRecord[]): string {
  const h = createHash('sha256').update(batchId);
  for (const r of [...rows].sort((a, b) => a.seq - b.seq)) {
    h.update('\n').update(String(r.seq)).update(':').update(r.hash);
  }
  return h.digest('hex');
}

/**
 * Totals the acquirer "sees" when it claims out of balance: one sale of 1.00 more than the
 * terminal reported, every net figure moved to match, so the disagreement is plausible and
 * the terminal can only resolve it by proving its rows.
 */
export function alteredTotals(t: TotalsRecord): TotalsRecord {
  const byType = t.byType.map((x) => ({ ...x }));
  let sale = byType.find((x) => x.type === 'sale');
  if (!sale) {
    sale = { type: 'sale', count: 0, amount: 0, fee: 0 };
    byType.unshift(sale);
  }
  sale.count += 1;
  sale.amount += 100;
  return {
    ...t,
    byType,
    transactionCount: t.transactionCount + 1,
    netAmount: t.netAmount + 100,
    netSettlement: t.netSettlement + 100,
  };
}
