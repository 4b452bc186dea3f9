import type { Store } from '../../storage/store.ts';
import type { QueuedAdvice } from '../../storage/advices.ts';
import type { TxnRow } from '../../storage/journal.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import type { pos } from '../../protocol/messages.ts';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { detailRow, type AcquirerLink } from './settlement.ts';

/**
 * Store-and-forward: every offline approval (and every refund, void or reversal of one) is
 * sent to the acquirer as an advice, oldest journal row first, in rounds of up to
 * `forwarding.batchSize`. Nothing here is kept in memory that a crash could lose:
 * - the queue is filled by the journal itself (storage/advices.ts, migration 2);
 * - an answer is journaled (a row referencing the advised row) before anything else happens,
 *   and an advice without a journaled answer is simply sent again: the acquirer answers a
 *   resend of a key with its first answer (duplicate=true), so none is counted twice;
 * - the head of the queue goes first, always: a later advice never overtakes an earlier one,
 *   so the acquirer receives them in journal order;
 * - a failed round backs off (doubling, capped) and an advice still unanswered
 *   `forwarding.expiryMs` after it was journaled is journaled as expired: a failed problem
 *   shown by status, console and CLI, never silently dropped.
 */

export type ForwardStep = 'advice-sending' | 'advice-answered' | 'advice-expired';

export interface ForwardingDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  config: Pick<Config, 'forwarding'>;
  link: AcquirerLink;
  /** Fault injection for crash tests: called at each step (after it is durable, if it writes). */
  afterStep?: (step: ForwardStep, key: string) => void;
}

export interface ForwardRound {
  sent: number;
  accepted: number;
  declined: number;
  expired: number;
  /** Advices still unanswered after this round. */
  remaining: number;
  /** The head of the queue is backing off: try again in this many ms. */
  waitMs?: number;
  error?: AgentError;
}

export class Forwarder {
  constructor(private readonly d: ForwardingDeps) {}

  /** Unanswered advices. */
  get pending(): number {
    return this.d.store.advices.stats().pending;
  }

  /** Journals as expired every advice unanswered for longer than the configured expiry. */
  expireDue(): number {
    const { store, clock, log, config } = this.d;
    const now = clock.now();
    const due = store.advices.dueToExpire(now - config.forwarding.expiryMs);
    for (const a of due) {
      const hours = Math.round(config.forwarding.expiryMs / 360_000) / 10;
      const reason =
        `not answered within ${hours} h after ${a.attempts} attempts` +
        (a.lastError ? `; last error: ${a.lastError}` : '');
      store.atomically(() =>
        store.advices.answer(
          { key: a.key, outcome: 'expired', reasonCode: 'EXPIRED', reason },
          clock.now(),
        ),
      );
      log.error(
        { seq: a.seq, key: a.key, attempts: a.attempts },
        `offline advice expired: ${reason}`,
      );
      this.d.afterStep?.('advice-expired', a.key);
    }
    return due.length;
  }

  /**
   * One round trip: the oldest unanswered advices, answered and journaled. `ignoreBackoff`
   * is for a fresh link, where the failures that caused the backoff are gone.
   */
  async round(opts: { ignoreBackoff?: boolean } = {}): Promise<ForwardRound> {
    const { store, clock, config, link } = this.d;
    const expired = this.expireDue();
    const batch = store.advices.pending(config.forwarding.batchSize);
    const result: ForwardRound = { sent: 0, accepted: 0, declined: 0, expired, remaining: 0 };
    if (batch.length === 0) return result;
    result.remaining = this.pending;
    const wait = batch[0]!.nextAttemptAt - clock.now();
    if (!opts.ignoreBackoff && wait > 0) return { ...result, waitMs: wait };
    if (!link.isUp) {
      return {
        ...result,
        error: new AgentError(
          'PROTOCOL_DISCONNECTED',
          'the acquirer is unreachable; advices stay queued',
        ),
      };
    }
    const advices = batch.map((a) => this.toWire(a));
    this.d.afterStep?.('advice-sending', batch[0]!.key);
    result.sent = batch.length;
    let ack: pos.v1.IAdviceBatchAck;
    try {
      const reply = await link.request({ adviceBatch: { advices } });
      if (!reply.adviceBatchAck) {
        throw reply.error
          ? new AgentError('PROTOCOL_PEER_ERROR', `${reply.error.code}: ${reply.error.message}`)
          : new AgentError('PROTOCOL_UNEXPECTED', 'the acquirer did not answer the advices');
      }
      ack = reply.adviceBatchAck;
    } catch (e) {
      const err = isAgentError(e) ? e : new AgentError('PROTOCOL_UNEXPECTED', (e as Error).message);
      this.backOff(batch, err.message);
      return { ...result, error: err };
    }
    const counts = this.record(batch, ack);
    return { ...result, ...counts, remaining: this.pending };
  }

  /** Rounds until the queue is empty, the head backs off, or a round fails. */
  async drain(opts: { ignoreBackoff?: boolean } = {}): Promise<ForwardRound> {
    const total: ForwardRound = { sent: 0, accepted: 0, declined: 0, expired: 0, remaining: 0 };
    let ignoreBackoff = opts.ignoreBackoff;
    for (;;) {
      const r = await this.round({ ignoreBackoff });
      ignoreBackoff = false;
      total.sent += r.sent;
      total.accepted += r.accepted;
      total.declined += r.declined;
      total.expired += r.expired;
      total.remaining = r.remaining;
      if (r.error || r.waitMs !== undefined || r.remaining === 0 || r.accepted + r.declined === 0)
        return { ...total, waitMs: r.waitMs, error: r.error };
    }
  }

  private toWire(a: QueuedAdvice & { row: TxnRow }): pos.v1.IAdvice {
    const original =
      a.row.originalSeq !== null ? this.d.store.advices.get(a.row.originalSeq) : undefined;
    return { key: a.key, row: detailRow(a.row), originalKey: original?.key ?? '' };
  }

  /** Journals every answer of the round in one transaction; the unanswered back off. */
  private record(
    batch: ReadonlyArray<QueuedAdvice & { row: TxnRow }>,
    ack: pos.v1.IAdviceBatchAck,
  ): { accepted: number; declined: number } {
    const { store, clock, log } = this.d;
    const byKey = new Map((ack.outcomes ?? []).map((o) => [o.key ?? '', o]));
    let accepted = 0;
    let declined = 0;
    const unanswered: Array<QueuedAdvice> = [];
    store.atomically(() => {
      const now = clock.now();
      for (const a of batch) {
        const o = byKey.get(a.key);
        if (!o || (o.outcome !== 'accepted' && o.outcome !== 'declined')) {
          unanswered.push(a);
          continue;
        }
        const fresh = store.advices.answer(
          {
            key: a.key,
            outcome: o.outcome,
            reference: (o.reference ?? '').slice(0, 64) || undefined,
            reasonCode: (o.reasonCode ?? '').slice(0, 32) || undefined,
            reason: (o.reason ?? '').slice(0, 200) || undefined,
            duplicate: o.duplicate ?? false,
          },
          now,
        );
        if (!fresh) continue;
        if (o.outcome === 'accepted') accepted++;
        else {
          declined++;
          log.warn(
            { seq: a.seq, key: a.key, reasonCode: o.reasonCode, amount: a.row.amount },
            `the acquirer declined offline ${a.row.type} ${a.seq}: ${o.reason || o.reasonCode}`,
          );
        }
      }
      if (unanswered.length > 0)
        this.backOff(unanswered, 'the acquirer did not answer this advice');
    });
    this.d.afterStep?.('advice-answered', batch.at(-1)!.key);
    return { accepted, declined };
  }

  private backOff(batch: ReadonlyArray<QueuedAdvice>, error: string): void {
    const { store, clock, config } = this.d;
    const f = config.forwarding;
    const attempts = batch[0]!.attempts + 1;
    const delay = Math.min(f.backoffMaxMs, f.backoffInitialMs * 2 ** Math.min(30, attempts - 1));
    const now = clock.now();
    store.atomically(() =>
      store.advices.noteFailure(
        batch.map((a) => a.seq),
        error,
        now,
        now + delay,
      ),
    );
    this.d.log.warn(
      { advices: batch.length, attempts, retryInMs: delay, err: error },
      'advices not answered',
    );
  }
}
