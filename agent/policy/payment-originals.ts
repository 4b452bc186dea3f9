import type { Store } from '../../storage/store.ts';
import type { TxnRow } from '../../storage/journal.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';
import type { ProtectedCard } from './card.ts';
import { refundFee } from './fees.ts';
import type { RecordInput } from './payment-input.ts';

/**
 * What a recording checks against rows already in the journal: a retry of an earlier
 * request, the original sale a refund, void or reversal takes money back from, the fee it
 * returns, and the limits on offline approvals not yet settled.
 */

/** The earlier row under the same local id, if this request is its exact retry. */
export function retryOf(
  prior: TxnRow,
  input: RecordInput,
  card: ProtectedCard | undefined,
): { row: TxnRow; duplicate: boolean } {
  // A retry carries the same card; another card under the same id is a different transaction.
  const otherCard = card !== undefined && prior.panToken !== card.panToken;
  if (
    otherCard ||
    prior.type !== input.type ||
    prior.amount !== input.amount ||
    (prior.originalSeq ?? undefined) !== input.originalSeq
  ) {
    throw new AgentError(
      'TXN_INVALID',
      `local id ${prior.localId} was already used for a different transaction`,
    );
  }
  return { row: prior, duplicate: true };
}

/** The approved sale a refund, void or reversal names, if it still has that much to give back. */
export function originalFor(store: Store, input: RecordInput, openBatchId: string): TxnRow {
  const original = store.journal.getTxn(input.originalSeq!);
  // An offline sale the acquirer declined (or never answered) was never paid: nothing to take back.
  const unpaid = ['declined', 'expired'].includes(
    store.advices.get(input.originalSeq!)?.outcome ?? '',
  );
  if (!original || original.type !== 'sale' || original.status === 'declined' || unpaid) {
    throw new AgentError(
      'TXN_ORIGINAL_NOT_FOUND',
      `no approved sale with sequence number ${input.originalSeq}`,
    );
  }
  const taken = store.journal.takenFrom(original.seq);
  if (taken.cancelled)
    throw new AgentError(
      'TXN_EXCEEDS_ORIGINAL',
      `sale ${original.seq} was already voided or reversed`,
    );
  if (input.type === 'refund') {
    if (taken.amount + input.amount > original.amount) {
      throw new AgentError(
        'TXN_EXCEEDS_ORIGINAL',
        `only ${original.amount - taken.amount} is left to refund on sale ${original.seq}`,
      );
    }
    return original;
  }
  // Void and reversal cancel the whole original, before any refund took part of it.
  if (taken.count > 0)
    throw new AgentError(
      'TXN_EXCEEDS_ORIGINAL',
      `sale ${original.seq} was already partly refunded`,
    );
  if (input.amount !== original.amount) {
    throw new AgentError(
      'TXN_INVALID',
      `a ${input.type} must be for the whole ${original.amount} of sale ${original.seq}`,
    );
  }
  if (input.type === 'void' && original.batchId !== openBatchId) {
    throw new AgentError(
      'TXN_INVALID',
      `sale ${original.seq} is in a closed batch; refund it instead of voiding`,
    );
  }
  return original;
}

/** The fee a refund, void or reversal returns to the merchant. */
export function feeBack(store: Store, input: RecordInput, original: TxnRow): number {
  const taken = store.journal.takenFrom(original.seq);
  if (input.type !== 'refund') return original.fee - taken.fee;
  return refundFee({
    originalAmount: original.amount,
    originalFee: original.fee,
    alreadyRefunded: taken.amount,
    alreadyReturned: taken.fee,
    refundAmount: input.amount,
  });
}

/** How far after the terminal's "now" an offline approval time may lie (two processes reading one clock). */
const APPROVED_AT_LEEWAY_MS = 60_000;

/** Refuses an offline approval beyond the configured amount, age or unsettled total. */
export function checkOffline(
  store: Store,
  offline: Config['offline'],
  input: RecordInput,
  now: number,
): void {
  if (input.amount > offline.maxAmount) {
    throw new AgentError(
      'TXN_OFFLINE_LIMIT',
      `an offline approval may not exceed ${offline.maxAmount}`,
    );
  }
  if (input.approvedAt !== undefined && now - input.approvedAt > offline.maxAgeMs) {
    throw new AgentError('TXN_OFFLINE_LIMIT', 'the offline approval is too old to be accepted');
  }
  // The payment app shares the terminal's clock: an approval from the future is a wrong field
  // (seconds for milliseconds, another epoch), and would dodge the age limit.
  if (input.approvedAt !== undefined && input.approvedAt - now > APPROVED_AT_LEEWAY_MS) {
    throw new AgentError('TXN_INVALID', 'approved_at_ms is later than the terminal clock');
  }
  const pending = pendingOfflineTotal(store);
  if (pending + input.amount > offline.maxTotal) {
    throw new AgentError(
      'TXN_OFFLINE_LIMIT',
      `offline approvals not yet answered by the acquirer already total ${pending}`,
    );
  }
}

/**
 * The offline allowance in use: offline approvals the acquirer has not answered yet. Only
 * its answer (accepted or declined) frees one; storage/advices.ts says what else counts.
 */
export function pendingOfflineTotal(store: Store): number {
  return store.advices.offlineAllowanceUsed();
}
