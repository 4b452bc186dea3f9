import { charWidth, isPrintableChar, utf8Length } from './text.ts';

const BEL = 0x07;

/**
 * The line being typed, with a cursor: what each edit changes and the echo that shows it
 * (BS, spaces and the characters only, so it works on a terminal without ANSI support).
 * Bounded by `maxLineBytes`; a line that grew past it is marked `overflow` and refused.
 */
export class LineBuffer {
  chars: string[] = [];
  /** Columns each character took when echoed, so backspace erases exactly that many. */
  widths: number[] = [];
  bytes = 0;
  /** Index in `chars` where the next character goes. */
  cursor = 0;
  overflow = false;
  /** When true, characters are echoed as '*'; switch it only between lines. */
  masked = false;

  constructor(
    readonly maxLineBytes: number,
    private readonly emit: (echo: string) => void,
  ) {}

  get text(): string {
    return this.chars.join('');
  }

  /** The line as typed so far, to write again after a notice, the cursor where it was. */
  redraw(): string {
    return this.shown(0) + '\b'.repeat(this.cols(this.cursor));
  }

  clear(): void {
    this.cursor = 0;
    this.chars = [];
    this.widths = [];
    this.bytes = 0;
    this.overflow = false;
  }

  shown(from: number, to = this.chars.length): string {
    return this.masked ? '*'.repeat(to - from) : this.chars.slice(from, to).join('');
  }

  cols(from: number, to = this.chars.length): number {
    let w = 0;
    for (let i = from; i < to; i++) w += this.widths[i] ?? 1;
    return w;
  }

  left(): void {
    if (this.cursor === 0) return;
    this.cursor--;
    this.emit('\b'.repeat(this.widths[this.cursor] ?? 1));
  }

  right(): void {
    if (this.cursor >= this.chars.length) return;
    this.emit(this.shown(this.cursor, this.cursor + 1));
    this.cursor++;
  }

  home(): void {
    this.emit('\b'.repeat(this.cols(0, this.cursor)));
    this.cursor = 0;
  }

  end(): void {
    this.emit(this.shown(this.cursor));
    this.cursor = this.chars.length;
  }

  /** Replaces the whole line (history, Ctrl-U), cursor at its end. */
  replaceLine(text: string): void {
    const oldCols = this.cols(0);
    this.home();
    this.chars = [];
    this.widths = [];
    this.bytes = 0;
    this.overflow = false;
    for (const ch of text) {
      if (this.bytes + utf8Length(ch) > this.maxLineBytes) break;
      this.chars.push(ch);
      this.widths.push(this.masked ? 1 : charWidth(ch));
      this.bytes += utf8Length(ch);
    }
    this.cursor = this.chars.length;
    const newCols = this.cols(0);
    this.emit(this.shown(0));
    if (oldCols > newCols) {
      const gap = oldCols - newCols;
      this.emit(' '.repeat(gap) + '\b'.repeat(gap));
    }
  }

  insert(ch: string): void {
    if (!isPrintableChar(ch)) return;
    const n = utf8Length(ch);
    if (this.overflow || this.bytes + n > this.maxLineBytes) {
      // Ring once so the technician notices that typing stopped landing.
      if (!this.overflow) this.emit(String.fromCharCode(BEL));
      this.overflow = true;
      return;
    }
    const w = this.masked ? 1 : charWidth(ch);
    this.chars.splice(this.cursor, 0, ch);
    this.widths.splice(this.cursor, 0, w);
    this.bytes += n;
    this.cursor++;
    // Redraw what follows the cursor, then step back over it.
    const rest = this.shown(this.cursor);
    this.emit((this.masked ? '*' : ch) + rest + '\b'.repeat(this.cols(this.cursor)));
  }

  /** Erases `count` characters before the cursor (Backspace, Ctrl-W). */
  erase(count: number): void {
    const k = Math.min(count, this.cursor);
    if (k <= 0) return;
    const cols = this.cols(this.cursor - k, this.cursor);
    for (const ch of this.chars.splice(this.cursor - k, k)) this.bytes -= utf8Length(ch);
    this.widths.splice(this.cursor - k, k);
    this.cursor -= k;
    const rest = this.shown(this.cursor);
    const restCols = this.cols(this.cursor);
    // "\b \b" per column works on every terminal, including ones without ANSI support.
    this.emit('\b'.repeat(cols) + rest + ' '.repeat(cols) + '\b'.repeat(cols + restCols));
  }

  /** Delete: erases the character under the cursor. */
  deleteForward(): void {
    if (this.cursor >= this.chars.length) return;
    this.cursor++;
    this.emit(this.shown(this.cursor - 1, this.cursor));
    this.erase(1);
  }

  eraseWord(): void {
    let i = this.cursor - 1;
    while (i >= 0 && this.chars[i] === ' ') i--;
    while (i >= 0 && this.chars[i] !== ' ') i--;
    this.erase(this.cursor - 1 - i);
  }
}
