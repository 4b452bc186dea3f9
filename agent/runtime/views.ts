import type { Store } from '../../storage/store.ts';
import type { JournalEntry } from '../../storage/journal.ts';
import type { Batch } from '../../storage/batches.ts';
import { openBatchTally } from '../policy/open-batch-tally.ts';
import { paidTotals } from '../policy/advice-totals.ts';
import { mayTransact, type TerminalStatus } from '../policy/lifecycle.ts';
import type { Identity } from './core.ts';

/**
 * Read models shared by the CLI and the console: plain objects (so `--json` prints them
 * as they are) with no card data beyond the masked PAN.
 */

export interface StatusView {
  terminalId: string;
  state: string;
  locks: string[];
  reason: string | null;
  mayTransact: boolean;
  merchant: string | null;
  journal: { headSeq: number; headHash: string };
  openBatch: {
    batchId: string;
    transactions: number;
    netAmount: number;
    netFee: number;
    netSettlement: number;
    currency: string;
  };
  queuedBatches: number;
  /** The store-and-forward queue of offline advices. */
  advices: AdviceQueueView;
  /** Batches the acquirer refused for good: they wait for a person, not for a resend. */
  disputedBatches: Array<{ batchId: string; problem: string | null }>;
  link?: { up: boolean; clockOffsetMs: number | null };
  versions: { agent: string; node: string };
}

export function statusView(
  store: Store,
  status: TerminalStatus & { reason: string | null },
  ctx: {
    terminalId: string;
    identity?: Identity;
    currency: string;
    now: number;
    firmwareVersion: string;
    link?: StatusView['link'];
  },
): StatusView {
  // Reads only the rows since the last look (agent/policy/open-batch-tally.ts).
  const { tally } = openBatchTally(store, ctx.now);
  const totals = paidTotals(store, tally, tally.totals(ctx.currency));
  const head = store.journal.headOf();
  return {
    terminalId: ctx.terminalId,
    state: status.state,
    locks: status.locks,
    reason: status.reason,
    mayTransact: mayTransact(status).allowed,
    merchant: ctx.identity
      ? `${ctx.identity.merchantId} ${ctx.identity.merchantName} (${ctx.identity.category})`
      : null,
    journal: { headSeq: head.seq, headHash: head.hash },
    openBatch: {
      batchId: tally.batchId,
      transactions: tally.rows,
      netAmount: totals.netAmount,
      netFee: totals.netFee,
      netSettlement: totals.netSettlement,
      currency: ctx.currency,
    },
    queuedBatches: store.batches.unsettled().length,
    advices: adviceQueueView(store, ctx.now),
    disputedBatches: store.batches
      .disputed()
      .map((b) => ({ batchId: b.batchId, problem: b.problem })),
    ...(ctx.link ? { link: ctx.link } : {}),
    versions: { agent: ctx.firmwareVersion, node: process.versions.node },
  };
}

export interface AdviceQueueView {
  /** Advices waiting for the acquirer's answer. */
  pending: number;
  /** Age of the oldest of them, ms (null when none). */
  oldestAgeMs: number | null;
  /** Why the last delivery round failed, while advices wait. */
  lastError: string | null;
  accepted: number;
  declined: number;
  /** Never answered in time: each one a problem to look at (`advices expired`). */
  expired: number;
}

export function adviceQueueView(store: Store, now: number): AdviceQueueView {
  const s = store.advices.stats();
  return {
    pending: s.pending,
    oldestAgeMs: s.oldestEnqueuedAt === null ? null : Math.max(0, now - s.oldestEnqueuedAt),
    lastError: s.lastError,
    accepted: s.accepted,
    declined: s.declined,
    expired: s.expired,
  };
}

/** One line for people: "3 waiting (oldest 2 min), last error: ...; 10 accepted, 1 declined". */
export function adviceQueueLine(a: AdviceQueueView): string {
  const age =
    a.oldestAgeMs === null
      ? ''
      : a.oldestAgeMs < 120_000
        ? ` (oldest ${Math.round(a.oldestAgeMs / 1000)} s)`
        : ` (oldest ${Math.round(a.oldestAgeMs / 60_000)} min)`;
  const err = a.lastError ? `, last error: ${a.lastError}` : '';
  const problem = a.expired > 0 ? `, ${a.expired} EXPIRED (see: advices expired)` : '';
  return `${a.pending} waiting${age}${err}; ${a.accepted} accepted, ${a.declined} declined${problem}`;
}

export interface AdviceView {
  seq: number;
  key: string;
  type: string;
  amount: number;
  card: string | null;
  /** queued | accepted | declined | expired */
  state: string;
  reference: string | null;
  reasonCode: string | null;
  reason: string | null;
  attempts: number;
  lastError: string | null;
  queuedAt: string;
  answeredAt: string | null;
}

/** Advices, newest `limit`, oldest first; `only` picks one state. */
export function adviceViews(
  store: Store,
  only?: 'pending' | 'accepted' | 'declined' | 'expired',
  limit = 50,
): AdviceView[] {
  return store.advices.list(limit, only).map((a) => adviceView(store, a.seq)!);
}

/** What became of one transaction's advice (undefined for a row that needed none). */
export function adviceView(store: Store, seq: number): AdviceView | undefined {
  const a = store.advices.get(seq);
  const row = store.journal.getTxn(seq);
  if (!a || !row) return undefined;
  const answer = a.outcomeSeq ? store.journal.get(a.outcomeSeq) : undefined;
  const d = answer?.kind === 'event' ? answer.detail : {};
  const text = (v: unknown): string | null => (typeof v === 'string' && v ? v : null);
  return {
    seq,
    key: a.key,
    type: row.type,
    amount: row.amount,
    card: row.maskedPan,
    state: a.outcome ?? 'queued',
    reference: text(d.reference),
    reasonCode: text(d.reasonCode),
    reason: text(d.reason),
    attempts: a.attempts,
    lastError: a.lastError,
    queuedAt: new Date(a.enqueuedAt).toISOString(),
    answeredAt: answer ? new Date(answer.createdAt).toISOString() : null,
  };
}

export interface EntryView {
  seq: number;
  at: string;
  kind: string;
  what: string;
  amount: number | null;
  fee: number | null;
  status: string | null;
  card: string | null;
  batch: string | null;
  detail?: Record<string, unknown>;
  hash: string;
}

export function entryView(e: JournalEntry): EntryView {
  const at = new Date(e.createdAt).toISOString();
  if (e.kind === 'event') {
    return {
      seq: e.seq,
      at,
      kind: 'event',
      what: e.event,
      amount: null,
      fee: null,
      status: null,
      card: null,
      batch: null,
      detail: e.detail,
      hash: e.hash,
    };
  }
  const what = e.originalSeq ? `${e.type} of ${e.originalSeq}` : e.type;
  return {
    seq: e.seq,
    at,
    kind: 'txn',
    what,
    amount: e.amount,
    fee: e.fee,
    status: e.status,
    card: e.maskedPan,
    batch: e.batchId,
    hash: e.hash,
  };
}

export interface BatchView {
  batchId: string;
  number: number;
  state: string;
  businessDate: string | null;
  transactions: number | null;
  netAmount: number | null;
  netFee: number | null;
  netSettlement: number | null;
  settlementId: string | null;
  digest: string | null;
}

export function batchView(b: Batch): BatchView {
  return {
    batchId: b.batchId,
    number: b.number,
    state: b.state,
    businessDate: b.businessDate,
    transactions: b.txnCount,
    netAmount: b.totals?.netAmount ?? null,
    netFee: b.totals?.netFee ?? null,
    netSettlement: b.totals?.netSettlement ?? null,
    settlementId: b.settlementId,
    digest: b.digest,
  };
}
