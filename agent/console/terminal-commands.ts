import type { Agent } from '../runtime/agent.ts';
import type { Config } from '../config.ts';
import { CommandRegistry } from './commands.ts';
import { formatMinor } from './table.ts';
import type { TerminalCommand, TerminalEnv } from './terminal-env.ts';
import {
  configCommand,
  logCommand,
  statusCommand,
  timeCommand,
  versionCommand,
} from './info-commands.ts';
import { batchCommand, journalCommand } from './record-commands.ts';
import { advicesCommand } from './advice-commands.ts';
import {
  activateCommand,
  deactivateCommand,
  lockCommand,
  selftestCommand,
  settleCommand,
  unlockCodeCommand,
  unlockCommand,
} from './lifecycle-commands.ts';

/**
 * The technician's commands, as a table of small handlers registered on the generic
 * console. To add one, write a TerminalCommand (see terminal-env.ts) in its own file and
 * list it here.
 */
const terminalCommandTable: readonly TerminalCommand[] = [
  statusCommand,
  journalCommand,
  batchCommand,
  settleCommand,
  advicesCommand,
  selftestCommand,
  activateCommand,
  deactivateCommand,
  unlockCodeCommand,
  lockCommand,
  unlockCommand,
  configCommand,
  logCommand,
  timeCommand,
  versionCommand,
];

export function terminalCommands(
  agent: Agent,
  config: Config,
  setLogLevel: (level: string) => void,
  extra: readonly TerminalCommand[] = [],
): CommandRegistry {
  const env: TerminalEnv = {
    agent,
    config,
    setLogLevel,
    money: (n) => (n === null || n === undefined ? '' : formatMinor(n, config.currency)),
  };
  const reg = new CommandRegistry();
  for (const make of [...terminalCommandTable, ...extra]) reg.register(make(env));
  return reg;
}
