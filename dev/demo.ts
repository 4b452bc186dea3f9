import path from 'node:path';
import { rmSync } from 'node:fs';
import { parseConfig, type Config } from '../agent/config.ts';
import { createLogger } from '../base/log.ts';
import { pino } from 'pino';
import { hashPin } from '../agent/console/auth.ts';
import { startRuntime, type Runtime } from '../agent/runtime/runtime.ts';
import { AcquirerSimulator } from '../simulator/acquirer.ts';
import { CardSim } from '../simulator/card-sim.ts';
import { startDemoBackOffice } from '../simulator/backoffice/demo-back-office.ts';
import { PaymentClient } from '../agent/runtime/payment-socket.ts';
import { isAgentError } from '../base/errors.ts';
import { lockDirectory, type DirLock } from '../base/dir-lock.ts';
import { describeDrive, quitCommand, sellCommand } from './demo-commands.ts';

/**
 * `npm start`: the agent against an embedded acquirer simulator, with a card simulator
 * making a few sales through the payment-app socket, a settlement, and the technician
 * console on this terminal. Data lives under one folder, made on first run and locked
 * while the demo runs. Ctrl-C, Ctrl-D, Ctrl-\ or `quit` leave it at any point.
 */

const DEMO_TERMINAL = 'T0001';
const DEMO_CODE = 'DEMO-2026';
const DEMO_TECHNICIAN = { id: 'tech', pin: '1234' };

export interface DemoOptions {
  dataRoot: string;
  console: boolean;
  /** Delete the demo's data first (terminal, acquirer, log) and start over. */
  fresh?: boolean;
  say?: (line: string) => void;
}

/** Thrown into the introduction when the person asks to leave. */
class Leave extends Error {}

export async function runDemo(o: DemoOptions): Promise<number> {
  const say = o.say ?? ((line: string) => process.stdout.write(line + '\n'));
  const root = path.resolve(o.dataRoot);
  const locks: DirLock[] = [lockDirectory(root, 'pos-agent demo')];
  if (o.fresh) {
    for (const part of ['terminal', 'acquirer', 'agent.log'])
      rmSync(path.join(root, part), { recursive: true, force: true });
    say(`started over: removed the demo's data under ${root}`);
  }
  const { leave, left, checkLeave, step, dispose } = exits();
  const logFile = path.join(root, 'agent.log');
  const log = createLogger(
    { level: 'info' },
    pino.destination({ dest: logFile, sync: false, mkdir: true }),
  );
  let sim: AcquirerSimulator | undefined;
  let runtime: Runtime | undefined;
  let office: Awaited<ReturnType<typeof startDemoBackOffice>> | undefined;
  try {
    locks.push(lockDirectory(path.join(root, 'acquirer'), 'pos-agent demo (acquirer simulator)'));
    sim = await AcquirerSimulator.start({
      dataDir: path.join(root, 'acquirer'),
      terminals: [
        {
          terminalId: DEMO_TERMINAL,
          activationCode: DEMO_CODE,
          merchantName: 'Noodle House',
          merchantCategory: 'catering',
        },
      ],
      logger: log.child({ part: 'simulator' }),
    });
    checkLeave();
    const config = await demoConfig(root, sim, o.console);
    for (const line of banner(root, config, sim.port, logFile)) say(line);
    office = await startDemoBackOffice(sim, DEMO_TERMINAL);
    checkLeave();
    for (const line of office.lines) say(line);
    runtime = await startRuntime(config, {
      log,
      banner: `pos-agent ${config.firmwareVersion} technician console (demo) - terminal ${config.terminalId}`,
      deferConsole: true,
      extraCommands: [sellCommand(() => runtime?.paymentSocketPath), quitCommand(leave)],
      onExitKey: leave,
    });
    checkLeave();
    await step(introduction(runtime, say));
    if (!o.console) return 0;
    say(
      `\nlog in as "${DEMO_TECHNICIAN.id}" with PIN ${DEMO_TECHNICIAN.pin}, then type help. Ctrl-C, Ctrl-D or quit leave the demo.\n`,
    );
    runtime.console?.start();
    // The console reads stdin: once it has ended nobody can type, so stop, not hang.
    if (process.stdin.readableEnded) leave();
    else process.stdin.once('end', leave);
    await left;
    return 0;
  } catch (e) {
    if (e instanceof Leave) return 0;
    say(isAgentError(e) ? e.toDisplay('error') : `error: ${(e as Error).message}`);
    return isAgentError(e, 'STORAGE_IN_USE') ? 75 : 1;
  } finally {
    dispose();
    await runtime?.stop();
    await office?.backOffice.close();
    await sim?.stop();
    log.flush();
    for (const l of locks.reverse()) l.release();
    if (process.stdin.isTTY) process.stdin.pause();
    say('demo stopped');
  }
}

/**
 * The ways out: SIGINT (Ctrl-C before the console reads), SIGTERM, SIGHUP, the console's
 * exit keys and `quit` all call `leave`. A part that starts a server is let finish, so that
 * `finally` stops it, and then `checkLeave` leaves; `step` gives way at once (the
 * introduction: link, activation, sales).
 */
function exits() {
  let leave!: () => void;
  const left = new Promise<void>((resolve) => (leave = resolve));
  let leaving = false;
  void left.then(() => (leaving = true));
  const onSignal = () => leave();
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  return {
    leave,
    left,
    checkLeave: (): void => {
      if (leaving) throw new Leave();
    },
    step: <T>(p: Promise<T>): Promise<T> =>
      Promise.race([p, left.then(() => Promise.reject(new Leave()))]),
    dispose: (): void => {
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, onSignal);
      process.stdin.off('end', leave);
    },
  };
}

async function demoConfig(root: string, sim: AcquirerSimulator, stdio: boolean): Promise<Config> {
  const tls = sim.tls;
  return parseConfig({
    terminalId: DEMO_TERMINAL,
    dataDir: path.join(root, 'terminal'),
    acquirer: {
      port: sim.port,
      caFile: path.join(tls.dir, 'ca.crt'),
      certFile: path.join(tls.dir, 'clients', `${DEMO_TERMINAL}.crt`),
      keyFile: path.join(tls.dir, 'clients', `${DEMO_TERMINAL}.key`),
      heartbeatIntervalMs: 10_000,
    },
    console: {
      mode: stdio ? 'stdio' : 'none',
      technicians: [{ id: DEMO_TECHNICIAN.id, pinHash: await hashPin(DEMO_TECHNICIAN.pin) }],
    },
  });
}

/** Where everything is, with the exact CLI lines that read it. */
function banner(root: string, config: Config, port: number, logFile: string): string[] {
  const bin = path.resolve(import.meta.dirname, '..', 'bin', 'pos-agent.mjs');
  const rel = path.relative(process.cwd(), bin);
  const cli = `node ${rel.startsWith('..') ? bin : rel}`;
  return [
    `pos-agent demo: acquirer simulator on 127.0.0.1:${port}`,
    `  demo data:       ${root}  (start over: npm start -- --fresh)`,
    `  terminal data:   ${config.dataDir}`,
    `  acquirer data:   ${path.join(root, 'acquirer')}`,
    `  log:             ${logFile}`,
    `  from another shell while the demo runs:`,
    `    ${cli} status --data ${config.dataDir}`,
    `    ${cli} journal tail --data ${config.dataDir}`,
    `    ${cli} batch list --data ${config.dataDir}`,
  ];
}

/** Activation, a few sales through the payment socket, and a settlement. */
async function introduction(runtime: Runtime, say: (line: string) => void): Promise<void> {
  const { agent } = runtime;
  await agent.channel.waitUntilUp(15_000);
  say('link to the acquirer is up (mutual TLS)');
  if (agent.core.terminal.status().state === 'unactivated') {
    await agent.activate(DEMO_CODE, 'demo');
    say(`activated with code ${DEMO_CODE}: ${agent.status().merchant}`);
  }
  const { state, locks } = agent.core.terminal.status();
  if (state !== 'active' || locks.length > 0) {
    say(
      `the terminal is ${state}${locks.length ? ` and locked by ${locks.join(', ')}` : ''}: no sales this time`,
    );
    return;
  }
  const client = await PaymentClient.connect(runtime.paymentSocketPath!);
  try {
    const report = await new CardSim(Date.now() % 100_000).drive(client, {
      count: 6,
      mix: { sale: 4, refund: 1, void: 1 },
      amount: { min: 1_000, max: 90_000 },
    });
    say(`card simulator: ${describeDrive(report, agent.status().openBatch.currency)}`);
  } finally {
    client.close();
  }
  const settled = await agent.settleNow('demo settlement');
  say(
    `settled batches: ${settled.settled.join(', ') || 'none'}${settled.error ? ` (${settled.error.toDisplay('paused')})` : ''}`,
  );
}
