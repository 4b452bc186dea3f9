import type { Store } from '../../storage/store.ts';
import { Journal, type TxnRow, type TxnStatus } from '../../storage/journal.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError, isAgentError, isAreaError } from '../../base/errors.ts';
import { protectCard, type ProtectedCard } from './card.ts';
import { parseFeeSchedule, saleFee, type FeeSchedule } from './fees.ts';
import {
  checkAppRecordInput,
  checkRecordInput,
  isSafeLocalId,
  withoutCardNumbers,
  type RecordInput,
  type RecordResult,
} from './payment-input.ts';
import {
  checkOffline,
  feeBack,
  originalFor,
  pendingOfflineTotal,
  retryOf,
} from './payment-originals.ts';
import { recordEvent, type TerminalState } from './terminal-state.ts';
import { mayMoveMoney, type MoneyAction } from './lifecycle.ts';

export type { RecordInput, RecordResult };

/**
 * The payment entry point: the one place where the lifecycle, the fee schedule and the
 * journal meet for a transaction. `record` returns only after the row is durable.
 */

export interface PaymentDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  config: Pick<Config, 'currency' | 'merchantCategory' | 'offline'>;
  terminal: TerminalState;
  /** The token key; throws once the key was destroyed at deactivation. */
  tokenKey: () => Buffer;
  /** Merchant category from activation, falling back to config. */
  category: () => string;
  onRecorded?: (row: TxnRow) => void;
}

/** A new request of the payment app, or the outcome of an authorisation already in flight. */
type Origin = 'request' | 'in-flight';

/** What the row does to money, for the lifecycle's MONEY table. */
function moneyAction(input: RecordInput, origin: Origin): MoneyAction {
  if (input.type === 'reversal') return 'reverse';
  return origin === 'in-flight' ? 'finish' : 'transact';
}

export class Payments {
  private inFlight = 0;
  private group: Array<{
    input: RecordInput;
    resolve: (r: RecordResult) => void;
    reject: (e: unknown) => void;
  }> = [];
  private draining = false;
  private schedule: FeeSchedule | undefined;

  constructor(private readonly d: PaymentDeps) {}

  /** Authorisations between `authorize`'s check and its journal row. */
  get authorisationsInFlight(): number {
    return this.inFlight;
  }

  /** Journals a transaction, refusing what the lifecycle, the original or the limits forbid. */
  record(input: RecordInput): RecordResult {
    return this.guard(input, () => this.recordOrThrow(input));
  }

  /** `record` for the payment app's socket: its required fields are checked (and a refusal journaled). */
  recordFromApp(input: RecordInput): RecordResult {
    return this.guard(input, () => {
      checkAppRecordInput(input);
      return this.recordOrThrow(input);
    });
  }

  /** Runs a recording and journals its refusal, without card data, before rethrowing. */
  private guard<T>(input: RecordInput, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (isAgentError(e)) {
        recordEvent(this.d.store, this.d.clock, this.d.log, 'txn-refused', {
          code: e.code,
          // The refusal may echo the payment app's own words (a type, a status, a currency):
          // a card number put in the wrong field must not reach the journal that way.
          reason: withoutCardNumbers(e.message),
          type: typeof input.type === 'string' ? withoutCardNumbers(input.type.slice(0, 16)) : null,
          amount: Number.isSafeInteger(input.amount) ? input.amount : null,
          localId:
            typeof input.localId === 'string' && isSafeLocalId(input.localId)
              ? input.localId
              : null,
        });
      }
      throw e;
    }
  }

  /**
   * Group commit: records asked for in the same tick share one SQLite commit (one fsync)
   * and each caller hears its own result only after that commit. Each record is its own
   * savepoint, so one refusal does not undo its neighbours.
   */
  recordAsync(input: RecordInput): Promise<RecordResult> {
    return new Promise((resolve, reject) => {
      this.group.push({ input, resolve, reject });
      if (this.group.length === 1) setImmediate(() => this.flushGroup());
    });
  }

  private flushGroup(): void {
    const group = this.group;
    this.group = [];
    const outcomes: Array<{ ok: true; value: RecordResult } | { ok: false; error: unknown }> = [];
    try {
      this.d.store.atomically(() => {
        for (const g of group) {
          try {
            outcomes.push({ ok: true, value: this.record(g.input) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (e) {
      // When SQLite rolled the group back by itself (a full disk), the first storage refusal
      // inside it says why better than the failed commit does.
      const first = outcomes.find((o) => !o.ok && isAreaError(o.error, 'storage'));
      for (const g of group) g.reject(first && !first.ok ? first.error : e);
      return;
    }
    group.forEach((g, i) => {
      const o = outcomes[i]!;
      if (o.ok) g.resolve(o.value);
      else g.reject(o.error);
    });
  }

  /** Refuse new transactions while the ones in flight finish (before a maintenance lock). */
  beginDrain(): void {
    this.draining = true;
  }

  endDrain(): void {
    this.draining = false;
  }

  /**
   * Runs an online authorisation around the lifecycle: refused up front when the
   * terminal may not transact; and when a lock lands while the host is authorising, an
   * approval is journaled and reversed at once, and the caller hears "declined".
   */
  async authorize(
    input: Omit<RecordInput, 'status' | 'authCode'> & { type: 'sale' | 'refund' },
    host: () => Promise<{ approved: boolean; authCode?: string }>,
  ): Promise<RecordResult & { reversedSeq?: number; declinedBecause?: string }> {
    if (input.localId !== undefined && input.localId.length > 62) {
      // Room for the "-R" of the reversal a lock may force.
      return this.guard(input, () => {
        throw new AgentError(
          'TXN_INVALID',
          'an authorisation local id may be at most 62 characters',
        );
      });
    }
    // A retry is answered from the journal: the host is never asked to authorise twice.
    if (input.localId !== undefined && this.d.store.journal.findByLocalId(input.localId)) {
      const prior = this.record({ ...input, status: 'approved' });
      const reversal = this.d.store.journal.findByLocalId(`${prior.localId}-R`);
      return reversal
        ? {
            ...prior,
            status: 'declined',
            reversedSeq: reversal.seq,
            declinedBecause: 'reversed when a lock arrived',
          }
        : prior;
    }
    const may = this.d.terminal.mayTransact();
    // Refused up front: record() throws the lifecycle's reason and journals the refusal.
    if (!may.allowed || this.draining) return this.record({ ...input, status: 'approved' });
    this.inFlight++;
    try {
      const answer = await host();
      const status: TxnStatus = answer.approved ? 'approved' : 'declined';
      const now = this.d.terminal.mayTransact();
      if (now.allowed || !answer.approved) {
        return this.guard(input, () =>
          this.recordOrThrow({ ...input, status, authCode: answer.authCode }, 'in-flight'),
        );
      }
      // A lock arrived mid-authorisation: the host approved, the terminal must not. The
      // approval and its reversal commit together, so no approved sale stands alone.
      const { approved, reversal } = this.guard(input, () =>
        this.d.store.atomically(() => {
          const approved = this.recordOrThrow(
            { ...input, status: 'approved', authCode: answer.authCode },
            'in-flight',
          );
          const reversal = this.recordOrThrow(
            {
              type: 'reversal',
              amount: input.amount,
              originalSeq: approved.seq,
              localId: `${approved.localId}-R`,
            },
            'in-flight',
          );
          return { approved, reversal };
        }),
      );
      return {
        ...approved,
        status: 'declined',
        reversedSeq: reversal.seq,
        declinedBecause: now.reason,
      };
    } finally {
      this.inFlight--;
    }
  }

  /**
   * `origin` says where the row comes from: the payment app asking now, or an authorisation
   * already in flight (its host's answer, or the reversal a lock forces on it). The lifecycle
   * table decides what each may do (lifecycle.ts MONEY); a drain holds back only new requests.
   */
  private recordOrThrow(input: RecordInput, origin: Origin = 'request'): RecordResult {
    const { currency, status } = checkRecordInput(input, this.d.config);
    // After deactivation the token key is gone: say why plainly instead of failing on the key.
    if (this.d.terminal.status().state === 'deactivated')
      throw new AgentError('LIFECYCLE_DEACTIVATED');
    // Masking happens before anything else touches the card, so no later error path sees a PAN.
    const card: ProtectedCard | undefined = input.card
      ? protectCard(input.card, this.d.tokenKey())
      : undefined;
    if (input.type === 'sale' && !card) throw new AgentError('TXN_INVALID', 'a sale needs a card');
    if (input.type !== 'sale' && input.originalSeq === undefined) {
      throw new AgentError(
        'TXN_ORIGINAL_NOT_FOUND',
        `a ${input.type} must name its original transaction`,
      );
    }
    const { store } = this.d;
    // A row that needs no new batch is the record's only write: it commits on its own.
    const alone = store.batches.openIfAny() !== undefined;
    const write = <T>(fn: () => T): T => (alone ? store.appendAlone(fn) : store.atomically(fn));
    const result = write(() => {
      if (input.localId !== undefined) {
        const prior = store.journal.findByLocalId(input.localId);
        if (prior) return retryOf(prior, input, card);
      }
      this.checkMayRecord(input, origin);
      return { row: this.appendRow(input, { currency, status, card }), duplicate: false };
    });
    if (!result.duplicate) this.d.onRecorded?.(result.row);
    const r = result.row;
    return {
      seq: r.seq,
      localId: r.localId,
      fee: r.fee,
      feeVersion: r.feeVersion,
      maskedPan: r.maskedPan,
      status: r.status,
      batchId: r.batchId,
      duplicate: result.duplicate,
    };
  }

  /** The drain and the lifecycle, read inside the recording's transaction. */
  private checkMayRecord(input: RecordInput, origin: Origin): void {
    const life = this.d.terminal.status();
    if (this.draining && origin === 'request')
      throw new AgentError('LIFECYCLE_LOCKED', 'maintenance is starting; no new transactions');
    const may = mayMoveMoney(life, moneyAction(input, origin));
    if (!may.allowed)
      throw new AgentError(may.code, may.reason, { state: life.state, locks: life.locks });
  }

  /** Prices the row against its original or the schedule in force, and journals it. */
  private appendRow(
    input: RecordInput,
    v: { currency: string; status: TxnStatus; card: ProtectedCard | undefined },
  ): TxnRow {
    const { store, clock } = this.d;
    const { status, card } = v;
    const now = clock.now();
    const schedule = this.scheduleAt(now);
    const batch = store.batches.open(now);
    let fee = 0;
    let maskedPan = card?.maskedPan ?? null;
    let panToken = card?.panToken ?? null;
    const category = this.d.category();
    if (input.type === 'sale') {
      if (status === 'pending-offline') checkOffline(store, this.d.config.offline, input, now);
      if (status !== 'declined') fee = saleFee(schedule, category, input.amount);
    } else {
      const original = originalFor(store, input, batch.batchId);
      maskedPan ??= original.maskedPan;
      panToken ??= original.panToken;
      if (status !== 'declined') fee = feeBack(store, input, original);
    }
    const rec = {
      localId: input.localId ?? `L${store.journal.headOf().seq + 1}`,
      type: input.type,
      originalSeq: input.originalSeq ?? null,
      amount: input.amount,
      currency: v.currency,
      category,
      fee,
      feeVersion: input.type === 'sale' && status !== 'declined' ? schedule.version : null,
      maskedPan,
      panToken,
      authCode: input.authCode ?? null,
      status,
      batchId: batch.batchId,
    };
    try {
      return store.journal.appendTxn(rec, now);
    } catch (e) {
      // The payment app's own ids may look like ours: only then is a free one looked for.
      if (input.localId !== undefined || !Journal.isLocalIdTaken(e)) throw e;
      return store.journal.appendTxn({ ...rec, localId: this.agentLocalId(rec.localId) }, now);
    }
  }

  /** The fee schedule in force at `at`; none installed means no transaction may be priced. */
  scheduleAt(at: number): FeeSchedule {
    const spec = this.d.store.state.feeScheduleAt(at);
    if (!spec)
      throw new AgentError(
        'FEE_NO_SCHEDULE',
        'no fee schedule is in force; activate the terminal first',
      );
    // A version is installed once and never changes, so its validated form can be kept.
    const version = (spec as { version?: unknown }).version;
    const cached = this.schedule;
    if (cached && cached.version === version) return cached;
    const schedule = parseFeeSchedule(spec);
    this.schedule = schedule;
    return schedule;
  }

  /** `L<seq>.<n>` for the first n the payment app has not already used for one of its rows. */
  private agentLocalId(taken: string): string {
    let id = `${taken}.2`;
    for (let n = 3; this.d.store.journal.findByLocalId(id); n++) id = `${taken}.${n}`;
    return id;
  }

  /** Offline approvals not yet settled by the acquirer: in the open batch or a queued one. */
  pendingOfflineTotal(): number {
    return pendingOfflineTotal(this.d.store);
  }
}
