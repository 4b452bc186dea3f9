/**
 * Terminal text helpers shared by the line editor and the table formatter.
 *
 * A serial terminal shows whatever bytes it receives, escape sequences included, so
 * text that did not come from the console itself (merchant names, error messages,
 * echoed command names) is sanitised before it is written. Widths are counted in
 * terminal columns: CJK characters take two, which matters for merchant names on
 * terminals sold in China.
 */

/** Characters that may enter a typed line: letters, digits, punctuation, symbols, spaces. */
const printableChar = /^[\p{L}\p{N}\p{P}\p{S}\p{Zs}]$/u;

/**
 * Characters that must never reach the terminal verbatim: C0/C1 controls (ESC starts
 * sequences that can rewrite the screen), format characters (bidi overrides can make
 * text read differently from what it is), lone surrogates and line separators.
 */
const unsafeForTerminal = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/gu;

const zeroWidth = /^\p{M}$/u;

/** Ranges that East Asian terminals draw two columns wide (a compact subset of wcwidth). */
const wideRanges: ReadonlyArray<readonly [number, number]> = [
  [0x1100, 0x115f],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe30, 0xfe4f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x1f300, 0x1f64f],
  [0x1f900, 0x1f9ff],
  [0x20000, 0x3fffd],
];

/** True when `ch` (one code point) may be part of a typed line. */
export function isPrintableChar(ch: string): boolean {
  return printableChar.test(ch);
}

/** Columns a single code point occupies on a terminal: 0, 1 or 2. */
export function charWidth(ch: string): number {
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x1100) return cp === 0 ? 0 : 1;
  if (zeroWidth.test(ch)) return 0;
  for (const [lo, hi] of wideRanges) if (cp >= lo && cp <= hi) return 2;
  return 1;
}

/** Columns `text` occupies on a terminal (after sanitising). */
export function displayWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += charWidth(ch);
  return w;
}

/** Number of bytes `ch` takes in UTF-8. */
export function utf8Length(ch: string): number {
  const cp = ch.codePointAt(0) ?? 0;
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/**
 * Makes one line of untrusted text safe to show: tabs become a space, every control or
 * format character becomes '?'. Line breaks are controls too, so callers split first.
 */
export function sanitizeForTerminal(text: string): string {
  return text.replace(/\t/g, ' ').replace(unsafeForTerminal, '?');
}

/** Cuts `text` to at most `width` columns, ending in an ellipsis when anything was cut. */
export function truncateToWidth(text: string, width: number, ellipsis = '…'): string {
  if (displayWidth(text) <= width) return text;
  const room = width - displayWidth(ellipsis);
  if (room < 0) return ellipsis.slice(0, Math.max(0, width));
  let out = '';
  let w = 0;
  for (const ch of text) {
    const cw = charWidth(ch);
    if (w + cw > room) break;
    out += ch;
    w += cw;
  }
  return out + ellipsis;
}

/** Pads `text` with spaces to `width` columns, on the right (left-aligned) or the left. */
export function padToWidth(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  const pad = ' '.repeat(Math.max(0, width - displayWidth(text)));
  return align === 'left' ? text + pad : pad + text;
}

/**
 * Wraps `text` into lines of at most `width` columns, breaking at spaces where it can
 * and inside words (hashes, tokens) where it must; nothing is ever cut off.
 */
export function wrapToWidth(text: string, width: number): string[] {
  const limit = Math.max(1, width);
  const lines: string[] = [];
  let line = '';
  let lineW = 0;
  const flush = (): void => {
    lines.push(line.trimEnd());
    line = '';
    lineW = 0;
  };
  for (const word of text.split(/( +)/)) {
    if (word === '') continue;
    const ww = displayWidth(word);
    if (lineW + ww <= limit) {
      line += word;
      lineW += ww;
      continue;
    }
    if (word.trim() === '') {
      flush();
      continue;
    }
    if (lineW > 0) flush();
    for (const ch of word) {
      const cw = charWidth(ch);
      if (lineW + cw > limit && lineW > 0) flush();
      line += ch;
      lineW += cw;
    }
  }
  if (line !== '' || lines.length === 0) flush();
  return lines;
}
