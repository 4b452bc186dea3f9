import { main } from '../agent/cli/main.ts';
import {
  intOption,
  requiredOption,
  usageError,
  type CliCommand,
} from '../agent/cli/cli-command.ts';
import { lockDirectory } from '../base/dir-lock.ts';

/**
 * The checkout's entry: the production CLI plus the commands that need the simulators
 * (`demo`, `simulate acquirer`), as two more entries of the same command table. The
 * production bin never imports this file, so a terminal's install carries no simulator code.
 */

const demo: CliCommand = {
  name: 'demo',
  args: '[--data DIR] [--fresh] [--no-console]',
  summary: 'agent + acquirer and card simulators, console on this terminal (npm start)',
  options: {
    data: { type: 'string' },
    fresh: { type: 'boolean' },
    'no-console': { type: 'boolean' },
  },
  run: async (ctx) => {
    const { runDemo } = await import('./demo.ts');
    return runDemo({
      dataRoot: (ctx.values.data as string | undefined) ?? '.pos-agent',
      console: ctx.values['no-console'] !== true,
      fresh: ctx.values.fresh === true,
    });
  },
};

const simulateAcquirer: CliCommand = {
  name: 'simulate acquirer',
  args: '--data DIR [--port N] [--host H] [--terminal ID --code CODE]... [--merchant-category CAT] [--clock-offset-ms MS]',
  summary: 'the acquirer simulator alone, on its own data directory (locked while it runs)',
  options: {
    data: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    terminal: { type: 'string', multiple: true },
    code: { type: 'string', multiple: true },
    'merchant-category': { type: 'string' },
    'clock-offset-ms': { type: 'string' },
  },
  run: async (ctx) => {
    const data = requiredOption(ctx.values, 'data', ctx.io);
    intOption(ctx.values, 'port', { min: 0, max: 65535, fallback: 7443 });
    const offset = ctx.values['clock-offset-ms'];
    if (offset !== undefined && !/^-?\d{1,15}$/.test(String(offset)))
      throw usageError('--clock-offset-ms takes a whole number of milliseconds');
    const ids = (ctx.values.terminal as string[] | undefined) ?? [];
    const codes = (ctx.values.code as string[] | undefined) ?? [];
    if (codes.length > ids.length) throw usageError('every --code needs a --terminal before it');
    // The demo locks its acquirer directory too: two ledgers on one directory corrupt both.
    const lock = lockDirectory(data, 'pos-agent simulate acquirer');
    try {
      const { runAcquirerCli } = await import('../simulator/cli.ts');
      return (await runAcquirerCli(ctx.args)) ?? 0;
    } finally {
      lock.release();
    }
  },
};

export const devCommands: readonly CliCommand[] = [demo, simulateAcquirer];

export function devMain(argv: string[]): Promise<number> {
  return main(argv, undefined, devCommands);
}
