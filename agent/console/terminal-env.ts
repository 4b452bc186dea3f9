import type { Agent } from '../runtime/agent.ts';
import type { Config } from '../config.ts';
import { AgentError } from '../../base/errors.ts';
import type { CommandContext, CommandDefinition, CommandOutput } from './commands.ts';

/** What every technician command is built from: the running agent and its config. */
export interface TerminalEnv {
  readonly agent: Agent;
  readonly config: Config;
  setLogLevel(level: string): void;
  /** Minor units as yuan with two decimals (the config's currency). */
  money(n: number | null | undefined): string;
}

/** One technician command: a small factory, so the table in terminal-commands.ts stays a list. */
export type TerminalCommand = (env: TerminalEnv) => CommandDefinition;

/** The journal's `by` for console actions. */
export const techSource = (ctx: CommandContext) => `console:${ctx.technician}`;

/** Runs the handler of the sub-command named by the first argument (default: the first key). */
export function subcommand<T extends CommandOutput = CommandOutput>(
  ctx: CommandContext,
  handlers: Readonly<Record<string, (ctx: CommandContext) => T>>,
): T {
  const names = Object.keys(handlers);
  const s = ctx.args[0] ?? names[0]!;
  const run = Object.hasOwn(handlers, s) ? handlers[s] : undefined;
  if (!run) throw new AgentError('CONSOLE_BAD_ARGUMENTS', `expected one of: ${names.join(', ')}`);
  return run(ctx);
}

export function wholeNumber(
  s: string | undefined,
  what: string,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const n = Number(s);
  if (!s || !/^\d+$/.test(s) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new AgentError(
      'CONSOLE_BAD_ARGUMENTS',
      `${what} must be a whole number from 1 to ${max}`,
    );
  }
  return n;
}
