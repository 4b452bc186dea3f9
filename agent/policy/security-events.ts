import type { Store } from '../../storage/store.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { AgentError } from '../../base/errors.ts';
import { recordEvent } from './terminal-state.ts';

/**
 * Security events that an outsider can cause at will (a garbage frame, an envelope for another
 * terminal, a message before HelloAck, a refused TLS handshake) are journaled, but at most
 * `perWindow` rows per window: a peer sending garbage in a loop cannot flood the journal. What
 * was left out is counted and journaled as one 'security-events-suppressed' row as soon as the
 * next window opens and the next event comes.
 */

export interface SecurityEventLimits {
  perWindow: number;
  windowMs: number;
}

const DEFAULT_SECURITY_EVENT_LIMITS: SecurityEventLimits = {
  perWindow: 10,
  windowMs: 10 * 60_000,
};

export class SecurityEvents {
  private windowStart = Number.NEGATIVE_INFINITY;
  private written = 0;
  private suppressed = 0;
  private suppressedSince = 0;

  constructor(
    private readonly d: { store: Store; clock: Clock; log: Logger },
    private readonly limits: SecurityEventLimits = DEFAULT_SECURITY_EVENT_LIMITS,
  ) {}

  /** Rows left out since the last suppressed-count row. */
  get pendingSuppressed(): number {
    return this.suppressed;
  }

  /** Journals one link-level refusal, unless the window's quota is used up. */
  record(event: string, err: AgentError, extra: Record<string, unknown> = {}): boolean {
    const { store, clock, log } = this.d;
    const now = clock.now();
    if (now - this.windowStart >= this.limits.windowMs || now < this.windowStart) {
      this.windowStart = now;
      this.written = 0;
      if (this.suppressed > 0) {
        recordEvent(store, clock, log, 'security-events-suppressed', {
          count: this.suppressed,
          sinceMs: this.suppressedSince,
        });
        this.written += 1;
        this.suppressed = 0;
      }
    }
    if (this.written >= this.limits.perWindow) {
      if (this.suppressed === 0) this.suppressedSince = now;
      this.suppressed += 1;
      log.warn({ event, code: err.code }, 'security event not journaled (rate limit)');
      return false;
    }
    this.written += 1;
    recordEvent(store, clock, log, event, {
      code: err.code,
      // Peer-supplied text, so bounded: the journal keeps the gist, the log the rest.
      reason: err.message.slice(0, 200),
      ...extra,
    });
    return true;
  }
}
