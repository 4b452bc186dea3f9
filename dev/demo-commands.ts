import { AgentError } from '../base/errors.ts';
import { PaymentClient } from '../agent/runtime/payment-socket.ts';
import { formatMinor } from '../agent/console/table.ts';
import { wholeNumber, type TerminalCommand } from '../agent/console/terminal-env.ts';
import { CardSim, type DriveReport } from '../simulator/card-sim.ts';

/**
 * Console commands that exist only in the demo: `sell` makes more sales the way the
 * payment app would (card simulator -> payment socket -> journal), and `quit` stops it.
 */

export function describeDrive(r: DriveReport, currency: string): string {
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
  const kinds = [
    n(r.byType.sale.count, 'sale'),
    ...(r.byType.refund.count ? [n(r.byType.refund.count, 'refund')] : []),
    ...(r.byType.void.count ? [n(r.byType.void.count, 'void')] : []),
    ...(r.declined ? [`${r.declined} declined`] : []),
  ];
  return (
    `${n(r.seqs.length, 'transaction')} journaled through the payment socket (${kinds.join(', ')}), ` +
    `net ${formatMinor(r.netAmount, currency)} ${currency}, fees ${formatMinor(r.netFee, currency)} ${currency}`
  );
}

export function sellCommand(socketPath: () => string | undefined): TerminalCommand {
  let seed = Date.now() % 100_000;
  return ({ config }) => ({
    name: 'sell',
    summary: 'demo only: N card sales (default 3) through the card simulator and payment socket',
    usage: 'sell [N]',
    maxArgs: 1,
    run: async (ctx) => {
      const n = ctx.args[0] ? wholeNumber(ctx.args[0], 'N', 50) : 3;
      const path = socketPath();
      if (!path) throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'the payment socket is off');
      const client = await PaymentClient.connect(path);
      try {
        const r = await new CardSim(seed++).drive(client, {
          count: n,
          mix: { sale: 1 },
          amount: { min: 500, max: 60_000 },
        });
        const lines = [describeDrive(r, config.currency)];
        for (const x of r.refused) lines.push(`refused by the terminal: ${x.type} (${x.code})`);
        if (r.seqs.length)
          lines.push(`journal rows ${r.seqs[0]}..${r.seqs.at(-1)}; settle sends them`);
        return lines.join('\n');
      } finally {
        client.close();
      }
    },
  });
}

export function quitCommand(quit: () => void): TerminalCommand {
  return () => ({
    name: 'quit',
    aliases: ['exit'],
    summary: 'stop the demo (Ctrl-C or Ctrl-D do too)',
    usage: 'quit',
    maxArgs: 0,
    run: (ctx) => {
      ctx.logout();
      setImmediate(quit);
      return 'stopping';
    },
  });
}
