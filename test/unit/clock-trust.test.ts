import { describe, expect, it } from 'vitest';
import { ClockTrust } from '../../agent/policy/clock-trust.ts';
import type { ClockSample } from '../../protocol/channel.ts';
import { isAgentError } from '../../base/errors.ts';

/**
 * How far the acquirer's clock may be from ours, and move against our monotonic clock, before
 * command times are no longer checked against it (docs/protocol.md, Heartbeats and the clock).
 */

const T0 = Date.UTC(2026, 11, 1, 12);
const HOUR = 3600_000;
const limits = { maxOffsetMs: 600_000, maxStepMs: 5_000, maxDriftMs: 120_000 };

/** A reading `atMs` after start (both local clocks), the acquirer `offsetMs` ahead. */
function reading(atMs: number, offsetMs: number, rttMs = 10): ClockSample {
  return {
    kind: atMs === 0 ? 'hello' : 'heartbeat',
    serverTimeMs: T0 + atMs + offsetMs,
    localMidMs: T0 + atMs,
    monoMidMs: 1_000 + atMs,
    rttMs,
  };
}

function refusal(trust: ClockTrust): string {
  try {
    trust.offsetForCommands();
    return 'trusted';
  } catch (e) {
    return isAgentError(e) ? e.code : 'other';
  }
}

describe('acquirer clock trust', () => {
  it('trusts a close clock and hands out its offset; refuses before any reading', () => {
    const trust = new ClockTrust(limits);
    expect(refusal(trust)).toBe('COMMAND_CLOCK_UNTRUSTED');
    expect(trust.observe(reading(0, 90_000))).toMatchObject({ trusted: true, changed: true });
    expect(trust.offsetForCommands()).toBe(90_000);
    expect(trust.observe(reading(30_000, 90_500))).toMatchObject({ trusted: true, changed: false });
  });

  it('never trusts a clock 12 h behind from the first reading (HelloAck)', () => {
    const trust = new ClockTrust(limits);
    const v = trust.observe(reading(0, -12 * HOUR));
    expect(v).toMatchObject({ trusted: false, offsetMs: -12 * HOUR });
    expect(v.reason).toMatch(/-720 min off/);
    expect(refusal(trust)).toBe('COMMAND_CLOCK_UNTRUSTED');
  });

  it('a jump beyond the step bound is untrusted, however small against the total', () => {
    const trust = new ClockTrust(limits);
    trust.observe(reading(0, 0));
    const v = trust.observe(reading(30_000, 6_000));
    expect(v).toMatchObject({ trusted: false, changed: true });
    expect(v.reason).toMatch(/jumped 6 s/);
    // The rtt widens the allowance: a slow round trip is not a jump.
    const slow = new ClockTrust(limits);
    slow.observe(reading(0, 0, 10));
    expect(slow.observe(reading(30_000, 6_000, 3_000)).trusted).toBe(true);
  });

  it('small steps cannot add up past the drift bound; coming back earns trust again', () => {
    const trust = new ClockTrust(limits);
    trust.observe(reading(0, 0));
    let t = 0;
    let offset = 0;
    let last = trust.current!;
    for (let i = 0; i < 40 && last.trusted; i++) {
      t += 30_000;
      offset += 4_000;
      last = trust.observe(reading(t, offset));
    }
    expect(last.trusted).toBe(false);
    expect(last.reason).toMatch(/drifted/);
    expect(offset).toBeGreaterThan(120_000);
    expect(offset).toBeLessThanOrEqual(124_000);
    // The acquirer fixes its clock step by step back to the anchor: trusted again.
    while (offset > 0) {
      t += 30_000;
      offset = Math.max(0, offset - 4_000);
      last = trust.observe(reading(t, offset));
    }
    expect(last).toMatchObject({ trusted: true });
    expect(trust.offsetForCommands()).toBe(0);
  });

  it('the terminal wall clock jumping (NTP) is not the acquirer moving', () => {
    const trust = new ClockTrust(limits);
    trust.observe(reading(0, 0));
    // Our wall clock steps back 4 min; the monotonic clock and the acquirer run on.
    const s = reading(30_000, 0);
    const v = trust.observe({ ...s, localMidMs: s.localMidMs - 240_000 });
    expect(v).toMatchObject({ trusted: true, offsetMs: 240_000 });
  });

  it('a reading without a server time is untrusted', () => {
    const trust = new ClockTrust(limits);
    expect(trust.observe({ ...reading(0, 0), serverTimeMs: 0 }).trusted).toBe(false);
  });
});
