/**
 * The console's command table: what a command is, how it is registered, how its
 * result is shown, and the generic built-ins (help, whoami, logout, clear).
 *
 * Registering a command is one call; argument counts, declared flags and `--json` are
 * checked before `run` is called, so `run` only ever sees input it asked for.
 */

import { AgentError, isAgentError, type ErrorCode } from '../../base/errors.ts';
import { parseArgs, splitCommandLine, type FlagSpec, type Flags } from './command-line.ts';
import { formatKeyValue, formatTable, isTableSpec, toJson, type TableSpec } from './table.ts';
import { sanitizeForTerminal, truncateToWidth, wrapToWidth } from './text.ts';

/** What a command returns: text, a table, a record (key/value block or JSON), or nothing. */
export type CommandOutput =
  string | TableSpec | Readonly<Record<string, unknown>> | readonly unknown[] | undefined | void;

/** What `run` receives. */
export interface CommandContext {
  /** The command name as registered (not the alias typed). */
  readonly name: string;
  /** Positional arguments, quotes removed. */
  readonly args: readonly string[];
  /** Declared flags that were given (`--json` and `--help` are not in here). */
  readonly flags: Flags;
  /** `--json` was given; only possible on read-only commands. */
  readonly json: boolean;
  /** Id of the logged-in technician. */
  readonly technician: string;
  /** When the session began (epoch ms, from the console's clock). */
  readonly loggedInAt: number;
  /** Writes one line now (progress of a long command); it is sanitised. */
  print(line: string): void;
  /** Aborted when the technician presses Ctrl-C while the command runs. */
  readonly signal: AbortSignal;
  /** Ends the session after this command. */
  logout(): void;
  /** Clears the technician's screen. */
  clearScreen(): void;
}

/** A console command. */
export interface CommandDefinition {
  /** Lower case, e.g. `status`, `batch-close`. */
  readonly name: string;
  readonly aliases?: readonly string[];
  /** One line for `help`. */
  readonly summary: string;
  /** e.g. `journal [--limit N] [--json]`. */
  readonly usage: string;
  /** Longer text for `help NAME`; may span lines. */
  readonly help?: string;
  /** Its arguments are secrets (a one-time code): the audit row keeps only the name. */
  readonly secretArgs?: boolean;
  /** Changes nothing, and so may print `--json`. Default false. */
  readonly readOnly?: boolean;
  /** Flags it accepts besides `--json` and `--help`. Undeclared flags are refused. */
  readonly flags?: FlagSpec;
  /** Fewest positional arguments. Default 0. */
  readonly minArgs?: number;
  /** Most positional arguments. Default unlimited. */
  readonly maxArgs?: number;
  run(ctx: CommandContext): Promise<CommandOutput> | CommandOutput;
}

const commandName = /^(?:[a-z][a-z0-9-]{0,31}|\?)$/;
const reservedFlags = new Set(['json', 'help']);

function invalid(message: string): AgentError {
  return new AgentError('CONSOLE_COMMAND_INVALID', message);
}

/** The set of commands a console offers. */
export class CommandRegistry {
  private readonly byName = new Map<string, CommandDefinition>();
  private readonly primary: CommandDefinition[] = [];

  /** @param options.builtins register help, whoami, logout and clear (default true). */
  constructor(options: { builtins?: boolean } = {}) {
    if (options.builtins ?? true) for (const def of builtinCommands(this)) this.register(def);
  }

  /**
   * Adds a command.
   * @throws AgentError CONSOLE_COMMAND_INVALID on a bad or duplicate name or flag.
   */
  register(def: CommandDefinition): this {
    const names = [def.name, ...(def.aliases ?? [])];
    for (const n of names) {
      if (!commandName.test(n))
        throw invalid(`command name '${n}' must be lower case letters, digits and dashes`);
      if (this.byName.has(n)) throw invalid(`command '${n}' is registered twice`);
    }
    for (const f of Object.keys(def.flags ?? {})) {
      if (reservedFlags.has(f))
        throw invalid(`command '${def.name}' may not declare --${f}; the console handles it`);
      if (!/^[a-z][a-z0-9-]*$/.test(f))
        throw invalid(`command '${def.name}' has a bad flag name '${f}'`);
    }
    const min = def.minArgs ?? 0;
    const max = def.maxArgs ?? Infinity;
    if (!(
      Number.isInteger(min) &&
      min >= 0 &&
      (max === Infinity || (Number.isInteger(max) && max >= min))
    )) {
      throw invalid(`command '${def.name}' has bad argument counts`);
    }
    for (const n of names) this.byName.set(n, def);
    this.primary.push(def);
    return this;
  }

  /** The command called `name` or one of its aliases (case-insensitive). */
  get(name: string): CommandDefinition | undefined {
    return this.byName.get(name.toLowerCase());
  }

  /** All commands, sorted by name. */
  list(): CommandDefinition[] {
    return [...this.primary].sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** Usage and help text of one command, as lines. */
function describeCommand(def: CommandDefinition): string[] {
  const lines = [`usage: ${def.usage}`, def.summary];
  if (def.aliases?.length) lines.push(`aliases: ${def.aliases.join(', ')}`);
  if (def.help) lines.push('', ...def.help.split(/\r?\n/));
  lines.push('', def.readOnly ? 'read-only; --json prints JSON' : '--json is not available');
  return lines;
}

/**
 * Renders a command's result as lines. With `json`, everything becomes one JSON line
 * so scripts driving the console can read it line by line.
 */
function renderOutput(output: CommandOutput, json: boolean): string[] {
  if (output === undefined || output === null) return [];
  if (json) return [toJson(output)];
  if (typeof output === 'string') return output === '' ? [] : output.split(/\r?\n/);
  if (isTableSpec(output)) return formatTable(output);
  if (Array.isArray(output))
    return output.map((item) => (typeof item === 'string' ? item : toJson(item)));
  return formatKeyValue(output as Readonly<Record<string, unknown>>);
}

/** What the console supplies to run one line. */
export interface DispatchIo {
  readonly technician: string;
  readonly loggedInAt: number;
  writeLines(lines: readonly string[]): void;
  clearScreen(): void;
  /** Told the controller while `run` executes (so Ctrl-C can abort it), then undefined. */
  setRunning(controller: AbortController | undefined): void;
}

/** How a line ended, for the audit trail; `error` is set for failures that were not refusals. */
export interface DispatchResult {
  readonly command: string;
  readonly outcome: 'ok' | 'refused' | 'error';
  readonly code?: ErrorCode;
  readonly error?: unknown;
  readonly logout: boolean;
}

/**
 * Parses and runs one command line, printing its output or its refusal. Never throws:
 * an AgentError is shown as `refused (CODE): message`, anything else as
 * `error (INTERNAL): ...` and handed back for logging.
 */
export async function dispatchLine(
  registry: CommandRegistry,
  line: string,
  io: DispatchIo,
): Promise<DispatchResult> {
  let command = '';
  let logout = false;
  try {
    const words = splitCommandLine(line);
    command = truncateToWidth(sanitizeForTerminal(words[0] ?? ''), 32);
    const def = registry.get(words[0] ?? '');
    if (!def) {
      throw new AgentError('CONSOLE_UNKNOWN_COMMAND', `unknown command '${command}'; type help`);
    }
    command = def.name;
    const spec: FlagSpec = { ...def.flags, json: 'boolean', help: 'boolean' };
    const { args, flags } = parseArgs(words.slice(1), spec);
    // `CMD --help` explains and never runs, whatever else was typed.
    if (flags.help === true) {
      io.writeLines(describeCommand(def));
      return { command, outcome: 'ok', logout };
    }
    const json = flags.json === true;
    if (json && !def.readOnly) {
      throw new AgentError(
        'CONSOLE_BAD_ARGUMENTS',
        `--json is only for read-only commands, and ${def.name} is not one`,
      );
    }
    if (args.length < (def.minArgs ?? 0) || args.length > (def.maxArgs ?? Infinity)) {
      throw new AgentError('CONSOLE_BAD_ARGUMENTS', `usage: ${def.usage}`);
    }
    const { json: _json, help: _help, ...own } = flags;
    const controller = new AbortController();
    io.setRunning(controller);
    try {
      const output = await def.run({
        name: def.name,
        args,
        flags: own,
        json,
        technician: io.technician,
        loggedInAt: io.loggedInAt,
        signal: controller.signal,
        print: (text) => io.writeLines(String(text).split(/\r?\n/)),
        logout: () => (logout = true),
        clearScreen: () => io.clearScreen(),
      });
      io.writeLines(renderOutput(output, json));
    } finally {
      io.setRunning(undefined);
    }
    return { command, outcome: 'ok', logout };
  } catch (e) {
    if (isAgentError(e)) {
      io.writeLines([e.toDisplay()]);
      return { command, outcome: 'refused', code: e.code, logout };
    }
    io.writeLines([internalDisplay(e)]);
    return { command, outcome: 'error', error: e, logout };
  }
}

/** `error (INTERNAL): first line of the message; see the log` */
export function internalDisplay(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const first = (message.split(/\r?\n/)[0] ?? '').trim() || 'unexpected failure';
  return `error (INTERNAL): ${truncateToWidth(first, 160)}; see the log`;
}

function builtinCommands(registry: CommandRegistry): CommandDefinition[] {
  return [
    {
      name: 'help',
      aliases: ['?'],
      summary: 'list the commands, or explain one',
      usage: 'help [COMMAND] [--json]',
      readOnly: true,
      maxArgs: 1,
      run(ctx) {
        const target = ctx.args[0];
        if (target === undefined) {
          const all = registry.list();
          if (ctx.json)
            return all.map((d) => ({
              name: d.name,
              summary: d.summary,
              usage: d.usage,
              readOnly: !!d.readOnly,
            }));
          // Summaries wrap under their column on an 80-column screen; nothing is cut.
          const w = Math.max(...all.map((d) => d.name.length));
          const lines = all.flatMap((d) =>
            wrapToWidth(d.summary, 80 - w - 2).map(
              (part, i) => `${(i === 0 ? d.name : '').padEnd(w)}  ${part}`,
            ),
          );
          return [...lines, '', "type 'help COMMAND' for details"].join('\n');
        }
        const def = registry.get(target);
        if (!def)
          throw new AgentError(
            'CONSOLE_UNKNOWN_COMMAND',
            `unknown command '${target.slice(0, 32)}'; type help`,
          );
        if (ctx.json)
          return {
            name: def.name,
            summary: def.summary,
            usage: def.usage,
            help: def.help ?? '',
            readOnly: !!def.readOnly,
          };
        return describeCommand(def).join('\n');
      },
    },
    {
      name: 'whoami',
      summary: 'show who is logged in',
      usage: 'whoami [--json]',
      readOnly: true,
      maxArgs: 0,
      run: (ctx) => ({
        technician: ctx.technician,
        loggedInAt: new Date(ctx.loggedInAt).toISOString(),
      }),
    },
    {
      name: 'logout',
      summary: 'end this session',
      usage: 'logout',
      maxArgs: 0,
      run(ctx) {
        ctx.logout();
      },
    },
    {
      name: 'clear',
      summary: 'clear the screen',
      usage: 'clear',
      maxArgs: 0,
      run(ctx) {
        ctx.clearScreen();
      },
    },
  ];
}
