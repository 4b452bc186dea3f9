import { parseArgs } from 'node:util';
import { main } from '../agent/cli/main.ts';

/**
 * The checkout's entry: the production CLI plus the commands that need the simulators
 * (`demo`, `simulate`). The production bin never imports this file, so a terminal's
 * install carries no simulator code.
 */
export async function devMain(argv: string[]): Promise<number> {
  const [cmd, sub] = argv;
  if (cmd === 'demo') {
    const { values } = parseArgs({
      args: argv.slice(1),
      options: { data: { type: 'string' }, 'no-console': { type: 'boolean' } },
    });
    const { runDemo } = await import('./demo.ts');
    return runDemo({ dataRoot: values.data ?? '.pos-agent', console: !values['no-console'] });
  }
  if (cmd === 'simulate' && sub === 'acquirer') {
    const { runAcquirerCli } = await import('../simulator/cli.ts');
    return (await runAcquirerCli(argv.slice(2))) ?? 0;
  }
  return main(argv);
}
