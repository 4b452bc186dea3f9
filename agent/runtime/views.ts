import type { Store } from '../../storage/store.ts';
import type { JournalEntry } from '../../storage/journal.ts';
import type { Batch } from '../../storage/batches.ts';
import { openBatchTally } from '../policy/open-batch-tally.ts';
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
  const totals = tally.totals(ctx.currency);
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
    disputedBatches: store.batches
      .disputed()
      .map((b) => ({ batchId: b.batchId, problem: b.problem })),
    ...(ctx.link ? { link: ctx.link } : {}),
    versions: { agent: ctx.firmwareVersion, node: process.versions.node },
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
