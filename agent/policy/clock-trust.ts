import { AgentError } from '../../base/errors.ts';
import type { ClockSample } from '../../protocol/channel.ts';

/**
 * Whether the acquirer's clock, as the link measures it, may be used to check command times.
 * Every HelloAck and HeartbeatAck is one reading. A reading is trusted only when:
 *   - offset: the acquirer's clock is within maxOffsetMs of the terminal's own wall clock;
 *   - step:   since the previous reading, the acquirer's clock moved as far as the terminal's
 *             monotonic clock did, within maxStepMs (a clock that jumps is not a clock);
 *   - drift:  since the first trusted reading of this run (the anchor), the same holds within
 *             maxDriftMs, so many small steps cannot add up to a large one.
 * Each allowance is widened by half of both round trips (the uncertainty of each reading). The
 * latest reading decides: an acquirer whose clock comes back within bounds is trusted again.
 * Without a trusted reading, commands are refused with COMMAND_CLOCK_UNTRUSTED.
 */

export interface ClockTrustLimits {
  maxOffsetMs: number;
  maxStepMs: number;
  maxDriftMs: number;
}

export interface ClockVerdict {
  trusted: boolean;
  /** Acquirer clock minus terminal wall clock at this reading. */
  offsetMs: number;
  /** Why the reading is not trusted (plain words), when it is not. */
  reason?: string;
  /** True when this reading changed the verdict (trusted <-> untrusted), or is the first. */
  changed: boolean;
}

function minutes(ms: number): string {
  const abs = Math.abs(ms);
  return abs >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

export class ClockTrust {
  private anchor: ClockSample | undefined;
  private last: ClockSample | undefined;
  private verdict: ClockVerdict | undefined;

  constructor(private readonly limits: ClockTrustLimits) {}

  /** Judges one reading and remembers it. */
  observe(s: ClockSample): ClockVerdict {
    const offsetMs = Math.round(s.serverTimeMs - s.localMidMs);
    const reason = this.problem(s, offsetMs);
    this.last = s;
    if (!reason) this.anchor ??= s;
    const trusted = reason === undefined;
    const changed = this.verdict === undefined || this.verdict.trusted !== trusted;
    this.verdict = { trusted, offsetMs, reason, changed };
    return this.verdict;
  }

  /** The latest verdict; undefined before the first reading. */
  get current(): ClockVerdict | undefined {
    return this.verdict;
  }

  /**
   * The offset to add to the terminal's clock to get the acquirer's.
   * @throws AgentError COMMAND_CLOCK_UNTRUSTED when there is no trusted reading now.
   */
  offsetForCommands(): number {
    const v = this.verdict;
    if (!v)
      throw new AgentError('COMMAND_CLOCK_UNTRUSTED', 'the acquirer clock was never measured');
    if (!v.trusted) {
      throw new AgentError(
        'COMMAND_CLOCK_UNTRUSTED',
        `the acquirer clock is not trusted: ${v.reason}`,
      );
    }
    return v.offsetMs;
  }

  private problem(s: ClockSample, offsetMs: number): string | undefined {
    const { maxOffsetMs, maxStepMs, maxDriftMs } = this.limits;
    if (!Number.isSafeInteger(s.serverTimeMs) || s.serverTimeMs <= 0)
      return 'the acquirer sent no valid server time';
    if (Math.abs(offsetMs) > maxOffsetMs)
      return `it is ${minutes(offsetMs)} off the terminal clock (at most ${minutes(maxOffsetMs)})`;
    const moved = (from: ClockSample) =>
      s.serverTimeMs - from.serverTimeMs - (s.monoMidMs - from.monoMidMs);
    const slack = (from: ClockSample) => (s.rttMs + from.rttMs) / 2;
    if (this.last) {
      const step = moved(this.last);
      if (Math.abs(step) > maxStepMs + slack(this.last))
        return `it jumped ${minutes(step)} since the last reading (at most ${minutes(maxStepMs)})`;
    }
    if (this.anchor) {
      const drift = moved(this.anchor);
      if (Math.abs(drift) > maxDriftMs + slack(this.anchor))
        return `it drifted ${minutes(drift)} since the link was first measured (at most ${minutes(maxDriftMs)})`;
    }
    return undefined;
  }
}
