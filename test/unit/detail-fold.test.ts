/**
 * The acquirer simulator's folded detail totals and digest (simulator/detail-fold.ts) equal the
 * full recomputation over every stored row, whatever order the chunks arrive in, with advices
 * that change what rows pay; and the fold refuses to vouch (so the full recomputation runs)
 * whenever it could differ: a repeated row, a chunk it never saw, an advice recorded meanwhile,
 * a row the arithmetic refuses. Real ledger file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { AcquirerLedger } from '../../simulator/ledger.ts';
import { foldChunk, foldedResult } from '../../simulator/detail-fold.ts';
import { asPaid } from '../../simulator/advice-handlers.ts';
import {
  digestFromDetail,
  totalsFromDetail,
  type DetailRowRecord,
} from '../../simulator/acquirer-totals.ts';

const root = mkdtempSync(join(tmpdir(), 'pos-fold-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function ledger(): AcquirerLedger {
  return AcquirerLedger.open(join(root, `l${n++}`));
}

const TYPES = ['sale', 'sale', 'sale', 'refund', 'void', 'reversal'];
const STATUSES = ['approved', 'approved', 'approved', 'declined', 'pending-offline'];

function rows(count: number, firstSeq = 1): DetailRowRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const seq = firstSeq + i * 3;
    return {
      seq,
      localId: `L${seq}`,
      type: TYPES[i % TYPES.length]!,
      amount: 100 + ((i * 7919) % 50_000),
      currency: 'CNY',
      fee: (i * 31) % 300,
      status: STATUSES[i % STATUSES.length]!,
      maskedPan: '411111******1111',
      originalSeq: 0,
      createdAtMs: 1_700_000_000_000 + i,
      merchantCategory: 'default',
      hash: createHash('sha256').update(String(seq)).digest('hex'),
    };
  });
}

function chunked(all: DetailRowRecord[], size: number): DetailRowRecord[][] {
  const out: DetailRowRecord[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
}

const KEY = { terminalId: 'T1', batchId: 'B-1', digest: 'd'.repeat(64) };

function full(l: AcquirerLedger, all: DetailRowRecord[]) {
  const sorted = [...all].sort((a, b) => a.seq - b.seq);
  return {
    totals: totalsFromDetail(asPaid(l.advices, KEY.terminalId, sorted), 'CNY'),
    digest: digestFromDetail(KEY.batchId, sorted),
  };
}

function advise(l: AcquirerLedger, row: DetailRowRecord, outcome: 'accepted' | 'declined') {
  l.advices.add({
    terminalId: KEY.terminalId,
    key: `${row.seq}:${row.hash.slice(0, 16)}`,
    seq: row.seq,
    localId: row.localId,
    type: row.type,
    amount: row.amount,
    fee: row.fee,
    maskedPan: row.maskedPan,
    originalKey: '',
    outcome,
    reference: '',
    reasonCode: '',
    reason: '',
    receivedAt: 1,
  });
}

describe('detail fold', () => {
  it('equals the full recomputation, chunks in order or not, advices included', () => {
    for (const order of [
      [0, 1, 2, 3, 4],
      [3, 1, 0, 4, 2],
      [4, 3, 2, 1, 0],
    ]) {
      const l = ledger();
      const all = rows(997);
      // One approval declined as an advice, one offline approval accepted, one never advised.
      advise(l, all[0]!, 'declined');
      advise(l, all[4]!, 'accepted');
      const chunks = chunked(all, 200);
      for (const i of order) foldChunk(l, KEY, i, chunks[i]!);
      const got = foldedResult(l, KEY, chunks.length, (c) => c ?? '');
      expect(got).toBeDefined();
      const want = full(l, all);
      expect(got!.totals).toEqual(want.totals);
      expect(got!.digest).toBe(want.digest);
      expect(got!.currencies).toEqual(new Set(['CNY']));
      l.close();
    }
  });

  it('does not vouch when a row repeats, a chunk is missing, or an advice came meanwhile', () => {
    const all = rows(600);
    const chunks = chunked(all, 200);

    const repeated = ledger();
    foldChunk(repeated, KEY, 0, chunks[0]!);
    foldChunk(repeated, KEY, 1, [...chunks[1]!, chunks[0]![0]!]);
    foldChunk(repeated, KEY, 2, chunks[2]!);
    expect(foldedResult(repeated, KEY, 3, (c) => c ?? '')).toBeUndefined();

    const missing = ledger();
    foldChunk(missing, KEY, 1, chunks[1]!);
    foldChunk(missing, KEY, 2, chunks[2]!);
    expect(foldedResult(missing, KEY, 3, (c) => c ?? '')).toBeUndefined();

    const advised = ledger();
    foldChunk(advised, KEY, 0, chunks[0]!);
    advise(advised, all[1]!, 'declined');
    foldChunk(advised, KEY, 1, chunks[1]!);
    foldChunk(advised, KEY, 2, chunks[2]!);
    expect(foldedResult(advised, KEY, 3, (c) => c ?? '')).toBeUndefined();

    const unknownType = ledger();
    foldChunk(unknownType, KEY, 0, chunks[0]!);
    foldChunk(unknownType, KEY, 1, [{ ...chunks[1]![0]!, type: 'gift' }, ...chunks[1]!.slice(1)]);
    foldChunk(unknownType, KEY, 2, chunks[2]!);
    expect(foldedResult(unknownType, KEY, 3, (c) => c ?? '')).toBeUndefined();

    const restarted = ledger();
    foldChunk(restarted, KEY, 0, chunks[0]!);
    restarted.close();
    const reopened = AcquirerLedger.open(restarted.file.replace(/\/[^/]+$/, ''));
    foldChunk(reopened, KEY, 1, chunks[1]!);
    foldChunk(reopened, KEY, 2, chunks[2]!);
    expect(foldedResult(reopened, KEY, 3, (c) => c ?? '')).toBeUndefined();
    for (const l of [repeated, missing, advised, unknownType, reopened]) l.close();
  });

  it('forgets the fold once it answered: a later completion recomputes', () => {
    const l = ledger();
    const chunks = chunked(rows(10), 5);
    foldChunk(l, KEY, 0, chunks[0]!);
    foldChunk(l, KEY, 1, chunks[1]!);
    expect(foldedResult(l, KEY, 2, (c) => c ?? '')).toBeDefined();
    expect(foldedResult(l, KEY, 2, (c) => c ?? '')).toBeUndefined();
    l.close();
  });
});
