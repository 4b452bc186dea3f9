/**
 * `pos-agent simulate acquirer --port N --data DIR [--terminal T0001 --code 123456]...`:
 * runs the acquirer simulator in the foreground, prints where the CA and each terminal's
 * client certificate and key are, and stays up until SIGINT or SIGTERM.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AgentError } from '../base/errors.ts';
import { createLogger, type Logger } from '../base/log.ts';
import { AcquirerSimulator, type SimTerminal } from './acquirer.ts';

/** Injection points for tests: output, logger and a signal that stops the simulator. */
export interface AcquirerCliIo {
  out?: (line: string) => void;
  logger?: Logger;
  /** Stops the simulator when aborted (in addition to SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Called once the simulator listens. */
  onReady?: (sim: AcquirerSimulator) => void;
}

const USAGE =
  'usage: pos-agent simulate acquirer --port N --data DIR [--terminal ID --code CODE]... [--merchant-category CAT] [--clock-offset-ms MS]';

/**
 * Runs the simulator until a signal; resolves with the exit code. `argv` is what follows
 * `simulate acquirer` (a leading `simulate acquirer` is skipped too).
 */
export async function runAcquirerCli(
  argv: readonly string[],
  io: AcquirerCliIo = {},
): Promise<number> {
  const out = io.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  let args = [...argv];
  if (args[0] === 'simulate') args = args.slice(1);
  if (args[0] === 'acquirer') args = args.slice(1);
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string', default: '7443' },
      data: { type: 'string', default: '.pos-agent/acquirer' },
      host: { type: 'string', default: '127.0.0.1' },
      terminal: { type: 'string', multiple: true, default: [] },
      code: { type: 'string', multiple: true, default: [] },
      'merchant-category': { type: 'string', default: 'default' },
      'clock-offset-ms': { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const port = Number(values.port);
  const offset = Number(values['clock-offset-ms']);
  const ids = values.terminal ?? [];
  const codes = values.code ?? [];
  const problems: string[] = [];
  if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push('--port must be 0..65535');
  if (!Number.isSafeInteger(offset)) problems.push('--clock-offset-ms must be a whole number');
  if (codes.length > ids.length) problems.push('every --code needs a --terminal before it');
  if (problems.length)
    throw new AgentError('CONSOLE_BAD_ARGUMENTS', `${problems.join('; ')}\n${USAGE}`);

  // A terminal given without a code can still connect (it was activated elsewhere).
  const terminals: SimTerminal[] = ids.flatMap((terminalId, i) => {
    const activationCode = codes[i];
    return activationCode
      ? [{ terminalId, activationCode, merchantCategory: values['merchant-category'] }]
      : [];
  });
  const dataDir = path.resolve(values.data ?? '.pos-agent/acquirer');
  const sim = await AcquirerSimulator.start({
    host: values.host,
    port,
    dataDir,
    terminals,
    clientIds: ids,
    clockOffsetMs: offset,
    logger: io.logger ?? createLogger({ name: 'acquirer-sim', level: 'info' }),
  });

  out(`acquirer simulator listening on ${sim.host}:${sim.port}`);
  out(`  ledger:       ${sim.ledger.file}`);
  out(`  CA:           ${path.join(sim.tlsDir, 'ca.crt')}`);
  for (const id of ids) {
    out(`  ${id} cert:   ${path.join(sim.tlsDir, 'clients', `${id}.crt`)}`);
    out(`  ${id} key:    ${path.join(sim.tlsDir, 'clients', `${id}.key`)}`);
  }
  for (const t of terminals) out(`  ${t.terminalId} activation code: ${t.activationCode}`);
  out('press Ctrl-C to stop');
  io.onReady?.(sim);

  await untilSignal(io.signal);
  await sim.stop();
  out('acquirer simulator stopped');
  return 0;
}

/** Resolves on SIGINT, SIGTERM or the abort signal, whichever comes first. */
function untilSignal(signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    if (signal?.aborted) done();
    else signal?.addEventListener('abort', done, { once: true });
  });
}
