import type { Logger } from '../../base/log.ts';

/**
 * One runner for every state-changing job that talks to the acquirer or the clock:
 * settlement, commands and cron ticks. Jobs run one at a time in arrival order, so two
 * of them never interleave their reads and writes of batches or lifecycle. A failing
 * job is logged and does not stop the jobs behind it.
 */
export class SerialRunner {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private current: string | undefined;

  constructor(private readonly log: Logger) {}

  /** Queues a job; resolves or rejects with its own result. */
  run<T>(name: string, job: () => Promise<T> | T): Promise<T> {
    this.pending++;
    const result = this.tail.then(async () => {
      this.current = name;
      try {
        return await job();
      } finally {
        this.current = undefined;
        this.pending--;
      }
    });
    this.tail = result.catch((e: unknown) => {
      this.log.warn({ job: name, err: (e as Error)?.message }, 'job failed');
    });
    return result;
  }

  /** Queues a job nobody awaits: its failure is logged by the runner and goes no further. */
  submit(name: string, job: () => Promise<unknown> | unknown): void {
    this.run(name, job).catch(() => {});
  }

  /** Jobs queued or running. */
  get depth(): number {
    return this.pending;
  }

  get running(): string | undefined {
    return this.current;
  }

  /** Resolves when everything queued so far has finished. */
  async idle(): Promise<void> {
    while (this.pending > 0) await this.tail;
  }
}
