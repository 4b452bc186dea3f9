/**
 * The console's line discipline, as a pure state machine: bytes in, echo and events out.
 *
 * Serial terminals (screen, picocom, minicom) send raw keystrokes and show only what we
 * echo, so this does what a Unix tty in canonical mode would: collect printable
 * characters, erase on backspace, end a line on CR, LF or CRLF, cancel on Ctrl-C; and
 * what a shell's line editor adds: the cursor moves with left/right and home/end (as
 * xterm, screen and picocom send them: ESC [ C, ESC O C, ESC [ 1 ~, ESC [ H, ...; also
 * Ctrl-A, Ctrl-E, Ctrl-B, Ctrl-F), Delete erases under it, and up/down walk the history
 * of lines the console chose to `remember` (never a PIN). Echo uses only BS, spaces and
 * the characters themselves, so it works on a terminal without ANSI support.
 * It never performs I/O and never throws; every byte sequence leaves it in a valid state,
 * and its memory is bounded by `maxLineBytes` and the history size.
 *
 * The processing of a byte stream does not depend on how it is chunked: a CRLF split
 * across two chunks is still one line end, a UTF-8 character split across chunks is
 * still one character.
 */

import { LineBuffer } from './line-buffer.ts';

/** What a completed line produced. */
export type LineEvent =
  /** Enter was pressed; `text` holds only printable characters. */
  | { readonly kind: 'line'; readonly text: string }
  /** Ctrl-C: the line was discarded. */
  | { readonly kind: 'cancel' }
  /** Enter was pressed on a line that grew past the limit; it must not be executed. */
  | { readonly kind: 'too-long'; readonly maxBytes: number };

/** Result of feeding a chunk: bytes to echo back to the terminal, and completed lines. */
export interface FeedResult {
  readonly echo: string;
  readonly events: LineEvent[];
}

/** Result of feeding up to the first event; `next` is the offset of the first unread byte. */
export interface StepResult {
  readonly echo: string;
  readonly event: LineEvent | undefined;
  readonly next: number;
}

export interface LineEditorOptions {
  /** Longest line in UTF-8 bytes; longer lines are reported as 'too-long'. Default 512. */
  readonly maxLineBytes?: number;
  /** Echo '*' instead of the characters typed (PIN entry). Default false. */
  readonly masked?: boolean;
}

const BEL = 0x07;
const SOH = 0x01; // Ctrl-A: home
const STX = 0x02; // Ctrl-B: left
const ENQ = 0x05; // Ctrl-E: end
const ACK = 0x06; // Ctrl-F: right
const BS = 0x08;
const LF = 0x0a;
const CR = 0x0d;
const ETX = 0x03; // Ctrl-C
const NAK = 0x15; // Ctrl-U
const ETB = 0x17; // Ctrl-W
const CAN = 0x18;
const SUB = 0x1a;
const ESC = 0x1b;
const DEL = 0x7f;

const historySize = 50;

/**
 * Where we are inside an escape sequence. 'esc' follows ESC, 'csi' follows ESC [
 * (arrow keys, function keys), 'ss3' follows ESC O (application-mode arrows), 'string'
 * is inside an OSC/DCS/APC/PM/SOS string that ends with BEL or ESC \.
 */
type EscapeState = 'none' | 'esc' | 'csi' | 'ss3' | 'string' | 'string-esc';

/** A line editor for one terminal session. */
export class LineEditor {
  /** Longest accepted line in UTF-8 bytes. */
  readonly maxLineBytes: number;
  /** When true, characters are echoed as '*'; switch it only between lines. */
  get masked(): boolean {
    return this.buf.masked;
  }
  set masked(on: boolean) {
    this.buf.masked = on;
  }

  private readonly buf: LineBuffer;
  private history: string[] = [];
  /** Position while walking the history; history.length means the line being typed. */
  private historyAt = 0;
  private draft = '';
  private escParams = '';
  private afterCR = false;
  private escape: EscapeState = 'none';
  private utf8: number[] = [];
  private utf8Need = 0;
  private out = '';

  constructor(options: LineEditorOptions = {}) {
    const max = options.maxLineBytes ?? 512;
    // A limit under 1 would refuse every line; fall back rather than throw in a console.
    this.maxLineBytes = Number.isSafeInteger(max) && max >= 1 ? max : 512;
    this.buf = new LineBuffer(this.maxLineBytes, (echo) => (this.out += echo));
    this.buf.masked = options.masked ?? false;
  }

  /** The characters typed so far on the current line. */
  get text(): string {
    return this.buf.text;
  }

  /** Feeds a whole chunk; strings are taken as UTF-8. */
  feed(chunk: Uint8Array | string): FeedResult {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let echo = '';
    const events: LineEvent[] = [];
    let i = 0;
    while (i < bytes.length) {
      const step = this.feedUntilEvent(bytes, i);
      echo += step.echo;
      if (step.event) events.push(step.event);
      i = step.next;
    }
    return { echo, events };
  }

  /**
   * Feeds bytes from `start` and stops right after the first completed event. The
   * console uses this so that what follows a line is processed only after that line
   * was handled, in the mode it left behind (for example masked for the PIN).
   */
  feedUntilEvent(bytes: Uint8Array, start = 0): StepResult {
    this.out = '';
    for (let i = start; i < bytes.length; i++) {
      const event = this.byte(bytes[i] as number);
      if (event) return { echo: this.out, event, next: i + 1 };
    }
    return { echo: this.out, event: undefined, next: bytes.length };
  }

  /**
   * Forgets the current line and any half-read sequence (idle timeout, logout). A CR
   * just seen is remembered: the LF of that same Enter key must not become a line.
   */
  reset(): void {
    this.clearLine();
    this.escape = 'none';
    this.utf8 = [];
    this.utf8Need = 0;
  }

  /** The line as typed so far, to write again after a notice, the cursor where it was. */
  redraw(): string {
    return this.buf.redraw();
  }

  /** Adds a line to the history (up/down); empty lines and repeats are skipped. */
  remember(line: string): void {
    if (line.trim() === '' || this.history.at(-1) === line) return;
    this.history.push(line);
    if (this.history.length > historySize) this.history.shift();
    this.historyAt = this.history.length;
  }

  /** Forgets the history (at logout: the next technician does not see it). */
  clearHistory(): void {
    this.history = [];
    this.historyAt = 0;
    this.draft = '';
  }

  private byte(b: number): LineEvent | undefined {
    const wasCR = this.afterCR;
    this.afterCR = false;
    // The LF of a CRLF ends nothing: the CR already ended the line.
    if (b === LF && wasCR) return undefined;

    if (this.escape !== 'none' && !this.escapeByte(b)) return undefined;

    if (this.utf8Need > 0) {
      if (this.continues(b)) {
        this.utf8.push(b);
        if (--this.utf8Need === 0) {
          const ch = Buffer.from(this.utf8).toString('utf8');
          this.utf8 = [];
          this.buf.insert(ch);
        }
        return undefined;
      }
      // Invalid UTF-8: drop the partial character, then read this byte afresh.
      this.utf8 = [];
      this.utf8Need = 0;
    }

    switch (b) {
      case CR:
        this.afterCR = true;
        return this.endLine();
      case LF:
        return this.endLine();
      case BS:
      case DEL:
        this.buf.erase(1);
        return undefined;
      case ETX:
        this.out += '^C\r\n';
        this.clearLine();
        return { kind: 'cancel' };
      case NAK:
        this.buf.replaceLine('');
        return undefined;
      case SOH:
        this.buf.home();
        return undefined;
      case ENQ:
        this.buf.end();
        return undefined;
      case STX:
        this.buf.left();
        return undefined;
      case ACK:
        this.buf.right();
        return undefined;
      case ETB:
        this.buf.eraseWord();
        return undefined;
      case ESC:
        this.escape = 'esc';
        return undefined;
    }
    if (b < 0x20) return undefined;
    if (b < 0x80) {
      this.buf.insert(String.fromCharCode(b));
      return undefined;
    }
    const need =
      b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    if (need > 0) {
      this.utf8 = [b];
      this.utf8Need = need;
    }
    // need === 0: a stray continuation byte or an impossible lead byte; dropped.
    return undefined;
  }

  /** Whether `b` validly continues the partial UTF-8 character (no overlongs, surrogates or > U+10FFFF). */
  private continues(b: number): boolean {
    if (b < 0x80 || b > 0xbf) return false;
    if (this.utf8.length !== 1) return true;
    switch (this.utf8[0]) {
      case 0xe0:
        return b >= 0xa0;
      case 0xed:
        return b <= 0x9f;
      case 0xf0:
        return b >= 0x90;
      case 0xf4:
        return b <= 0x8f;
      default:
        return true;
    }
  }

  /**
   * Consumes one byte of an escape sequence. Returns true when the byte ended the
   * sequence without belonging to it and must be processed as ordinary input: C0
   * controls do that, so a CR always ends the line even after a stray ESC.
   */
  private escapeByte(b: number): boolean {
    const inString = this.escape === 'string' || this.escape === 'string-esc';
    if (b === ESC) {
      this.escape = inString ? 'string-esc' : 'esc';
      return false;
    }
    if (this.escape === 'string-esc') {
      if (b === 0x5c) {
        this.escape = 'none';
        return false;
      }
      // ESC followed by anything else inside a string starts a new sequence.
      this.escape = 'esc';
    }
    if (b < 0x20) {
      this.escape = 'none';
      return !(b === CAN || b === SUB || (b === BEL && inString));
    }
    if (b === DEL) return false;
    switch (this.escape) {
      case 'string':
        return false;
      case 'esc':
        this.escParams = '';
        if (b === 0x5b) this.escape = 'csi';
        else if (b === 0x4f) this.escape = 'ss3';
        else if (b === 0x5d || b === 0x50 || b === 0x58 || b === 0x5e || b === 0x5f)
          this.escape = 'string';
        else if (b >= 0x30 && b <= 0x7e) this.escape = 'none';
        else if (b >= 0x80) return this.abortEscape();
        return false;
      case 'csi':
      case 'ss3':
        if (b >= 0x40 && b <= 0x7e) {
          this.escape = 'none';
          this.key(String.fromCharCode(b), this.escParams);
        } else if (b >= 0x80) return this.abortEscape();
        else if (b >= 0x30 && b <= 0x3f && this.escParams.length < 16)
          this.escParams += String.fromCharCode(b);
        return false;
      default:
        return false;
    }
  }

  private abortEscape(): boolean {
    this.escape = 'none';
    return true;
  }

  /** An editing key from a CSI or SS3 sequence: arrows, home, end, delete. */
  private key(final: string, params: string): void {
    const first = params.split(';')[0];
    if (final === 'A') this.walkHistory(-1);
    else if (final === 'B') this.walkHistory(1);
    else if (final === 'C') this.buf.right();
    else if (final === 'D') this.buf.left();
    else if (final === 'H') this.buf.home();
    else if (final === 'F') this.buf.end();
    else if (final === '~' && (first === '1' || first === '7')) this.buf.home();
    else if (final === '~' && (first === '4' || first === '8')) this.buf.end();
    else if (final === '~' && first === '3') this.buf.deleteForward();
  }

  private walkHistory(step: -1 | 1): void {
    if (this.masked || this.history.length === 0) return;
    const to = Math.max(0, Math.min(this.history.length, this.historyAt + step));
    if (to === this.historyAt) return;
    if (this.historyAt === this.history.length) this.draft = this.buf.text;
    this.historyAt = to;
    this.buf.replaceLine(to === this.history.length ? this.draft : (this.history[to] as string));
  }

  private endLine(): LineEvent {
    // An over-long line is refused whole: what was kept is not what the technician typed.
    const event: LineEvent = this.buf.overflow
      ? { kind: 'too-long', maxBytes: this.maxLineBytes }
      : { kind: 'line', text: this.buf.text };
    this.out += '\r\n';
    this.clearLine();
    return event;
  }

  private clearLine(): void {
    this.historyAt = this.history.length;
    this.draft = '';
    this.buf.clear();
  }
}
