/**
 * The acquirer's totals and digest over a detail upload, folded chunk by chunk as the chunks
 * are stored, so the last chunk's ack does not wait for 100,000 rows to be read back, parsed,
 * sorted and summed. The fold gives exactly what the full recomputation over the stored rows
 * gives (totalsFromDetail over asPaid rows, digestFromDetail), or gives nothing and the caller
 * recomputes: it only vouches for uploads whose chunks, taken in index order, carry strictly
 * increasing sequence numbers (so no row repeats and the order is the digest's), every one of
 * them folded by this simulator (a restart forgets folds), with no advice of the terminal
 * recorded since the fold began (an advice can change what a row pays).
 */
import { createHash, type Hash } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import { asPaid } from './advice-handlers.ts';
import { totalsFromDetail, type TotalsRecord } from './acquirer-totals.ts';
import type { AcquirerLedger } from './ledger.ts';
import type { SummedRow } from './detail-wire.ts';

interface Fold {
  /** The next chunk index to fold; later chunks wait in `held`. */
  next: number;
  held: Map<number, readonly SummedRow[]>;
  lastSeq: number;
  hash: Hash;
  /** Sums per type, as totalsFromDetail lists them, in bigint. */
  sums: Map<string, { count: number; amount: bigint; fee: bigint }>;
  count: number;
  currencies: Set<string>;
  firstCurrency: string | undefined;
  /** The terminal's newest advice id when the fold began. */
  adviceMark: number;
  /** False once a chunk broke the rules above: the caller must recompute. */
  clean: boolean;
}

export interface FoldResult {
  totals: TotalsRecord;
  digest: string;
  /** Every currency the rows named. */
  currencies: ReadonlySet<string>;
  firstCurrency: string | undefined;
}

/** Folds by ledger handle: a restarted simulator (a new handle) starts with none. */
const folds = new WeakMap<AcquirerLedger, Map<string, Fold>>();

function keyOf(cn: string, batchId: string, digest: string): string {
  return `${cn}\u0000${batchId}\u0000${digest}`;
}

function foldsOf(ledger: AcquirerLedger): Map<string, Fold> {
  let m = folds.get(ledger);
  if (!m) folds.set(ledger, (m = new Map()));
  return m;
}

/** Forgets every fold of a ledger (a commit that would have stored folded chunks failed). */
export function forgetFolds(ledger: AcquirerLedger): void {
  folds.delete(ledger);
}

/**
 * Takes the rows of a chunk just stored for the first time (never a resend: its rows are in
 * already). Chunk 0 starts the fold; a fold that did not see chunk 0 never vouches.
 */
export function foldChunk(
  ledger: AcquirerLedger,
  key: { terminalId: string; batchId: string; digest: string },
  index: number,
  rows: readonly SummedRow[],
): void {
  const all = foldsOf(ledger);
  const k = keyOf(key.terminalId, key.batchId, key.digest);
  let f = all.get(k);
  if (!f) {
    f = {
      next: 0,
      held: new Map(),
      lastSeq: 0,
      hash: createHash('sha256').update(key.batchId),
      sums: new Map(),
      count: 0,
      currencies: new Set(),
      firstCurrency: undefined,
      adviceMark: ledger.advices.newestId(key.terminalId),
      clean: true,
    };
    all.set(k, f);
  }
  if (!f.clean || index < f.next) return;
  f.held.set(index, rows);
  for (let r = f.held.get(f.next); r && f.clean; r = f.held.get(f.next)) {
    f.held.delete(f.next);
    f.next++;
    take(ledger, key.terminalId, f, r);
  }
}

function take(ledger: AcquirerLedger, cn: string, f: Fold, rows: readonly SummedRow[]): void {
  let text = '';
  for (const r of rows) {
    if (r.seq <= f.lastSeq) {
      f.clean = false;
      f.held.clear();
      return;
    }
    f.lastSeq = r.seq;
    text += `\n${r.seq}:${r.hash}`;
    f.currencies.add(r.currency);
    f.firstCurrency ??= r.currency;
  }
  // One update per chunk: the same bytes as digestFromDetail's four per row.
  f.hash.update(text);
  // The same arithmetic as the full recomputation, a chunk at a time, added up in bigint. A
  // chunk it refuses (an unknown type, an overflow) is left to the full recomputation to refuse.
  let t: TotalsRecord;
  try {
    t = totalsFromDetail(asPaid(ledger.advices, cn, rows), '');
  } catch {
    f.clean = false;
    f.held.clear();
    return;
  }
  for (const x of t.byType) {
    const s = f.sums.get(x.type) ?? { count: 0, amount: 0n, fee: 0n };
    s.count += x.count;
    s.amount += BigInt(x.amount);
    s.fee += BigInt(x.fee);
    f.sums.set(x.type, s);
  }
  f.count += t.transactionCount;
}

/**
 * The folded totals and digest of a complete upload of `chunkCount` chunks, or undefined when
 * the fold cannot vouch for them (the caller recomputes from the stored rows). Forgets the fold.
 */
export function foldedResult(
  ledger: AcquirerLedger,
  key: { terminalId: string; batchId: string; digest: string },
  chunkCount: number,
  currency: (firstCurrency: string | undefined) => string,
): FoldResult | undefined {
  const all = foldsOf(ledger);
  const k = keyOf(key.terminalId, key.batchId, key.digest);
  const f = all.get(k);
  all.delete(k);
  if (!f?.clean || f.next !== chunkCount) return undefined;
  if (ledger.advices.newestId(key.terminalId) !== f.adviceMark) return undefined;
  let netAmount = 0n;
  let netFee = 0n;
  const byType = [...f.sums].map(([type, s]) => {
    const sign = type === 'sale' ? 1n : -1n;
    netAmount += sign * s.amount;
    netFee += sign * s.fee;
    return {
      type,
      count: s.count,
      amount: safe(s.amount, `${type}.amount`),
      fee: safe(s.fee, `${type}.fee`),
    };
  });
  return {
    totals: {
      byType,
      transactionCount: f.count,
      netAmount: safe(netAmount, 'netAmount'),
      netFee: safe(netFee, 'netFee'),
      netSettlement: safe(netAmount - netFee, 'netSettlement'),
      currency: currency(f.firstCurrency),
    },
    digest: f.hash.digest('hex'),
    currencies: f.currencies,
    firstCurrency: f.firstCurrency,
  };
}

function safe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new AgentError('PROTOCOL_MALFORMED', `${what} overflows`, { field: what });
  }
  return Number(v);
}
