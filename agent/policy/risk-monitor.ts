import type { TxnRow } from '../../storage/journal.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import type { TerminalState } from './terminal-state.ts';
import { isAgentError } from '../../base/errors.ts';

/**
 * Local risk rules that lock the terminal with source `risk` without waiting for the
 * acquirer: a burst of declines (a stolen card being tried) or many tiny authorisations
 * (card testing) in a short window. The lock is the acquirer's to clear; the monitor
 * reports what it saw so the acquirer can decide.
 */
export interface RiskHit {
  rule: 'decline-burst' | 'tiny-burst';
  detail: string;
  at: number;
}

export class RiskMonitor {
  private declines: number[] = [];
  private tiny: number[] = [];

  constructor(
    private readonly d: {
      clock: Clock;
      log: Logger;
      config: Pick<Config, 'risk'>;
      terminal: TerminalState;
      /** Called after the lock commits, to tell the acquirer. */
      report: (hit: RiskHit) => void;
    },
  ) {}

  /** Looks at a freshly journaled transaction. */
  observe(row: TxnRow): void {
    if (row.type !== 'sale') return;
    const r = this.d.config.risk;
    const now = this.d.clock.now();
    if (row.status === 'declined') {
      this.declines = window(this.declines, now, r.declineWindowMs);
      if (this.declines.length >= r.declineBurst) {
        this.trip({
          rule: 'decline-burst',
          detail: `${this.declines.length} declines within ${r.declineWindowMs} ms`,
          at: now,
        });
        this.declines = [];
      }
    }
    if (row.amount <= r.tinyAmount) {
      this.tiny = window(this.tiny, now, r.tinyWindowMs);
      if (this.tiny.length >= r.tinyBurst) {
        this.trip({
          rule: 'tiny-burst',
          detail: `${this.tiny.length} sales of at most ${r.tinyAmount} within ${r.tinyWindowMs} ms`,
          at: now,
        });
        this.tiny = [];
      }
    }
  }

  private trip(hit: RiskHit): void {
    try {
      this.d.terminal.apply(
        { type: 'lock', source: 'risk', by: 'agent' },
        `local risk rule ${hit.rule}: ${hit.detail}`,
        `risk-rule:${hit.rule}`,
      );
    } catch (e) {
      // A terminal that cannot be locked (deactivated) takes no transactions anyway.
      if (!isAgentError(e)) throw e;
      this.d.log.warn({ rule: hit.rule, code: e.code }, 'risk rule could not lock');
      return;
    }
    this.d.log.warn({ rule: hit.rule, detail: hit.detail }, 'risk lock by local rule');
    this.d.report(hit);
  }
}

function window(times: number[], now: number, ms: number): number[] {
  const kept = times.filter((t) => now - t < ms);
  kept.push(now);
  return kept;
}
