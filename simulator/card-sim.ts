/**
 * A card and payment-app simulator: seeded, so a failing scenario replays exactly; test card
 * numbers only (Luhn-valid, from fixed test prefixes, never a live issuer range). It drives any
 * target with the Payments `record` shape (in-process, or later a socket client) with a mix of
 * sales, partial refunds of earlier sales, voids and declined sales, and reports what the
 * terminal acknowledged so a test can check the acquirer's totals against what was sold.
 */
import type { RecordInput, RecordResult } from '../agent/policy/payments.ts';

/** What card-sim drives: Payments itself or anything that records like it. */
export interface RecordTarget {
  record(input: RecordInput): RecordResult | Promise<RecordResult>;
}

/** Relative weights of each operation; absent means 0 (sale defaults to 1). */
export interface OperationMix {
  sale?: number;
  refund?: number;
  void?: number;
  /** Sales the issuer declines: journaled, but they move no money. */
  declined?: number;
}

/** Options of one drive. */
export interface DriveOptions {
  count: number;
  mix?: OperationMix;
  /** Sale amounts are uniform in [min, max] minor units. Default 100..200 000 (1 to 2 000 yuan). */
  amount?: { min: number; max: number };
}

/** Count, amount and fee of what the terminal acknowledged, per type. */
interface TypeSum {
  count: number;
  amount: number;
  fee: number;
}

/** What a drive did. */
export interface DriveReport {
  /** Acknowledged operations, by type; declined sales are counted apart and move no money. */
  byType: Record<'sale' | 'refund' | 'void', TypeSum>;
  declined: number;
  /** Sequence numbers the terminal acknowledged, in order. */
  seqs: number[];
  /** Batches the acknowledged rows went into. */
  batchIds: string[];
  /** Operations the terminal refused, with the error code. */
  refused: Array<{ type: string; code: string }>;
  /** Sales minus refunds and voids: what the terminal should settle, to the fen. */
  netAmount: number;
  /** Fees charged minus fees returned. */
  netFee: number;
}

/** Test prefixes: 4000 00 (Visa test range) and 6200 00 (a UnionPay-shaped test range). */
const TEST_PREFIXES = ['400000', '620000'] as const;

/** Mulberry32: tiny, fast and good enough to pick amounts; not for anything secret. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** The Luhn check digit for a number without one. */
export function luhnCheckDigit(body: string): number {
  let sum = 0;
  // Doubling starts at the rightmost digit of the body, which sits left of the check digit.
  for (let i = body.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = body.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

interface Sale {
  seq: number;
  amount: number;
  fee: number;
  refunded: number;
  feeReturned: number;
  voided: boolean;
  batchId: string;
}

/** A seeded card and payment simulator. Sales it made stay available for later refunds. */
export class CardSim {
  private readonly random: () => number;
  private readonly sales: Sale[] = [];
  private serial = 0;
  /** Index of the first sale made by the running drive: only those may be voided. */
  private driveStart = 0;

  /** Local ids are `CS<seed>-<n>`: give each simulator driving one terminal its own seed. */
  constructor(readonly seed = 1) {
    this.random = seededRandom(seed);
  }

  /** A uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  /** A Luhn-valid 16-digit test card number. */
  pan(): string {
    const prefix = TEST_PREFIXES[this.int(0, TEST_PREFIXES.length - 1)]!;
    let body = prefix;
    while (body.length < 15) body += String(this.int(0, 9));
    return body + String(luhnCheckDigit(body));
  }

  /** Runs `count` operations against `target` and reports what was acknowledged. */
  async drive(target: RecordTarget, options: DriveOptions): Promise<DriveReport> {
    const mix = {
      sale: options.mix?.sale ?? 1,
      refund: options.mix?.refund ?? 0,
      void: options.mix?.void ?? 0,
      declined: options.mix?.declined ?? 0,
    };
    const range = options.amount ?? { min: 100, max: 200_000 };
    const report: DriveReport = {
      byType: { sale: zero(), refund: zero(), void: zero() },
      declined: 0,
      seqs: [],
      batchIds: [],
      refused: [],
      netAmount: 0,
      netFee: 0,
    };
    this.driveStart = this.sales.length;
    const weights = Object.entries(mix) as Array<[keyof typeof mix, number]>;
    const total = weights.reduce((s, [, w]) => s + w, 0);
    for (let i = 0; i < options.count; i++) {
      let pick = this.random() * total;
      let op: keyof typeof mix = 'sale';
      for (const [name, w] of weights) {
        if (pick < w) {
          op = name;
          break;
        }
        pick -= w;
      }
      await this.one(target, op, range, report);
    }
    report.netAmount =
      report.byType.sale.amount - report.byType.refund.amount - report.byType.void.amount;
    report.netFee = report.byType.sale.fee - report.byType.refund.fee - report.byType.void.fee;
    return report;
  }

  private async one(
    target: RecordTarget,
    op: 'sale' | 'refund' | 'void' | 'declined',
    range: { min: number; max: number },
    report: DriveReport,
  ): Promise<void> {
    const localId = `CS${this.seed}-${++this.serial}`;
    let input: RecordInput;
    let original: Sale | undefined;
    if (op === 'refund') {
      const open = this.sales.filter((s) => !s.voided && s.refunded < s.amount);
      original = open[this.int(0, open.length - 1)];
      if (!original) return this.one(target, 'sale', range, report);
      // Partial: up to what is left, so the original can be refunded again later.
      const amount = this.int(1, original.amount - original.refunded);
      input = { type: 'refund', amount, originalSeq: original.seq, localId };
    } else if (op === 'void') {
      // A void cancels a whole untouched sale of the open batch: one made in this drive (a test
      // cuts over between drives) and in the batch of the newest sale.
      const mine = this.sales.slice(this.driveStart);
      const newest = mine.at(-1)?.batchId;
      const open = mine.filter((s) => !s.voided && s.refunded === 0 && s.batchId === newest);
      original = open[this.int(0, open.length - 1)];
      if (!original) return this.one(target, 'sale', range, report);
      input = { type: 'void', amount: original.amount, originalSeq: original.seq, localId };
    } else {
      const amount = this.int(range.min, range.max);
      input = {
        type: 'sale',
        amount,
        card: { pan: this.pan() },
        localId,
        ...(op === 'declined' ? { status: 'declined' as const } : {}),
      };
    }
    let r: RecordResult;
    try {
      r = await target.record(input);
    } catch (e) {
      report.refused.push({ type: input.type, code: (e as { code?: string }).code ?? 'UNKNOWN' });
      return;
    }
    report.seqs.push(r.seq);
    if (!report.batchIds.includes(r.batchId)) report.batchIds.push(r.batchId);
    if (r.status === 'declined') {
      report.declined += 1;
      return;
    }
    const type = input.type as 'sale' | 'refund' | 'void';
    const sum = report.byType[type];
    sum.count += 1;
    sum.amount += input.amount;
    sum.fee += r.fee;
    if (type === 'sale') {
      this.sales.push({
        seq: r.seq,
        amount: input.amount,
        fee: r.fee,
        refunded: 0,
        feeReturned: 0,
        voided: false,
        batchId: r.batchId,
      });
    } else if (original) {
      original.refunded += type === 'refund' ? input.amount : 0;
      original.feeReturned += r.fee;
      original.voided ||= type === 'void';
    }
  }
}

function zero(): TypeSum {
  return { count: 0, amount: 0, fee: 0 };
}
