import type { Agent } from '../runtime/agent.ts';
import type { Config } from '../config.ts';
import { redactedConfig } from '../config.ts';
import { AgentError } from '../../base/errors.ts';
import { CommandRegistry, type CommandContext } from './commands.ts';
import { formatMinor, table } from './table.ts';
import { adviceQueueLine, batchView, entryView } from '../runtime/views.ts';
import { registerAdviceCommands } from './advice-commands.ts';

/**
 * The technician's commands, registered on the generic console. Each is a thin call
 * into the agent; policy (who may unlock what, what a deactivated terminal may do)
 * stays in the lifecycle table and the agent, so the console cannot bypass it.
 */

const TECH_SOURCE = (ctx: CommandContext) => `console:${ctx.technician}`;

function sub(ctx: CommandContext, allowed: readonly string[]): string {
  const s = ctx.args[0] ?? allowed[0]!;
  if (!allowed.includes(s))
    throw new AgentError('CONSOLE_BAD_ARGUMENTS', `expected one of: ${allowed.join(', ')}`);
  return s;
}

function wholeNumber(s: string | undefined, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(s);
  if (!s || !/^\d+$/.test(s) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new AgentError(
      'CONSOLE_BAD_ARGUMENTS',
      `${what} must be a whole number from 1 to ${max}`,
    );
  }
  return n;
}

export function terminalCommands(
  agent: Agent,
  config: Config,
  setLogLevel: (level: string) => void,
): CommandRegistry {
  const reg = new CommandRegistry();
  const money = (n: number | null) => (n === null ? '' : formatMinor(n, config.currency));

  reg.register({
    name: 'status',
    summary: 'state, locks, open batch, queue, link and clock',
    usage: 'status [--json]',
    readOnly: true,
    maxArgs: 0,
    run: (ctx) => {
      const s = agent.status();
      if (ctx.json) return { ...s };
      return {
        terminal: s.terminalId,
        state: s.state,
        locks: s.locks.length ? s.locks.join(', ') : 'none',
        'may transact': s.mayTransact ? 'yes' : `no${s.reason ? ` (${s.reason})` : ''}`,
        // Also when it may transact: a rejected deactivation's reason must stay visible.
        ...(s.mayTransact && s.reason ? { 'last change': s.reason } : {}),
        merchant: s.merchant ?? '-',
        'open batch': `${s.openBatch.batchId}: ${s.openBatch.transactions} txns, net ${money(s.openBatch.netAmount)}, fees ${money(s.openBatch.netFee)}`,
        'queued batches': s.queuedBatches,
        'offline advices': adviceQueueLine(s.advices),
        link: s.link
          ? `${s.link.up ? 'up' : 'down'}, clock offset ${s.link.clockOffsetMs ?? '?'} ms`
          : '-',
        'journal head': `${s.journal.headSeq} ${s.journal.headHash.slice(0, 16)}`,
        versions: `agent ${s.versions.agent}, node ${s.versions.node}`,
      };
    },
  });

  reg.register({
    name: 'journal',
    summary: 'journal tail [N] | journal show SEQ | journal verify',
    usage: 'journal tail [N] | show SEQ | verify [--json]',
    readOnly: true,
    maxArgs: 2,
    run: (ctx) => {
      const { store } = agent.core;
      switch (sub(ctx, ['tail', 'show', 'verify'])) {
        case 'tail': {
          const n = ctx.args[1] ? wholeNumber(ctx.args[1], 'N', 1000) : 10;
          const views = store.journal.tail(n).map(entryView);
          if (ctx.json) return views;
          return table(
            [
              'seq',
              'time',
              'what',
              { header: 'amount', align: 'right' },
              { header: 'fee', align: 'right' },
              'status',
              'card',
            ],
            views.map((v) => [
              v.seq,
              v.at.slice(5, 19).replace('T', ' '),
              v.what,
              money(v.amount),
              money(v.fee),
              v.status ?? '',
              v.card ?? '',
            ]),
          );
        }
        case 'show': {
          const e = store.journal.get(wholeNumber(ctx.args[1], 'SEQ'));
          if (!e) throw new AgentError('STORAGE_NOT_FOUND', `no journal row ${ctx.args[1]}`);
          return { ...entryView(e) };
        }
        default: {
          const r = store.journal.verify();
          if (ctx.json) return { ...r };
          if (!r.ok)
            throw new AgentError(
              'STORAGE_CHAIN_BROKEN',
              `the chain breaks at row ${r.firstBad!.seq}: ${r.firstBad!.reason}`,
            );
          return `journal ok: ${r.checked} rows verified, head ${r.headSeq} ${r.headHash.slice(0, 16)}`;
        }
      }
    },
  });

  reg.register({
    name: 'batch',
    summary: 'batch list | batch show ID',
    usage: 'batch list | show ID [--json]',
    readOnly: true,
    maxArgs: 2,
    run: (ctx) => {
      const { store } = agent.core;
      if (sub(ctx, ['list', 'show']) === 'list') {
        const views = store.batches.list(50).map(batchView);
        if (ctx.json) return views;
        return table(
          [
            'batch',
            'state',
            'date',
            { header: 'txns', align: 'right' },
            { header: 'net', align: 'right' },
            { header: 'fees', align: 'right' },
          ],
          views.map((b) => [
            b.batchId,
            b.state,
            b.businessDate ?? '',
            b.transactions ?? '',
            money(b.netAmount),
            money(b.netFee),
          ]),
        );
      }
      const b = store.batches.get(ctx.args[1] ?? '');
      if (!b) throw new AgentError('STORAGE_NOT_FOUND', `no batch ${ctx.args[1] ?? ''}`);
      return { ...batchView(b), totals: b.totals, acquirerTotals: b.acquirerTotals };
    },
  });

  registerAdviceCommands(reg, agent, (n) => money(n));

  reg.register({
    name: 'settle',
    summary: 'cut over now and settle every queued batch',
    usage: 'settle',
    maxArgs: 0,
    run: async (ctx) => {
      ctx.print('cutting over and settling...');
      const r = await agent.settleNow(`settle from console by ${ctx.technician}`);
      const lines = [
        r.closed
          ? `closed batch ${r.closed}`
          : agent.settlement.deferred
            ? 'the open batch waits for the answers to its offline advices (see: advices)'
            : 'nothing new to close',
        `settled: ${r.settled.length ? r.settled.join(', ') : 'none'}`,
      ];
      if (r.pending.length) lines.push(`still queued: ${r.pending.join(', ')}`);
      if (r.error) lines.push(r.error.toDisplay('paused'));
      return lines.join('\n');
    },
  });

  reg.register({
    name: 'selftest',
    summary: 'journal pages, chain, disk and clock; a failure locks hardware-fault',
    usage: 'selftest [--json]',
    readOnly: true,
    maxArgs: 0,
    run: async (ctx) => {
      const r = await agent.runSelfTest(true);
      if (ctx.json) return { ...r };
      return table(
        ['check', 'result', 'detail'],
        r.checks.map((c) => [c.name, c.ok ? 'ok' : 'FAILED', c.detail]),
      );
    },
  });

  reg.register({
    name: 'activate',
    summary: 'activate the terminal with the code from the acquirer',
    usage: 'activate CODE',
    minArgs: 1,
    maxArgs: 1,
    run: async (ctx) => {
      await agent.activate(ctx.args[0]!, TECH_SOURCE(ctx));
      return `activated: ${agent.status().merchant}`;
    },
  });

  reg.register({
    name: 'deactivate',
    summary: 'ask the acquirer to deactivate this terminal (stops transactions now)',
    usage: 'deactivate REASON...',
    help: "The terminal stops taking transactions at once and waits for the acquirer's review.\nApproved: a final settlement runs, then the terminal is deactivated for good.\nRejected: the terminal returns to active and status shows the reason.",
    minArgs: 1,
    run: async (ctx) => {
      await agent.requestDeactivation(ctx.args.join(' '), TECH_SOURCE(ctx));
      return 'deactivation requested; the terminal takes no transactions while the acquirer reviews it';
    },
  });

  reg.register({
    name: 'unlock-code',
    summary: 'offline unlock of a risk lock: show a challenge, then enter the code',
    usage: 'unlock-code | unlock-code CHALLENGE CODE',
    maxArgs: 2,
    run: (ctx) => {
      if (ctx.args.length === 0) {
        const c = agent.unlockCodes.challenge('risk');
        return `challenge: ${c.challenge}\nread it to the acquirer; then type: unlock-code ${c.challenge} <code>\nvalid until ${new Date(c.expiresAt).toISOString()}`;
      }
      if (ctx.args.length !== 2)
        throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'give the challenge and the code');
      agent.unlockCodes.redeem(ctx.args[0]!, ctx.args[1]!, TECH_SOURCE(ctx));
      return 'risk lock cleared';
    },
  });

  reg.register({
    name: 'lock',
    summary: 'set the technician lock (or maintenance)',
    usage: 'lock [maintenance]',
    maxArgs: 1,
    run: async (ctx) => {
      if (ctx.args[0] === 'maintenance') {
        const r = await agent.enterMaintenance(TECH_SOURCE(ctx));
        return r.drained
          ? 'maintenance lock set'
          : 'maintenance lock set; an authorisation in flight did not finish in time';
      }
      if (ctx.args[0] !== undefined && ctx.args[0] !== 'technician')
        throw new AgentError(
          'CONSOLE_BAD_ARGUMENTS',
          'a technician may set only the technician or maintenance lock',
        );
      agent.core.terminal.applyOrRecord(
        { type: 'lock', source: 'technician', by: 'technician' },
        `locked from the console by ${ctx.technician}`,
        TECH_SOURCE(ctx),
      );
      return 'technician lock set';
    },
  });

  reg.register({
    name: 'unlock',
    summary: 'clear the technician lock (or maintenance, hardware-fault)',
    usage: 'unlock [technician|maintenance|hardware-fault]',
    maxArgs: 1,
    run: (ctx) => {
      const source = ctx.args[0] ?? 'technician';
      if (!['technician', 'maintenance', 'hardware-fault', 'risk', 'remote'].includes(source)) {
        throw new AgentError('CONSOLE_BAD_ARGUMENTS', `unknown lock source ${source}`);
      }
      agent.core.terminal.applyOrRecord(
        { type: 'unlock', source: source as 'technician', by: 'technician' },
        `unlocked ${source} from the console by ${ctx.technician}`,
        TECH_SOURCE(ctx),
      );
      return `${source} lock cleared`;
    },
  });

  reg.register({
    name: 'config',
    summary: 'config show (secrets redacted)',
    usage: 'config show [--json]',
    readOnly: true,
    maxArgs: 1,
    run: (ctx) => {
      sub(ctx, ['show']);
      return redactedConfig(config) as Record<string, unknown>;
    },
  });

  reg.register({
    name: 'log',
    summary: 'log level LEVEL',
    usage: 'log level fatal|error|warn|info|debug|trace',
    minArgs: 2,
    maxArgs: 2,
    run: (ctx) => {
      sub(ctx, ['level']);
      const level = ctx.args[1]!;
      if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace'].includes(level))
        throw new AgentError('CONSOLE_BAD_ARGUMENTS', `unknown log level ${level}`);
      setLogLevel(level);
      return `log level ${level}`;
    },
  });

  reg.register({
    name: 'time',
    summary: 'local time, acquirer offset, business date',
    usage: 'time [--json]',
    readOnly: true,
    maxArgs: 0,
    run: () => {
      const now = agent.core.clock.now();
      const offset = agent.channel.clockOffsetMs;
      return {
        local: new Date(now).toISOString(),
        timeZone: config.timeZone,
        acquirerOffsetMs: offset ?? 'not measured',
        acquirer: offset === undefined ? '-' : new Date(now + offset).toISOString(),
      };
    },
  });

  reg.register({
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

  return reg;
}
