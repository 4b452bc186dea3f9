/**
 * The hash-chain walk, written once for two places: `Journal.verify` on the agent's own
 * connection, and the full verify on a worker thread (storage/page-check.ts), which runs this
 * very function from its source text. So it references nothing outside itself: the row
 * source, the hash function and the column count come in as arguments.
 *
 * Rows are raw arrays (`Statement.raw()`): the content columns in hash order, then prev_hash,
 * then hash. The canonical content is the JSON array of the content columns, exactly as
 * `rowHash` builds it; building no row objects is what keeps the walk near the raw cost of
 * reading the rows and hashing their bytes (bench/journal-verify.ts).
 */

export interface ChainWalkResult {
  ok: boolean;
  checked: number;
  headSeq: number;
  headHash: string;
  firstBad?: { seq: number; reason: string };
}

export function walkChain(
  rows: Iterable<unknown[]>,
  from: { seq: number; hash: string },
  contentColumns: number,
  sha256: (prev: string, canonical: string) => string,
): ChainWalkResult {
  let prev = from.hash;
  let expectedSeq = from.seq + 1;
  let checked = 0;
  for (const row of rows) {
    const seq = row[0] as number;
    const prevHash = row[contentColumns] as string;
    const hash = row[contentColumns + 1] as string;
    let reason: string | undefined;
    if (seq !== expectedSeq) reason = `row ${expectedSeq} is missing`;
    else if (prevHash !== prev) reason = 'its link to the previous row does not match';
    else {
      row.length = contentColumns;
      if (sha256(prev, JSON.stringify(row)) !== hash)
        reason = 'its content does not match its hash';
    }
    if (reason !== undefined)
      return { ok: false, checked, headSeq: seq, headHash: hash, firstBad: { seq, reason } };
    prev = hash;
    expectedSeq++;
    checked++;
  }
  return { ok: true, checked, headSeq: expectedSeq - 1, headHash: prev };
}
