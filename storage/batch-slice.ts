import { AgentError } from '../base/errors.ts';
import type { TxnType } from './journal-rows.ts';

/**
 * One slice of a batch's transactions summed by SQLite, for the open batch's running tally:
 * a cold cutover reads 100,000 rows, and handing each row to JavaScript (a row object or
 * array, three strings and three numbers) cost more than reading it. Here a slice comes back
 * as one row: counts and sums per type, and the text the batch digest hashes.
 */

/** What a slice's rows that were not declined add up to, for one transaction type. */
interface TypeSums {
  count: number;
  amount: number;
  fee: number;
}

export interface BatchSlice {
  /** Rows in the slice, declined included (they are journaled and in the digest). */
  rows: number;
  firstSeq: number;
  lastSeq: number;
  /**
   * `\n<seq>:<hash>` for every row, in sequence order: exactly the bytes batchDigest
   * (agent/policy/batch-totals.ts) feeds its hash after the batch id.
   */
  digestText: string;
  /** Rows not declined, by type. */
  byType: Record<TxnType, TypeSums>;
}

const TYPES: readonly TxnType[] = ['sale', 'refund', 'void', 'reversal'];

/**
 * The slice is the keyset subquery (`seq > ?`, `LIMIT ?`, on the journal_batch index, as the
 * row-by-row reads use). The digest text is aggregated with an explicit ORDER BY: SQLite
 * documents a plain group_concat's order as arbitrary. A type outside the four (the table's
 * CHECK forbids it) falls in no sum, and toBatchSlice refuses the slice.
 */
export const BATCH_SLICE_SQL = `
  SELECT count(*) AS n, min(seq) AS first, max(seq) AS last,
         count(*) FILTER (WHERE k = 4) AS declined,
         string_agg(char(10) || seq || ':' || hash, '' ORDER BY seq) AS text,
         ${TYPES.map(
           (t, i) =>
             `count(*) FILTER (WHERE k = ${i}) AS ${t}_n,
              coalesce(sum(amount) FILTER (WHERE k = ${i}), 0) AS ${t}_a,
              coalesce(sum(fee) FILTER (WHERE k = ${i}), 0) AS ${t}_f`,
         ).join(',\n')}
    FROM (SELECT seq, hash, COALESCE(amount, 0) AS amount, COALESCE(fee, 0) AS fee,
                 CASE WHEN status = 'declined' THEN 4
                      ${TYPES.map((t, i) => `WHEN type = '${t}' THEN ${i}`).join(' ')} END AS k
            FROM journal WHERE kind = 'txn' AND batch_id = ? AND seq > ? ORDER BY seq LIMIT ?)`;

/** The slice's one row as a BatchSlice; undefined when the slice is empty. */
export function toBatchSlice(r: Record<string, number | string | null>): BatchSlice | undefined {
  if (r.n === 0) return undefined;
  const num = (k: string) => {
    const v = r[k];
    // SQLite sums exactly in 64 bits; a value past 2^53 would reach JavaScript rounded.
    if (typeof v !== 'number' || !Number.isSafeInteger(v))
      throw new RangeError(`a batch slice's ${k} is not a safe integer`);
    return v;
  };
  const byType = {} as Record<TxnType, TypeSums>;
  let counted = num('declined');
  for (const t of TYPES) {
    byType[t] = { count: num(`${t}_n`), amount: num(`${t}_a`), fee: num(`${t}_f`) };
    counted += byType[t].count;
  }
  if (counted !== r.n)
    throw new AgentError('STORAGE_CORRUPT', 'a batch row has a transaction type outside the four');
  return {
    rows: num('n'),
    firstSeq: num('first'),
    lastSeq: num('last'),
    digestText: r.text as string,
    byType,
  };
}
