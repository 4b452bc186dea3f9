import type { Store } from '../../storage/store.ts';
import type { pos } from '../../protocol/messages.ts';
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

export function adviceOutcomes(
  store: Store,
  req: pos.v1.IAdviceOutcomesRequest,
): pos.v1.IAdviceOutcomesReply {
  const limit = Math.min(Math.max(Number(req.limit ?? 0) || 100, 1), 1_000);
  const answered = store.advices.answeredAfter(Number(req.afterSeq ?? 0), limit);
  return {
    outcomes: answered.map((a) => {
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
    }),
    pending: store.advices.stats().pending,
  };
}
