import type { Logger } from '../../base/log.ts';
import type { Clock } from '../../base/clock.ts';
import type { Store } from '../../storage/store.ts';
import { AgentError } from '../../base/errors.ts';
import {
  describeEvent,
  isLockSource,
  isState,
  mayTransact,
  type LockSource,
  transition,
  type LifecycleEvent,
  type TerminalStatus,
} from './lifecycle.ts';

/**
 * Applies lifecycle events: the pure table decides, this persists. The new status, the
 * transition row and its chain event commit in one SQLite transaction, so a crash shows
 * either the old state or the new one, never half of a transition.
 */
export class TerminalState {
  /** Locks that cannot be written (the journal is frozen): held in memory, found again at each start. */
  private readonly held = new Map<LockSource, string>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * Holds a lock without writing it: used when the journal itself is the evidence and stays
   * byte-identical (a rollback, a broken chain). The table still decides whether the agent
   * may set it; the lock shows in status like any other and blocks every transaction.
   */
  hold(source: LockSource, reason: string): void {
    const out = transition(this.persisted(), { type: 'lock', source, by: 'agent' });
    if (!out.ok && out.code !== 'LIFECYCLE_DEACTIVATED') throw new AgentError(out.code, out.reason);
    if (!this.held.has(source)) this.log.error({ lock: source, reason }, 'terminal locked');
    this.held.set(source, reason);
  }

  /** The lock sources held in memory, with why. */
  heldLocks(): Array<{ source: LockSource; reason: string }> {
    return [...this.held].map(([source, reason]) => ({ source, reason }));
  }

  /** The status: the persisted one plus any held lock; a fresh journal is unactivated. */
  status(): TerminalStatus & { reason: string | null } {
    const s = this.persisted();
    if (this.held.size === 0) return s;
    const locks = [...new Set([...s.locks, ...this.held.keys()])].sort();
    return { state: s.state, locks, reason: [...this.held.values()].join('; ') };
  }

  private persisted(): TerminalStatus & { reason: string | null } {
    const row = this.store.state.lifecycle();
    if (!row) return { state: 'unactivated', locks: [], reason: null };
    if (!isState(row.state) || !row.locks.every(isLockSource)) {
      throw new AgentError(
        'STORAGE_CORRUPT',
        `the stored lifecycle state "${row.state}" is not one this agent knows`,
      );
    }
    return { state: row.state, locks: row.locks.filter(isLockSource), reason: row.reason };
  }

  mayTransact(): ReturnType<typeof mayTransact> {
    // A journal that takes no write (frozen, or paused while it is verified) takes no sale:
    // an online authorisation must be refused before the host is asked, not after.
    const frozen = this.store.frozen;
    if (frozen) return { allowed: false, code: 'LIFECYCLE_LOCKED', reason: frozen.reason };
    return mayTransact(this.status());
  }

  /**
   * Applies an event with its cause (plain words) and source (who/what: `console:tech1`,
   * `command:42`, `selftest`). Must run inside the caller's `store.atomically` when the
   * event goes with other writes (a command counter, a batch step); joins it if so.
   * A refused event throws and is recorded by the caller's refusal path.
   */
  apply(
    event: LifecycleEvent,
    cause: string,
    source: string,
  ): TerminalStatus & { changed: boolean } {
    return this.store.atomically(() => {
      const row = this.store.state.lifecycle();
      const before = this.status();
      const out = transition(before, event);
      if (!out.ok) {
        throw new AgentError(out.code, out.reason, {
          event: event.type,
          state: before.state,
          locks: before.locks,
        });
      }
      if (!out.changed) return { ...out.next, changed: false };
      const now = this.clock.now();
      const entry = this.store.journal.appendEvent(
        'lifecycle',
        {
          event: describeEvent(event),
          from: before.state,
          to: out.next.state,
          locksBefore: before.locks,
          locksAfter: out.next.locks,
          source,
          cause,
        },
        now,
      );
      this.store.state.saveLifecycle(
        { state: out.next.state, locks: out.next.locks, reason: cause, updatedAt: now },
        row?.version ?? 0,
      );
      this.store.state.addTransition({
        at: now,
        event: describeEvent(event),
        fromState: before.state,
        toState: out.next.state,
        locksBefore: before.locks,
        locksAfter: out.next.locks,
        source,
        cause,
        journalSeq: entry.seq,
      });
      this.log.info(
        {
          event: describeEvent(event),
          from: before.state,
          to: out.next.state,
          locks: out.next.locks,
          source,
          cause,
        },
        'lifecycle transition',
      );
      return { ...out.next, changed: true };
    });
  }

  /** Applies an event, recording a refusal in the journal before rethrowing it. */
  applyOrRecord(
    event: LifecycleEvent,
    cause: string,
    source: string,
  ): TerminalStatus & { changed: boolean } {
    try {
      return this.apply(event, cause, source);
    } catch (e) {
      if (e instanceof AgentError && e.area === 'lifecycle') {
        recordEvent(this.store, this.clock, this.log, 'lifecycle-refused', {
          event: describeEvent(event),
          code: e.code,
          reason: e.message,
          source,
          cause,
        });
      }
      throw e;
    }
  }
}

/**
 * Appends one event to the chain in its own transaction and logs it. Used for refusals
 * and audits, which must be recorded even though the action they describe rolled back.
 * A journal that cannot take the record is logged, not thrown over the original error.
 */
export function recordEvent(
  store: Store,
  clock: Clock,
  log: Logger,
  event: string,
  detail: Record<string, unknown>,
): void {
  try {
    store.atomically(() => store.journal.appendEvent(event, detail, clock.now()));
    log.warn({ event, ...detail }, event);
  } catch (e) {
    log.error({ event, ...detail, err: (e as Error).message }, 'could not journal an event');
  }
}
