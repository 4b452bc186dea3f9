import type { Core } from './core.ts';
import type { SerialRunner } from './serial-runner.ts';
import { recordEvent } from '../policy/terminal-state.ts';
import type { JournalCheck } from '../../storage/page-check.ts';
import { checkJournalInWorker } from '../../storage/page-check.ts';

/**
 * Keeps the journal honest while the agent runs: the whole hash chain is walked at every
 * start and again every `storage.verifyEveryMs`, so a row edited anywhere (not only after the
 * last checkpoint) is found. A break locks the terminal (`journal-broken`) and freezes the
 * journal: nothing is appended to a file that is now evidence, not even the lock.
 *
 * A journal small enough to be page-checked at open (storage.syncPageCheckMaxBytes, about
 * 175,000 rows) is walked before start returns: that costs well under a second and leaves no
 * window. A bigger one is checked on a worker thread (pages and chain in one pass), and until
 * that pass ends nothing is written to the journal (a sale, a refusal record, a settlement
 * step are all refused, "being verified"), so a file that turns out broken is left exactly as
 * it was; status and the console run meanwhile.
 */
export class JournalGuard {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<boolean> | undefined;
  private stopped = false;

  constructor(
    private readonly d: {
      core: Core;
      runner: SerialRunner;
      verifyEveryMs: number;
      /** After a deferred (worker) start-up walk passed: what start skipped while writes waited. */
      afterPass?: () => void;
    },
  ) {}

  /** At start. Resolves true when the journal is sound (at once when it was walked in-line). */
  start(): Promise<boolean> {
    const { core } = this.d;
    if (core.store.frozen) return Promise.resolve(false);
    let first: Promise<boolean>;
    if (!core.store.pageCheckDeferred) {
      const r = core.store.journal.verify();
      if (!r.ok) this.broken(`row ${r.firstBad!.seq}: ${r.firstBad!.reason}`);
      first = Promise.resolve(r.ok);
    } else {
      const paused = {
        source: 'journal-verify',
        reason: 'the journal is being verified after start; retry in a moment',
      };
      core.store.pauseWrites(paused);
      first = this.inWorker(true, () => core.store.resumeWrites(paused));
      void first.then((ok) => ok && !this.stopped && this.d.afterPass?.());
    }
    if (this.d.verifyEveryMs > 0) {
      this.timer = setInterval(() => void this.verifyNow(), this.d.verifyEveryMs).unref();
    }
    return first;
  }

  /** One full walk on a worker thread now (the schedule, or a technician asking). */
  verifyNow(): Promise<boolean> {
    if (this.d.core.store.frozen) return Promise.resolve(false);
    return this.inWorker(false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /**
   * The worker (its own V8 isolate and SQLite connection) starts a turn later, so at start it
   * does not compete with the rest of start-up for the CPU (writes are paused meanwhile); a
   * walk asked for in that turn joins this one, as it would join a running one.
   */
  private inWorker(pages: boolean, beforeJudging?: () => void): Promise<boolean> {
    this.running ??= new Promise<void>((r) => setImmediate(r))
      .then(async () => {
        if (this.stopped) return false;
        const r = await checkJournalInWorker(this.d.core.store.file, {
          pages,
          chainFrom: 'genesis',
        });
        beforeJudging?.();
        return this.judge(r);
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async judge(r: JournalCheck): Promise<boolean> {
    const { core } = this.d;
    if (this.stopped) return r.error === undefined && r.chain?.ok !== false;
    if (r.pages && !(r.pages.length === 1 && r.pages[0] === 'ok')) {
      await this.pagesDamaged(r.pages.slice(0, 3).join('; '));
      return false;
    }
    if (r.error) {
      core.log.error({ err: r.error }, 'the journal could not be verified');
      this.broken(`a row that cannot be read (${r.error})`);
      return false;
    }
    if (r.chain && !r.chain.ok) {
      this.broken(`row ${r.chain.firstBad!.seq}: ${r.chain.firstBad!.reason}`);
      return false;
    }
    core.log.info({ rows: r.chain?.checked }, 'journal chain verified');
    return true;
  }

  /**
   * The acquirer (remote witness) says this journal is behind the head it saw, or is not the
   * journal it saw: the same lock and freeze as a local rollback, and the head witness keeps
   * a hold so the next start is locked before any contact.
   */
  acquirerSaysBehind(check: { knownSeq: number; knownHash: string; reason: string }): void {
    const { core } = this.d;
    const reason = `the acquirer saw this journal reach row ${check.knownSeq} (${check.knownHash.slice(0, 16)}): ${check.reason || 'the journal is behind'}`;
    core.log.error({ knownSeq: check.knownSeq, reason }, 'the acquirer reports a journal rollback');
    if (!core.store.frozen)
      core.store.freeze(
        { source: 'journal-rollback', reason },
        { source: 'the acquirer', reason, at: core.clock.now() },
      );
    core.terminal.hold('journal-rollback', reason);
  }

  /** A broken chain: lock without writing, and write nothing more. */
  private broken(detail: string): void {
    const { core } = this.d;
    const reason = `the journal hash chain is broken at ${detail}; the file is kept unchanged for forensics`;
    core.log.error({ detail }, 'journal chain broken');
    core.terminal.hold('journal-broken', reason);
    core.store.freeze({ source: 'journal-broken', reason });
  }

  /** Damaged pages: the hardware-fault lock, journaled as before (the rows may still be readable). */
  private async pagesDamaged(detail: string): Promise<void> {
    const { core, runner } = this.d;
    core.log.error({ found: detail }, 'the journal file is damaged');
    await runner
      .run('page-check', () => {
        recordEvent(core.store, core.clock, core.log, 'page-check-failed', { found: detail });
        core.terminal.applyOrRecord(
          { type: 'lock', source: 'hardware-fault', by: 'agent' },
          `the journal file is damaged: ${detail}`,
          'page-check',
        );
      })
      .catch((e) => core.log.warn({ err: (e as Error).message }, 'page check could not lock'));
  }
}
