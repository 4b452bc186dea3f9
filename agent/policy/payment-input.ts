import type { TxnStatus, TxnType } from '../../storage/journal.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';
import type { CardInput } from './card.ts';
import { assertMinorUnits } from './fees.ts';

/** What the payment app asks to journal, and what it hears back. */

export interface RecordInput {
  type: TxnType;
  amount: number;
  currency?: string;
  card?: CardInput;
  status?: TxnStatus;
  authCode?: string;
  originalSeq?: number;
  /** The payment app's own reference; a retry with the same id returns the first result. */
  localId?: string;
  /** For an offline approval: when the card was approved on the terminal. */
  approvedAt?: number;
}

export interface RecordResult {
  seq: number;
  localId: string;
  fee: number;
  feeVersion: string | null;
  maskedPan: string | null;
  status: TxnStatus;
  batchId: string;
  /** True when this was a retry of an already journaled request. */
  duplicate: boolean;
}

const TYPES: readonly TxnType[] = ['sale', 'refund', 'void', 'reversal'];
const STATUSES: readonly TxnStatus[] = ['approved', 'declined', 'pending-offline'];

/** A local id is short and plain, with no digit run long enough to be a card number. */
export const isSafeLocalId = (id: string): boolean =>
  /^[\w.:-]{1,64}$/.test(id) && !/\d{12,}/.test(id);

/** Cuts out any run of 12 or more digits (spaces or dashes between them too): a possible PAN. */
export const withoutCardNumbers = (s: string): string =>
  s.replace(/\d(?:[ -]?\d){11,}/g, '[digits]');

/**
 * The checks that need nothing but the request and the configuration: type, amount,
 * currency, status, local id and auth code. Returns the currency and status to journal.
 */
export function checkRecordInput(
  input: RecordInput,
  config: Pick<Config, 'currency'>,
): { currency: string; status: TxnStatus } {
  if (!TYPES.includes(input.type))
    throw new AgentError('TXN_INVALID', `unknown transaction type "${String(input.type)}"`);
  assertMinorUnits(input.amount);
  const currency = input.currency ?? config.currency;
  if (currency !== config.currency) {
    throw new AgentError(
      'TXN_INVALID',
      `currency ${currency} is not this terminal's ${config.currency}`,
    );
  }
  if (input.type === 'sale' && input.originalSeq !== undefined) {
    // A sale naming a sale would count against it as if it had refunded it.
    throw new AgentError('TXN_INVALID', 'a sale names no original transaction');
  }
  const status: TxnStatus = input.status ?? 'approved';
  if (!STATUSES.includes(status)) {
    throw new AgentError('TXN_INVALID', `unknown status "${String(status)}"`);
  }
  if (input.localId !== undefined && !isSafeLocalId(input.localId)) {
    // A long digit run could be a card number: never let one into the journal this way.
    throw new AgentError(
      'TXN_INVALID',
      'the local id must be 1 to 64 letters, digits or . _ : - with no run of 12 digits',
    );
  }
  if (input.authCode !== undefined && !/^[\w]{0,12}$/.test(input.authCode)) {
    throw new AgentError('TXN_INVALID', 'the auth code must be up to 12 letters or digits');
  }
  return { currency, status };
}

/**
 * What the payment app must say that the agent's own callers may leave to defaults: its local
 * id (without one a lost reply cannot be retried safely) and the status (a missing one must not
 * become "approved"); an offline approval also says when it was approved, so its age is checked.
 */
export function checkAppRecordInput(input: RecordInput): void {
  if (input.localId === undefined)
    throw new AgentError('TXN_INVALID', 'a record needs a local_id (its retry key)');
  if (input.status === undefined)
    throw new AgentError(
      'TXN_INVALID',
      'a record needs a status (approved, declined or pending-offline)',
    );
  if (input.status === 'pending-offline' && input.type !== 'sale')
    // Only a sale is approved offline; what takes money back from one follows it as an advice.
    throw new AgentError(
      'TXN_INVALID',
      `a ${input.type} is approved or declined, never pending-offline`,
    );
  if (input.status === 'pending-offline' && input.approvedAt === undefined)
    throw new AgentError('TXN_INVALID', 'an offline approval needs approved_at_ms');
}
