/**
 * The open batch's running tally gives exactly what computeTotals and batchDigest give over the
 * whole batch, however it is sliced and however rows keep arriving between looks; the sliced
 * cutover closes a batch with those totals and that digest. Real SQLite file, real payments.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyActivation, openCore, type Core } from '../../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import { batchDigest, computeTotals } from '../../agent/policy/batch-totals.ts';
import { openBatchTally } from '../../agent/policy/open-batch-tally.ts';
import { detailRow, Settlement } from '../../agent/policy/settlement.ts';
import { CardSim } from '../../simulator/card-sim.ts';

const root = mkdtempSync(join(tmpdir(), 'pos-tally-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function core(name: string): Core {
  const c = openCore({ terminalId: 'T0001', dataDir: join(root, name) });
  applyActivation(
    c,
    {
      terminalId: 'T0001',
      merchantId: 'M-1',
      merchantName: 'Test shop',
      category: 'default',
      currency: 'CNY',
      activatedAt: Date.now(),
    },
    DEFAULT_FEE_SCHEDULE,
    'test',
  );
  return c;
}

const MIX = { sale: 6, refund: 2, void: 1, declined: 1 };

function whole(c: Core) {
  const open = c.store.batches.open(c.clock.now());
  const rows = c.store.journal.batchSums(open.batchId);
  return { rows, totals: computeTotals(rows, 'CNY'), digest: batchDigest(open.batchId, rows) };
}

describe('open batch tally', () => {
  it('equals the whole-batch totals and digest, sliced, with rows arriving between looks', async () => {
    const c = core('slices');
    const cards = new CardSim(3);
    for (const [count, slice] of [
      [40, 7],
      [1, 1],
      [25, 1_000],
      [60, 13],
    ] as const) {
      await cards.drive(c.payments, { count, mix: MIX });
      let r;
      do r = openBatchTally(c.store, c.clock.now(), slice);
      while (!r.caughtUp);
      const w = whole(c);
      expect(r.tally.rows).toBe(w.rows.length);
      expect(r.tally.totals('CNY')).toEqual(w.totals);
      expect(r.tally.digest()).toBe(w.digest);
      expect(r.tally.lastSeq).toBe(w.rows.at(-1)!.seq);
    }
    // Every type SQLite sums, a reversal included (the card simulator's mix has none).
    const sale = whole(c).rows.find(
      (x) =>
        x.type === 'sale' &&
        x.status === 'approved' &&
        c.store.journal.takenFrom(x.seq).count === 0,
    )!;
    c.payments.record({ type: 'reversal', amount: sale.amount, originalSeq: sale.seq });
    const r = openBatchTally(c.store, c.clock.now(), 2);
    const w = whole(c);
    expect(r.tally.totals('CNY')).toEqual(w.totals);
    expect(w.totals.byType.find((t) => t.type === 'reversal')!.count).toBe(1);
    expect(r.tally.digest()).toBe(w.digest);
    c.close();
  });

  it('the sliced cutover closes with the same totals and digest; the next batch starts afresh', async () => {
    const c = core('cutover');
    const cards = new CardSim(5);
    await cards.drive(c.payments, { count: 90, mix: MIX });
    openBatchTally(c.store, c.clock.now(), 10); // a status looked part-way
    const want = whole(c);
    const settlement = new Settlement({
      store: c.store,
      clock: c.clock,
      log: c.log,
      config: c.config,
      link: { isUp: false, request: () => Promise.reject(new Error('offline')) },
    });
    const closed = (await settlement.cutoverInSlices({ force: true, reason: 'test' }, 0.001))!;
    expect(closed.totals).toEqual(want.totals);
    expect(closed.digest).toBe(want.digest);
    expect(closed.txnCount).toBe(want.rows.length);
    const full = c.store.journal.batchRows(closed.batchId);
    expect(closed.digest).toBe(batchDigest(closed.batchId, full));
    // What the detail upload sends is exactly detailRow of the full rows, sliced anywhere.
    const sent = [
      ...c.store.journal.batchDetailAfter(closed.batchId, 0, 31),
      ...c.store.journal.batchDetailAfter(closed.batchId, full[30]!.seq, 1_000),
    ];
    expect(sent).toEqual(full.map(detailRow));
    await cards.drive(c.payments, { count: 5, mix: { sale: 1 } });
    const next = openBatchTally(c.store, c.clock.now()).tally;
    expect(next.batchId).not.toBe(closed.batchId);
    expect(next.rows).toBe(5);
    expect(next.totals('CNY')).toEqual(whole(c).totals);
    expect(await settlement.cutoverInSlices({ force: true, reason: 'again' })).not.toBeNull();
    expect(await settlement.cutoverInSlices({ force: true, reason: 'empty' })).toBeNull();
    c.close();
  });
});
