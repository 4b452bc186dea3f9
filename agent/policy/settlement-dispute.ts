import type { Store } from '../../storage/store.ts';
import type { Batch } from '../../storage/batches.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import { AgentError, isAgentError } from '../../base/errors.ts';
import type { TerminalState } from './terminal-state.ts';

/**
 * A batch the acquirer refuses for good: "already settled with another digest", any other
 * SETTLEMENT_REJECTED from the acquirer, or an out-of-balance that the detail upload did not
 * end. Resending cannot change that answer, so settlement must not retry it for ever (which
 * stalled every later batch behind it, silently). The batch goes to 'disputed' with the
 * acquirer's words, and the terminal locks `settlement-dispute`: no new sales on top of a
 * history the acquirer disputes. Later batches settle as usual (they are the merchant's
 * money and nothing ties them to the disputed one); only the acquirer clears the lock, with
 * a signed unlock or an unlock code, once a person has reconciled the batch.
 */

/** What settlement needs to lock the terminal. */
export type Locker = TerminalState;

/** Whether a settlement failure is the acquirer's final answer (not the network, not a timeout). */
function isPermanentRefusal(e: unknown): e is AgentError {
  if (!isAgentError(e)) return false;
  if (e.code === 'SETTLEMENT_REJECTED') return e.context.permanent === true;
  return e.code === 'PROTOCOL_PEER_ERROR' && e.context.peerCode === 'SETTLEMENT_REJECTED';
}

/** The agent's own "a person must decide" refusal (marked permanent). */
export function permanentRefusal(message: string): AgentError {
  return new AgentError('SETTLEMENT_REJECTED', message, { permanent: true });
}

/**
 * Moves the batch to 'disputed', journals why and locks the terminal, in one transaction.
 * Returns the batch as stored.
 */
function disputeBatch(
  d: { store: Store; clock: Clock; log: Logger; terminal: TerminalState },
  batch: Batch,
  refusal: AgentError,
): Batch {
  const reason =
    typeof refusal.context.peerMessage === 'string' && refusal.context.peerMessage
      ? refusal.context.peerMessage
      : refusal.message;
  const disputed = d.store.atomically(() => {
    const now = d.clock.now();
    const b = d.store.batches.setState(
      batch.batchId,
      ['closed', 'sent', 'out-of-balance', 'detail-uploaded'],
      'disputed',
      now,
      { problem: reason },
    );
    d.store.journal.appendEvent(
      'batch-disputed',
      { batchId: batch.batchId, digest: batch.digest, code: refusal.code, reason },
      now,
    );
    d.terminal.apply(
      { type: 'lock', source: 'settlement-dispute', by: 'agent' },
      `the acquirer refused batch ${batch.batchId} for good: ${reason}`,
      'settlement',
    );
    return b;
  });
  d.log.error(
    { batchId: batch.batchId, reason },
    'batch disputed by the acquirer; the terminal is locked until the acquirer clears it',
  );
  return disputed;
}

/**
 * settleAll's catch: when `e` is the acquirer's final answer (and a terminal is there to
 * lock), disputes the batch, notes it in the report and says true: go on with the next one.
 */
export function setAsideIfFinal(
  d: { store: Store; clock: Clock; log: Logger; terminal?: TerminalState },
  batch: Batch,
  e: unknown,
  report: { error?: AgentError; disputed?: string[] },
): boolean {
  if (!isPermanentRefusal(e) || !d.terminal) return false;
  disputeBatch({ ...d, terminal: d.terminal }, batch, e);
  report.error = e;
  report.disputed = [...(report.disputed ?? []), batch.batchId];
  return true;
}

/** A refusal for trying to settle a batch that is already disputed. */
export function alreadyDisputed(batch: Batch): AgentError {
  return new AgentError(
    'SETTLEMENT_REJECTED',
    `batch ${batch.batchId} is disputed (${batch.problem ?? 'refused by the acquirer'}); it is not sent again`,
  );
}
