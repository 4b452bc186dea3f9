import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';

/**
 * node-cron drives the nightly cutover and the heartbeat in the terminal's time zone.
 * A tick only asks the agent; the journal decides whether anything is due, so a missed,
 * late or doubled tick neither loses nor doubles a settlement. noOverlap keeps a slow
 * tick from stacking another behind it.
 */
export class Scheduler {
  private tasks: ScheduledTask[] = [];
  private pending: NodeJS.Immediate | undefined;

  constructor(
    private readonly o: {
      log: Logger;
      timeZone: string;
      cutoverCron: string;
      heartbeatCron: string;
      onCutover: () => Promise<unknown>;
      onHeartbeat: () => Promise<unknown>;
    },
  ) {
    for (const [name, expr] of [
      ['cutoverCron', o.cutoverCron],
      ['heartbeatCron', o.heartbeatCron],
    ] as const) {
      if (!cron.validate(expr))
        throw new AgentError(
          'CONFIG_INVALID',
          `settlement.${name} "${expr}" is not a cron expression`,
        );
    }
  }

  /**
   * Schedules both ticks on the next turn, not inside the caller's start-up: node-cron works
   * out each first match in the time zone through Intl, about 20 ms on a first use, and no
   * tick is due within a turn of starting.
   */
  start(): void {
    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.schedule();
    });
  }

  private schedule(): void {
    const tick = (name: string, fn: () => Promise<unknown>) => async () => {
      try {
        await fn();
      } catch (e) {
        this.o.log.warn({ tick: name, err: (e as Error).message }, 'scheduled tick failed');
      }
    };
    this.tasks = [
      cron.schedule(this.o.cutoverCron, tick('cutover', this.o.onCutover), {
        timezone: this.o.timeZone,
        noOverlap: true,
        name: 'cutover',
      }),
      cron.schedule(this.o.heartbeatCron, tick('heartbeat', this.o.onHeartbeat), {
        timezone: this.o.timeZone,
        noOverlap: true,
        name: 'heartbeat',
      }),
    ];
  }

  async stop(): Promise<void> {
    clearImmediate(this.pending);
    this.pending = undefined;
    for (const t of this.tasks) await t.destroy();
    this.tasks = [];
  }
}

/** The agent's nightly cutover and heartbeat, from the config, started. */
export function startSchedules(
  config: Pick<Config, 'timeZone' | 'settlement'>,
  log: Logger,
  jobs: { onCutover: () => Promise<unknown>; onHeartbeat: () => Promise<unknown> },
): Scheduler {
  const scheduler = new Scheduler({
    log,
    timeZone: config.timeZone,
    cutoverCron: config.settlement.cutoverCron,
    heartbeatCron: config.settlement.heartbeatCron,
    ...jobs,
  });
  scheduler.start();
  return scheduler;
}
