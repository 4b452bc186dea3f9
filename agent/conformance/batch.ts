/**
 * Synthetic batches for the conformance kit: a few sales and a refund with fees, their totals
 * and digest computed by the agent's own settlement code (agent/policy/batch-totals.ts), so the
 * acquirer is checked against exactly what a terminal sends.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { pos } from '../../protocol/messages.ts';
import { batchDigest, computeTotals } from '../policy/batch-totals.ts';

export interface SyntheticBatch {
  batchId: string;
  digest: string;
  totals: ReturnType<typeof computeTotals>;
  rows: pos.v1.IDetailRow[];
  submit: pos.v1.IBatchSubmit;
}

/** A batch of `n` rows (n >= 2: sales, and a refund of the first). */
export function syntheticBatch(prefix: string, n = 6, currency = 'CNY'): SyntheticBatch {
  const batchId = `${prefix}${randomUUID()}`;
  const now = Date.now();
  const rows: pos.v1.IDetailRow[] = [];
  let prev = '0'.repeat(64);
  for (let i = 0; i < n; i++) {
    const seq = 1000 + i;
    const refund = i === n - 1;
    const amount = refund ? 1_000 : 10_000 + i * 137;
    // 0.6 % with a 3 yuan (300 fen) minimum, as the reference tariff.
    const fee = Math.max(300, Math.round(amount * 0.006));
    const hash = createHash('sha256').update(`${prev}|${batchId}|${seq}|${amount}`).digest('hex');
    prev = hash;
    rows.push({
      seq,
      localId: `conf-${i}`,
      type: refund ? 'refund' : 'sale',
      amount,
      currency,
      fee: refund ? 300 : fee,
      status: 'approved',
      maskedPan: '411111******1111',
      panToken: createHash('sha256').update(`token-${i}`).digest('hex'),
      authCode: String(100000 + i),
      originalSeq: refund ? 1000 : 0,
      createdAtMs: now - (n - i) * 1000,
      merchantCategory: 'default',
      hash,
    });
  }
  const plain = rows.map((r) => ({
    seq: Number(r.seq),
    hash: String(r.hash),
    type: r.type as 'sale',
    status: r.status as 'approved',
    amount: Number(r.amount),
    fee: Number(r.fee),
  }));
  const totals = computeTotals(plain, currency);
  const digest = batchDigest(batchId, plain);
  const submit: pos.v1.IBatchSubmit = {
    batchId,
    digest,
    businessDate: new Date(now).toISOString().slice(0, 10),
    firstSeq: Number(rows[0]!.seq),
    lastSeq: Number(rows.at(-1)!.seq),
    totals,
  };
  return { batchId, digest, totals, rows, submit };
}
