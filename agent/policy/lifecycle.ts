import type { ErrorCode } from '../../base/errors.ts';

/**
 * The terminal, top to bottom. A terminal is in one lifecycle state and holds a set of
 * locks, one per source. What money it may move in each state is the `MONEY` table (it
 * may transact only when active with no lock). Everything the
 * terminal can do to its state is a row of `TABLE` below; a (state, event) pair that is
 * not there is refused and changes nothing. This module is pure: persisting the new
 * status and journaling the cause happen in terminal-state.ts.
 */

export const STATES = [
  'unactivated',
  'active',
  'deactivation-pending',
  'deactivating',
  'deactivated',
] as const;
export type State = (typeof STATES)[number];

export const LOCK_SOURCES = [
  'remote',
  'risk',
  'technician',
  'hardware-fault',
  'maintenance',
  'journal-rollback',
  'journal-broken',
  'settlement-dispute',
] as const;
export type LockSource = (typeof LOCK_SOURCES)[number];

/** Who asks for a change: the acquirer (signed command), a technician (console), the agent itself (self-test, risk rules), or a signed one-time unlock code. */
export type Authority = 'acquirer' | 'technician' | 'agent' | 'unlock-code';

export interface TerminalStatus {
  state: State;
  /** Sorted, no duplicates. */
  locks: LockSource[];
}

export type LifecycleEvent =
  | { type: 'activate' }
  | { type: 'lock'; source: LockSource; by: Authority }
  | { type: 'unlock'; source: LockSource; by: Authority }
  | { type: 'request-deactivation'; by: Authority }
  | { type: 'deactivation-approved' }
  | { type: 'deactivation-rejected' }
  | { type: 'deactivate-for-violation' }
  /** `unsettled` counts transactions not yet settled and acknowledged by the acquirer. */
  | { type: 'final-settlement-done'; unsettled: number };

type EventType = LifecycleEvent['type'];

export type Outcome =
  | { ok: true; next: TerminalStatus; changed: boolean }
  | { ok: false; code: ErrorCode; reason: string };

/** Who may set and who may clear each lock. A risk lock is the acquirer's alone to clear. */
export const LOCK_AUTHORITY: Record<
  LockSource,
  { lock: readonly Authority[]; unlock: readonly Authority[] }
> = {
  remote: { lock: ['acquirer'], unlock: ['acquirer'] },
  risk: { lock: ['acquirer', 'agent'], unlock: ['acquirer', 'unlock-code'] },
  technician: { lock: ['technician'], unlock: ['technician', 'acquirer'] },
  'hardware-fault': { lock: ['agent'], unlock: ['agent', 'technician'] },
  maintenance: {
    lock: ['agent', 'technician', 'acquirer'],
    unlock: ['agent', 'technician', 'acquirer'],
  },
  // The journal is behind what the terminal acknowledged (a head witness, or the acquirer,
  // says so), or its chain is broken. No one clears these in place: the file is evidence and
  // is never written again; the way out is a new journal incarnation under an acquirer grant
  // (docs/recovery.md).
  'journal-rollback': { lock: ['agent', 'acquirer'], unlock: [] },
  'journal-broken': { lock: ['agent'], unlock: [] },
  // The acquirer refused a batch for good (settled with another digest): no new sales on top
  // of a disputed history until the acquirer has looked at it.
  'settlement-dispute': { lock: ['agent', 'acquirer'], unlock: ['acquirer', 'unlock-code'] },
};

type Rule<E extends EventType> = (
  s: TerminalStatus,
  e: Extract<LifecycleEvent, { type: E }>,
) => Outcome;
type Row = { [E in EventType]?: Rule<E> };

const to =
  <E extends EventType>(state: State): Rule<E> =>
  (s) => ({ ok: true, next: { state, locks: s.locks }, changed: s.state !== state });

const lock: Rule<'lock'> = (s, e) => {
  if (!LOCK_AUTHORITY[e.source].lock.includes(e.by)) {
    return {
      ok: false,
      code: 'LIFECYCLE_REFUSED',
      reason: `a ${e.by} may not set the ${e.source} lock`,
    };
  }
  if (s.locks.includes(e.source)) return { ok: true, next: s, changed: false };
  return {
    ok: true,
    next: { state: s.state, locks: [...s.locks, e.source].sort() },
    changed: true,
  };
};

const unlock: Rule<'unlock'> = (s, e) => {
  if (!LOCK_AUTHORITY[e.source].unlock.includes(e.by)) {
    const who = LOCK_AUTHORITY[e.source].unlock.join(' or ');
    return {
      ok: false,
      code: 'LIFECYCLE_REFUSED',
      reason: who
        ? `the ${e.source} lock can be cleared only by ${who}`
        : `the ${e.source} lock is never cleared in place; recover with a new journal incarnation (docs/recovery.md)`,
    };
  }
  if (!s.locks.includes(e.source)) return { ok: true, next: s, changed: false };
  return {
    ok: true,
    next: { state: s.state, locks: s.locks.filter((l) => l !== e.source) },
    changed: true,
  };
};

const finish: Rule<'final-settlement-done'> = (s, e) =>
  e.unsettled === 0
    ? { ok: true, next: { state: 'deactivated', locks: s.locks }, changed: true }
    : {
        ok: false,
        code: 'LIFECYCLE_REFUSED',
        reason: `${e.unsettled} transactions are not settled yet`,
      };

/** The whole lifecycle: state x event -> rule. */
export const TABLE: Record<State, Row> = {
  unactivated: {
    activate: to('active'),
    lock,
    unlock,
  },
  active: {
    lock,
    unlock,
    'request-deactivation': to('deactivation-pending'),
    'deactivate-for-violation': to('deactivating'),
  },
  // Review by the acquirer: no new transactions meanwhile; settlement still runs.
  'deactivation-pending': {
    lock,
    unlock,
    'deactivation-approved': to('deactivating'),
    'deactivation-rejected': to('active'),
    'deactivate-for-violation': to('deactivating'),
  },
  // Final cutover and settlement: deactivated only when nothing is left unsettled.
  deactivating: {
    lock,
    unlock,
    'final-settlement-done': finish,
  },
  // Final: nothing leaves it.
  deactivated: {},
};

/** The pure transition function. */
export function transition(s: TerminalStatus, e: LifecycleEvent): Outcome {
  const rule = TABLE[s.state][e.type] as Rule<EventType> | undefined;
  if (!rule) {
    return {
      ok: false,
      code: s.state === 'deactivated' ? 'LIFECYCLE_DEACTIVATED' : 'LIFECYCLE_REFUSED',
      reason: `${describeEvent(e)} is not allowed while the terminal is ${s.state}`,
    };
  }
  return rule(s, e);
}

/**
 * What a journal row can do to money, as far as the lifecycle is concerned:
 * - `transact`: a new sale, refund or void, or an online authorisation starting;
 * - `reverse`: a reversal, which undoes money already moved;
 * - `finish`: the host's answer to an authorisation that started while the terminal could
 *   transact (a lock or a deactivation that lands while the host decides must not lose the
 *   host's answer: an approval is then journaled with its reversal).
 */
export type MoneyAction = 'transact' | 'reverse' | 'finish';

/** `unless-locked`: allowed while the terminal holds no lock of any source. */
export type MoneyRule = 'allowed' | 'unless-locked' | 'refused';

/**
 * The money policy, state x action. A lock stops new money but never the undoing or the
 * completion of money already in motion; only an active terminal takes new money; a
 * deactivated one (its token key destroyed) moves none.
 */
export const MONEY: Record<State, Record<MoneyAction, MoneyRule>> = {
  unactivated: { transact: 'refused', reverse: 'refused', finish: 'refused' },
  active: { transact: 'unless-locked', reverse: 'allowed', finish: 'allowed' },
  'deactivation-pending': { transact: 'refused', reverse: 'allowed', finish: 'allowed' },
  deactivating: { transact: 'refused', reverse: 'allowed', finish: 'allowed' },
  deactivated: { transact: 'refused', reverse: 'refused', finish: 'refused' },
};

export type MoneyVerdict = { allowed: true } | { allowed: false; code: ErrorCode; reason: string };

/** Whether the terminal may journal a row doing `action` now, and why not. */
export function mayMoveMoney(s: TerminalStatus, action: MoneyAction): MoneyVerdict {
  const rule = MONEY[s.state][action];
  if (rule === 'allowed' || (rule === 'unless-locked' && s.locks.length === 0))
    return { allowed: true };
  if (s.state === 'deactivated')
    return { allowed: false, code: 'LIFECYCLE_DEACTIVATED', reason: 'the terminal is deactivated' };
  if (rule === 'refused') {
    return { allowed: false, code: 'LIFECYCLE_NOT_ACTIVE', reason: `the terminal is ${s.state}` };
  }
  const hint = s.locks.some((l) => l === 'journal-rollback' || l === 'journal-broken')
    ? '; the journal is kept for forensics: see docs/recovery.md'
    : s.locks.includes('risk') || s.locks.includes('settlement-dispute')
      ? '; ask the acquirer for an unlock code'
      : '';
  return {
    allowed: false,
    code: 'LIFECYCLE_LOCKED',
    reason: `the terminal is locked by ${s.locks.join(', ')}${hint}`,
  };
}

/** Whether the terminal may take a new transaction now, and why not. */
export function mayTransact(s: TerminalStatus): MoneyVerdict {
  return mayMoveMoney(s, 'transact');
}

export function describeEvent(e: LifecycleEvent): string {
  if (e.type === 'lock' || e.type === 'unlock') return `${e.type} ${e.source} (by ${e.by})`;
  return e.type;
}

export function isLockSource(s: string): s is LockSource {
  return (LOCK_SOURCES as readonly string[]).includes(s);
}

export function isState(s: string): s is State {
  return (STATES as readonly string[]).includes(s);
}

/** Fewest characters a deactivation reason may have, wherever it comes from (console, remote). */
const MIN_DEACTIVATION_REASON_CHARS = 3;

/** True when `reason` is a real reason for a deactivation, not blank or a stray key. */
export function hasDeactivationReason(reason: string): boolean {
  return reason.trim().length >= MIN_DEACTIVATION_REASON_CHARS;
}
