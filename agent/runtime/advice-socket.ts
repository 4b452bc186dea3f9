import type { Store } from '../../storage/store.ts';
import { pos } from '../../protocol/messages.ts';
import { adviceView } from './views.ts';

/**
 * How the payment app learns what the acquirer made of its offline approvals: the advice
 * fields of a transaction query, and a cursor over the answers (ask again with the highest
 * outcome_seq seen). Declines show up here with the acquirer's reason code.
 */

/** The advice fields of a TransactionView (empty for a row sent online). */
export function adviceFields(store: Store, seq: number): Partial<pos.v1.ITransactionView> {
  const v = adviceView(store, seq);
  if (!v) return {};
  return {
    adviceState: v.state,
    adviceReference: v.reference ?? '',
    adviceReasonCode: v.reasonCode ?? '',
    adviceReason: v.reason ?? '',
  };
}

/**
 * Up to `limit` outcomes after `after_seq` (0: 100; at most 1,000), cut short where the next
 * would take the encoded outcomes past `maxBytes`: the app asks again after the last one.
 */
export function adviceOutcomes(
  store: Store,
  req: pos.v1.IAdviceOutcomesRequest,
  maxBytes: number,
): pos.v1.IAdviceOutcomesReply {
  const limit = Math.min(Math.max(Number(req.limit ?? 0) || 100, 1), 1_000);
  const answered = store.advices.answeredAfter(Number(req.afterSeq ?? 0), limit);
  const outcomes: pos.v1.IAdviceOutcomeView[] = [];
  let used = 0;
  for (const view of outcomeViews(store, answered)) {
    // Field tag (1 byte) and length prefix (at most 3 bytes under 2 MiB) around each outcome.
    const size = pos.v1.AdviceOutcomeView.encode(view).finish().length + 4;
    if (used + size > maxBytes) break;
    used += size;
    outcomes.push(view);
  }
  return { outcomes, pending: store.advices.stats().pending };
}

function outcomeViews(
  store: Store,
  answered: ReturnType<Store['advices']['answeredAfter']>,
): pos.v1.IAdviceOutcomeView[] {
  return answered.map((a) => {
    const v = adviceView(store, a.seq)!;
    const row = store.journal.getTxn(a.seq)!;
    return {
      seq: a.seq,
      outcomeSeq: a.outcomeSeq ?? 0,
      localId: row.localId,
      type: row.type,
      amount: row.amount,
      outcome: v.state,
      reference: v.reference ?? '',
      reasonCode: v.reasonCode ?? '',
      reason: v.reason ?? '',
      answeredAtMs: v.answeredAt ? Date.parse(v.answeredAt) : 0,
    };
  });
}
