/**
 * One benchmark figure, its target, and how the suite prints and saves them. Every figure is
 * measured next to a raw baseline in the same run; `ratio` is always value ÷ baseline, so for a
 * rate higher is better and for a latency, a time or a size lower is better.
 */
import { writeFileSync } from 'node:fs';

/** A target on the figure's value or on its ratio to the baseline. */
export interface Target {
  on: 'value' | 'ratio';
  op: '>=' | '<';
  limit: number;
}

export interface Figure {
  name: string;
  value: number;
  unit: string;
  baseline: number;
  /** What the baseline is, in a few words (printed under the table). */
  baselineIs: string;
  target?: Target;
  /** Extra facts for the notes under the table (sample counts, sizes, spreads). */
  note?: string;
}

/** The row written to JSON: exactly the fields issue 6 asks for. */
interface JsonRow {
  name: string;
  value: number;
  unit: string;
  baseline: number;
  ratio: number;
}

function ratioOf(f: Pick<Figure, 'value' | 'baseline'>): number {
  return f.baseline > 0 ? f.value / f.baseline : Number.NaN;
}

/** True or false against the target; undefined when the figure has none. */
function met(f: Figure): boolean | undefined {
  if (!f.target) return undefined;
  const x = f.target.on === 'ratio' ? ratioOf(f) : f.value;
  return f.target.op === '>=' ? x >= f.target.limit : x < f.target.limit;
}

function targetText(f: Figure): string {
  const t = f.target;
  if (!t) return '-';
  return t.on === 'ratio' ? `${t.op} ${t.limit}x` : `${t.op} ${t.limit} ${f.unit}`;
}

/** A number with about three significant digits, no exponent. */
function fmt(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

const HEAD = ['name', 'value', 'unit', 'baseline', 'ratio', 'target', 'met?'];

function rowsOf(figures: readonly Figure[]): string[][] {
  return figures.map((f) => {
    const m = met(f);
    return [
      f.name,
      fmt(f.value),
      f.unit,
      fmt(f.baseline),
      `${fmt(ratioOf(f))}x`,
      targetText(f),
      m === undefined ? '-' : m ? 'yes' : 'NO',
    ];
  });
}

/** The results as an aligned plain-text table. */
export function textTable(figures: readonly Figure[]): string {
  const rows = [HEAD, ...rowsOf(figures)];
  const widths = HEAD.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const numeric = new Set([1, 3, 4]);
  const line = (r: string[]) =>
    r.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  return [line(HEAD), widths.map((w) => '-'.repeat(w)).join('  '), ...rowsOf(figures).map(line)]
    .map((l) => l.trimEnd())
    .join('\n');
}

/** The results as a Markdown table, for docs/performance.md. */
export function markdownTable(figures: readonly Figure[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${HEAD.join(' | ')} |`,
    `| ${HEAD.map((_, i) => ([1, 3, 4].includes(i) ? '---:' : '---')).join(' | ')} |`,
    ...rowsOf(figures).map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** What each baseline is, and the notes, one line per figure. */
export function notes(figures: readonly Figure[]): string {
  return figures
    .map((f) => `- ${f.name}: baseline = ${f.baselineIs}${f.note ? `; ${f.note}` : ''}`)
    .join('\n');
}

function jsonRows(figures: readonly Figure[]): JsonRow[] {
  return figures.map((f) => ({
    name: f.name,
    value: f.value,
    unit: f.unit,
    baseline: f.baseline,
    ratio: ratioOf(f),
  }));
}

export function writeJson(file: string, figures: readonly Figure[]): void {
  writeFileSync(file, JSON.stringify(jsonRows(figures), null, 2) + '\n');
}
