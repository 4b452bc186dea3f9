import { AgentError } from '../../base/errors.ts';
import { table, type TableSpec } from './table.ts';
import type { TerminalCommand } from './terminal-env.ts';
import { adviceQueueLine, adviceViews, type AdviceView } from '../runtime/views.ts';

/**
 * `advices`: the store-and-forward queue as a technician sees it. What is waiting and why,
 * what the acquirer declined (and its reason), what expired unanswered; `advices send` tries
 * the queue now, backoff or not.
 */

export const ADVICE_FILTERS = ['pending', 'accepted', 'declined', 'expired'] as const;

/** The advice table, shared with the CLI. */
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

export const advicesCommand: TerminalCommand = ({ agent, money }) => ({
  name: 'advices',
  summary: 'offline approvals forwarded to the acquirer, its answers; advices send retries now',
  usage: 'advices [all|pending|accepted|declined|expired|send] [--json]',
  maxArgs: 1,
  run: async (ctx) => {
    const arg = ctx.args[0] ?? 'all';
    if (arg === 'send') {
      const r = await agent.forwardAdvices({ ignoreBackoff: true });
      const done = `sent ${r.sent}: ${r.accepted} accepted, ${r.declined} declined, ${r.remaining} still waiting`;
      return r.error ? `${done}\n${r.error.toDisplay('paused')}` : done;
    }
    const only = ADVICE_FILTERS.find((f) => f === arg);
    if (arg !== 'all' && !only)
      throw new AgentError(
        'CONSOLE_BAD_ARGUMENTS',
        `expected one of: all, ${ADVICE_FILTERS.join(', ')}, send`,
      );
    const views = adviceViews(agent.core.store, only);
    if (ctx.json) return views;
    ctx.print(adviceQueueLine(agent.status().advices));
    return views.length ? adviceTable(views, (n) => money(n)) : '(none)';
  },
});
