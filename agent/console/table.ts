/**
 * Output shapes for the console: aligned tables that fit an 80-column serial screen,
 * key/value blocks, JSON for `--json`, and money in minor units.
 *
 * Every cell and value is sanitised, because merchant names and error messages come
 * from outside and a stray ESC in them would otherwise drive the technician's terminal.
 */

import { AgentError } from '../../base/errors.ts';
import {
  displayWidth,
  padToWidth,
  sanitizeForTerminal,
  truncateToWidth,
  wrapToWidth,
} from './text.ts';

/** A value a table cell can hold. */
export type Cell = string | number | bigint | boolean | null | undefined;

export interface TableColumn {
  readonly header: string;
  /** Property name in `--json` output; defaults to the header. */
  readonly key?: string;
  /** Defaults to right for columns whose cells are all numbers or amounts, left otherwise. */
  readonly align?: 'left' | 'right';
}

const tableBrand = Symbol('console.table');

/** A table a command returns; build it with {@link table}. */
export interface TableSpec {
  readonly [tableBrand]: true;
  readonly columns: readonly TableColumn[];
  readonly rows: readonly (readonly Cell[])[];
}

/**
 * Declares a table. Columns may be given as bare header strings.
 * The brand keeps a command's plain object result that happens to have `rows` from
 * being taken for a table.
 */
export function table(
  columns: readonly (TableColumn | string)[],
  rows: readonly (readonly Cell[])[],
): TableSpec {
  return {
    [tableBrand]: true,
    columns: columns.map((c) => (typeof c === 'string' ? { header: c } : c)),
    rows,
  };
}

/** True for values built by {@link table}. */
export function isTableSpec(value: unknown): value is TableSpec {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Partial<TableSpec>)[tableBrand] === true
  );
}

const numericText = /^[-+]?\d[\d,]*(\.\d+)?%?$/;

function cellText(cell: Cell): string {
  if (cell === null || cell === undefined) return '';
  return sanitizeForTerminal(String(cell));
}

function isNumericCell(cell: Cell): boolean {
  if (typeof cell === 'number' || typeof cell === 'bigint') return true;
  return typeof cell === 'string' && numericText.test(cell);
}

export interface TableFormatOptions {
  /** Screen width in columns. Default 80. */
  readonly width?: number;
  /** Print the header and its underline. Default true. */
  readonly header?: boolean;
}

/**
 * Formats a table into lines no wider than `width` when that is possible. Text columns
 * shrink (widest first, each cell cut with an ellipsis); numeric columns never shrink,
 * because a truncated amount is worse than a wide line.
 */
export function formatTable(spec: TableSpec, options: TableFormatOptions = {}): string[] {
  const width = options.width ?? 80;
  const showHeader = options.header ?? true;
  const gap = 2;
  const cols = spec.columns.map((col, i) => {
    const cells = spec.rows.map((row) => row[i]);
    const filled = cells.filter((c) => cellText(c) !== '');
    const numeric = filled.length > 0 && filled.every(isNumericCell);
    const texts = cells.map(cellText);
    const header = sanitizeForTerminal(col.header);
    const natural = Math.max(showHeader ? displayWidth(header) : 0, ...texts.map(displayWidth), 1);
    return {
      header,
      texts,
      align: col.align ?? (numeric ? 'right' : 'left'),
      natural,
      floor: numeric ? natural : Math.min(natural, 4),
    };
  });
  const widths = fitWidths(
    cols.map((c) => c.natural),
    cols.map((c) => c.floor),
    width - gap * Math.max(0, cols.length - 1),
  );
  const renderRow = (cells: readonly string[]): string =>
    cells
      .map((text, i) =>
        padToWidth(truncateToWidth(text, widths[i] as number), widths[i] as number, cols[i]?.align),
      )
      .join(' '.repeat(gap))
      .trimEnd();
  const lines: string[] = [];
  if (showHeader) {
    lines.push(renderRow(cols.map((c) => c.header)));
    lines.push(widths.map((w) => '-'.repeat(w)).join(' '.repeat(gap)));
  }
  for (let r = 0; r < spec.rows.length; r++)
    lines.push(renderRow(cols.map((c) => c.texts[r] ?? '')));
  if (spec.rows.length === 0) lines.push('(none)');
  return lines;
}

/**
 * Column widths that fit `room`: the largest cap C such that every column gets
 * min(natural, max(C, floor)), then any columns left short share the remainder.
 */
function fitWidths(natural: number[], floor: number[], room: number): number[] {
  const total = (cap: number): number =>
    natural.reduce((s, n, i) => s + Math.min(n, Math.max(cap, floor[i] ?? 1)), 0);
  if (total(Infinity) <= room) return natural;
  let lo = 0;
  let hi = Math.max(...natural);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (total(mid) <= room) lo = mid;
    else hi = mid - 1;
  }
  const widths = natural.map((n, i) => Math.min(n, Math.max(lo, floor[i] ?? 1)));
  let spare = room - widths.reduce((s, w) => s + w, 0);
  for (let i = 0; i < widths.length && spare > 0; i++) {
    const grow = Math.min(spare, (natural[i] ?? 0) - (widths[i] ?? 0));
    widths[i] = (widths[i] ?? 0) + grow;
    spare -= grow;
  }
  return widths;
}

/** A table as JSON-ready row objects keyed by each column's `key` (or header). */
export function tableToJson(spec: TableSpec): Record<string, Cell>[] {
  return spec.rows.map((row) =>
    Object.fromEntries(spec.columns.map((col, i) => [col.key ?? col.header, row[i] ?? null])),
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function valueText(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? '-' : value.toISOString();
  return toJson(value);
}

/** Nested plain objects become dotted keys so a block stays two columns wide. */
function flatten(prefix: string, value: unknown, out: Array<[string, unknown]>): void {
  if (isPlainObject(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value))
      flatten(prefix === '' ? k : `${prefix}.${k}`, v, out);
  } else {
    out.push([prefix, value]);
  }
}

/**
 * Formats `key: value` lines with the values aligned. Long values wrap under their
 * value column instead of being cut, since a block usually shows one record whose every
 * character (a hash, a batch id) may matter.
 */
export function formatKeyValue(
  entries: Readonly<Record<string, unknown>> | readonly (readonly [string, unknown])[],
  width = 80,
): string[] {
  const pairs: Array<[string, unknown]> = [];
  const list = Array.isArray(entries) ? entries : Object.entries(entries);
  for (const [k, v] of list as ReadonlyArray<readonly [string, unknown]>) flatten(k, v, pairs);
  if (pairs.length === 0) return ['(empty)'];
  const keys = pairs.map(([k]) => truncateToWidth(sanitizeForTerminal(k), 28));
  const keyWidth = Math.max(...keys.map(displayWidth));
  const valueWidth = Math.max(20, width - keyWidth - 2);
  const lines: string[] = [];
  pairs.forEach(([, v], i) => {
    const text = sanitizeForTerminal(valueText(v).replace(/\r?\n/g, ' '));
    wrapToWidth(text, valueWidth).forEach((part, j) => {
      const key =
        j === 0 ? padToWidth(`${keys[i] ?? ''}:`, keyWidth + 1) : ' '.repeat(keyWidth + 1);
      lines.push(`${key} ${part}`.trimEnd());
    });
  });
  return lines;
}

/**
 * One-line JSON for `--json`. Bigints become strings (JSON has no 64-bit integers), and
 * characters a terminal would act on are written as \u escapes, which keeps the JSON
 * exact and the screen safe.
 */
export function toJson(value: unknown): string {
  const json =
    JSON.stringify(value, (_key, v: unknown) =>
      typeof v === 'bigint' ? v.toString() : isTableSpec(v) ? tableToJson(v) : v,
    ) ?? 'null';
  return json.replace(
    /[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Minor-unit exponents that differ from the usual 2 (ISO 4217). */
const currencyExponents: Readonly<Record<string, number>> = {
  BIF: 0,
  CLP: 0,
  DJF: 0,
  GNF: 0,
  ISK: 0,
  JPY: 0,
  KMF: 0,
  KRW: 0,
  PYG: 0,
  RWF: 0,
  UGX: 0,
  VND: 0,
  VUV: 0,
  XAF: 0,
  XOF: 0,
  XPF: 0,
  BHD: 3,
  IQD: 3,
  JOD: 3,
  KWD: 3,
  LYD: 3,
  OMR: 3,
  TND: 3,
};

/** Decimal places of a currency's minor unit: 2 unless ISO 4217 says otherwise. */
function currencyExponent(currency: string): number {
  return currencyExponents[currency.toUpperCase()] ?? 2;
}

/**
 * Formats an amount in minor units ("fen" for CNY) as "12.34", "-0.05", "0.00", using
 * only integer and string operations so no float ever touches money.
 * @throws AgentError TXN_INVALID_AMOUNT when `minor` is not a safe integer.
 */
export function formatMinor(minor: number | bigint, currency = 'CNY'): string {
  if (typeof minor === 'number' && !Number.isSafeInteger(minor)) {
    throw new AgentError('TXN_INVALID_AMOUNT', 'an amount must be a whole number of minor units', {
      value: String(minor),
    });
  }
  const exponent = currencyExponent(currency);
  const value = BigInt(minor);
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(exponent + 1, '0');
  const units =
    exponent === 0 ? digits : `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
  return negative ? `-${units}` : units;
}
