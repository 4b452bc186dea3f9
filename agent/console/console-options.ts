import type { Duplex } from 'node:stream';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import type { LoginThrottle, Technician } from './auth.ts';
import type { CommandRegistry } from './commands.ts';

/** Receives evidence events: login, login-failed, login-locked-out, login-refused, logout, command. */
export type AuditFn = (event: string, detail: Record<string, unknown>) => void;

export interface ConsoleOptions {
  /** The technician's terminal. The console never closes it; whoever opened it does. */
  readonly stream: Duplex;
  readonly commands: CommandRegistry;
  readonly auth: { readonly technicians: readonly Technician[]; readonly throttle: LoginThrottle };
  readonly audit: AuditFn;
  /** Dates sessions and audit events. Default: system clock. */
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Shown on start and after each logout; may span lines. */
  readonly banner?: string;
  /** Shell prompt, asked afresh after every command, e.g. `T0001 active> `. */
  readonly prompt?: () => string;
  /** Log out after this long without a keystroke. Default 5 minutes; 0 disables. */
  readonly idleTimeoutMs?: number;
  /** Longest line in bytes. Default 512. */
  readonly maxLineBytes?: number;
  /**
   * The demo's way out: when given, Ctrl-C, Ctrl-D and Ctrl-\\ (and `quit` at the login
   * prompt) call it at any point, logged in or not, instead of editing the line. A real
   * terminal's console has none: there Ctrl-C cancels the line.
   */
  readonly onExitKey?: () => void;
  /**
   * Asked about once a second while a technician is logged in and idle: lines to show
   * unprompted (the acquirer decided a review, a lock came or went). Also asked, and its
   * answer dropped, after each command, whose own output already told what it changed.
   */
  readonly notices?: () => readonly string[];
  /** How often `notices` is asked. Default 1000 ms. */
  readonly noticeIntervalMs?: number;
}

/** Ctrl-C, Ctrl-D, Ctrl-\\: the demo's way out (see `onExitKey`). */
export const exitKeys: readonly number[] = [0x03, 0x04, 0x1c];
