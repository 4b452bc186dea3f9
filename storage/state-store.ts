import type { Statement } from 'better-sqlite3';
import { guarded, statementCache, type Database } from './db.ts';

/**
 * Persisted terminal state beside the journal: the lifecycle row and its transition
 * history, small key/value facts (identity, command counter, pinned keys), installed fee
 * schedules and offline unlock challenges. Policy lives in agent/; this is SQL only.
 */

export interface LifecycleRow {
  state: string;
  locks: string[];
  reason: string | null;
  version: number;
  updatedAt: number;
}

export interface TransitionRow {
  id: number;
  at: number;
  event: string;
  fromState: string;
  toState: string;
  locksBefore: string[];
  locksAfter: string[];
  source: string;
  cause: string;
  journalSeq: number;
}

export interface ChallengeRow {
  challenge: string;
  source: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}

export class StateStore {
  private readonly sql: (sql: string) => Statement;
  constructor(private readonly db: Database) {
    this.sql = statementCache(db);
  }

  /**
   * Read on every payment (twice), so kept in memory between writes: saveLifecycle drops it,
   * and Store drops it after any rolled-back transaction (forget). Callers get a copy.
   */
  private life: LifecycleRow | null | undefined;
  /** Every installed fee schedule, newest first (same cache rules as `life`). */
  private schedules: Array<{ effectiveFrom: number; spec: string; parsed?: unknown }> | undefined;

  /** Drops what is kept in memory: after a rollback, what was read may never have been. */
  forget(): void {
    this.life = undefined;
    this.schedules = undefined;
  }

  lifecycle(): LifecycleRow | undefined {
    if (this.life === undefined) {
      const r = guarded(() => this.sql('SELECT * FROM lifecycle WHERE id = 1').get()) as
        | {
            state: string;
            locks: string;
            reason: string | null;
            version: number;
            updated_at: number;
          }
        | undefined;
      this.life = r
        ? {
            state: r.state,
            locks: JSON.parse(r.locks) as string[],
            reason: r.reason,
            version: r.version,
            updatedAt: r.updated_at,
          }
        : null;
    }
    return this.life ? { ...this.life, locks: [...this.life.locks] } : undefined;
  }

  /** Writes the lifecycle row; `expectedVersion` guards against a lost update. */
  saveLifecycle(row: Omit<LifecycleRow, 'version'>, expectedVersion: number): number {
    this.life = undefined;
    const version = expectedVersion + 1;
    const locks = JSON.stringify(row.locks);
    if (expectedVersion === 0) {
      guarded(() =>
        this.sql(
          'INSERT INTO lifecycle (id, state, locks, reason, version, updated_at) VALUES (1, ?, ?, ?, ?, ?)',
        ).run(row.state, locks, row.reason, version, row.updatedAt),
      );
      return version;
    }
    const res = guarded(() =>
      this.sql(
        'UPDATE lifecycle SET state = ?, locks = ?, reason = ?, version = ?, updated_at = ? WHERE id = 1 AND version = ?',
      ).run(row.state, locks, row.reason, version, row.updatedAt, expectedVersion),
    );
    if (res.changes !== 1)
      throw new Error(`lifecycle changed underneath (expected version ${expectedVersion})`);
    return version;
  }

  addTransition(t: Omit<TransitionRow, 'id'>): void {
    guarded(() =>
      this.sql(
        `INSERT INTO lifecycle_transitions (at, event, from_state, to_state, locks_before, locks_after, source, cause, journal_seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        t.at,
        t.event,
        t.fromState,
        t.toState,
        JSON.stringify(t.locksBefore),
        JSON.stringify(t.locksAfter),
        t.source,
        t.cause,
        t.journalSeq,
      ),
    );
  }

  transitions(limit = 100): TransitionRow[] {
    const rows = guarded(() =>
      this.sql('SELECT * FROM lifecycle_transitions ORDER BY id DESC LIMIT ?').all(limit),
    ) as Array<Record<string, unknown>>;
    return rows.reverse().map((r) => ({
      id: r.id as number,
      at: r.at as number,
      event: r.event as string,
      fromState: r.from_state as string,
      toState: r.to_state as string,
      locksBefore: JSON.parse(r.locks_before as string) as string[],
      locksAfter: JSON.parse(r.locks_after as string) as string[],
      source: r.source as string,
      cause: r.cause as string,
      journalSeq: r.journal_seq as number,
    }));
  }

  getMeta(key: string): string | undefined {
    const r = guarded(() => this.sql('SELECT value FROM meta WHERE key = ?').get(key)) as
      { value: string } | undefined;
    return r?.value;
  }

  setMeta(key: string, value: string): void {
    guarded(() =>
      this.sql(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ).run(key, value),
    );
  }

  deleteMeta(key: string): void {
    guarded(() => this.sql('DELETE FROM meta WHERE key = ?').run(key));
  }

  getJson<T>(key: string): T | undefined {
    const v = this.getMeta(key);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  setJson(key: string, value: unknown): void {
    this.setMeta(key, JSON.stringify(value));
  }

  installFeeSchedule(version: string, effectiveFrom: number, spec: unknown, now: number): boolean {
    this.schedules = undefined;
    const res = guarded(() =>
      this.sql(
        'INSERT OR IGNORE INTO fee_schedules (version, effective_from, spec, installed_at) VALUES (?, ?, ?, ?)',
      ).run(version, effectiveFrom, JSON.stringify(spec), now),
    );
    return res.changes === 1;
  }

  /** The schedule in force at `at`: the latest effective_from not after it. */
  feeScheduleAt(at: number): unknown {
    this.schedules ??= guarded(() =>
      this.sql(
        'SELECT effective_from AS effectiveFrom, spec FROM fee_schedules ORDER BY effective_from DESC, installed_at DESC',
      ).all(),
    ) as Array<{ effectiveFrom: number; spec: string; parsed?: unknown }>;
    const r = this.schedules.find((x) => x.effectiveFrom <= at);
    // Parsed once and frozen: every payment reads it, nobody may change it.
    return r && (r.parsed ??= deepFreeze(JSON.parse(r.spec)));
  }

  feeSchedules(): Array<{ version: string; effectiveFrom: number }> {
    return (
      guarded(() =>
        this.sql('SELECT version, effective_from FROM fee_schedules ORDER BY effective_from').all(),
      ) as Array<{
        version: string;
        effective_from: number;
      }>
    ).map((r) => ({ version: r.version, effectiveFrom: r.effective_from }));
  }

  addChallenge(c: Omit<ChallengeRow, 'usedAt'>): void {
    guarded(() =>
      this.sql(
        'INSERT INTO unlock_challenges (challenge, source, created_at, expires_at) VALUES (?, ?, ?, ?)',
      ).run(c.challenge, c.source, c.createdAt, c.expiresAt),
    );
  }

  challenge(challenge: string): ChallengeRow | undefined {
    const r = guarded(() =>
      this.sql('SELECT * FROM unlock_challenges WHERE challenge = ?').get(challenge),
    ) as
      | {
          challenge: string;
          source: string;
          created_at: number;
          expires_at: number;
          used_at: number | null;
        }
      | undefined;
    return (
      r && {
        challenge: r.challenge,
        source: r.source,
        createdAt: r.created_at,
        expiresAt: r.expires_at,
        usedAt: r.used_at,
      }
    );
  }

  /** Marks a challenge used; false when it was already used (single use). */
  useChallenge(challenge: string, now: number): boolean {
    const res = guarded(() =>
      this.sql(
        'UPDATE unlock_challenges SET used_at = ? WHERE challenge = ? AND used_at IS NULL',
      ).run(now, challenge),
    );
    return res.changes === 1;
  }
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
