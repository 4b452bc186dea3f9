import { statfsSync } from 'node:fs';
import type { Store } from '../../storage/store.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { isAgentError } from '../../base/errors.ts';
import { recordEvent, type TerminalState } from './terminal-state.ts';

/**
 * The self-test: journal pages, hash chain, disk space and clock. Run at start and on
 * demand. A failure locks the terminal with source `hardware-fault`; a later pass clears
 * that lock (and only that one).
 */

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface SelfTestReport {
  ok: boolean;
  checks: CheckResult[];
}

const META_CHECKPOINT = 'verify_checkpoint';

export class SelfTest {
  constructor(
    private readonly d: {
      store: Store;
      clock: Clock;
      log: Logger;
      config: Pick<Config, 'dataDir' | 'selftest'>;
      terminal: TerminalState;
      clockOffsetMs: () => number | null;
    },
  ) {}

  /** `full` runs SQLite's page-level integrity_check and walks the chain from genesis. */
  run(opts: { full: boolean }): SelfTestReport {
    const checks = [this.pages(opts.full), this.chain(opts.full), this.disk(), this.clockSanity()];
    const report = { ok: checks.every((c) => c.ok), checks };
    this.settle(report);
    return report;
  }

  private pages(full: boolean): CheckResult {
    if (!full) return { name: 'journal pages', ok: true, detail: 'skipped (quick run)' };
    try {
      const res = this.d.store.integrityCheck();
      const ok = res.length === 1 && res[0] === 'ok';
      return {
        name: 'journal pages',
        ok,
        detail: ok ? 'integrity_check ok' : res.slice(0, 3).join('; '),
      };
    } catch (e) {
      return { name: 'journal pages', ok: false, detail: (e as Error).message };
    }
  }

  /** Walks from the last verified checkpoint (or genesis) and moves the checkpoint on. */
  private chain(full: boolean): CheckResult {
    const { store } = this.d;
    try {
      const checkpoint = store.state.getJson<{ seq: number; hash: string }>(META_CHECKPOINT);
      if (
        checkpoint &&
        checkpoint.seq > 0 &&
        store.journal.get(checkpoint.seq)?.hash !== checkpoint.hash
      ) {
        // verify() alone cannot see a tail cut off or rewritten wholesale; the checkpoint can.
        return {
          name: 'hash chain',
          ok: false,
          detail: `row ${checkpoint.seq}, verified before, is missing or changed: the journal was truncated or rewritten`,
        };
      }
      const r = store.journal.verify(full ? undefined : checkpoint);
      if (!r.ok)
        return {
          name: 'hash chain',
          ok: false,
          detail: `row ${r.firstBad!.seq}: ${r.firstBad!.reason}`,
        };
      store.atomically(() =>
        store.state.setJson(META_CHECKPOINT, { seq: r.headSeq, hash: r.headHash }),
      );
      return {
        name: 'hash chain',
        ok: true,
        detail: `${r.checked} rows verified, head ${r.headSeq}`,
      };
    } catch (e) {
      return { name: 'hash chain', ok: false, detail: (e as Error).message };
    }
  }

  private disk(): CheckResult {
    try {
      const s = statfsSync(this.d.config.dataDir);
      const free = s.bavail * s.bsize;
      const ok = free >= this.d.config.selftest.minFreeBytes;
      return { name: 'disk space', ok, detail: `${Math.floor(free / 1048576)} MiB free` };
    } catch (e) {
      return { name: 'disk space', ok: false, detail: (e as Error).message };
    }
  }

  private clockSanity(): CheckResult {
    const now = this.d.clock.now();
    if (now < this.d.config.selftest.minSaneTimeMs) {
      return {
        name: 'clock',
        ok: false,
        detail: `the clock reads ${new Date(now).toISOString()}, before any plausible date`,
      };
    }
    const offset = this.d.clockOffsetMs();
    if (offset !== null && Math.abs(offset) > 24 * 3600_000) {
      return {
        name: 'clock',
        ok: false,
        detail: `the clock is ${Math.round(offset / 1000)} s away from the acquirer's`,
      };
    }
    return {
      name: 'clock',
      ok: true,
      detail: offset === null ? 'plausible (offset not measured yet)' : `offset ${offset} ms`,
    };
  }

  private settle(report: SelfTestReport): void {
    const { terminal, store, clock, log } = this.d;
    const failed = report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    try {
      if (failed.length) {
        terminal.apply(
          { type: 'lock', source: 'hardware-fault', by: 'agent' },
          `self-test failed: ${failed.join('; ')}`,
          'selftest',
        );
        recordEvent(store, clock, log, 'selftest-failed', { failed });
      } else if (terminal.status().locks.includes('hardware-fault')) {
        terminal.apply(
          { type: 'unlock', source: 'hardware-fault', by: 'agent' },
          'self-test passed',
          'selftest',
        );
      }
    } catch (e) {
      // A deactivated terminal cannot be locked; a full disk cannot journal: both already refuse transactions.
      if (!isAgentError(e)) throw e;
      log.warn({ code: e.code }, 'self-test could not change the lock');
    }
  }
}
