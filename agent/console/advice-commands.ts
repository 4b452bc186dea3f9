import type { Agent } from '../runtime/agent.ts';
import { AgentError } from '../../base/errors.ts';
import type { CommandRegistry } from './commands.ts';
import { table, type TableSpec } from './table.ts';
import { adviceQueueLine, adviceViews, type AdviceView } from '../runtime/views.ts';

/**
 * `advices`: the store-and-forward queue as a technician sees it. What is waiting and why,
 * what the acquirer declined (and its reason), what expired unanswered; `advices send` tries
 * the queue now, backoff or not.
 */

const FILTERS = ['all', 'pending', 'accepted', 'declined', 'expired'] as const;

/** The rows of an advice table, shared with the CLI. */
export function adviceTable(views: readonly AdviceView[], money: (n: number) => string): TableSpec {
  return table(
    ['seq', 'type', { header: 'amount', align: 'right' }, 'card', 'state', 'answer', 'tries'],
    views.map((v) => [
      v.seq,
      v.type,
      money(v.amount),
      v.card ?? '',
      v.state,
      v.reference ?? (v.reasonCode ? `${v.reasonCode}: ${v.reason ?? ''}` : (v.lastError ?? '')),
      v.attempts,
    ]),
  );
}

export function registerAdviceCommands(
  reg: CommandRegistry,
  agent: Agent,
  money: (n: number) => string,
): void {
  reg.register({
    name: 'advices',
    summary: 'offline approvals forwarded to the acquirer: advices [pending|declined|expired|send]',
    usage: 'advices [all|pending|accepted|declined|expired|send] [--json]',
    maxArgs: 1,
    run: async (ctx) => {
      const arg = ctx.args[0] ?? 'all';
      if (arg === 'send') {
        const r = await agent.forwardAdvices({ ignoreBackoff: true });
        const done = `sent ${r.sent}: ${r.accepted} accepted, ${r.declined} declined, ${r.remaining} still waiting`;
        return r.error ? `${done}\n${r.error.toDisplay('paused')}` : done;
      }
      if (!(FILTERS as readonly string[]).includes(arg))
        throw new AgentError(
          'CONSOLE_BAD_ARGUMENTS',
          `expected one of: ${FILTERS.join(', ')}, send`,
        );
      const views = adviceViews(
        agent.core.store,
        arg === 'all' ? undefined : (arg as Exclude<(typeof FILTERS)[number], 'all'>),
      );
      if (ctx.json) return views;
      ctx.print(adviceQueueLine(agent.status().advices));
      return views.length ? adviceTable(views, money) : '(none)';
    },
  });
}
