/**
 * Technician log-in: PIN hashes and the failed-login throttle.
 *
 * PINs are short, so the hash is scrypt (memory-hard) with a per-technician salt, and
 * guessing is limited by the throttle rather than by the hash alone. The throttle is
 * one per console (not per technician id), otherwise cycling through ids would get
 * around it, and its state lives in a store so a new session, or a restart, does not
 * reset it.
 */

import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Clock } from '../../base/clock.ts';
import { AgentError } from '../../base/errors.ts';

/** A technician as configured: an id and the encoded hash of their PIN. */
export interface Technician {
  readonly id: string;
  /** `scrypt$N$r$p$saltB64$hashB64`, made by {@link hashPin}. */
  readonly pinHash: string;
}

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** Node's own scrypt defaults: about 16 MiB and tens of milliseconds on a terminal CPU. */
export const defaultScryptParams: ScryptParams = { N: 16384, r: 8, p: 1 };

/** Technician ids: short, no spaces or controls, so they are safe in logs and audit rows. */
export const technicianIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

const base64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The weakest scrypt a PIN hash may use: N at least 2^10 and at least 1 MiB of memory
 * (128 * N * r bytes), so a hash made with toy parameters (N=2, r=1) is refused, not trusted.
 * The production default (N=2^14, r=8: 16 MiB) is well above it.
 */
export const SCRYPT_FLOOR = { minN: 1024, minMemoryBytes: 1 << 20 } as const;

function invalidHash(why: string): AgentError {
  return new AgentError('CONFIG_INVALID', `a technician PIN hash is not valid: ${why}`);
}

/**
 * Decodes `scrypt$N$r$p$salt$hash`, refusing parameters that would make a login take
 * unbounded memory or time (the config is trusted, but a typo should not hang the console).
 * @throws AgentError CONFIG_INVALID, or CONFIG_WEAK_PIN_HASH below {@link SCRYPT_FLOOR}
 */
export function parsePinHash(encoded: string): ParsedHash {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt')
    throw invalidHash('expected scrypt$N$r$p$salt$hash');
  const [N, r, p] = parts.slice(1, 4).map((s) => (/^\d{1,8}$/.test(s) ? Number(s) : NaN)) as [
    number,
    number,
    number,
  ];
  if (!(N >= 2 && N <= 2 ** 20 && (N & (N - 1)) === 0))
    throw invalidHash('N must be a power of two up to 2^20');
  if (!(r >= 1 && r <= 32)) throw invalidHash('r must be 1..32');
  if (!(p >= 1 && p <= 16)) throw invalidHash('p must be 1..16');
  if (N < SCRYPT_FLOOR.minN || 128 * N * r < SCRYPT_FLOOR.minMemoryBytes) {
    throw new AgentError(
      'CONFIG_WEAK_PIN_HASH',
      `a technician PIN hash is too weak: scrypt N=${N} r=${r} is below N=${SCRYPT_FLOOR.minN} ` +
        'and 1 MiB of memory; hash the PIN again with pos-agent hash-pin',
      { N, r, p },
    );
  }
  const [saltB64, hashB64] = parts.slice(4) as [string, string];
  if (!base64.test(saltB64) || !base64.test(hashB64))
    throw invalidHash('salt and hash must be base64');
  const salt = Buffer.from(saltB64, 'base64');
  const hash = Buffer.from(hashB64, 'base64');
  if (salt.length < 8) throw invalidHash('the salt must be at least 8 bytes');
  if (hash.length < 16 || hash.length > 64) throw invalidHash('the hash must be 16..64 bytes');
  return { params: { N, r, p }, salt, hash };
}

function derive(pin: string, salt: Buffer, length: number, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 256 * params.N * params.r + (1 << 20),
  };
  return new Promise((resolve, reject) => {
    scrypt(pin.normalize('NFC'), salt, length, options, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/**
 * Hashes a PIN for the configuration file (config tooling, not the console itself).
 * @throws AgentError CONFIG_INVALID when the PIN is shorter than 4 or longer than 64 characters.
 */
export async function hashPin(
  pin: string,
  params: ScryptParams = defaultScryptParams,
): Promise<string> {
  if (pin.length < 4 || pin.length > 64)
    throw new AgentError('CONFIG_INVALID', 'a PIN must be 4 to 64 characters');
  const salt = randomBytes(16);
  const encoded = `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$`;
  parsePinHash(`${encoded}${Buffer.alloc(32).toString('base64')}`); // refuses bad params before working
  const hash = await derive(pin, salt, 32, params);
  return encoded + hash.toString('base64');
}

/**
 * Checks a PIN against its encoded hash in constant time for the comparison.
 * @throws AgentError CONFIG_INVALID when `encoded` is malformed.
 */
export async function verifyPin(pin: string, encoded: string): Promise<boolean> {
  const { params, salt, hash } = parsePinHash(encoded);
  const candidate = await derive(pin, salt, hash.length, params);
  return timingSafeEqual(candidate, hash);
}

/**
 * A hash no PIN matches, with the same cost as the configured ones: verified for
 * unknown ids, so a wrong id takes as long to refuse as a wrong PIN.
 */
export function dummyPinHash(technicians: readonly Technician[]): string {
  const first = technicians[0];
  const { N, r, p } = first ? parsePinHash(first.pinHash).params : defaultScryptParams;
  const zeros = (n: number): string => Buffer.alloc(n).toString('base64');
  return `scrypt$${N}$${r}$${p}$${zeros(16)}$${zeros(32)}`;
}

/**
 * Checks a configured technician list, reporting every problem at once.
 * @throws AgentError CONFIG_INVALID
 */
export function validateTechnicians(technicians: readonly Technician[]): readonly Technician[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  technicians.forEach((t, i) => {
    const where = `technicians[${i}]`;
    if (typeof t.id !== 'string' || !technicianIdPattern.test(t.id))
      problems.push(`${where}.id is not a valid id`);
    else if (seen.has(t.id.toLowerCase())) problems.push(`${where}.id ${t.id} is a duplicate`);
    else seen.add(t.id.toLowerCase());
    try {
      parsePinHash(String(t.pinHash));
    } catch (e) {
      problems.push(`${where}.pinHash: ${(e as Error).message}`);
    }
  });
  if (problems.length > 0) {
    throw new AgentError('CONFIG_INVALID', `technicians: ${problems.join('; ')}`, { problems });
  }
  return technicians;
}

/** Persisted throttle state: consecutive failures and when the last one happened. */
export interface ThrottleState {
  readonly failures: number;
  /** Epoch milliseconds of the last failure (0 when none). */
  readonly lastFailureAt: number;
}

/** Where the throttle keeps its state; the agent backs it with SQLite. */
export interface ThrottleStore {
  load(): ThrottleState;
  save(state: ThrottleState): void;
}

/** A store that lives as long as the process: for tests and tools. */
export class MemoryThrottleStore implements ThrottleStore {
  constructor(private state: ThrottleState = { failures: 0, lastFailureAt: 0 }) {}
  load(): ThrottleState {
    return this.state;
  }
  save(state: ThrottleState): void {
    this.state = { ...state };
  }
}

export interface ThrottlePolicy {
  /** Failures allowed before attempts are delayed. Default 3. */
  readonly maxFailures: number;
  /** Failures after which the console locks out for `lockoutMs`. Default 5. */
  readonly lockoutAfter: number;
  /** Default 15 minutes. */
  readonly lockoutMs: number;
  /** First delay; each further failure doubles it. Default 1 s. */
  readonly baseDelayMs: number;
  /** Ceiling on the delay before lock-out. Default 60 s. */
  readonly maxDelayMs: number;
}

const defaultThrottlePolicy: ThrottlePolicy = {
  maxFailures: 3,
  lockoutAfter: 5,
  lockoutMs: 15 * 60_000,
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
};

/** Whether a login attempt may proceed now. */
export type ThrottleDecision =
  | { readonly allowed: true; readonly failures: number }
  | {
      readonly allowed: false;
      readonly code: 'CONSOLE_LOGIN_THROTTLED' | 'CONSOLE_LOCKED_OUT';
      readonly waitMs: number;
      readonly failures: number;
    };

/**
 * Limits PIN guessing. After `maxFailures` consecutive failures each attempt must wait
 * `baseDelayMs`, doubling per failure; from `lockoutAfter` failures on, every failure
 * locks the console for `lockoutMs`. Only a successful login resets the count, so
 * waiting out a lock-out buys one attempt, not five.
 */
export class LoginThrottle {
  readonly policy: ThrottlePolicy;
  private readonly store: ThrottleStore;
  private readonly clock: Clock;

  constructor(options: { clock: Clock; store?: ThrottleStore; policy?: Partial<ThrottlePolicy> }) {
    this.clock = options.clock;
    this.store = options.store ?? new MemoryThrottleStore();
    this.policy = { ...defaultThrottlePolicy, ...options.policy };
    const p = this.policy;
    const whole = (n: number, min: number): boolean => Number.isSafeInteger(n) && n >= min;
    if (
      !whole(p.maxFailures, 1) ||
      !whole(p.lockoutAfter, p.maxFailures) ||
      !whole(p.lockoutMs, 0) ||
      !whole(p.baseDelayMs, 0) ||
      !whole(p.maxDelayMs, p.baseDelayMs)
    ) {
      throw new AgentError('CONFIG_INVALID', 'the login throttle policy is not valid', {
        policy: p,
      });
    }
  }

  /** How long attempts wait after `failures` consecutive failures (pure policy). */
  waitAfter(failures: number): number {
    const p = this.policy;
    if (failures >= p.lockoutAfter) return p.lockoutMs;
    if (failures < p.maxFailures) return 0;
    const steps = Math.min(failures - p.maxFailures, 30);
    return Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** steps);
  }

  /** Whether an attempt may be made now; refused attempts are not counted. */
  check(): ThrottleDecision {
    return this.decide(this.load());
  }

  /** Counts a failed attempt and returns what the next attempt faces. */
  recordFailure(): ThrottleDecision {
    const state = { failures: this.load().failures + 1, lastFailureAt: this.clock.now() };
    this.store.save(state);
    return this.decide(state);
  }

  /** A correct PIN clears the count. */
  recordSuccess(): void {
    this.store.save({ failures: 0, lastFailureAt: 0 });
  }

  private decide(state: ThrottleState): ThrottleDecision {
    const now = this.clock.now();
    // A clock set backwards must not stretch a lock-out: measure from now at the latest.
    const since = Math.min(state.lastFailureAt, now);
    const waitMs = since + this.waitAfter(state.failures) - now;
    if (waitMs <= 0) return { allowed: true, failures: state.failures };
    const code =
      state.failures >= this.policy.lockoutAfter ? 'CONSOLE_LOCKED_OUT' : 'CONSOLE_LOGIN_THROTTLED';
    return { allowed: false, code, waitMs, failures: state.failures };
  }

  /**
   * Loads the state, failing closed: an unreadable record counts as a fresh lock-out
   * (saved, so it ends after `lockoutMs` instead of lasting forever).
   */
  private load(): ThrottleState {
    const s = this.store.load();
    if (
      s !== null &&
      typeof s === 'object' &&
      Number.isSafeInteger(s.failures) &&
      s.failures >= 0 &&
      Number.isSafeInteger(s.lastFailureAt) &&
      s.lastFailureAt >= 0
    ) {
      return s;
    }
    const locked = { failures: this.policy.lockoutAfter, lastFailureAt: this.clock.now() };
    this.store.save(locked);
    return locked;
  }
}

/** "3 s" or "15 min": how long a technician must wait, in words they can act on. */
export function waitText(ms: number): string {
  const s = Math.ceil(ms / 1000);
  return s >= 120 ? `${Math.ceil(s / 60)} min` : `${s} s`;
}

/** The refusal a technician sees while the throttle holds logins back. */
export function throttleError(d: Extract<ThrottleDecision, { allowed: false }>): AgentError {
  const message =
    d.code === 'CONSOLE_LOCKED_OUT'
      ? `too many failed logins; try again in ${waitText(d.waitMs)}`
      : `a login failed just now; try again in ${waitText(d.waitMs)}`;
  return new AgentError(d.code, message, { waitMs: d.waitMs });
}
