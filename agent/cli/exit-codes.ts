import { isAgentError } from '../../base/errors.ts';

/**
 * Every exit code the CLI uses, in one place: `--help` prints this table and
 * docs/cli.md carries the same one (a test compares them). The 64+ codes are the BSD
 * sysexits a supervisor or script already knows.
 */
export const EXIT = {
  OK: 0,
  CHECK_FAILED: 1,
  REFUSED: 2,
  USAGE: 64,
  NO_INPUT: 66,
  SOFTWARE: 70,
  IN_USE: 75,
  CONFIG: 78,
} as const;

export const exitCodeTable: ReadonlyArray<readonly [number, string]> = [
  [EXIT.OK, 'done'],
  [EXIT.CHECK_FAILED, 'a check failed: journal verify found a row that does not match'],
  [EXIT.REFUSED, 'refused: the data or the agent does not allow it (the message says why)'],
  [EXIT.USAGE, 'usage error: unknown command or option, missing or bad value (EX_USAGE)'],
  [EXIT.NO_INPUT, 'no journal in the data directory given (EX_NOINPUT)'],
  [EXIT.SOFTWARE, 'internal error, a bug: please report it with the log (EX_SOFTWARE)'],
  [EXIT.IN_USE, 'the data directory is in use by another process (EX_TEMPFAIL)'],
  [EXIT.CONFIG, 'the configuration is invalid or a file it names is missing (EX_CONFIG)'],
];

/** The exit code an error ends the CLI with. */
export function exitCodeOf(e: unknown): number {
  if (!isAgentError(e)) return EXIT.SOFTWARE;
  if (e.code === 'CONSOLE_BAD_ARGUMENTS') return EXIT.USAGE;
  if (e.area === 'config') return EXIT.CONFIG;
  if (e.code === 'STORAGE_IN_USE') return EXIT.IN_USE;
  if (e.code === 'STORAGE_NOT_FOUND' && e.context.noJournal === true) return EXIT.NO_INPUT;
  return EXIT.REFUSED;
}

export function exitCodesHelp(): string {
  return exitCodeTable.map(([c, m]) => `  ${String(c).padStart(2)}  ${m}`).join('\n');
}
