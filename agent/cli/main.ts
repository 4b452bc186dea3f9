import { isAgentError } from '../../base/errors.ts';
import { parseCommandArgs, usageLine, type CliCommand, type CliIo } from './cli-command.ts';
import { dataCommands } from './data-commands.ts';
import { runCommands } from './run-commands.ts';
import { recoveryCommands } from './recovery.ts';
import { EXIT, exitCodeOf, exitCodesHelp } from './exit-codes.ts';
import { conformanceCommand } from '../conformance/command.ts';

/**
 * The production CLI: a table of small command handlers. A command is one entry in
 * `productionCommands` (or in the `extra` list the checkout's dev entry passes); usage
 * errors, `--help` and exit codes are handled here, the same for all.
 */

/** Commands the development tools serve; the production bin only names them. */
const devOnly: readonly CliCommand[] = ['demo', 'simulate acquirer'].map((name) => ({
  name,
  args: '...',
  summary: `development tool, in a checkout only (pos-agent ${name} --help there)`,
  run: (ctx) => {
    ctx.io.err(`${name} is a development command: run it from a checkout (npm start)`);
    return EXIT.USAGE;
  },
}));

export const productionCommands: readonly CliCommand[] = [
  ...runCommands,
  ...dataCommands,
  ...recoveryCommands,
  conformanceCommand,
];

const stdio: CliIo = {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
  env: process.env,
  get columns() {
    return process.stdout.isTTY ? process.stdout.columns : undefined;
  },
};

export function helpText(commands: readonly CliCommand[]): string {
  const lines = commands.flatMap((c) => [...wrapUsage(usageLine(c)), `      ${c.summary}`]);
  return [
    'pos-agent: the firmware-side agent of a card-payment POS terminal',
    '',
    'usage:',
    ...lines,
    '  pos-agent COMMAND --help',
    '',
    'exit codes:',
    exitCodesHelp(),
    '',
    'environment: POS_CONFIG (run, config check), POS_DATA_DIR (--data), and POS_TERMINAL_ID,',
    'POS_DATA_DIR, POS_ACQUIRER_HOST, POS_ACQUIRER_PORT, POS_LOG_LEVEL, POS_SERIAL_PATH override the',
    'config file.',
  ].join('\n');
}

/** A usage line cut before an option group so that it fits 100 columns. */
function wrapUsage(usage: string): string[] {
  const lines: string[] = [];
  let line = ' ';
  for (const part of usage.split(/ (?=\[|--)/)) {
    if (line.length + part.length + 1 > 98 && line.trim() !== '') {
      lines.push(line);
      line = '         ';
    }
    line += ` ${part}`;
  }
  return [...lines, line];
}

/** The command whose words start argv, the longest match first. */
function findCommand(commands: readonly CliCommand[], argv: readonly string[]) {
  let best: CliCommand | undefined;
  for (const c of commands) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && words.length > (best?.name.split(' ').length ?? 0))
      best = c;
  }
  return best;
}

/** Runs the CLI; returns the exit code. `extra` adds commands (the dev entry's demo, simulate). */
export async function main(
  argv: string[],
  io: CliIo = stdio,
  extra: readonly CliCommand[] = devOnly,
): Promise<number> {
  const commands = [...productionCommands, ...extra];
  const [first] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    io.out(helpText(commands));
    return EXIT.OK;
  }
  const command = findCommand(commands, argv);
  if (!command) {
    const near = commands.filter((c) => c.name.split(' ')[0] === first);
    const what = near.length ? `${first} ${argv[1] ?? ''}`.trim() : first;
    io.err(`pos-agent: unknown command '${what.slice(0, 60)}'`);
    io.err(
      near.length
        ? near.map((c) => `usage: ${usageLine(c)}`).join('\n')
        : "usage: pos-agent COMMAND ... (see 'pos-agent --help')",
    );
    return EXIT.USAGE;
  }
  try {
    const args = argv.slice(command.name.split(' ').length);
    const { values, positionals, help } = parseCommandArgs(command, args);
    if (help) {
      io.out(`usage: ${usageLine(command)}\n${command.summary}`);
      return EXIT.OK;
    }
    return await command.run({ args, values, positionals, io, command });
  } catch (e) {
    return report(e, command, io);
  }
}

function report(e: unknown, command: CliCommand, io: CliIo): number {
  const code = exitCodeOf(e);
  if (code === EXIT.USAGE && isAgentError(e)) {
    io.err(`pos-agent ${command.name}: ${e.message}`);
    io.err(`usage: ${usageLine(command)}`);
  } else if (isAgentError(e)) {
    io.err(e.toDisplay('error'));
  } else {
    const message = e instanceof Error ? e.message : String(e);
    io.err(`error (INTERNAL): ${(message.split('\n')[0] ?? '').trim()}`);
    if (io.env.POS_DEBUG) io.err((e as Error).stack ?? '');
    else io.err('this is a bug; run again with POS_DEBUG=1 for the details and report them');
  }
  return code;
}
