/**
 * Settlement as the acquirer does it, keyed by (terminal id from the certificate, batch id,
 * digest): the first submit settles, every resend of the key gets the same settlement id with
 * duplicate=true, another digest for a settled batch is rejected. In out-of-balance mode the
 * acquirer claims other totals, takes the detail rows (idempotent per chunk), recomputes the
 * totals itself and settles the next submit on them.
 */
import { randomBytes } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import { pos } from '../protocol/messages.ts';
import {
  alteredTotals,
  detailRowFromWire,
  digestFromDetail,
  totalsFromDetail,
  totalsFromWire,
  totalsToWire,
  type TotalsRecord,
} from './acquirer-totals.ts';
import { takeFault } from './behaviour.ts';
import { asPaid } from './advice-handlers.ts';
import { reply, type HandlerContext, type HandlerResult } from './handler-context.ts';
import type { SettlementRecord, SubmissionRecord } from './ledger.ts';
import { foldChunk, foldedResult } from './detail-fold.ts';
import { summedRows } from './detail-wire.ts';

const DIGEST = /^[0-9a-f]{64}$/;

/** Answers a BatchSubmit: settle, duplicate ack, out of balance, reject, or drop. */
export function onBatchSubmit(
  ctx: HandlerContext,
  cn: string,
  env: pos.v1.Envelope,
): HandlerResult {
  const s = env.batchSubmit!;
  const batchId = s.batchId ?? '';
  const digest = s.digest ?? '';
  if (!batchId || !DIGEST.test(digest)) {
    throw new AgentError('PROTOCOL_MALFORMED', 'a batch needs an id and a hex SHA-256 digest');
  }
  const totals = totalsFromWire(s.totals);
  const { ledger, behaviour } = ctx;
  const now = ctx.now();
  const seen: Omit<SubmissionRecord, 'id'> = {
    terminalId: cn,
    batchId,
    digest,
    messageId: env.messageId,
    receivedAt: now,
    totals,
    duplicate: false,
    outcome: 'settled',
  };
  let settledNow: SettlementRecord | undefined;
  // Decision and record commit together: a crash cannot settle without the submission row.
  const result = ledger.atomically((): HandlerResult => {
    const existing = ledger.settlement(cn, batchId);
    seen.duplicate = existing !== undefined && existing.digest === digest;
    if (takeFault(behaviour, 'dropBeforeAck')) {
      seen.outcome = 'dropped';
      ledger.recordSubmission(seen);
      return { kind: 'drop' };
    }
    if (existing && existing.digest !== digest) {
      seen.outcome = 'rejected';
      ledger.recordSubmission(seen);
      return reply({
        error: {
          code: 'SETTLEMENT_REJECTED',
          message: `batch ${batchId} was already settled with another digest (${existing.settlementId})`,
        },
      });
    }
    let ack: HandlerResult;
    if (existing) {
      seen.outcome = 'duplicate';
      // The deliberate fault the conformance kit must catch: a resend "settled" again.
      ack = behaviour.resendSettlesAgain
        ? batchAck({ ...existing, settlementId: `STL-${randomBytes(8).toString('hex')}` }, false)
        : batchAck(existing, true);
    } else {
      const first = firstSubmit(ctx, cn, seen, totals);
      if (first.kind === 'out-of-balance') return first.result;
      settledNow = first.settled;
      ack = batchAck(settledNow, false);
    }
    ledger.recordSubmission(seen);
    return takeFault(behaviour, 'dropAfterAck') ? { kind: 'drop' } : ack;
  });
  ctx.submissionSeen(seen);
  if (settledNow) ctx.settled(settledNow);
  return result;
}

/**
 * The first submit of a batch: settled, or (in out-of-balance mode, until detail proves the
 * totals) answered with the acquirer's own claim. Runs inside the submit's transaction.
 */
function firstSubmit(
  ctx: HandlerContext,
  cn: string,
  seen: Omit<SubmissionRecord, 'id'>,
  totals: TotalsRecord,
):
  | { kind: 'settled'; settled: SettlementRecord }
  | { kind: 'out-of-balance'; result: HandlerResult } {
  const { ledger, behaviour } = ctx;
  const { batchId, digest, receivedAt: now } = seen;
  const oob = ledger.outOfBalance(cn, batchId, digest);
  // Detail proves something only when its rows hash to the batch digest.
  const proven = oob?.detailDigestOk ? oob.detailTotals : null;
  // docs/protocol.md, conformance: a CONFORMANCE-OOB- batch is disputed until its detail is in.
  const claim =
    !proven &&
    (behaviour.settle === 'out-of-balance' ||
      batchId.startsWith('CONFORMANCE-OOB-') ||
      (behaviour.settle === 'out-of-balance-once' && !oob));
  if (claim) {
    const claimed = oob?.claimedTotals ?? alteredTotals(totals);
    ledger.claimOutOfBalance(cn, batchId, digest, claimed, now);
    seen.outcome = 'out-of-balance';
    ledger.recordSubmission(seen);
    return {
      kind: 'out-of-balance',
      result: reply({ outOfBalance: { batchId, digest, acquirerTotals: totalsToWire(claimed) } }),
    };
  }
  const settled: SettlementRecord = {
    terminalId: cn,
    batchId,
    digest,
    settlementId: `STL-${randomBytes(8).toString('hex').toUpperCase()}`,
    terminalTotals: totals,
    // Once detail is in, the acquirer pays on what it computed from the rows, not on claims.
    settledTotals: proven ?? totals,
    settledAt: now,
    via: proven ? 'detail' : 'submit',
  };
  ledger.settle(settled);
  return { kind: 'settled', settled };
}

function batchAck(s: SettlementRecord, duplicate: boolean): HandlerResult {
  return reply({
    batchAck: {
      batchId: s.batchId,
      digest: s.digest,
      settlementId: s.settlementId,
      duplicate,
      acquirerTotals: totalsToWire(s.settledTotals),
    },
  });
}

/**
 * Stores one detail chunk (as the envelope bytes received) and folds its rows into the
 * upload's totals and digest; once every chunk is in, answers with the totals.
 */
export function onDetailChunk(
  ctx: HandlerContext,
  cn: string,
  env: pos.v1.IEnvelope,
  payload?: Uint8Array,
): HandlerResult {
  const c = env.batchDetailChunk!;
  const batchId = c.batchId ?? '';
  const digest = c.digest ?? '';
  const index = c.chunkIndex ?? 0;
  const count = c.chunkCount ?? 0;
  if (!batchId || !DIGEST.test(digest) || count < 1 || index < 0 || index >= count) {
    throw new AgentError(
      'PROTOCOL_MALFORMED',
      `detail chunk ${index}/${count} of batch ${batchId} is not well formed`,
    );
  }
  const { ledger } = ctx;
  const declared = ledger.declaredChunkCount(cn, batchId, digest);
  if (declared !== undefined && declared !== count) {
    throw new AgentError(
      'PROTOCOL_MALFORMED',
      `batch ${batchId} was declared in ${declared} chunks, not ${count}`,
    );
  }
  const settled = ledger.settlement(cn, batchId);
  if (settled && settled.digest !== digest) {
    throw new AgentError(
      'SETTLEMENT_REJECTED',
      `batch ${batchId} was already settled with another digest`,
    );
  }
  // Read off the wire by the acquirer's decoder (simulator/detail-wire.ts), or from protobufjs.
  const rows = summedRows(env) ?? (c.rows ?? []).map(detailRowFromWire);
  const now = ctx.now();
  const key = { terminalId: cn, batchId, digest };
  const bytes = payload ?? pos.v1.Envelope.encode(env).finish();
  const got = ledger.addDetailChunk(key, index, count, bytes, now);
  if (got.fresh) foldChunk(ledger, key, index, rows);
  const ack: pos.v1.IDetailAck = {
    batchId,
    digest,
    chunkIndex: index,
    complete: false,
    nextMissing: ledger.nextMissingChunk(cn, batchId, digest, count),
    window: ctx.behaviour.detailWindow,
  };
  if (got.received === count) {
    const { totals, digestOk } = detailOutcome(ctx, key, count);
    ledger.detailComplete(cn, batchId, digest, count, totals, digestOk, now);
    if (!digestOk) {
      // Rows that do not hash to the batch digest prove nothing; the acquirer will not pay on them.
      throw new AgentError(
        'SETTLEMENT_REJECTED',
        `the detail rows of batch ${batchId} do not match its digest`,
      );
    }
    ack.complete = true;
    ack.acquirerTotals = totalsToWire(totals);
    if (settled) ack.settlementId = settled.settlementId;
  }
  ctx.log.debug({ terminalId: cn, batchId, index, count, fresh: got.fresh }, 'detail chunk');
  // The chunk is stored; only its ack is lost (the terminal must resume, not start over).
  if (takeFault(ctx.behaviour, 'dropAfterDetailChunk')) return { kind: 'drop' };
  return reply({ detailAck: ack });
}

/**
 * What a complete upload proves: the acquirer's totals over its rows and whether they hash to
 * the batch digest. Folded as the chunks came (simulator/detail-fold.ts) or, when the fold
 * cannot vouch, recomputed from every row in the ledger; both give the same answer.
 */
function detailOutcome(
  ctx: HandlerContext,
  key: { terminalId: string; batchId: string; digest: string },
  count: number,
): { totals: TotalsRecord; digestOk: boolean } {
  const { ledger } = ctx;
  const { terminalId: cn, batchId, digest } = key;
  const claimed = () => ledger.outOfBalance(cn, batchId, digest)?.claimedTotals.currency ?? '';
  const folded = foldedResult(ledger, key, count, (first) => first ?? claimed());
  if (folded) {
    if (folded.currencies.size > 1)
      throw new AgentError('SETTLEMENT_REJECTED', `batch ${batchId} mixes currencies`);
    return { totals: folded.totals, digestOk: folded.digest === digest };
  }
  const all = ledger.detailRows(cn, batchId, digest);
  const currencies = new Set(all.map((r) => r.currency));
  if (currencies.size > 1)
    throw new AgentError('SETTLEMENT_REJECTED', `batch ${batchId} mixes currencies`);
  const currency = all[0]?.currency ?? claimed();
  const totals: TotalsRecord = totalsFromDetail(asPaid(ledger.advices, cn, all), currency);
  return { totals, digestOk: digestFromDetail(batchId, all) === digest };
}
