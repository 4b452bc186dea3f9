import { describe, expect, it } from 'vitest';
import { checkCommandTimes } from '../../agent/policy/command-time.ts';
import { AgentError, isAgentError } from '../../base/errors.ts';

/** The lifetime rules of a signed command, by the acquirer's clock (docs/protocol.md, Commands). */

const NOW = Date.UTC(2026, 11, 1, 12);
const HOUR = 3600_000;
const limits = { expirySkewMs: 30_000, maxLifetimeMs: 24 * HOUR };

function code(issuedAtMs: number, expiresAtMs: number, now = NOW): string {
  try {
    checkCommandTimes({ issuedAtMs, expiresAtMs }, () => now, limits);
    return 'ok';
  } catch (e) {
    if (isAgentError(e)) return e.code;
    throw e;
  }
}

describe('command lifetime', () => {
  it('takes a command issued now for ten minutes, and one for exactly the maximum', () => {
    expect(code(NOW, NOW + 10 * 60_000)).toBe('ok');
    expect(code(NOW, NOW + 24 * HOUR)).toBe('ok');
  });

  it('refuses a lifetime over the maximum, however far: a day and a ms, ten years, MAX_SAFE_INTEGER', () => {
    expect(code(NOW, NOW + 24 * HOUR + 1)).toBe('COMMAND_LIFETIME_TOO_LONG');
    expect(code(NOW, NOW + 10 * 365 * 24 * HOUR)).toBe('COMMAND_LIFETIME_TOO_LONG');
    expect(code(NOW, Number.MAX_SAFE_INTEGER)).toBe('COMMAND_LIFETIME_TOO_LONG');
    // Issued long ago with a long life is refused too, not only a far expiry.
    expect(code(NOW - 23 * HOUR, NOW + 2 * HOUR)).toBe('COMMAND_LIFETIME_TOO_LONG');
  });

  it('refuses a command issued in the future beyond the skew; within the skew it is clock noise', () => {
    expect(code(NOW + 24 * HOUR, NOW + 25 * HOUR)).toBe('COMMAND_ISSUED_IN_FUTURE');
    expect(code(NOW + 31_000, NOW + 60 * 60_000)).toBe('COMMAND_ISSUED_IN_FUTURE');
    expect(code(NOW + 29_000, NOW + 60 * 60_000)).toBe('ok');
  });

  it('refuses an expired command, an expiry before the issue time, and times that are not times', () => {
    expect(code(NOW - HOUR, NOW - 31_000)).toBe('COMMAND_EXPIRED');
    expect(code(NOW - HOUR, NOW - 29_000)).toBe('ok');
    expect(code(NOW + 20_000, NOW + 10_000)).toBe('COMMAND_MALFORMED');
    expect(code(0, NOW + 60_000)).toBe('COMMAND_MALFORMED');
    expect(code(NOW, 0)).toBe('COMMAND_EXPIRED');
    expect(code(NOW, Number.MAX_SAFE_INTEGER * 4)).toBe('COMMAND_EXPIRED');
    expect(code(Number.NaN, NOW + 60_000)).toBe('COMMAND_MALFORMED');
  });

  it('passes the clock refusal on: an untrusted acquirer clock refuses the command', () => {
    const untrusted = () => {
      throw new AgentError('COMMAND_CLOCK_UNTRUSTED');
    };
    let got = 'ok';
    try {
      checkCommandTimes({ issuedAtMs: NOW, expiresAtMs: NOW + 1000 }, untrusted, limits);
    } catch (e) {
      got = isAgentError(e) ? e.code : 'other';
    }
    expect(got).toBe('COMMAND_CLOCK_UNTRUSTED');
  });
});
