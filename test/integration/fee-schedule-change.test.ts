/**
 * Invariant 4, fixed and literal: fees follow the schedule in force when the transaction was
 * recorded. A real journal on disk, an injected clock, the reference tariff at activation and
 * a second schedule version taking effect at a set instant. Every fee is an exact number of
 * fen worked out by hand below, before and after the change, across a restart, and for money
 * taken back after the change from sales priced before it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../base/clock.ts';
import { installFeeSchedule, openCore, type Core } from '../../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE, type FeeSchedule } from '../../agent/policy/fees.ts';
import { activateForTest } from '../fixtures/core.ts';

const PAN = '4111111111111111';
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 2, 1, 9, 0, 0);
/** The new version takes effect two hours after activation. */
const CHANGE_AT = T0 + 2 * HOUR;

/** Version 2 of the default category: 0.78 % plus 10 fen, at least 200 fen, at most 5 000. */
const V2: FeeSchedule = {
  version: 'std-2026.2',
  currency: 'CNY',
  effectiveFrom: CHANGE_AT,
  rules: [{ category: 'default', rateBp: 78, fixed: 10, minimum: 200, cap: 5_000 }],
} as FeeSchedule;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dataDir: string, clock: ManualClock): Core {
  return openCore({ terminalId: 'TFEE0001', dataDir }, { clock });
}

const sale = (core: Core, amount: number) =>
  core.payments.record({ type: 'sale', amount, card: { pan: PAN } });

describe('fees across a schedule change (invariant 4)', () => {
  it('each row keeps the fee of the schedule in force when it was recorded, to the fen', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'pos-fee-change-'));
    dirs.push(dataDir);
    const clock = new ManualClock(T0);
    let core = open(dataDir, clock);
    activateForTest(core); // std-2026.1: default 0.60 %, minimum 300 fen, no cap
    expect(DEFAULT_FEE_SCHEDULE.version).toBe('std-2026.1');

    // Before the change (v1): 0.60 % of 2 000 yuan = 1 200 fen; of 100 yuan = 60 -> 300 minimum.
    const a = sale(core, 200_000);
    const b = sale(core, 10_000);
    expect([a.fee, a.feeVersion, b.fee, b.feeVersion]).toEqual([
      1_200,
      'std-2026.1',
      300,
      'std-2026.1',
    ]);

    // v2 is installed an hour before it takes effect: nothing changes until then.
    clock.set(T0 + HOUR);
    expect(installFeeSchedule(core, V2)).toBe(true);
    const c = sale(core, 200_000);
    expect([c.fee, c.feeVersion]).toEqual([1_200, 'std-2026.1']);
    clock.set(CHANGE_AT - 1);
    const d = sale(core, 500_000);
    expect([d.fee, d.feeVersion]).toEqual([3_000, 'std-2026.1']);

    // From the change on (v2): 0.78 % of 2 000 yuan = 1 560 + 10 = 1 570 fen; of 100 yuan
    // = 78 + 10 = 88 -> 200 minimum; of 10 000 yuan = 7 800 + 10 -> 5 000 cap.
    clock.set(CHANGE_AT);
    const e = sale(core, 200_000);
    const f = sale(core, 10_000);
    const g = sale(core, 1_000_000);
    expect([e.fee, f.fee, g.fee]).toEqual([1_570, 200, 5_000]);
    expect([e.feeVersion, f.feeVersion, g.feeVersion]).toEqual([
      'std-2026.2',
      'std-2026.2',
      'std-2026.2',
    ]);

    // Money taken back after the change from sales priced before it returns the old fee:
    // half of sale a refunds half its 1 200 fen; a void of sale c returns all of its 1 200.
    clock.advance(HOUR);
    const refund = core.payments.record({ type: 'refund', amount: 100_000, originalSeq: a.seq });
    const voided = core.payments.record({ type: 'void', amount: 200_000, originalSeq: c.seq });
    expect([refund.fee, refund.feeVersion]).toEqual([600, null]);
    expect([voided.fee, voided.feeVersion]).toEqual([1_200, null]);

    // A restart reads every row back as recorded and keeps pricing by v2.
    core.close();
    core = open(dataDir, clock);
    try {
      const fees = [a, b, c, d, e, f, g, refund, voided].map((r) => {
        const row = core.store.journal.getTxn(r.seq)!;
        return [row.type, row.amount, row.fee, row.feeVersion];
      });
      expect(fees).toEqual([
        ['sale', 200_000, 1_200, 'std-2026.1'],
        ['sale', 10_000, 300, 'std-2026.1'],
        ['sale', 200_000, 1_200, 'std-2026.1'],
        ['sale', 500_000, 3_000, 'std-2026.1'],
        ['sale', 200_000, 1_570, 'std-2026.2'],
        ['sale', 10_000, 200, 'std-2026.2'],
        ['sale', 1_000_000, 5_000, 'std-2026.2'],
        ['refund', 100_000, 600, null],
        ['void', 200_000, 1_200, null],
      ]);
      const h = sale(core, 30_000);
      // 0.78 % of 300 yuan = 234 + 10 = 244 fen.
      expect([h.fee, h.feeVersion]).toEqual([244, 'std-2026.2']);
      expect(core.store.state.feeSchedules()).toEqual([
        { version: 'std-2026.1', effectiveFrom: 0 },
        { version: 'std-2026.2', effectiveFrom: CHANGE_AT },
      ]);
    } finally {
      core.close();
    }
  });

  it('a version installed later but effective earlier prices only the rows recorded after it', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'pos-fee-change-'));
    dirs.push(dataDir);
    const clock = new ManualClock(T0 + 5 * HOUR);
    const core = open(dataDir, clock);
    try {
      activateForTest(core);
      const before = sale(core, 200_000);
      // Backdated: effective from T0, installed at T0 + 6 h. The row above is not repriced.
      clock.set(T0 + 6 * HOUR);
      installFeeSchedule(core, { ...V2, version: 'std-2026.3', effectiveFrom: T0 });
      const after = sale(core, 200_000);
      expect([before.fee, before.feeVersion]).toEqual([1_200, 'std-2026.1']);
      expect(core.store.journal.getTxn(before.seq)!.fee).toBe(1_200);
      expect([after.fee, after.feeVersion]).toEqual([1_570, 'std-2026.3']);
    } finally {
      core.close();
    }
  });
});
