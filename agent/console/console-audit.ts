import type { Logger } from '../../base/log.ts';
import type { AuditFn } from './console-options.ts';

interface Entry {
  event: string;
  detail: Record<string, unknown>;
}

/**
 * The console's evidence trail, in the order things happened. Logins, refusals and every
 * command that may change something are journaled before the console answers. A read-only
 * command that succeeded (status, time, help) is journaled just after its answer, on the next
 * event-loop turn: its output is already on the screen, so holding the prompt for a durable
 * commit proved nothing and made the technician wait for the disk, behind a settlement's
 * flushes. An entry journaled at once first takes any still waiting, so the journal's order is
 * the order typed; stopping the console writes what waits.
 */
export class ConsoleAudit {
  private waiting: Entry[] = [];
  private turn: NodeJS.Immediate | undefined;

  constructor(
    private readonly write: AuditFn,
    private readonly log: Logger,
  ) {}

  /** Journaled before the caller goes on. */
  now(event: string, detail: Record<string, unknown>): void {
    this.flush();
    this.put({ event, detail });
  }

  /** Journaled on the next event-loop turn, after the answer was written. */
  afterAnswer(event: string, detail: Record<string, unknown>): void {
    this.waiting.push({ event, detail });
    this.turn ??= setImmediate(() => this.flush());
  }

  flush(): void {
    if (this.turn) clearImmediate(this.turn);
    this.turn = undefined;
    const entries = this.waiting;
    this.waiting = [];
    for (const e of entries) this.put(e);
  }

  private put(e: Entry): void {
    try {
      this.write(e.event, e.detail);
    } catch (err) {
      this.log.error({ err, event: e.event }, 'console audit failed');
    }
  }
}
