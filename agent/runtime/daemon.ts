import type { Config } from '../config.ts';
import { createRuntimeLogger, startRuntime, untilSignal } from './runtime.ts';

/** `pos-agent run --config FILE`: the agent for real hardware, until SIGINT or SIGTERM. */
export async function runDaemon(config: Config): Promise<number> {
  const log = createRuntimeLogger(config);
  const runtime = await startRuntime(config, { log });
  log.info(
    { terminal: config.terminalId, state: runtime.agent.core.terminal.status().state },
    'pos-agent running',
  );
  const sig = await untilSignal();
  log.info({ signal: sig }, 'stopping');
  await runtime.stop();
  return 0;
}
