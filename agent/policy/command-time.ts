import { AgentError } from '../../base/errors.ts';

/**
 * When a signed command may be obeyed, by the acquirer's clock (the terminal's clock plus the
 * offset the link measured, which throws COMMAND_CLOCK_UNTRUSTED when the offset is beyond its
 * bounds). docs/protocol.md, "Commands", states the same rules for acquirers:
 *   - not expired:        now <= expires_at + skew            (COMMAND_EXPIRED)
 *   - not from the future: issued_at <= now + skew            (COMMAND_ISSUED_IN_FUTURE)
 *   - bounded lifetime:   expires_at - issued_at <= max         (COMMAND_LIFETIME_TOO_LONG)
 *   - issued before it expires                                 (COMMAND_MALFORMED)
 * The skew is an allowance for the drift between two clock readings, not a lifetime extension.
 */

export interface CommandTimes {
  issuedAtMs: number;
  expiresAtMs: number;
}

export interface CommandTimeLimits {
  expirySkewMs: number;
  maxLifetimeMs: number;
}

function when(ms: number): string {
  const at = new Date(ms);
  // A signed but absurd time (beyond what a Date can hold) must not become a RangeError.
  return Number.isNaN(at.getTime())
    ? `${String(ms).slice(0, 24)} (not a valid time)`
    : at.toISOString();
}

/** @throws AgentError COMMAND_EXPIRED, COMMAND_ISSUED_IN_FUTURE, COMMAND_LIFETIME_TOO_LONG, COMMAND_CLOCK_UNTRUSTED */
export function checkCommandTimes(
  cmd: CommandTimes,
  acquirerNow: () => number,
  limits: CommandTimeLimits,
): void {
  const { issuedAtMs, expiresAtMs } = cmd;
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs <= 0) {
    throw new AgentError(
      'COMMAND_EXPIRED',
      `the command's expiry ${when(expiresAtMs)} is not a valid time`,
    );
  }
  if (!Number.isSafeInteger(issuedAtMs) || issuedAtMs <= 0) {
    throw new AgentError(
      'COMMAND_MALFORMED',
      `the command's issue time ${when(issuedAtMs)} is not a valid time`,
    );
  }
  const now = acquirerNow();
  if (now > expiresAtMs + limits.expirySkewMs) {
    throw new AgentError('COMMAND_EXPIRED', `the command expired at ${when(expiresAtMs)}`);
  }
  if (issuedAtMs > now + limits.expirySkewMs) {
    throw new AgentError(
      'COMMAND_ISSUED_IN_FUTURE',
      `the command says it was issued at ${when(issuedAtMs)}, after the acquirer's now ${when(now)}`,
    );
  }
  const lifetime = expiresAtMs - issuedAtMs;
  if (lifetime <= 0) {
    throw new AgentError('COMMAND_MALFORMED', 'the command expires before it was issued');
  }
  if (lifetime > limits.maxLifetimeMs) {
    throw new AgentError(
      'COMMAND_LIFETIME_TOO_LONG',
      `the command is valid for ${lifetime} ms; the terminal takes at most ${limits.maxLifetimeMs} ms`,
    );
  }
}
