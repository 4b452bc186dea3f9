/**
 * Offline advices as the acquirer takes them: in the order given, each decided once and kept
 * in the ledger under (terminal id from the certificate, advice key). A resend is answered with
 * the first answer and duplicate=true. Rules decide a first receipt: a switchable mode, an
 * amount limit, declined card ranges, and a refund, void or reversal follows its original sale
 * (declined when the sale was declined or never advised).
 */
import { randomBytes } from 'node:crypto';
import { AgentError } from '../base/errors.ts';
import type { pos } from '../protocol/messages.ts';
import type { AdviceBehaviour } from './behaviour.ts';
import type { AdviceLedger, AdviceRecord } from './advice-ledger.ts';
import { reply, type HandlerContext, type HandlerResult } from './handler-context.ts';

const KEY = /^\d{1,15}:[0-9a-f]{16}$/;
const MAX_ADVICES = 2_000;

type Decision = Pick<AdviceRecord, 'outcome' | 'reference' | 'reasonCode' | 'reason'>;

function decide(
  rules: AdviceBehaviour,
  ledger: AdviceLedger,
  cn: string,
  a: pos.v1.IAdvice,
): Decision {
  const row = a.row!;
  const declined = (reasonCode: string, reason: string): Decision => ({
    outcome: 'declined',
    reference: '',
    reasonCode,
    reason,
  });
  if (rules.mode === 'decline-all') return declined('ISSUER_DECLINED', 'declined by the issuer');
  if (row.type !== 'sale') {
    const original = a.originalKey ? ledger.find(cn, a.originalKey) : undefined;
    if (!original) return declined('ORIGINAL_UNKNOWN', 'the original sale was never advised');
    if (original.outcome === 'declined')
      return declined('ORIGINAL_DECLINED', 'the original sale was declined');
  } else {
    const amount = Number(row.amount ?? 0);
    if (rules.declineOver !== null && amount > rules.declineOver)
      return declined('AMOUNT_LIMIT', `above the offline limit of ${rules.declineOver}`);
    const pan = row.maskedPan ?? '';
    if (rules.declineCardPrefixes.some((p) => pan.startsWith(p)))
      return declined('CARD_RANGE', 'the card range does not allow offline approval');
  }
  return {
    outcome: 'accepted',
    reference: `ADV-${randomBytes(6).toString('hex').toUpperCase()}`,
    reasonCode: '',
    reason: '',
  };
}

function outcomeOf(r: AdviceRecord, duplicate: boolean): pos.v1.IAdviceOutcome {
  return {
    key: r.key,
    outcome: r.outcome,
    reference: r.reference,
    reasonCode: r.reasonCode,
    reason: r.reason,
    duplicate,
  };
}

function check(a: pos.v1.IAdvice): void {
  const row = a.row;
  if (!KEY.test(a.key ?? '') || !row || !Number.isSafeInteger(Number(row.amount ?? NaN))) {
    throw new AgentError(
      'PROTOCOL_MALFORMED',
      `advice ${String(a.key).slice(0, 40)} is not well formed`,
    );
  }
  if (Number(row.seq) !== Number(a.key!.split(':')[0]))
    throw new AgentError('PROTOCOL_MALFORMED', `advice ${a.key} names another row`);
}

/** Answers an AdviceBatch: every advice recorded once, in order, then answered. */
export function onAdviceBatch(
  ctx: HandlerContext,
  cn: string,
  env: pos.v1.Envelope,
): HandlerResult {
  const advices = env.adviceBatch?.advices ?? [];
  if (advices.length > MAX_ADVICES)
    throw new AgentError('PROTOCOL_MALFORMED', `at most ${MAX_ADVICES} advices per batch`);
  advices.forEach(check);
  const rules = ctx.behaviour.advice;
  if (rules.dropBefore > 0) {
    rules.dropBefore -= 1;
    return { kind: 'drop' };
  }
  if (rules.mode === 'ignore') return reply({ adviceBatchAck: { outcomes: [] } });
  const { advices: ledger } = ctx.ledger;
  const now = ctx.now();
  const outcomes = ctx.ledger.atomically(() =>
    advices.map((a) => {
      const known = ledger.find(cn, a.key!);
      if (known) {
        ledger.seenAgain(cn, a.key!);
        return outcomeOf(known, true);
      }
      const row = a.row!;
      const d = decide(rules, ledger, cn, a);
      ledger.add({
        terminalId: cn,
        key: a.key!,
        seq: Number(row.seq),
        localId: row.localId ?? '',
        type: row.type ?? '',
        amount: Number(row.amount ?? 0),
        fee: Number(row.fee ?? 0),
        maskedPan: row.maskedPan ?? '',
        originalKey: a.originalKey ?? '',
        ...d,
        receivedAt: now,
      });
      return outcomeOf(ledger.find(cn, a.key!)!, false);
    }),
  );
  if (rules.dropAfter > 0) {
    rules.dropAfter -= 1;
    return { kind: 'drop' };
  }
  return reply({ adviceBatchAck: { outcomes } });
}

/**
 * Detail rows as the acquirer pays them: a row it declined as an advice, or an offline
 * approval it never accepted (its advice expired on the terminal), moves no money, so it
 * counts as declined in the acquirer's totals. Used on a batch's detail upload.
 */
export function asPaid<T extends { seq: number; hash: string; status: string }>(
  ledger: AdviceLedger,
  cn: string,
  rows: readonly T[],
): T[] {
  const outcomes = ledger.outcomes(cn);
  return rows.map((r) => {
    const advice = outcomes.size ? outcomes.get(`${r.seq}:${r.hash.slice(0, 16)}`) : undefined;
    const unpaid = advice === 'declined' || (r.status === 'pending-offline' && !advice);
    return unpaid ? { ...r, status: 'declined' } : r;
  });
}
