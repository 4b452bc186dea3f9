import type { Logger } from '../../base/log.ts';
import { Forwarder, type ForwardingDeps, type ForwardRound } from '../policy/forwarding.ts';
import type { SerialRunner } from './serial-runner.ts';

/**
 * When advices go out: on a new offline row, on every contact with the acquirer (backoff
 * ignored: a fresh link), and when the head's backoff ends. Each round is one job on the
 * agent's serial runner, so a command queued meanwhile waits one round trip at most. Nothing
 * is decided here that the journal does not already hold: a crash loses only a timer.
 */
export interface ForwardingLoopDeps extends ForwardingDeps {
  runner: SerialRunner;
  log: Logger;
  isUp: () => boolean;
  /** After a round that left no advice unanswered: a waiting cutover or deactivation goes on. */
  onDrained: () => Promise<void>;
}

export class ForwardingLoop {
  private running: Promise<ForwardRound> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last round's result, for status and tests. */
  last: ForwardRound | undefined;

  readonly forwarder: Forwarder;

  constructor(private readonly d: ForwardingLoopDeps) {
    this.forwarder = new Forwarder(d);
  }

  /** A journaled row: if it is queued as an advice, send it once its transaction commits. */
  onRecorded(seq: number): void {
    if (!this.d.store.advices.get(seq)) return;
    setImmediate(() => {
      if (this.d.isUp())
        void this.kick().catch((e: Error) =>
          this.d.log.warn({ err: e.message }, 'advice forwarding failed; will retry'),
        );
    });
  }

  /** Forwards what is queued now; resolves when the queue is empty or cannot move now. */
  kick(opts: { ignoreBackoff?: boolean } = {}): Promise<ForwardRound> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.loop(opts.ignoreBackoff ?? false).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  stop(): Promise<unknown> {
    this.stopped = true;
    clearTimeout(this.timer);
    return this.running ?? Promise.resolve();
  }

  private async loop(ignoreBackoff: boolean): Promise<ForwardRound> {
    const { forwarder } = this;
    const { runner } = this.d;
    let r: ForwardRound;
    for (;;) {
      this.again = false;
      r = await runner.run('advice-forward', () => forwarder.round({ ignoreBackoff }));
      ignoreBackoff = false;
      this.last = r;
      if (this.stopped) return r;
      if (r.waitMs !== undefined) {
        this.wakeIn(r.waitMs);
        return r;
      }
      // A failure while the link is up is backing off now: the next round says for how long.
      if (r.error && !this.d.isUp()) return r;
      if (r.remaining === 0 && !r.error) {
        if (r.sent > 0 || r.expired > 0) await this.d.onDrained();
        if (!this.again) return r;
      }
    }
  }

  private wakeIn(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        if (!this.stopped && this.d.isUp())
          void this.kick().catch((e: Error) =>
            this.d.log.warn({ err: e.message }, 'advice forwarding failed; will retry'),
          );
      },
      Math.min(Math.max(ms, 10), 60_000),
    );
    this.timer.unref();
  }
}
