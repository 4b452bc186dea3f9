import { parseArgs, type ParseArgsConfig } from 'node:util';
import { AgentError } from '../../base/errors.ts';

/**
 * What a CLI command is: its words, its usage line, the options it takes and a small
 * handler. main.ts dispatches on a table of these, so adding a command is one entry in a
 * list and the usage errors, `--help` and exit codes come for free and alike.
 */

type CliOptions = NonNullable<ParseArgsConfig['options']>;
export type CliValues = Record<string, string | boolean | string[] | undefined>;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  readonly env: NodeJS.ProcessEnv;
  /** Screen width for tables; undefined when piped (nothing is cut then). */
  readonly columns?: number;
}

export interface CliContext {
  /** The arguments after the command's words, as given. */
  readonly args: readonly string[];
  readonly values: CliValues;
  readonly positionals: readonly string[];
  readonly io: CliIo;
  readonly command: CliCommand;
}

export interface CliCommand {
  /** The words that select it: `status`, `journal tail`. */
  readonly name: string;
  /** What follows the words in the usage line: `--data DIR [-n N] [--json]`. */
  readonly args?: string;
  /** One line for `--help`. */
  readonly summary: string;
  /** node:util parseArgs options; `--help`/`-h` are added for every command. */
  readonly options?: CliOptions;
  /** Names of the positional arguments it requires, in order (e.g. ['SEQ']). */
  readonly positionals?: readonly string[];
  /** Returns the exit code (see exit-codes.ts). */
  run(ctx: CliContext): Promise<number> | number;
}

export function usageLine(c: CliCommand): string {
  return `pos-agent ${c.name}${c.args ? ` ${c.args}` : ''}`;
}

/** A usage error: main prints it as one line plus the command's usage, exit 64. */
export function usageError(message: string): AgentError {
  return new AgentError('CONSOLE_BAD_ARGUMENTS', message, { usage: true });
}

/**
 * Parses a command's arguments strictly: an unknown option, a missing or ambiguous value,
 * or a stray positional is a usage error in plain words (node's own messages suggest
 * `--` tricks that do not help an operator).
 */
export function parseCommandArgs(
  c: CliCommand,
  args: readonly string[],
): { values: CliValues; positionals: string[]; help: boolean } {
  let parsed: { values: CliValues; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...c.options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: true,
    }) as { values: CliValues; positionals: string[] };
  } catch (e) {
    throw usageError(describeParseError(e));
  }
  const help = parsed.values.help === true;
  const want = c.positionals ?? [];
  if (!help && parsed.positionals.length < want.length)
    throw usageError(`${want[parsed.positionals.length]} is missing`);
  if (parsed.positionals.length > want.length)
    throw usageError(`unexpected argument '${clip(parsed.positionals[want.length] ?? '')}'`);
  return { values: parsed.values, positionals: parsed.positionals, help };
}

function describeParseError(e: unknown): string {
  const code = (e as { code?: string }).code ?? '';
  const message = e instanceof Error ? e.message : String(e);
  const names = /Option '([^']+?)(?: <value>)?'/.exec(message)?.[1]?.split(', ') ?? [];
  // `-n, --n` is shown as typed most often: the short form when the long one is one letter.
  const option = names.find((n) => /^-\w$/.test(n)) ?? names.at(-1);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const name = /Unknown option '([^']+)'/.exec(message)?.[1] ?? '?';
    return `unknown option ${clip(name)}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if (/does not take an argument/.test(message)) return `${option} takes no value`;
    if (/ambiguous/.test(message))
      return `${option} needs a value (a value starting with '-' is not one)`;
    return `${option} needs a value`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /Unexpected argument '([^']*)'/.exec(message)?.[1] ?? '';
    return `unexpected argument '${clip(arg)}'`;
  }
  return (message.split('\n')[0] ?? 'bad arguments').trim();
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/** A whole-number option in [min, max]; absent gives `fallback`. */
export function intOption(
  values: CliValues,
  name: string,
  range: { min: number; max: number; fallback: number },
): number {
  const raw = values[name];
  if (raw === undefined) return range.fallback;
  const s = String(raw);
  const n = Number(s);
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(n) || n < range.min || n > range.max)
    throw usageError(
      `--${name} takes a whole number from ${range.min} to ${range.max}, not '${clip(s)}'`,
    );
  return n;
}

/** A string option that must be there (or come from the environment variable named). */
export function requiredOption(
  values: CliValues,
  name: string,
  io: CliIo,
  envName?: string,
): string {
  const v = values[name] ?? (envName ? io.env[envName] : undefined);
  if (typeof v !== 'string' || v === '')
    throw usageError(`--${name} is required${envName ? ` (or ${envName})` : ''}`);
  return v;
}
