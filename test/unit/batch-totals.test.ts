/**
 * totalsEqual decides whether an acquirer agrees with our batch. The schema lets an acquirer
 * list each type at most once, so one built from the .proto lists only the types it saw
 * (test/interop/acquirer.py does): a type left out and a type listed with zeros are the same.
 */
import { describe, expect, it } from 'vitest';
import { computeTotals, totalsEqual } from '../../agent/policy/batch-totals.ts';

const ours = computeTotals(
  [
    { type: 'sale', status: 'approved', amount: 10_000, fee: 300 },
    { type: 'sale', status: 'declined', amount: 5_000, fee: 0 },
  ],
  'CNY',
);

describe('totalsEqual', () => {
  it('reads a type left out as a type listed with zeros, in any order', () => {
    expect(ours.byType).toHaveLength(4);
    const theirs = { ...ours, byType: ours.byType.filter((t) => t.count > 0) };
    expect(totalsEqual(theirs, ours)).toBe(true);
    expect(totalsEqual(ours, { ...ours, byType: [...ours.byType].reverse() })).toBe(true);
  });

  it('still tells a real difference: another count, amount or fee of a type, or another total', () => {
    const sale = ours.byType[0]!;
    for (const change of [{ count: 2 }, { amount: 10_001 }, { fee: 301 }]) {
      expect(totalsEqual({ ...ours, byType: [{ ...sale, ...change }] }, ours)).toBe(false);
    }
    const refund = { type: 'refund' as const, count: 1, amount: 0, fee: 0 };
    expect(totalsEqual({ ...ours, byType: [sale, refund] }, ours)).toBe(false);
    expect(totalsEqual({ ...ours, netAmount: 10_001 }, ours)).toBe(false);
    expect(totalsEqual({ ...ours, currency: 'USD' }, ours)).toBe(false);
  });
});
