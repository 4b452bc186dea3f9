import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FEE_SCHEDULE,
  parseFeeSchedule,
  refundFee,
  saleFee,
  type FeeSchedule,
} from '../../agent/policy/fees.ts';
import { AgentError } from '../../base/errors.ts';
import { seededRandom } from '../../simulator/card-sim.ts';

/**
 * Fees are money: every expectation here is either a literal worked out by hand or an
 * independent bigint computation (quotient and remainder, not the product's "+ 5000"
 * trick), so a change to the rounding rule cannot pass by agreeing with itself.
 */

/** Half-up rounding of amount x rateBp / 10000, done as quotient + remainder test. */
function refPct(amount: bigint, rateBp: bigint): bigint {
  const p = amount * rateBp;
  const q = p / 10_000n;
  const rem = p % 10_000n;
  return rem * 2n >= 10_000n ? q + 1n : q;
}

function refFee(
  amount: bigint,
  rule: { rateBp: number; fixed: number; minimum: number; cap: number | null },
): bigint {
  let fee = refPct(amount, BigInt(rule.rateBp)) + BigInt(rule.fixed);
  if (fee < BigInt(rule.minimum)) fee = BigInt(rule.minimum);
  if (rule.cap !== null && fee > BigInt(rule.cap)) fee = BigInt(rule.cap);
  return fee;
}

const prng = seededRandom;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AgentError);
    return (e as AgentError).code;
  }
  throw new Error('expected a refusal, got a result');
}

const S = DEFAULT_FEE_SCHEDULE;

function schedule(rules: FeeSchedule['rules']): FeeSchedule {
  return parseFeeSchedule({ version: 't-1', currency: 'CNY', effectiveFrom: 0, rules });
}

describe('saleFee: half-up rounding of the percentage part (default 0.6%)', () => {
  it.each([
    // amount, exact 0.6%, expected fee
    [100_250, '601.5', 602], // exactly half: up
    [100_750, '604.5', 605],
    [100_249, '601.494', 601],
    [100_415, '602.49', 602], // .49: down
    [100_085, '600.51', 601], // .51: up
    [100_251, '601.506', 602],
    [100_000, '600', 600],
  ])('%i fen (0.6%% = %s) -> %i', (amount, _exact, fee) => {
    expect(saleFee(S, 'default', amount)).toBe(fee);
  });

  it('agrees with an independent bigint reference over every x.5 point and its neighbours', () => {
    // amounts with 0.6% = n + 0.5 fen are 250 + 500k
    for (let amount = 50_250; amount < 2_000_000; amount += 500) {
      const exp = Number(refFee(BigInt(amount), S.rules[0]!));
      expect(saleFee(S, 'default', amount)).toBe(exp);
      expect(saleFee(S, 'default', amount - 1)).toBe(exp - 1);
      expect(saleFee(S, 'default', amount + 1)).toBe(exp);
    }
  });

  it('catering (0.5%) and entertainment (1.25%) round half up too', () => {
    expect(saleFee(S, 'catering', 60_100)).toBe(301); // 300.5
    expect(saleFee(S, 'catering', 60_099)).toBe(300); // 300.495
    expect(saleFee(S, 'entertainment', 24_040)).toBe(301); // 300.5
    expect(saleFee(S, 'entertainment', 24_039)).toBe(300); // 300.4875 -> raised to minimum anyway
    expect(saleFee(S, 'entertainment', 100_004)).toBe(1250); // 1250.05
    expect(saleFee(S, 'entertainment', 100_036)).toBe(1250); // 1250.45
    expect(saleFee(S, 'entertainment', 100_040)).toBe(1251); // 1250.5
  });
});

describe('saleFee: minimum', () => {
  it.each([
    [1, 300],
    [49_999, 300], // 299.994
    [50_000, 300], // 300 exactly
    [50_001, 300], // 300.006
    [50_083, 300], // 300.498
    [50_084, 301], // 300.504
    [50_100, 301], // 300.6
  ])('default %i -> %i', (amount, fee) => {
    expect(saleFee(S, 'default', amount)).toBe(fee);
  });

  it('public-utilities has its own minimum of 100', () => {
    expect(saleFee(S, 'public-utilities', 1)).toBe(100);
    expect(saleFee(S, 'public-utilities', 26_184)).toBe(100); // 99.4992
    expect(saleFee(S, 'public-utilities', 26_185)).toBe(100); // 99.503 -> 100 by rounding
    expect(saleFee(S, 'public-utilities', 26_448)).toBe(101); // 100.5024
  });
});

describe('saleFee: cap on public-utilities (0.38%, cap 2500)', () => {
  it.each([
    [657_763, 2499], // 2499.4994
    [657_764, 2500], // 2499.5032 rounds to the cap
    [657_894, 2500], // 2499.9972
    [657_895, 2500], // 2500.001 capped
    [1_000_000, 2500], // 3800 capped
    [Number.MAX_SAFE_INTEGER, 2500],
  ])('%i -> %i', (amount, fee) => {
    expect(saleFee(S, 'public-utilities', amount)).toBe(fee);
  });

  it('the cap applies after the fixed part is added', () => {
    const s = schedule([{ category: 'default', rateBp: 100, fixed: 50, minimum: 0, cap: 1_000 }]);
    expect(saleFee(s, 'default', 94_900)).toBe(999); // 949 + 50
    expect(saleFee(s, 'default', 95_000)).toBe(1000); // 950 + 50
    expect(saleFee(s, 'default', 95_100)).toBe(1000); // 951 + 50, capped
  });
});

describe('saleFee: fixed part and categories', () => {
  it('adds the fixed part after rounding, then applies the minimum to the sum', () => {
    const s = schedule([{ category: 'default', rateBp: 60, fixed: 25, minimum: 300, cap: null }]);
    expect(saleFee(s, 'default', 100_250)).toBe(627); // 602 + 25
    expect(saleFee(s, 'default', 45_000)).toBe(300); // 270 + 25 = 295 -> minimum
    expect(saleFee(s, 'default', 45_900)).toBe(300); // 275.4 -> 275 + 25 = 300
    expect(saleFee(s, 'default', 46_000)).toBe(301); // 276 + 25
  });

  it('a fixed-only rule charges exactly the fixed part', () => {
    const s = schedule([{ category: 'default', rateBp: 0, fixed: 150, minimum: 0, cap: null }]);
    expect(saleFee(s, 'default', 1)).toBe(150);
    expect(saleFee(s, 'default', Number.MAX_SAFE_INTEGER)).toBe(150);
  });

  it('each default category has its own price for the same amount', () => {
    const amount = 1_000_000;
    const fees = {
      default: saleFee(S, 'default', amount),
      catering: saleFee(S, 'catering', amount),
      entertainment: saleFee(S, 'entertainment', amount),
      'public-utilities': saleFee(S, 'public-utilities', amount),
    };
    expect(fees).toEqual({
      default: 6000,
      catering: 5000,
      entertainment: 12_500,
      'public-utilities': 2500,
    });
    expect(new Set(Object.values(fees)).size).toBe(4);
  });

  it('an unknown category is priced by the default rule', () => {
    expect(saleFee(S, 'no-such-category', 1_000_000)).toBe(6000);
    expect(saleFee(S, '', 1_000_000)).toBe(6000);
  });
});

describe('saleFee: huge amounts stay exact', () => {
  const huge = [
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER - 1,
    2 ** 52 + 1,
    4_503_599_627_370_497,
    1_234_567_890_123_456,
  ];
  it.each(huge)('%i matches bigint arithmetic in every category', (amount) => {
    for (const rule of S.rules) {
      const exp = refFee(BigInt(amount), rule);
      const got = saleFee(S, rule.category, amount);
      expect(Number.isSafeInteger(got)).toBe(true);
      expect(BigInt(got)).toBe(exp);
    }
  });

  it('MAX_SAFE_INTEGER at 1.25% is 112589990684262 (…262.3875)', () => {
    expect(saleFee(S, 'entertainment', Number.MAX_SAFE_INTEGER)).toBe(112_589_990_684_262);
  });

  it('a 100% rate on MAX_SAFE_INTEGER is exact, and one fen of fixed fee beyond is refused, not rounded', () => {
    const full = schedule([
      { category: 'default', rateBp: 10_000, fixed: 0, minimum: 0, cap: null },
    ]);
    expect(saleFee(full, 'default', Number.MAX_SAFE_INTEGER)).toBe(Number.MAX_SAFE_INTEGER);
    const over = schedule([
      { category: 'default', rateBp: 10_000, fixed: 1, minimum: 0, cap: null },
    ]);
    expect(codeOf(() => saleFee(over, 'default', Number.MAX_SAFE_INTEGER))).toBe(
      'TXN_INVALID_AMOUNT',
    );
  });
});

describe('saleFee: amounts that are not positive whole minor units', () => {
  const bad: unknown[] = [
    0,
    -0,
    -1,
    -100_000,
    1.5,
    100.0001,
    0.1 + 0.2,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    Number.MAX_SAFE_INTEGER + 1,
    1e21,
    '100',
    '1e3',
    null,
    undefined,
    {},
    [100],
    100n,
    true,
  ];
  it.each(bad.map((v) => [String(v), v]))('%s -> TXN_INVALID_AMOUNT', (_label, v) => {
    expect(codeOf(() => saleFee(S, 'default', v as number))).toBe('TXN_INVALID_AMOUNT');
  });
});

describe('refundFee', () => {
  it('returns the fee in proportion, rounded down', () => {
    // fee 602 on 100250; 1/3 refunded: 602 * 33416 / 100250 = 200.66 -> 200
    expect(
      refundFee({
        originalAmount: 100_250,
        originalFee: 602,
        alreadyRefunded: 0,
        alreadyReturned: 0,
        refundAmount: 33_416,
      }),
    ).toBe(200);
    // 1 fen of a 10000 sale with fee 300: 0.03 -> 0
    expect(
      refundFee({
        originalAmount: 10_000,
        originalFee: 300,
        alreadyRefunded: 0,
        alreadyReturned: 0,
        refundAmount: 1,
      }),
    ).toBe(0);
    // exactly half of an odd fee: 150.5 -> 150 (down, not half up)
    expect(
      refundFee({
        originalAmount: 100_000,
        originalFee: 301,
        alreadyRefunded: 0,
        alreadyReturned: 0,
        refundAmount: 50_000,
      }),
    ).toBe(150);
  });

  it('the refund that empties the original returns the remainder', () => {
    expect(
      refundFee({
        originalAmount: 100_000,
        originalFee: 301,
        alreadyRefunded: 50_000,
        alreadyReturned: 150,
        refundAmount: 50_000,
      }),
    ).toBe(151);
    // 3 x 1/3: 100, 100, then the last returns 101
    let returned = 0;
    let refunded = 0;
    const parts = [33_333, 33_333, 33_334];
    const fees = parts.map((p) => {
      const f = refundFee({
        originalAmount: 100_000,
        originalFee: 301,
        alreadyRefunded: refunded,
        alreadyReturned: returned,
        refundAmount: p,
      });
      refunded += p;
      returned += f;
      return f;
    });
    expect(fees).toEqual([100, 100, 101]);
  });

  it('refuses a refund beyond what is left, by one fen', () => {
    expect(
      codeOf(() =>
        refundFee({
          originalAmount: 10_000,
          originalFee: 300,
          alreadyRefunded: 4_000,
          alreadyReturned: 120,
          refundAmount: 6_001,
        }),
      ),
    ).toBe('TXN_EXCEEDS_ORIGINAL');
  });

  it('property: over random splits, fees returned sum to the original fee exactly and never go negative', () => {
    const rnd = prng(0x5eed_f00d);
    const categories = S.rules.map((r) => r.category);
    for (let run = 0; run < 2_000; run++) {
      const magnitude = Math.floor(rnd() * 12); // 1 fen .. 10^12 fen
      const amount = 1 + Math.floor(rnd() * 10 ** magnitude);
      const category = categories[Math.floor(rnd() * categories.length)]!;
      const fee = saleFee(S, category, amount);
      const pieces = 1 + Math.floor(rnd() * Math.min(12, amount));
      // random cut points, last piece takes what is left
      const cuts = new Set<number>();
      while (cuts.size < pieces - 1) cuts.add(1 + Math.floor(rnd() * (amount - 1)));
      const bounds = [0, ...[...cuts].sort((a, b) => a - b), amount];
      let refunded = 0;
      let returned = 0;
      for (let i = 1; i < bounds.length; i++) {
        const part = bounds[i]! - bounds[i - 1]!;
        const got = refundFee({
          originalAmount: amount,
          originalFee: fee,
          alreadyRefunded: refunded,
          alreadyReturned: returned,
          refundAmount: part,
        });
        const last = i === bounds.length - 1;
        const share = (BigInt(fee) * BigInt(part)) / BigInt(amount);
        const left = BigInt(fee - returned);
        const exp = last ? left : share < left ? share : left;
        if (BigInt(got) !== exp || got < 0) {
          throw new Error(
            `run ${run}: amount ${amount} fee ${fee} part ${part} (#${i}) returned ${got}, expected ${exp}`,
          );
        }
        refunded += part;
        returned += got;
        if (returned > fee) throw new Error(`run ${run}: returned ${returned} > fee ${fee}`);
      }
      if (refunded !== amount || returned !== fee) {
        throw new Error(`run ${run}: refunded ${refunded}/${amount}, returned ${returned}/${fee}`);
      }
    }
  });
});

describe('parseFeeSchedule', () => {
  const good = {
    version: 'v2',
    currency: 'CNY',
    effectiveFrom: 0,
    rules: [
      { category: 'default', rateBp: 60, fixed: 0, minimum: 300 },
      { category: 'catering', rateBp: 50, fixed: 0, minimum: 300, cap: 5000 },
    ],
  };

  it('accepts a valid schedule and defaults cap to null', () => {
    const s = parseFeeSchedule(good);
    expect(s.rules[0]!.cap).toBeNull();
    expect(s.rules[1]!.cap).toBe(5000);
  });

  it('accepts the default schedule as it is', () => {
    expect(parseFeeSchedule(structuredClone(DEFAULT_FEE_SCHEDULE))).toEqual(DEFAULT_FEE_SCHEDULE);
  });

  function refusal(input: unknown): AgentError {
    try {
      parseFeeSchedule(input);
    } catch (e) {
      expect(e).toBeInstanceOf(AgentError);
      expect((e as AgentError).code).toBe('FEE_INVALID_SCHEDULE');
      return e as AgentError;
    }
    throw new Error('schedule was accepted');
  }

  it('refuses a schedule without a default rule', () => {
    const e = refusal({ ...good, rules: [good.rules[1]] });
    expect(e.message).toMatch(/default rule/);
  });

  it('refuses a duplicate category', () => {
    const e = refusal({ ...good, rules: [...good.rules, { ...good.rules[1], rateBp: 70 }] });
    expect(e.message).toMatch(/twice/);
  });

  it('refuses a cap below the minimum', () => {
    const e = refusal({
      ...good,
      rules: [
        good.rules[0],
        { category: 'catering', rateBp: 50, fixed: 0, minimum: 300, cap: 299 },
      ],
    });
    expect(e.message).toMatch(/cap is below the minimum/);
    expect(e.message).toMatch(/rules\.1/);
  });

  it.each([
    ['fractional rate', { rateBp: 0.5 }],
    ['negative rate', { rateBp: -1 }],
    ['rate above 100%', { rateBp: 10_001 }],
    ['fractional fixed', { fixed: 1.5 }],
    ['negative minimum', { minimum: -1 }],
    ['zero cap', { cap: 0 }],
    ['string rate', { rateBp: '60' }],
  ])('refuses a %s', (_what, patch) => {
    refusal({ ...good, rules: [{ ...good.rules[0], ...patch }] });
  });

  it.each([
    ['no rules', { rules: [] }],
    ['lower-case currency', { currency: 'cny' }],
    ['empty version', { version: '' }],
    ['negative effectiveFrom', { effectiveFrom: -1 }],
  ])('refuses %s', (_what, patch) => {
    refusal({ ...good, ...patch });
  });

  it.each([null, undefined, 42, 'std-2026.1', []])('refuses %s', (v) => {
    refusal(v);
  });

  it('lists every problem at once', () => {
    const e = refusal({
      version: '',
      currency: 'yuan',
      effectiveFrom: 0,
      rules: [{ category: 'default', rateBp: -5, fixed: 0, minimum: 0 }],
    });
    expect(e.message).toMatch(/version/);
    expect(e.message).toMatch(/currency/);
    expect(e.message).toMatch(/rateBp/);
  });
});
