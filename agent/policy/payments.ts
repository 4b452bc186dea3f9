import type { Store } from '../../storage/store.ts';
import type { TxnRow, TxnStatus, TxnType } from '../../storage/journal.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError, isAgentError, isAreaError } from '../../base/errors.ts';
import { protectCard, type CardInput, type ProtectedCard } from './card.ts';
import {
  assertMinorUnits,
  parseFeeSchedule,
  refundFee,
  saleFee,
  type FeeSchedule,
} from './fees.ts';
import { recordEvent, type TerminalState } from './terminal-state.ts';
import { mayTransact } from './lifecycle.ts';

/**
 * The payment entry point: the one place where the lifecycle, the fee schedule and the
 * journal meet for a transaction. `record` returns only after the row is durable.
 */

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

const TYPES: readonly TxnType[] = ['sale', 'refund', 'void', 'reversal'];
/** A local id is short and plain, with no digit run long enough to be a card number. */
const isSafeLocalId = (id: string): boolean => /^[\w.:-]{1,64}$/.test(id) && !/\d{12,}/.test(id);
/** Cuts out any run of 12 or more digits (spaces or dashes between them too): a possible PAN. */
const withoutCardNumbers = (s: string): string => s.replace(/\d(?:[ -]?\d){11,}/g, '[digits]');

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
          this.recordOrThrow(
            { ...input, status, authCode: answer.authCode },
            { inFlight: true, lifecycleChecked: !now.allowed },
          ),
        );
      }
      // A lock arrived mid-authorisation: the host approved, the terminal must not. The
      // approval and its reversal commit together, so no approved sale stands alone.
      const { approved, reversal } = this.guard(input, () =>
        this.d.store.atomically(() => {
          const approved = this.recordOrThrow(
            { ...input, status: 'approved', authCode: answer.authCode },
            { inFlight: true, lifecycleChecked: true },
          );
          const reversal = this.recordOrThrow(
            {
              type: 'reversal',
              amount: input.amount,
              originalSeq: approved.seq,
              localId: `${approved.localId}-R`,
            },
            { inFlight: true },
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

  private recordOrThrow(
    input: RecordInput,
    opts: { inFlight?: boolean; lifecycleChecked?: boolean } = {},
  ): RecordResult {
    const { store, clock, config } = this.d;
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
    const status: TxnStatus = input.status ?? 'approved';
    if (!['approved', 'declined', 'pending-offline'].includes(status)) {
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

    const result = store.atomically(() => {
      if (input.localId !== undefined) {
        const prior = store.journal.findByLocalId(input.localId);
        if (prior) return this.retryOf(prior, input, card);
      }
      const life = this.d.terminal.status();
      if (this.draining && !opts.inFlight)
        throw new AgentError('LIFECYCLE_LOCKED', 'maintenance is starting; no new transactions');
      if (!opts.lifecycleChecked) {
        // A reversal undoes money already moved; it is allowed while locked, never once deactivated.
        const reversalOk =
          input.type === 'reversal' &&
          ['active', 'deactivation-pending', 'deactivating'].includes(life.state);
        const may = mayTransact(life);
        if (!may.allowed && !reversalOk)
          throw new AgentError(may.code, may.reason, { state: life.state, locks: life.locks });
      }
      const now = clock.now();
      const schedule = this.scheduleAt(now);
      const batch = store.batches.open(now);
      let fee = 0;
      let maskedPan = card?.maskedPan ?? null;
      let panToken = card?.panToken ?? null;
      const category = this.d.category();
      if (input.type === 'sale') {
        if (status === 'pending-offline') this.checkOffline(input, now);
        if (status !== 'declined') fee = saleFee(schedule, category, input.amount);
      } else {
        const original = this.originalFor(input, batch.batchId);
        maskedPan ??= original.maskedPan;
        panToken ??= original.panToken;
        if (status !== 'declined') fee = this.feeBack(input, original);
      }
      const localId = input.localId ?? this.agentLocalId(store.journal.headOf().seq + 1);
      const row = store.journal.appendTxn(
        {
          localId,
          type: input.type,
          originalSeq: input.originalSeq ?? null,
          amount: input.amount,
          currency,
          category,
          fee,
          feeVersion: input.type === 'sale' && status !== 'declined' ? schedule.version : null,
          maskedPan,
          panToken,
          authCode: input.authCode ?? null,
          status,
          batchId: batch.batchId,
        },
        now,
      );
      return { row, duplicate: false };
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

  /** `L<seq>`, unless the payment app already used that id for one of its own rows. */
  private agentLocalId(seq: number): string {
    let id = `L${seq}`;
    for (let n = 2; this.d.store.journal.findByLocalId(id); n++) id = `L${seq}.${n}`;
    return id;
  }

  private retryOf(
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

  private originalFor(input: RecordInput, openBatchId: string): TxnRow {
    const original = this.d.store.journal.getTxn(input.originalSeq!);
    // An offline sale the acquirer declined (or never answered) was never paid: nothing to take back.
    const unpaid = ['declined', 'expired'].includes(
      this.d.store.advices.get(input.originalSeq!)?.outcome ?? '',
    );
    if (!original || original.type !== 'sale' || original.status === 'declined' || unpaid) {
      throw new AgentError(
        'TXN_ORIGINAL_NOT_FOUND',
        `no approved sale with sequence number ${input.originalSeq}`,
      );
    }
    const taken = this.d.store.journal.takenFrom(original.seq);
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

  private feeBack(input: RecordInput, original: TxnRow): number {
    const taken = this.d.store.journal.takenFrom(original.seq);
    if (input.type !== 'refund') return original.fee - taken.fee;
    return refundFee({
      originalAmount: original.amount,
      originalFee: original.fee,
      alreadyRefunded: taken.amount,
      alreadyReturned: taken.fee,
      refundAmount: input.amount,
    });
  }

  private checkOffline(input: RecordInput, now: number): void {
    const { offline } = this.d.config;
    if (input.amount > offline.maxAmount) {
      throw new AgentError(
        'TXN_OFFLINE_LIMIT',
        `an offline approval may not exceed ${offline.maxAmount}`,
      );
    }
    if (input.approvedAt !== undefined && now - input.approvedAt > offline.maxAgeMs) {
      throw new AgentError('TXN_OFFLINE_LIMIT', 'the offline approval is too old to be accepted');
    }
    const pending = this.pendingOfflineTotal();
    if (pending + input.amount > offline.maxTotal) {
      throw new AgentError(
        'TXN_OFFLINE_LIMIT',
        `offline approvals not yet settled already total ${pending}`,
      );
    }
  }

  /**
   * The offline allowance in use: offline approvals the acquirer has not answered yet (an
   * answer, accepted or declined, frees it; storage/advices.ts says what else counts).
   */
  pendingOfflineTotal(): number {
    return this.d.store.advices.offlineAllowanceUsed();
  }
}
