/**
 * Turns a console line into argv and flags.
 *
 * Quoting follows the shell closely enough that technicians need not learn anything:
 * `"..."` and `'...'` group words, a backslash escapes the next character outside
 * single quotes. Flags are strict: a command declares the flags it takes and anything
 * else is refused, because a mistyped `--forse` on a state-changing command must not be
 * silently ignored.
 */

import { AgentError } from '../../base/errors.ts';

/** How a flag takes its value: `--name` alone, or `--name value` / `--name=value`. */
type FlagType = 'boolean' | 'string';

/** The flags a command accepts, by name (without the leading `--`). */
export type FlagSpec = Readonly<Record<string, FlagType>>;

/** Parsed flags: `true` for boolean flags, the text for string flags. */
export type Flags = Readonly<Record<string, string | true>>;

export interface ParsedArgs {
  readonly args: string[];
  readonly flags: Flags;
}

const flagName = /^[a-z][a-z0-9-]*$/;

function bad(message: string, context: Record<string, unknown> = {}): AgentError {
  return new AgentError('CONSOLE_BAD_ARGUMENTS', message, context);
}

/**
 * Splits a line into words, honouring quotes and backslashes.
 * @throws AgentError CONSOLE_BAD_ARGUMENTS on an unbalanced quote or a trailing backslash.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = '';
  // A word exists once anything, even an empty pair of quotes, was seen.
  let inWord = false;
  let quote: '"' | "'" | undefined;
  const chars = [...line];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] as string;
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else word += ch;
      continue;
    }
    if (ch === '\\') {
      const next = chars[i + 1];
      if (next === undefined) throw bad('the line ends with a backslash');
      // Inside double quotes only \" and \\ are escapes, as in the shell; elsewhere
      // there the backslash is literal and the next character is read normally.
      if (quote === '"' && next !== '"' && next !== '\\') {
        word += ch;
      } else {
        word += next;
        i++;
      }
      inWord = true;
      continue;
    }
    if (quote === '"') {
      if (ch === '"') quote = undefined;
      else word += ch;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (quote !== undefined) throw bad(`unbalanced ${quote === '"' ? 'double' : 'single'} quote`);
  if (inWord) words.push(word);
  return words;
}

/**
 * Separates flags from positional arguments. `--` ends the flags; a single `-` word
 * (or `-5`) is positional so negative numbers pass through.
 * @throws AgentError CONSOLE_BAD_ARGUMENTS on an undeclared, repeated or valueless flag.
 */
export function parseArgs(words: readonly string[], spec: FlagSpec): ParsedArgs {
  const args: string[] = [];
  const flags: Record<string, string | true> = {};
  let flagsEnded = false;
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    if (flagsEnded || !word.startsWith('--')) {
      args.push(word);
      continue;
    }
    if (word === '--') {
      flagsEnded = true;
      continue;
    }
    const eq = word.indexOf('=');
    const name = word.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : word.slice(eq + 1);
    const type = flagName.test(name) && Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (type === undefined)
      throw bad(`unknown flag --${name.slice(0, 32)}`, { flag: name.slice(0, 32) });
    if (Object.hasOwn(flags, name)) throw bad(`flag --${name} is given twice`, { flag: name });
    if (type === 'boolean') {
      if (inline !== undefined) throw bad(`flag --${name} takes no value`, { flag: name });
      flags[name] = true;
      continue;
    }
    if (inline !== undefined) {
      flags[name] = inline;
      continue;
    }
    const next = words[i + 1];
    if (next === undefined || next.startsWith('--')) {
      throw bad(`flag --${name} needs a value`, { flag: name });
    }
    flags[name] = next;
    i++;
  }
  return { args, flags };
}
