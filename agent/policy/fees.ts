import { z } from 'zod';
import { AgentError } from '../../base/errors.ts';

/**
 * Fee schedules are versioned data. A fee is computed once, when the transaction is
 * recorded, from the schedule in force then, and stored on the row with that version.
 *
 * Rounding rule (the only one): the percentage part is amount x rate / 10000 rounded
 * half up to the fen; then fee = percentage + fixed, raised to the minimum, lowered to
 * the cap if there is one. Integer arithmetic in bigint throughout, so no amount
 * overflows and no float touches money.
 *
 * Refund rule: a refund returns the original fee in proportion to the amount refunded,
 * rounded down; the refund that brings the original to zero returns whatever fee is
 * left, so the fees returned for a fully refunded sale equal its fee exactly. A void or
 * reversal cancels the whole original and returns its whole remaining fee.
 */

const feeRuleSchema = z
  .object({
    category: z.string().min(1),
    rateBp: z.number().int().min(0).max(10_000),
    fixed: z.number().int().min(0),
    minimum: z.number().int().min(0),
    cap: z.number().int().positive().nullable().default(null),
  })
  .refine((r) => r.cap === null || r.cap >= r.minimum, { message: 'cap is below the minimum' });

const feeScheduleSchema = z
  .object({
    version: z.string().min(1),
    currency: z.string().regex(/^[A-Z]{3}$/),
    effectiveFrom: z.number().int().min(0),
    rules: z.array(feeRuleSchema).min(1),
  })
  .refine((s) => s.rules.some((r) => r.category === 'default'), {
    message: 'a default rule is required',
  })
  .refine((s) => new Set(s.rules.map((r) => r.category)).size === s.rules.length, {
    message: 'a category appears twice',
  });

export type FeeRule = z.infer<typeof feeRuleSchema>;
export type FeeSchedule = z.infer<typeof feeScheduleSchema>;

/** Validates a schedule from any source (config, signed command), listing every problem. */
export function parseFeeSchedule(input: unknown): FeeSchedule {
  const r = feeScheduleSchema.safeParse(input);
  if (r.success) return r.data;
  throw new AgentError(
    'FEE_INVALID_SCHEDULE',
    `the fee schedule is invalid: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
  );
}

/** A schedule as the acquirer sends it (FeeScheduleSpec on the wire; 0 cap means none). */
export interface FeeScheduleWire {
  version?: string | null;
  currency?: string | null;
  effectiveFromMs?: number | null;
  rules?: Array<{
    category?: string | null;
    rateBp?: number | null;
    fixed?: number | null;
    minimum?: number | null;
    cap?: number | null;
  }> | null;
}

/** Validates a schedule received from the acquirer (activation grant, fee-schedule command). */
export function feeScheduleFromWire(spec: FeeScheduleWire | null | undefined): FeeSchedule {
  return parseFeeSchedule({
    version: spec?.version,
    currency: spec?.currency,
    effectiveFrom: Number(spec?.effectiveFromMs ?? 0),
    rules: (spec?.rules ?? []).map((r) => ({
      category: r.category,
      rateBp: r.rateBp,
      fixed: Number(r.fixed ?? 0),
      minimum: Number(r.minimum ?? 0),
      cap: Number(r.cap) || null,
    })),
  });
}

/**
 * The reference tariff: 0.6% with a 3 yuan minimum; catering and entertainment at their
 * own rates, public utilities lower with a cap, as acquirers price those categories.
 */
export const DEFAULT_FEE_SCHEDULE: FeeSchedule = Object.freeze({
  version: 'std-2026.1',
  currency: 'CNY',
  effectiveFrom: 0,
  rules: [
    { category: 'default', rateBp: 60, fixed: 0, minimum: 300, cap: null },
    { category: 'catering', rateBp: 50, fixed: 0, minimum: 300, cap: null },
    { category: 'entertainment', rateBp: 125, fixed: 0, minimum: 300, cap: null },
    { category: 'public-utilities', rateBp: 38, fixed: 0, minimum: 100, cap: 2_500 },
  ],
}) as FeeSchedule;

export function ruleFor(schedule: FeeSchedule, category: string): FeeRule {
  return (
    schedule.rules.find((r) => r.category === category) ??
    schedule.rules.find((r) => r.category === 'default')!
  );
}

function toSafe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new AgentError('TXN_INVALID_AMOUNT', `${what} is too large`);
  return Number(v);
}

export function assertMinorUnits(amount: unknown, what = 'amount'): asserts amount is number {
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) {
    throw new AgentError(
      'TXN_INVALID_AMOUNT',
      `${what} must be a positive whole number of minor units, got ${String(amount)}`,
    );
  }
}

/** The fee for a sale of `amount` minor units in `category` under `schedule`. */
export function saleFee(schedule: FeeSchedule, category: string, amount: number): number {
  assertMinorUnits(amount);
  const rule = ruleFor(schedule, category);
  const pct = (BigInt(amount) * BigInt(rule.rateBp) + 5_000n) / 10_000n;
  let fee = pct + BigInt(rule.fixed);
  if (fee < BigInt(rule.minimum)) fee = BigInt(rule.minimum);
  if (rule.cap !== null && fee > BigInt(rule.cap)) fee = BigInt(rule.cap);
  return toSafe(fee, 'fee');
}

/**
 * The fee returned by a refund of `refundAmount` against an original of
 * `originalAmount` with `originalFee`, when `alreadyReturned` fee and `alreadyRefunded`
 * amount were taken back before.
 */
export function refundFee(o: {
  originalAmount: number;
  originalFee: number;
  alreadyRefunded: number;
  alreadyReturned: number;
  refundAmount: number;
}): number {
  const leftAfter = o.originalAmount - o.alreadyRefunded - o.refundAmount;
  if (leftAfter < 0) throw new AgentError('TXN_EXCEEDS_ORIGINAL');
  if (leftAfter === 0) return o.originalFee - o.alreadyReturned;
  const share = (BigInt(o.originalFee) * BigInt(o.refundAmount)) / BigInt(o.originalAmount);
  const capped = BigInt(o.originalFee - o.alreadyReturned);
  return toSafe(share < capped ? share : capped, 'fee');
}
