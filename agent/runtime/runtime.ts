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
import type { TerminalCommand } from '../console/terminal-env.ts';
import { PaymentSocketServer } from './payment-socket.ts';

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

export interface RuntimeOptions {
  log: Logger;
  consoleStream?: Duplex;
  banner?: string;
  agent?: Partial<AgentOptions>;
  /** Create the console but let the caller start it (after its own introduction). */
  deferConsole?: boolean;
  /** More console commands (the demo's quit and sell; never on a real terminal). */
  extraCommands?: readonly TerminalCommand[];
  /** Console exit keys (Ctrl-C, Ctrl-D, Ctrl-\\) call this instead of editing the line. */
  onExitKey?: () => void;
}

export async function startRuntime(
  config: Config,
  opts: RuntimeOptions = { log: createLogger() },
): Promise<Runtime> {
  const log = opts.log;
  const agent = new Agent({ config, log, ...opts.agent });
  let paymentSocket: PaymentSocketServer | undefined;
  try {
    await agent.start();
    return await compose(agent, config, opts, (s) => (paymentSocket = s));
  } catch (e) {
    // Whatever started is stopped: a failed start must not leave a link or a socket open.
    await paymentSocket?.close().catch(() => {});
    await agent.stop().catch(() => {});
    throw e;
  }
}

async function compose(
  agent: Agent,
  config: Config,
  opts: RuntimeOptions,
  onSocket: (s: PaymentSocketServer) => void,
): Promise<Runtime> {
  const log = opts.log;
  const { paymentSocket, paymentSocketPath } = await listenForPaymentApp(config, agent, log);
  if (paymentSocket) onSocket(paymentSocket);

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
  let console_: Console | undefined;
  if (stream) {
    console_ = createConsole(agent, config, stream, {
      banner: opts.banner,
      extra: opts.extraCommands,
      onExitKey: opts.onExitKey,
    });
    if (!opts.deferConsole) console_.start();
  }

  return {
    agent,
    console: console_,
    paymentSocket,
    paymentSocketPath,
    log,
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
  o: { banner?: string; extra?: readonly TerminalCommand[]; onExitKey?: () => void } = {},
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
  const commands = terminalCommands(agent, config, (level) => (log.level = level), o.extra);
  const c = new Console({
    stream,
    commands,
    auth: { technicians: config.console.technicians, throttle },
    // Journaled without a log line of its own: the console logs each event once, at info
    // (warn for failed logins), so routine commands are not logged twice.
    audit: (event, detail) =>
      store.atomically(() => store.journal.appendEvent(`console-${event}`, detail, clock.now())),
    clock,
    logger: log,
    onExitKey: o.onExitKey,
    notices: lifecycleNotices(agent),
    banner:
      o.banner ??
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

/**
 * Lines for the console when the lifecycle moved on its own: the acquirer approved or
 * rejected a deactivation, a remote or risk lock came or went. Each change is told once.
 */
function lifecycleNotices(agent: Agent): () => string[] {
  const seen = () => {
    const s = agent.core.terminal.status();
    return { key: `${s.state}|${s.locks.join(',')}`, s };
  };
  let last = seen().key;
  return () => {
    const { key, s } = seen();
    if (key === last) return [];
    last = key;
    const locks = s.locks.length ? `, locked by ${s.locks.join(', ')}` : '';
    return [`notice: the terminal is now ${s.state}${locks}${s.reason ? ` (${s.reason})` : ''}`];
  };
}
