import { AgentError } from '../../base/errors.ts';
import { dataPath } from '../config.ts';
import { loadCheckedConfig } from '../config-check.ts';
import { requiredOption, type CliCommand } from './cli-command.ts';
import { EXIT } from './exit-codes.ts';

/** The daemon, the config check and the PIN hasher. */

const run: CliCommand = {
  name: 'run',
  args: '--config FILE',
  summary: 'the daemon for real hardware (FILE may also come from POS_CONFIG)',
  options: { config: { type: 'string' } },
  run: async (ctx) => {
    const file = requiredOption(ctx.values, 'config', ctx.io, 'POS_CONFIG');
    // Everything is checked before anything starts: no socket, no cron, no file.
    const config = loadCheckedConfig(file, ctx.io.env);
    const { runDaemon } = await import('../runtime/daemon.ts');
    return runDaemon(config);
  },
};

const configCheck: CliCommand = {
  name: 'config check',
  args: '--config FILE',
  summary: 'validate a config file and the files it names; exit 78 listing every problem',
  options: { config: { type: 'string' } },
  run: (ctx) => {
    const file = requiredOption(ctx.values, 'config', ctx.io, 'POS_CONFIG');
    const c = loadCheckedConfig(file, ctx.io.env);
    ctx.io.out(
      `config ok: ${file}\n  terminal ${c.terminalId}, data ${c.dataDir}, acquirer ${c.acquirer.host}:${c.acquirer.port}, ` +
        `console ${c.console.mode === 'serial' ? c.console.serialPath : c.console.mode}, ` +
        `payment socket ${c.paymentSocket.path ? dataPath(c, c.paymentSocket.path) : 'off'}, ` +
        `${c.console.technicians.length} technician(s)`,
    );
    return EXIT.OK;
  },
};

const hashPinCommand: CliCommand = {
  name: 'hash-pin',
  summary: 'read a technician PIN on stdin, print its scrypt hash for console.technicians',
  run: async (ctx) => {
    const { hashPin } = await import('../console/auth.ts');
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const pin = Buffer.concat(chunks).toString('utf8').trim();
    if (!/^\d{4,12}$/.test(pin))
      throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'a PIN is 4 to 12 digits');
    ctx.io.out(await hashPin(pin));
    return EXIT.OK;
  },
};

export const runCommands: readonly CliCommand[] = [run, configCheck, hashPinCommand];
