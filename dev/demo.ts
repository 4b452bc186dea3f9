import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { parseConfig, type Config } from '../agent/config.ts';
import { createLogger } from '../base/log.ts';
import { pino } from 'pino';
import { hashPin } from '../agent/console/auth.ts';
import { startRuntime, untilSignal, type Runtime } from '../agent/runtime/runtime.ts';
import { AcquirerSimulator } from '../simulator/acquirer.ts';
import { CardSim } from '../simulator/card-sim.ts';
import { startDemoBackOffice } from '../simulator/backoffice/demo-back-office.ts';
import { PaymentClient } from '../agent/runtime/payment-socket.ts';
import { formatMinor } from '../agent/console/table.ts';
import { isAgentError } from '../base/errors.ts';

/**
 * `npm start`: the agent against an embedded acquirer simulator, with a card simulator
 * making a few sales through the payment-app socket, a settlement, and the technician
 * console on this terminal. Data lives under one folder, made on first run.
 */

export const DEMO_TERMINAL = 'T0001';
export const DEMO_CODE = 'DEMO-2026';
export const DEMO_TECHNICIAN = { id: 'tech', pin: '1234' };

export async function runDemo(o: {
  dataRoot: string;
  console: boolean;
  say?: (line: string) => void;
}): Promise<number> {
  const say = o.say ?? ((line: string) => process.stdout.write(line + '\n'));
  const root = path.resolve(o.dataRoot);
  mkdirSync(root, { recursive: true });
  const logFile = path.join(root, 'agent.log');
  const log = createLogger(
    { level: 'info' },
    pino.destination({ dest: logFile, sync: false, mkdir: true }),
  );

  const sim = await AcquirerSimulator.start({
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
  const tls = sim.tls;
  const config: Config = parseConfig({
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
      mode: o.console ? 'stdio' : 'none',
      technicians: [{ id: DEMO_TECHNICIAN.id, pinHash: await hashPin(DEMO_TECHNICIAN.pin) }],
    },
  });

  say(
    `pos-agent demo: acquirer simulator on 127.0.0.1:${sim.port}, data in ${root}, log in ${logFile}`,
  );
  let runtime: Runtime | undefined;
  const office = await startDemoBackOffice(sim, DEMO_TERMINAL);
  for (const line of office.lines) say(line);
  try {
    runtime = await startRuntime(config, {
      log,
      banner: banner(config),
      deferConsole: true,
      allowQuit: true,
    });
    const { agent } = runtime;
    await agent.channel.waitUntilUp(15_000);
    say('link to the acquirer is up (mutual TLS)');
    if (agent.core.terminal.status().state === 'unactivated') {
      await agent.activate(DEMO_CODE, 'demo');
      say(`activated with code ${DEMO_CODE}: ${agent.status().merchant}`);
    }
    if (
      agent.core.terminal.status().state === 'active' &&
      agent.core.terminal.status().locks.length === 0
    ) {
      const client = await PaymentClient.connect(runtime.paymentSocketPath!);
      try {
        const report = await new CardSim(Date.now() % 100_000).drive(client, {
          count: 6,
          mix: { sale: 4, refund: 1, void: 1 },
          amount: { min: 1_000, max: 90_000 },
        });
        say(
          `card simulator: ${report.seqs.length} transactions journaled through the payment socket, net ${formatMinor(report.netAmount)} CNY, fees ${formatMinor(report.netFee)} CNY`,
        );
      } finally {
        client.close();
      }
      const settled = await agent.settleNow('demo settlement');
      say(
        `settled batches: ${settled.settled.join(', ') || 'none'}${settled.error ? ` (${settled.error.toDisplay('paused')})` : ''}`,
      );
    } else {
      say(
        `the terminal is ${agent.core.terminal.status().state}${agent.core.terminal.status().locks.length ? ` and locked by ${agent.core.terminal.status().locks.join(', ')}` : ''}: no sales this time`,
      );
    }
    if (!o.console) return 0;
    say(
      `\nlog in as "${DEMO_TECHNICIAN.id}" with PIN ${DEMO_TECHNICIAN.pin}, then type help. Ctrl-C cancels a line; type quit to stop.\n`,
    );
    runtime.console?.start();
    await Promise.race([untilSignal(), runtime.console ? onQuit(runtime) : new Promise(() => {})]);
    return 0;
  } catch (e) {
    say(isAgentError(e) ? e.toDisplay('error') : `error: ${(e as Error).message}`);
    return 1;
  } finally {
    await runtime?.stop();
    await office.backOffice.close();
    await sim.stop();
    log.flush();
  }
}

function banner(config: Config): string {
  return `pos-agent ${config.firmwareVersion} technician console (demo) - terminal ${config.terminalId}`;
}

/** Resolves when the technician types `quit` (registered by the runtime's demo hook) or stdin closes. */
function onQuit(runtime: Runtime): Promise<void> {
  return new Promise((resolve) => {
    runtime.onQuit(resolve);
    // The console reads stdin: once it has ended nobody can type quit, so stop, not hang.
    if (process.stdin.readableEnded) resolve();
    else process.stdin.once('end', () => resolve());
  });
}
