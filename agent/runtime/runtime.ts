import type { Duplex } from 'node:stream';
import { pino } from 'pino';
import type { Config } from '../config.ts';
import { dataPath } from '../config.ts';
import { createLogger, type Logger } from '../../base/log.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { Console } from '../console/console.ts';
import { LoginThrottle, type ThrottleState } from '../console/auth.ts';
import { openSerialConsoleStream, stdioStream } from '../console/port.ts';
import { terminalCommands } from '../console/terminal-commands.ts';
import type { CommandRegistry } from '../console/commands.ts';
import { PaymentSocketServer } from './payment-socket.ts';
import { recordEvent } from '../policy/terminal-state.ts';

/**
 * Puts a running agent together: logs, the agent, the payment-app socket and a
 * technician console on whatever stream the config names. Shared by `run` (real
 * hardware) and `demo` (npm start), so both run the same code.
 */

export interface Runtime {
  agent: Agent;
  console?: Console;
  paymentSocket?: PaymentSocketServer;
  paymentSocketPath?: string;
  log: Logger;
  /** Called when a technician types `quit` (only where `allowQuit` was given). */
  onQuit(fn: () => void): void;
  stop(): Promise<void>;
}

export function createRuntimeLogger(config: Config, destination?: NodeJS.WritableStream): Logger {
  if (destination) return createLogger({ level: config.log.level }, destination as never);
  if (config.log.file)
    return createLogger(
      { level: config.log.level },
      pino.destination({ dest: config.log.file, mkdir: true, sync: false }),
    );
  return createLogger({ level: config.log.level });
}

export async function startRuntime(
  config: Config,
  opts: {
    log: Logger;
    consoleStream?: Duplex;
    banner?: string;
    agent?: Partial<AgentOptions>;
    /** Create the console but let the caller start it (after its own introduction). */
    deferConsole?: boolean;
    /** Offer a `quit` command that stops the whole runtime (the demo, not a real terminal). */
    allowQuit?: boolean;
  } = { log: createLogger() },
): Promise<Runtime> {
  const log = opts.log;
  const agent = new Agent({ config, log, ...opts.agent });
  await agent.start();

  const { paymentSocket, paymentSocketPath } = await listenForPaymentApp(config, agent, log);

  let stream = opts.consoleStream;
  let closeStream: (() => void) | undefined;
  if (!stream && config.console.mode === 'stdio') {
    stream = stdioStream();
    closeStream = () => stream!.destroy();
  } else if (!stream && config.console.mode === 'serial' && config.console.serialPath) {
    const port = await openSerialConsoleStream({
      path: config.console.serialPath,
      baudRate: config.console.baudRate,
    });
    stream = port;
    closeStream = () => port.close();
  }
  const quitters: Array<() => void> = [];
  let console_: Console | undefined;
  if (stream) {
    const extra = opts.allowQuit
      ? (reg: CommandRegistry) =>
          reg.register({
            name: 'quit',
            summary: 'stop the demo',
            usage: 'quit',
            maxArgs: 0,
            run: (ctx) => {
              ctx.logout();
              setImmediate(() => quitters.forEach((q) => q()));
              return 'stopping';
            },
          })
      : undefined;
    console_ = createConsole(agent, config, stream, opts.banner, extra);
    if (!opts.deferConsole) console_.start();
  }

  return {
    agent,
    console: console_,
    paymentSocket,
    paymentSocketPath,
    log,
    onQuit: (fn) => quitters.push(fn),
    async stop() {
      await console_?.stop();
      closeStream?.();
      await paymentSocket?.close();
      await agent.stop();
    },
  };
}

const META_THROTTLE = 'console_throttle';

/** A console for the agent on one stream; logins and refusals go to the journal. */
export function createConsole(
  agent: Agent,
  config: Config,
  stream: Duplex,
  banner?: string,
  extra?: (reg: CommandRegistry) => void,
): Console {
  const { store, clock, log } = agent.core;
  const throttle = new LoginThrottle({
    clock,
    policy: {
      maxFailures: config.console.maxFailures,
      lockoutAfter: config.console.lockoutAfter,
      lockoutMs: config.console.lockoutMs,
    },
    // Persisted, so pulling the cable or restarting the agent does not reset the guess count.
    store: {
      load: () =>
        store.state.getJson<ThrottleState>(META_THROTTLE) ?? { failures: 0, lastFailureAt: 0 },
      save: (s) => store.atomically(() => store.state.setJson(META_THROTTLE, s)),
    },
  });
  const commands = terminalCommands(agent, config, (level) => (log.level = level));
  extra?.(commands);
  const c = new Console({
    stream,
    commands,
    auth: { technicians: config.console.technicians, throttle },
    audit: (event, detail) => recordEvent(store, clock, log, `console-${event}`, detail),
    clock,
    logger: log,
    banner:
      banner ??
      `pos-agent ${config.firmwareVersion} technician console, terminal ${config.terminalId}`,
    prompt: () => {
      const s = agent.core.terminal.status();
      return `${config.terminalId} ${s.state}${s.locks.length ? ` [${s.locks.join(',')}]` : ''}> `;
    },
    idleTimeoutMs: config.console.idleTimeoutMs,
    maxLineBytes: config.console.maxLineBytes,
  });
  return c;
}

/** Resolves on SIGINT or SIGTERM. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => () => resolve(sig);
    process.once('SIGINT', on('SIGINT'));
    process.once('SIGTERM', on('SIGTERM'));
  });
}

/** The payment app's local socket, when the config names one. */
async function listenForPaymentApp(
  config: Config,
  agent: Agent,
  log: Logger,
): Promise<{ paymentSocket?: PaymentSocketServer; paymentSocketPath?: string }> {
  if (!config.paymentSocket.path) return {};
  const paymentSocketPath = dataPath(config, config.paymentSocket.path);
  const paymentSocket = new PaymentSocketServer({
    payments: agent.core.payments,
    terminal: agent.core.terminal,
    store: agent.core.store,
    log,
    maxFrameBytes: 64 * 1024,
  });
  await paymentSocket.listen(paymentSocketPath);
  log.info({ path: paymentSocketPath }, 'payment app socket listening');
  return { paymentSocket, paymentSocketPath };
}
