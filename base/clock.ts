/** Time source, injected everywhere so tests can move time and the agent can apply the acquirer offset. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * A clock that never jumps (milliseconds from an arbitrary origin), to measure how the
   * acquirer's clock moves. Absent: performance.now().
   */
  monotonic?(): number;
}

export const systemClock: Clock = { now: () => Date.now(), monotonic: () => performance.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private t = Date.UTC(2026, 0, 15, 10, 0, 0)) {}
  now(): number {
    return this.t;
  }
  /** Moves with now(): tests that move time move both. */
  monotonic(): number {
    return this.t;
  }
  set(t: number): void {
    this.t = t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
