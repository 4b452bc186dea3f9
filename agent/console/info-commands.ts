import { AgentError } from '../../base/errors.ts';
import { redactedConfig } from '../config.ts';
import { businessDate } from '../policy/business-date.ts';
import type { TerminalCommand } from './terminal-env.ts';
import { subcommand } from './terminal-env.ts';
import { adviceQueueLine } from '../runtime/views.ts';

/** What the terminal is and what time it thinks it is: status, time, version, config, log. */

export const statusCommand: TerminalCommand = ({ agent, money }) => ({
  name: 'status',
  summary: 'state, locks, open batch, queue, link and clock',
  usage: 'status [--json]',
  readOnly: true,
  maxArgs: 0,
  run: (ctx) => {
    const s = agent.status();
    if (ctx.json) return { ...s };
    const c = s.openBatch.currency;
    return {
      terminal: s.terminalId,
      state: s.state,
      locks: s.locks.length ? s.locks.join(', ') : 'none',
      'may transact': s.mayTransact ? 'yes' : `no${s.reason ? ` (${s.reason})` : ''}`,
      // Also when it may transact: a rejected deactivation's reason must stay visible.
      ...(s.mayTransact && s.reason ? { 'last change': s.reason } : {}),
      merchant: s.merchant ?? '-',
      'open batch': `${s.openBatch.batchId}: ${s.openBatch.transactions} txns, net ${money(s.openBatch.netAmount)}, fees ${money(s.openBatch.netFee)} ${c}`,
      'queued batches': s.queuedBatches,
      ...(s.disputedBatches.length
        ? {
            'disputed batches': s.disputedBatches
              .map((b) => `${b.batchId} (${b.problem ?? 'refused'})`)
              .join('; '),
          }
        : {}),
      'offline advices': adviceQueueLine(s.advices),
      link: s.link
        ? `${s.link.up ? 'up' : 'down'}, clock offset ${s.link.clockOffsetMs ?? '?'} ms`
        : '-',
      'journal head': `${s.journal.headSeq} ${s.journal.headHash.slice(0, 16)}`,
      versions: `agent ${s.versions.agent}, node ${s.versions.node}`,
    };
  },
});

/** `2026-12-01 22:30:16 +08:00` in the given zone. */
function zonedTime(at: number, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    timeZoneName: 'longOffset',
  }).formatToParts(at);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  const offset = get('timeZoneName').replace(/^GMT$/, 'GMT+00:00').replace('GMT', '');
  return `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}:${get('second')} ${offset}`;
}

export const timeCommand: TerminalCommand = ({ agent, config }) => ({
  name: 'time',
  summary: 'local time in the terminal zone, business date, acquirer clock offset',
  usage: 'time [--json]',
  readOnly: true,
  maxArgs: 0,
  run: (ctx) => {
    const now = agent.core.clock.now();
    const offset = agent.channel.clockOffsetMs;
    const { timeZone } = config;
    const startHour = config.settlement.businessDayStartHour;
    const date = businessDate(now, timeZone, startHour);
    if (ctx.json)
      return {
        now,
        utc: new Date(now).toISOString(),
        local: zonedTime(now, timeZone),
        timeZone,
        businessDate: date,
        businessDayStartHour: startHour,
        acquirerOffsetMs: offset ?? null,
      };
    return {
      'local time': `${zonedTime(now, timeZone)} (${timeZone})`,
      utc: new Date(now).toISOString(),
      'business date': `${date} (a new one starts at ${String(startHour).padStart(2, '0')}:00 local)`,
      'acquirer clock':
        offset === undefined
          ? 'not measured yet (the link has not been up)'
          : `${offset >= 0 ? '+' : ''}${offset} ms from ours: ${zonedTime(now + offset, timeZone)}`,
    };
  },
});

export const versionCommand: TerminalCommand = ({ agent, config }) => ({
  name: 'version',
  summary: 'agent and runtime versions',
  usage: 'version [--json]',
  readOnly: true,
  maxArgs: 0,
  run: () => ({
    agent: config.firmwareVersion,
    node: process.versions.node,
    sqlite: String(
      (agent.core.store.db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v,
    ),
  }),
});

export const configCommand: TerminalCommand = ({ config }) => ({
  name: 'config',
  summary: 'config show (secrets redacted)',
  usage: 'config show [--json]',
  readOnly: true,
  maxArgs: 1,
  run: (ctx) => subcommand(ctx, { show: () => redactedConfig(config) as Record<string, unknown> }),
});

const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

export const logCommand: TerminalCommand = ({ setLogLevel }) => ({
  name: 'log',
  summary: 'log level LEVEL: change the log level until restart',
  usage: `log level ${levels.join('|')}`,
  minArgs: 2,
  maxArgs: 2,
  run: (ctx) =>
    subcommand(ctx, {
      level: () => {
        const level = ctx.args[1]!;
        if (!levels.includes(level))
          throw new AgentError('CONSOLE_BAD_ARGUMENTS', `unknown log level ${level}`);
        setLogLevel(level);
        return `log level ${level}`;
      },
    }),
});
