import type { CommandOutput } from './commands.ts';
import { AgentError } from '../../base/errors.ts';
import { batchView, entryView } from '../runtime/views.ts';
import { batchListTable, batchReport, entryReport, journalTable, tailEntries } from './reports.ts';
import { subcommand, wholeNumber, type TerminalCommand } from './terminal-env.ts';

/** `journal` and `batch`: the same reports as the CLI's, fitted to an 80-column screen. */

export const journalCommand: TerminalCommand = ({ agent, config }) => ({
  name: 'journal',
  summary: 'journal tail [N] [--type T] [--audit] | show SEQ | verify',
  usage: 'journal tail [N] [--type TYPE] [--audit] | show SEQ | verify [--json]',
  help:
    'tail: the last N rows (default 10). --type takes txn, event, a transaction type (sale,\n' +
    'refund, void, reversal) or an event name or prefix (lifecycle, settlement). The console\n' +
    'audit rows (console-login, console-command, ...) are hidden unless --audit or --type console.',
  readOnly: true,
  flags: { type: 'string', audit: 'boolean' },
  maxArgs: 2,
  run: (ctx) => {
    const { store } = agent.core;
    return subcommand<CommandOutput>(ctx, {
      tail: () => {
        const n = ctx.args[1] ? wholeNumber(ctx.args[1], 'N', 1000) : 10;
        const type = typeof ctx.flags.type === 'string' ? ctx.flags.type : undefined;
        const views = tailEntries(store, n, { type, audit: ctx.flags.audit === true });
        return ctx.json ? views : journalTable(views, { currency: config.currency, short: true });
      },
      show: () => {
        const e = store.journal.get(wholeNumber(ctx.args[1], 'SEQ'));
        if (!e) throw new AgentError('STORAGE_NOT_FOUND', `no journal row ${ctx.args[1]}`);
        const v = entryView(e);
        return ctx.json ? { ...v } : entryReport(v, { currency: config.currency }).join('\n');
      },
      verify: () => {
        const r = store.journal.verify();
        if (ctx.json) return { ...r };
        if (!r.ok)
          throw new AgentError(
            'STORAGE_CHAIN_BROKEN',
            `the chain breaks at row ${r.firstBad!.seq}: ${r.firstBad!.reason}`,
          );
        return `journal ok: ${r.checked} rows verified, head ${r.headSeq} ${r.headHash.slice(0, 16)}`;
      },
    });
  },
});

export const batchCommand: TerminalCommand = ({ agent, config }) => ({
  name: 'batch',
  summary: 'batch list | batch show ID',
  usage: 'batch list | show ID [--json]',
  readOnly: true,
  maxArgs: 2,
  run: (ctx) => {
    const { store } = agent.core;
    return subcommand<CommandOutput>(ctx, {
      list: () => {
        const views = store.batches.list(50).map(batchView);
        return ctx.json ? views : batchListTable(views, config.currency);
      },
      show: () => {
        if (!ctx.args[1]) throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'usage: batch show ID');
        const b = store.batches.get(ctx.args[1]);
        if (!b) throw new AgentError('STORAGE_NOT_FOUND', `no batch ${ctx.args[1]}`);
        if (ctx.json)
          return { ...batchView(b), totals: b.totals, acquirerTotals: b.acquirerTotals };
        return batchReport(store, b, { currency: config.currency, short: true, maxRows: 20 }).join(
          '\n',
        );
      },
    });
  },
});
