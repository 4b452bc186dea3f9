/** The console's helpers: what a command leaves in the audit trail, notices, output drain. */
import type { Duplex } from 'node:stream';
import type { Logger } from '../../base/log.ts';
import type { CommandDefinition, CommandRegistry, DispatchResult } from './commands.ts';
import { technicianIdPattern, type Technician } from './auth.ts';
import { sanitizeForTerminal } from './text.ts';

/**
 * The command line as the audit trail keeps it: a known command's words (its arguments
 * withheld when it declares them secret), never the text of an unknown command, which
 * could be a PIN typed at the wrong prompt.
 */
function auditLine(text: string, def: CommandDefinition | undefined): string {
  if (!def) return '(not a command)';
  const clean = sanitizeForTerminal(text.trim()).slice(0, 200);
  if (!def.secretArgs) return clean;
  const [word] = clean.split(/\s+/);
  return clean === word ? clean : `${word} [arguments withheld]`;
}

/**
 * Unknown ids are audited as '(unknown)': a technician who types the PIN at the
 * "login:" prompt must not find it in the audit trail.
 */
export function auditId(tech: Technician | undefined): string {
  return tech?.id ?? '(unknown)';
}

/** The `console-command` audit row of one line. */
export function commandAudit(
  technician: string,
  text: string,
  result: DispatchResult,
  firstOutput: string | undefined,
  commands: CommandRegistry,
) {
  const { outcome, code } = result;
  // An unknown word is not kept: it could be a PIN typed at the wrong prompt.
  const unknown = code === 'CONSOLE_UNKNOWN_COMMAND';
  const command = unknown ? '(unknown)' : result.command;
  return {
    technician,
    command,
    line: auditLine(text, unknown ? undefined : commands.get(command)),
    outcome,
    ...(code ? { code } : {}),
    result: unknown ? `refused (${code})` : sanitizeForTerminal(firstOutput ?? '').slice(0, 160),
  };
}

/**
 * Asks `poll` for news every `intervalMs` while `ready`, and shows what it returns. `drop`
 * asks and discards (after a command, whose own output told what it changed).
 */
export class NoticePoller {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: {
      poll: () => readonly string[];
      intervalMs: number;
      ready: () => boolean;
      show: (lines: readonly string[]) => void;
      log: Logger;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  drop(): void {
    try {
      this.o.poll();
    } catch {
      // Reported by the next tick.
    }
  }

  private tick(): void {
    if (!this.o.ready()) return;
    try {
      const lines = this.o.poll();
      if (lines.length > 0) this.o.show(lines);
    } catch (e) {
      this.o.log.warn({ err: e }, 'console notices failed');
    }
  }
}

/** Waits for a slow terminal (9600 baud) to take the output, but never forever. */
export function waitForDrain(s: Duplex, timeoutMs: number): Promise<void> {
  if (s.destroyed || !s.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    s.once('drain', done);
    s.once('close', done);
  });
}

/** Why a line typed at "login:" is not taken as a technician id, or undefined when it may be one. */
export function whyNotAnId(
  line: string,
  technicians: ReadonlyMap<string, Technician>,
  commands: CommandRegistry,
): string | undefined {
  const first = line.split(/\s+/)[0] ?? '';
  if (!technicians.has(first.toLowerCase()) && commands.get(first))
    return `not logged in: '${first.slice(0, 32)}' is a command. Type your technician id, then your PIN`;
  if (!technicianIdPattern.test(line))
    return 'that is not a technician id (letters, digits, dot, dash, underscore); type your id, then your PIN';
  return undefined;
}
