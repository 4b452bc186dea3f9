/**
 * The technician console: one implementation over any Duplex stream (serial port, pty,
 * stdin/stdout, socket). What it promises:
 * - Before login nothing runs: input only ever leads to "login:", "PIN:" or a login
 *   refusal. The PIN is echoed as '*', and is never logged, audited or printed.
 * - Lines are handled one at a time, in the order typed. Bytes that arrive while a
 *   command runs wait (the stream is paused if they pile up), so output never
 *   interleaves and what a byte stream does never depends on how it was chunked.
 * - No byte sequence and no command failure stops the console: refusals print
 *   `refused (CODE): message`, anything else `error (INTERNAL): ...` and is logged.
 * - Logins, refusals, commands and logouts are reported to `audit`.
 */

import type { Duplex } from 'node:stream';
import { systemClock, type Clock } from '../../base/clock.ts';
import { AgentError } from '../../base/errors.ts';
import { silentLogger, type Logger } from '../../base/log.ts';
import {
  dummyPinHash,
  throttleError,
  validateTechnicians,
  verifyPin,
  waitText,
  type LoginThrottle,
  type Technician,
  type ThrottleDecision,
} from './auth.ts';
import { dispatchLine, internalDisplay, type CommandRegistry } from './commands.ts';
import { InputQueue } from './input-queue.ts';
import { LineEditor, type LineEvent } from './line-editor.ts';
import { sanitizeForTerminal } from './text.ts';
import { ConsoleAudit } from './console-audit.ts';
import { exitKeys, type ConsoleOptions } from './console-options.ts';
import {
  auditId,
  commandAudit,
  NoticePoller,
  waitForDrain,
  whyNotAnId,
} from './console-support.ts';
export type { ConsoleOptions };

type Session =
  | { readonly state: 'login' }
  | { readonly state: 'pin'; readonly id: string }
  | { readonly state: 'shell'; readonly technician: string; readonly since: number };

/** How long to wait for a slow terminal to take a command's output. */
const drainTimeoutMs = 5000;

/** A console session on one stream. */
export class Console {
  private readonly stream: Duplex;
  private readonly commands: CommandRegistry;
  private readonly technicians: ReadonlyMap<string, Technician>;
  private readonly throttle: LoginThrottle;
  private readonly trail: ConsoleAudit;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly banner: string;
  private readonly promptFn: () => string;
  private readonly idleMs: number;
  private readonly editor: LineEditor;
  private readonly onExitKey: (() => void) | undefined;
  private readonly notices: NoticePoller | undefined;
  /** Verified against for unknown ids, so a wrong id costs as long as a wrong PIN. */
  private readonly dummyHash: string;

  private session: Session = { state: 'login' };
  private readonly input: InputQueue;
  private running: AbortController | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;

  private readonly onData = (chunk: Buffer | string): void => this.receive(chunk);
  private readonly onEnd = (): void => this.shutdown('disconnected');
  private readonly onError = (err: Error): void => {
    this.log.warn({ err }, 'console stream failed');
    this.shutdown('disconnected');
  };

  constructor(options: ConsoleOptions) {
    this.stream = options.stream;
    this.commands = options.commands;
    const technicians = validateTechnicians(options.auth.technicians);
    this.technicians = new Map(technicians.map((t) => [t.id.toLowerCase(), t]));
    this.throttle = options.auth.throttle;
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? silentLogger()).child({ component: 'console' });
    this.trail = new ConsoleAudit(options.audit, this.log);
    this.banner = options.banner ?? 'pos-agent technician console';
    this.promptFn = options.prompt ?? (() => '> ');
    this.idleMs = options.idleTimeoutMs ?? 5 * 60_000;
    this.onExitKey = options.onExitKey;
    this.notices =
      options.notices &&
      new NoticePoller({
        poll: options.notices,
        intervalMs: options.noticeIntervalMs ?? 1000,
        // Only between commands, to a logged-in technician.
        ready: () => !this.stopped && this.session.state === 'shell' && !this.input.busy,
        show: (lines) => this.showNotices(lines),
        log: this.log,
      });
    this.editor = new LineEditor({ maxLineBytes: options.maxLineBytes ?? 512 });
    this.input = new InputQueue({
      stream: this.stream,
      editor: this.editor,
      echo: (text) => this.write(text),
      handle: (event) => this.handle(event),
    });
    this.dummyHash = dummyPinHash(technicians);
    if (technicians.length === 0) this.log.warn('no technicians are configured; nobody can log in');
  }

  /** The logged-in technician, if any. */
  get technician(): string | undefined {
    return this.session.state === 'shell' ? this.session.technician : undefined;
  }

  /** Shows the banner and the login prompt, and starts reading. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.stream.on('data', this.onData);
    this.stream.on('end', this.onEnd);
    this.stream.on('close', this.onEnd);
    this.stream.on('error', this.onError);
    this.showBanner();
    this.write('login: ');
    this.armIdle();
    this.notices?.start();
  }

  /** Shows what changed by itself, above a fresh prompt and the line being typed. */
  private showNotices(lines: readonly string[]): void {
    this.write('\r\n');
    this.writeLines(lines);
    this.promptShell();
    this.write(this.editor.redraw());
  }

  /**
   * Stops reading, logs out and aborts a running command's signal; resolves once that
   * command finished (or after a few seconds if it ignores the signal).
   */
  async stop(): Promise<void> {
    this.shutdown('stopped');
    let timer: NodeJS.Timeout | undefined;
    const giveUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, drainTimeoutMs)));
    await Promise.race([this.input.close(), giveUp]);
    clearTimeout(timer);
  }

  private shutdown(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.trail.flush();
    clearTimeout(this.idleTimer);
    this.notices?.stop();
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    // Keep a no-op error listener: a late write error must not become an uncaught exception.
    this.stream.off('error', this.onError);
    this.stream.on('error', () => {});
    this.running?.abort();
    void this.input.close();
    if (this.session.state === 'shell')
      this.audit('logout', { technician: this.session.technician, reason });
    this.session = { state: 'login' };
    this.editor.reset();
    this.editor.clearHistory();
  }

  private receive(chunk: Buffer | string): void {
    if (this.stopped) return;
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    this.armIdle();
    if (this.onExitKey && bytes.some((b) => exitKeys.includes(b))) {
      this.running?.abort();
      this.write('\r\n');
      this.onExitKey();
      return;
    }
    // Ctrl-C while a command runs also asks it to stop; the byte itself is still
    // processed in order, where it cancels whatever was typed ahead.
    if (this.running && bytes.includes(0x03)) this.running.abort();
    this.input.push(bytes);
  }

  private async handle(event: LineEvent): Promise<void> {
    try {
      if (this.session.state === 'login') this.onLoginLine(event);
      else if (this.session.state === 'pin') await this.onPinLine(this.session.id, event);
      else await this.onShellLine(this.session, event);
    } catch (e) {
      // Only a bug gets here; fail closed to the login prompt unless already logged in.
      this.log.error({ err: e }, 'console failed to handle a line');
      this.writeLines([internalDisplay(e)]);
      if (this.session.state !== 'shell') this.toLogin();
    }
  }

  private onLoginLine(event: LineEvent): void {
    const line = event.kind === 'line' ? event.text.trim() : '';
    if (line === '') return this.toLogin();
    if (this.onExitKey && (line === 'quit' || line === 'exit')) return this.onExitKey();
    const why = whyNotAnId(line, this.technicians, this.commands);
    // Said, not silently re-prompted; and not counted as a failed login.
    if (why) {
      this.writeLines([new AgentError('CONSOLE_LOGIN_REQUIRED', why).toDisplay()]);
      return this.toLogin();
    }
    const decision = this.throttle.check();
    if (!decision.allowed) return this.refuseThrottled(line, decision);
    this.session = { state: 'pin', id: line };
    this.editor.masked = true;
    this.write('PIN: ');
  }

  private async onPinLine(id: string, event: LineEvent): Promise<void> {
    this.editor.masked = false;
    this.session = { state: 'login' };
    if (event.kind !== 'line') return this.toLogin();
    // Checked again here: another console sharing the throttle store may have locked it.
    const decision = this.throttle.check();
    if (!decision.allowed) return this.refuseThrottled(id, decision);
    const tech = this.technicians.get(id.toLowerCase());
    const ok = (await verifyPin(event.text, tech?.pinHash ?? this.dummyHash)) && tech !== undefined;
    if (this.stopped) return;
    if (ok) {
      this.throttle.recordSuccess();
      this.session = { state: 'shell', technician: tech.id, since: this.clock.now() };
      this.audit('login', { technician: tech.id });
      this.log.info({ technician: tech.id }, 'technician logged in');
      this.writeLines([`logged in as ${tech.id}; type help for the commands`]);
      this.promptShell();
      return;
    }
    const who = auditId(tech);
    const after = this.throttle.recordFailure();
    this.audit('login-failed', { technician: who, failures: after.failures });
    this.log.warn({ technician: who, failures: after.failures }, 'technician login failed');
    this.writeLines([new AgentError('CONSOLE_LOGIN_FAILED').toDisplay()]);
    if (!after.allowed) {
      if (after.code === 'CONSOLE_LOCKED_OUT') {
        this.log.warn({ failures: after.failures, lockoutMs: after.waitMs }, 'console locked out');
        this.audit('login-locked-out', {
          technician: who,
          failures: after.failures,
          lockoutMs: after.waitMs,
        });
      }
      this.writeLines([throttleError(after).toDisplay()]);
    }
    this.write('login: ');
  }

  private refuseThrottled(
    id: string,
    decision: Extract<ThrottleDecision, { allowed: false }>,
  ): void {
    const who = auditId(this.technicians.get(id.toLowerCase()));
    this.audit('login-refused', { technician: who, code: decision.code, waitMs: decision.waitMs });
    this.log.info({ technician: who, code: decision.code }, 'technician login refused');
    this.writeLines([throttleError(decision).toDisplay()]);
    this.write('login: ');
  }

  private async onShellLine(
    session: Extract<Session, { state: 'shell' }>,
    event: LineEvent,
  ): Promise<void> {
    if (event.kind === 'too-long') {
      const e = new AgentError(
        'CONSOLE_LINE_TOO_LONG',
        `the line is longer than ${event.maxBytes} bytes; nothing was run`,
      );
      this.audit('command', {
        technician: session.technician,
        command: '(too long)',
        outcome: 'refused',
        code: e.code,
      });
      this.writeLines([e.toDisplay()]);
    } else if (event.kind === 'line' && event.text.trim() !== '') {
      this.editor.remember(event.text);
      await this.runCommand(session, event.text);
    }
    if (this.session.state === 'shell') this.promptShell();
  }

  private async runCommand(
    session: Extract<Session, { state: 'shell' }>,
    text: string,
  ): Promise<void> {
    const started = this.clock.now();
    let first: string | undefined;
    const result = await dispatchLine(this.commands, text, {
      technician: session.technician,
      loggedInAt: session.since,
      writeLines: (lines) => {
        first ??= lines.find((l) => l.trim() !== '');
        this.writeLines(lines);
      },
      clearScreen: () => this.write('\x1b[2J\x1b[H'),
      setRunning: (controller) => (this.running = controller),
    });
    const detail = commandAudit(session.technician, text, result, first, this.commands);
    const { command, outcome } = detail;
    if (outcome === 'ok' && this.commands.get(command)?.readOnly)
      this.trail.afterAnswer('command', detail);
    else this.audit('command', detail);
    if (outcome === 'error')
      this.log.error({ err: result.error, command }, 'console command failed');
    else this.log.info({ ...detail, ms: this.clock.now() - started }, 'console command');
    this.notices?.drop();
    if (!this.stopped) await waitForDrain(this.stream, drainTimeoutMs);
    if (result.logout) this.logout('command');
  }

  private logout(reason: 'command' | 'idle'): void {
    if (this.session.state !== 'shell') return;
    const technician = this.session.technician;
    this.session = { state: 'login' };
    this.editor.reset();
    this.editor.clearHistory();
    this.audit('logout', { technician, reason });
    this.log.info({ technician, reason }, 'technician logged out');
    if (reason === 'idle') this.write('\r\n');
    this.writeLines([
      reason === 'idle' ? `no input for ${waitText(this.idleMs)}; logged out` : 'logged out',
    ]);
    this.showBanner();
    this.write('login: ');
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.stopped || !(this.idleMs > 0 && this.idleMs < 2 ** 31)) return;
    this.idleTimer = setTimeout(() => this.onIdle(), this.idleMs);
    this.idleTimer.unref();
  }

  private onIdle(): void {
    if (this.stopped) return;
    // A long command (a settlement) is not idleness; wait for it to finish.
    if (this.input.busy) return this.armIdle();
    if (this.session.state === 'shell') return this.logout('idle');
    if (this.session.state === 'pin' || this.editor.text !== '') {
      // A half-typed login is abandoned so the next person starts clean.
      this.write('\r\n');
      this.toLogin();
    }
  }

  private toLogin(): void {
    this.session = { state: 'login' };
    this.editor.reset();
    this.editor.masked = false;
    this.write('login: ');
  }

  private promptShell(): void {
    let prompt: string;
    try {
      prompt = this.promptFn();
    } catch (e) {
      this.log.warn({ err: e }, 'console prompt failed');
      prompt = '> ';
    }
    this.write(sanitizeForTerminal(prompt));
  }

  private showBanner(): void {
    this.writeLines(this.banner.split(/\r?\n/));
  }

  private audit(event: string, detail: Record<string, unknown>): void {
    this.trail.now(event, detail);
  }

  /** Writes lines of untrusted text, sanitised, each ended with CRLF for serial terminals. */
  private writeLines(lines: readonly string[]): void {
    if (lines.length > 0) this.write(lines.map((l) => sanitizeForTerminal(l) + '\r\n').join(''));
  }

  private write(text: string): void {
    const s = this.stream;
    if (text === '' || this.stopped || s.destroyed || !s.writable) return;
    try {
      s.write(text);
    } catch (e) {
      this.log.warn({ err: e }, 'console write failed');
    }
  }
}
