import { createRequire } from 'node:module';
import type * as NodeCron from 'node-cron';
import type { Logger } from '../../base/log.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';

const requireCjs = createRequire(import.meta.url);

/**
 * node-cron, loaded on first use: the CommonJS build, the one config.ts loads too, so a process
 * never holds both builds.
 */
function nodeCron(): typeof NodeCron {
  return requireCjs('node-cron') as typeof NodeCron;
}

/**
 * node-cron drives the nightly cutover and the heartbeat in the terminal's time zone.
 * A tick only asks the agent; the journal decides whether anything is due, so a missed,
 * late or doubled tick neither loses nor doubles a settlement. noOverlap keeps a slow
 * tick from stacking another behind it.
 */
export class Scheduler {
  private tasks: NodeCron.ScheduledTask[] = [];

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
      if (!nodeCron().validate(expr))
        throw new AgentError(
          'CONFIG_INVALID',
          `settlement.${name} "${expr}" is not a cron expression`,
        );
    }
  }

  start(): void {
    const tick = (name: string, fn: () => Promise<unknown>) => async () => {
      try {
        await fn();
      } catch (e) {
        this.o.log.warn({ tick: name, err: (e as Error).message }, 'scheduled tick failed');
      }
    };
    const cron = nodeCron();
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
    for (const t of this.tasks) await t.destroy();
    this.tasks = [];
  }
}

/** The agent's schedules, as startSchedules hands them back: something to stop. */
export interface Schedules {
  stop(): Promise<void>;
}

/**
 * The agent's nightly cutover and heartbeat, from the config, set up on the next turn, not
 * inside the agent's start: loading node-cron and working out each first match in the time
 * zone through Intl cost about 30 ms, nothing that answers "may I transact" needs them, and
 * no tick is due within a turn. The config was validated before start, so the Scheduler's own
 * check cannot fail here; if it ever did, the error is logged (a throw there would end the
 * process).
 */
export function startSchedules(
  config: Pick<Config, 'timeZone' | 'settlement'>,
  log: Logger,
  jobs: { onCutover: () => Promise<unknown>; onHeartbeat: () => Promise<unknown> },
): Schedules {
  let scheduler: Scheduler | undefined;
  const pending = setImmediate(() => {
    try {
      scheduler = new Scheduler({
        log,
        timeZone: config.timeZone,
        cutoverCron: config.settlement.cutoverCron,
        heartbeatCron: config.settlement.heartbeatCron,
        ...jobs,
      });
      scheduler.start();
    } catch (e) {
      log.error({ err: (e as Error).message }, 'the schedules could not start');
    }
  });
  return {
    async stop() {
      clearImmediate(pending);
      await scheduler?.stop();
    },
  };
}
