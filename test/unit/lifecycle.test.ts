import { describe, expect, it } from 'vitest';
import {
  LOCK_AUTHORITY,
  LOCK_SOURCES,
  MONEY,
  STATES,
  TABLE,
  mayMoveMoney,
  mayTransact,
  type MoneyAction,
  transition,
  type Authority,
  type LifecycleEvent,
  type LockSource,
  type State,
  type TerminalStatus,
} from '../../agent/policy/lifecycle.ts';

/**
 * Every (state, locks, event) combination against a model written from INVARIANTS.md and
 * the documented lifecycle, not from TABLE: an allowed pair gives the documented next
 * status, every other pair is refused with a typed code and changes nothing.
 */

const AUTHORITIES: readonly Authority[] = ['acquirer', 'technician', 'agent', 'unlock-code'];

/** Who may set / clear each lock, as documented (INVARIANTS 7: risk only by the acquirer). */
const EXPECTED_AUTHORITY: Record<
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
  // A rolled-back or broken journal is evidence: nobody clears these in place.
  'journal-rollback': { lock: ['agent', 'acquirer'], unlock: [] },
  'journal-broken': { lock: ['agent'], unlock: [] },
  // A batch the acquirer refused for good: only the acquirer ends the dispute.
  'settlement-dispute': { lock: ['agent', 'acquirer'], unlock: ['acquirer', 'unlock-code'] },
};

/** The state moves of the documented lifecycle; locks ride along unchanged. */
const EXPECTED_MOVES: Record<State, Partial<Record<string, State>>> = {
  unactivated: { activate: 'active' },
  active: {
    'request-deactivation': 'deactivation-pending',
    'deactivate-for-violation': 'deactivating',
  },
  'deactivation-pending': {
    'deactivation-approved': 'deactivating',
    'deactivation-rejected': 'active',
    'deactivate-for-violation': 'deactivating',
  },
  deactivating: { 'final-settlement-done': 'deactivated' },
  deactivated: {},
};

function allEvents(): LifecycleEvent[] {
  const events: LifecycleEvent[] = [{ type: 'activate' }];
  for (const source of LOCK_SOURCES) {
    for (const by of AUTHORITIES) {
      events.push({ type: 'lock', source, by }, { type: 'unlock', source, by });
    }
  }
  for (const by of AUTHORITIES) events.push({ type: 'request-deactivation', by });
  events.push(
    { type: 'deactivation-approved' },
    { type: 'deactivation-rejected' },
    { type: 'deactivate-for-violation' },
    { type: 'final-settlement-done', unsettled: 0 },
    { type: 'final-settlement-done', unsettled: 1 },
    { type: 'final-settlement-done', unsettled: 12_345 },
    { type: 'final-settlement-done', unsettled: -1 },
    { type: 'final-settlement-done', unsettled: Number.NaN },
  );
  return events;
}

function subsets<T>(xs: readonly T[]): T[][] {
  return xs.reduce<T[][]>((acc, x) => acc.concat(acc.map((s) => [...s, x])), [[]]);
}

const LOCK_SETS: LockSource[][] = subsets(LOCK_SOURCES).map((s) => [...s].sort());

type Expected =
  | { ok: true; next: TerminalStatus; changed: boolean }
  | { ok: false; code: 'LIFECYCLE_REFUSED' | 'LIFECYCLE_DEACTIVATED' };

function expected(s: TerminalStatus, e: LifecycleEvent): Expected {
  if (s.state === 'deactivated') return { ok: false, code: 'LIFECYCLE_DEACTIVATED' };
  if (e.type === 'lock' || e.type === 'unlock') {
    if (!EXPECTED_AUTHORITY[e.source][e.type].includes(e.by)) {
      return { ok: false, code: 'LIFECYCLE_REFUSED' };
    }
    const has = s.locks.includes(e.source);
    if (e.type === 'lock') {
      if (has) return { ok: true, next: s, changed: false };
      return {
        ok: true,
        next: { state: s.state, locks: [...s.locks, e.source].sort() },
        changed: true,
      };
    }
    if (!has) return { ok: true, next: s, changed: false };
    return {
      ok: true,
      next: { state: s.state, locks: s.locks.filter((l) => l !== e.source) },
      changed: true,
    };
  }
  const to = EXPECTED_MOVES[s.state][e.type];
  if (!to) return { ok: false, code: 'LIFECYCLE_REFUSED' };
  if (e.type === 'final-settlement-done' && e.unsettled !== 0) {
    return { ok: false, code: 'LIFECYCLE_REFUSED' };
  }
  return { ok: true, next: { state: to, locks: s.locks }, changed: to !== s.state };
}

function label(e: LifecycleEvent): string {
  if (e.type === 'lock' || e.type === 'unlock') return `${e.type} ${e.source} by ${e.by}`;
  if (e.type === 'request-deactivation') return `${e.type} by ${e.by}`;
  if (e.type === 'final-settlement-done') return `${e.type} (unsettled ${e.unsettled})`;
  return e.type;
}

function deepFreeze<T>(s: T): T {
  if (s && typeof s === 'object') {
    for (const v of Object.values(s)) deepFreeze(v);
    Object.freeze(s);
  }
  return s;
}

describe('lifecycle table: every (state, locks, event)', () => {
  const events = allEvents();

  it('enumerates the whole space', () => {
    // 1 activate + 8 sources x 4 authorities x 2 + 4 request-deactivation + 3 + 5 final
    expect(events.length).toBe(1 + 64 + 4 + 3 + 5);
    expect(STATES.length).toBe(5);
    expect(LOCK_SETS.length).toBe(256);
  });

  for (const state of STATES) {
    it(`${state}: every event and lock set matches the documented lifecycle`, () => {
      const mismatches: string[] = [];
      let allowed = 0;
      let refused = 0;
      for (const locks of LOCK_SETS) {
        for (const e of events) {
          const before: TerminalStatus = deepFreeze({ state, locks: [...locks] });
          const snapshot = JSON.stringify(before);
          const want = expected(before, e);
          let got;
          try {
            got = transition(before, deepFreeze(structuredClone(e)));
          } catch (err) {
            mismatches.push(`${state} [${locks}] ${label(e)}: threw ${(err as Error).message}`);
            continue;
          }
          if (JSON.stringify(before) !== snapshot) {
            mismatches.push(`${state} [${locks}] ${label(e)}: mutated its input`);
          }
          if (want.ok) {
            allowed++;
            if (!got.ok) {
              mismatches.push(
                `${state} [${locks}] ${label(e)}: refused (${got.code}), expected allowed`,
              );
            } else if (
              JSON.stringify(got.next) !== JSON.stringify(want.next) ||
              got.changed !== want.changed
            ) {
              mismatches.push(
                `${state} [${locks}] ${label(e)}: -> ${JSON.stringify(got.next)} changed=${got.changed}, expected ${JSON.stringify(want.next)} changed=${want.changed}`,
              );
            }
          } else {
            refused++;
            if (got.ok) {
              mismatches.push(
                `${state} [${locks}] ${label(e)}: allowed -> ${JSON.stringify(got.next)}, expected refusal ${want.code}`,
              );
            } else {
              if (got.code !== want.code) {
                mismatches.push(
                  `${state} [${locks}] ${label(e)}: code ${got.code}, expected ${want.code}`,
                );
              }
              if (typeof got.reason !== 'string' || got.reason.length < 5) {
                mismatches.push(`${state} [${locks}] ${label(e)}: refusal without a reason`);
              }
            }
          }
        }
      }
      expect(mismatches).toEqual([]);
      // both kinds were exercised (deactivated allows nothing)
      expect(refused).toBeGreaterThan(0);
      if (state !== 'deactivated') expect(allowed).toBeGreaterThan(0);
      else expect(allowed).toBe(0);
    });
  }

  it('the published authority table is the documented one', () => {
    for (const source of LOCK_SOURCES) {
      expect([...LOCK_AUTHORITY[source].lock].sort()).toEqual(
        [...EXPECTED_AUTHORITY[source].lock].sort(),
      );
      expect([...LOCK_AUTHORITY[source].unlock].sort()).toEqual(
        [...EXPECTED_AUTHORITY[source].unlock].sort(),
      );
    }
  });

  it('TABLE has no rows for events outside the documented lifecycle', () => {
    for (const state of STATES) {
      const documented = new Set(Object.keys(EXPECTED_MOVES[state]));
      if (state !== 'deactivated') documented.add('lock').add('unlock');
      expect(Object.keys(TABLE[state]).sort()).toEqual([...documented].sort());
    }
  });
});

describe('specific promises', () => {
  it('deactivated refuses everything with LIFECYCLE_DEACTIVATED, whatever the locks', () => {
    for (const locks of LOCK_SETS) {
      for (const e of allEvents()) {
        const out = transition({ state: 'deactivated', locks }, e);
        expect(out.ok, label(e)).toBe(false);
        if (!out.ok) expect(out.code).toBe('LIFECYCLE_DEACTIVATED');
      }
    }
  });

  it('an unlock clears only its own source', () => {
    const all = [...LOCK_SOURCES].sort();
    for (const source of LOCK_SOURCES) {
      const by = EXPECTED_AUTHORITY[source].unlock[0];
      if (!by) continue; // cleared by nobody in place: the next case
      const out = transition({ state: 'active', locks: all }, { type: 'unlock', source, by });
      expect(out.ok).toBe(true);
      if (out.ok) expect(out.next.locks).toEqual(all.filter((l) => l !== source));
    }
  });

  it('a journal-rollback or journal-broken lock is never cleared in place, by anyone', () => {
    for (const state of STATES) {
      for (const source of ['journal-rollback', 'journal-broken'] as const) {
        for (const by of AUTHORITIES) {
          const out = transition({ state, locks: [source] }, { type: 'unlock', source, by });
          expect(out.ok, `${state} ${source} by ${by}`).toBe(false);
          if (!out.ok && state !== 'deactivated') expect(out.reason).toMatch(/recovery/);
        }
      }
    }
    expect(mayTransact({ state: 'active', locks: ['journal-rollback'] })).toMatchObject({
      allowed: false,
      code: 'LIFECYCLE_LOCKED',
      reason: expect.stringMatching(/journal-rollback.*docs\/recovery\.md/),
    });
  });

  it('a settlement-dispute lock is cleared by the acquirer only', () => {
    for (const by of AUTHORITIES) {
      const out = transition(
        { state: 'active', locks: ['settlement-dispute'] },
        { type: 'unlock', source: 'settlement-dispute', by },
      );
      expect(out.ok, by).toBe(by === 'acquirer' || by === 'unlock-code');
    }
  });

  it('a risk lock is never cleared by a technician or the agent, in any state', () => {
    for (const state of STATES) {
      for (const by of ['technician', 'agent'] as const) {
        const out = transition({ state, locks: ['risk'] }, { type: 'unlock', source: 'risk', by });
        expect(out.ok, `${state} by ${by}`).toBe(false);
      }
    }
    for (const by of ['acquirer', 'unlock-code'] as const) {
      const out = transition(
        { state: 'active', locks: ['risk'] },
        { type: 'unlock', source: 'risk', by },
      );
      expect(out).toEqual({ ok: true, next: { state: 'active', locks: [] }, changed: true });
    }
  });

  it('a technician cannot clear a remote lock', () => {
    const out = transition(
      { state: 'active', locks: ['remote'] },
      { type: 'unlock', source: 'remote', by: 'technician' },
    );
    expect(out.ok).toBe(false);
  });

  it('final-settlement-done is refused while anything is unsettled and says how much', () => {
    for (const unsettled of [1, 2, 999]) {
      const out = transition(
        { state: 'deactivating', locks: [] },
        { type: 'final-settlement-done', unsettled },
      );
      expect(out.ok).toBe(false);
      if (!out.ok) {
        expect(out.code).toBe('LIFECYCLE_REFUSED');
        expect(out.reason).toContain(String(unsettled));
      }
    }
    const done = transition(
      { state: 'deactivating', locks: ['risk'] },
      { type: 'final-settlement-done', unsettled: 0 },
    );
    expect(done).toEqual({
      ok: true,
      next: { state: 'deactivated', locks: ['risk'] },
      changed: true,
    });
  });

  it('locks survive state moves', () => {
    const out = transition(
      { state: 'deactivation-pending', locks: ['maintenance', 'risk'] },
      { type: 'deactivation-rejected' },
    );
    expect(out).toEqual({
      ok: true,
      next: { state: 'active', locks: ['maintenance', 'risk'] },
      changed: true,
    });
  });

  it('random walks: deactivated is absorbing, risk is cleared only by the acquirer, locks stay sorted and unique', () => {
    let seed = 20260115;
    const rnd = () => {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
      return seed / 2 ** 32;
    };
    const events = allEvents();
    for (let walk = 0; walk < 300; walk++) {
      let s: TerminalStatus = { state: 'unactivated', locks: [] };
      for (let step = 0; step < 60; step++) {
        const e = events[Math.floor(rnd() * events.length)]!;
        const out = transition(s, e);
        if (!out.ok) continue;
        const n = out.next;
        if (s.state === 'deactivated') throw new Error('left deactivated');
        if (s.locks.includes('risk') && !n.locks.includes('risk')) {
          expect(e.type === 'unlock' && (e.by === 'acquirer' || e.by === 'unlock-code')).toBe(true);
        }
        expect(n.locks).toEqual([...new Set(n.locks)].sort());
        s = n;
      }
    }
  });
});

describe('mayTransact', () => {
  it('allows only an active terminal with no lock', () => {
    const wrong: string[] = [];
    for (const state of STATES) {
      for (const locks of LOCK_SETS) {
        const out = mayTransact({ state, locks });
        const shouldAllow = state === 'active' && locks.length === 0;
        if (out.allowed !== shouldAllow) wrong.push(`${state} [${locks}] -> ${out.allowed}`);
        if (!out.allowed) {
          const code =
            state === 'deactivated'
              ? 'LIFECYCLE_DEACTIVATED'
              : state !== 'active'
                ? 'LIFECYCLE_NOT_ACTIVE'
                : 'LIFECYCLE_LOCKED';
          if (out.code !== code)
            wrong.push(`${state} [${locks}] code ${out.code}, expected ${code}`);
          if (state === 'active') {
            for (const l of locks)
              if (!out.reason.includes(l)) wrong.push(`${state} [${locks}] reason omits ${l}`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('points a risk-locked terminal at the acquirer', () => {
    const out = mayTransact({ state: 'active', locks: ['risk'] });
    expect(out.allowed).toBe(false);
    if (!out.allowed) expect(out.reason).toMatch(/acquirer/);
  });
});

/**
 * The money policy, from INVARIANTS.md and the seed, not from MONEY: new money only on an
 * active unlocked terminal; a reversal (undoing money already moved) and the host's answer to
 * an authorisation already in flight are allowed in every state that can still settle, whatever
 * the locks; nothing moves on an unactivated or deactivated terminal.
 */
const ACTIONS: readonly MoneyAction[] = ['transact', 'reverse', 'finish'];
const CAN_SETTLE: readonly State[] = ['active', 'deactivation-pending', 'deactivating'];

function expectedMoney(
  state: State,
  locks: readonly LockSource[],
  action: MoneyAction,
): 'ok' | string {
  if (state === 'deactivated') return 'LIFECYCLE_DEACTIVATED';
  if (action === 'transact') {
    if (state !== 'active') return 'LIFECYCLE_NOT_ACTIVE';
    return locks.length ? 'LIFECYCLE_LOCKED' : 'ok';
  }
  return CAN_SETTLE.includes(state) ? 'ok' : 'LIFECYCLE_NOT_ACTIVE';
}

describe('money policy: every (state, locks, action)', () => {
  it('the published MONEY table is the documented one, with no bypass left to callers', () => {
    expect(MONEY).toEqual({
      unactivated: { transact: 'refused', reverse: 'refused', finish: 'refused' },
      active: { transact: 'unless-locked', reverse: 'allowed', finish: 'allowed' },
      'deactivation-pending': { transact: 'refused', reverse: 'allowed', finish: 'allowed' },
      deactivating: { transact: 'refused', reverse: 'allowed', finish: 'allowed' },
      deactivated: { transact: 'refused', reverse: 'refused', finish: 'refused' },
    });
  });

  it('matches the documented policy in every state, lock set and action', () => {
    const wrong: string[] = [];
    let cases = 0;
    for (const state of STATES) {
      for (const locks of LOCK_SETS) {
        for (const action of ACTIONS) {
          cases++;
          const out = mayMoveMoney({ state, locks }, action);
          const got = out.allowed ? 'ok' : out.code;
          const want = expectedMoney(state, locks, action);
          if (got !== want) wrong.push(`${state} [${locks}] ${action}: ${got}, expected ${want}`);
          if (!out.allowed && !out.reason) wrong.push(`${state} [${locks}] ${action}: no reason`);
        }
      }
    }
    expect(cases).toBe(STATES.length * LOCK_SETS.length * ACTIONS.length);
    expect(wrong).toEqual([]);
  });

  it('a lock stops a sale but not the reversal of one already made, nor a host answer in flight', () => {
    for (const source of LOCK_SOURCES) {
      const locked: TerminalStatus = { state: 'active', locks: [source] };
      expect(mayMoveMoney(locked, 'transact').allowed, source).toBe(false);
      expect(mayMoveMoney(locked, 'reverse'), source).toEqual({ allowed: true });
      expect(mayMoveMoney(locked, 'finish'), source).toEqual({ allowed: true });
    }
  });

  it('mayTransact is the transact column', () => {
    for (const state of STATES)
      for (const locks of LOCK_SETS)
        expect(mayTransact({ state, locks })).toEqual(mayMoveMoney({ state, locks }, 'transact'));
  });
});
