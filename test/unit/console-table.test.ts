import { describe, expect, it } from 'vitest';
import { isAgentError } from '../../base/errors.ts';
import {
  formatKeyValue,
  formatMinor,
  formatTable,
  table,
  tableToJson,
  toJson,
} from '../../agent/console/table.ts';
import { displayWidth } from '../../agent/console/text.ts';

/** True if `text` holds a character a terminal would act on instead of showing. */
const hasTerminalControl = (text: string): boolean =>
  [...text].some((c) => {
    const cp = c.codePointAt(0) ?? 0;
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp === 0x202e;
  });

describe('formatMinor', () => {
  it.each([
    [0, '0.00'],
    [1, '0.01'],
    [5, '0.05'],
    [10, '0.10'],
    [100, '1.00'],
    [1234, '12.34'],
    [-5, '-0.05'],
    [-100, '-1.00'],
    [-123456, '-1234.56'],
    [-0, '0.00'],
    [Number.MAX_SAFE_INTEGER, '90071992547409.91'],
    [-Number.MAX_SAFE_INTEGER, '-90071992547409.91'],
  ])('formats %d fen as %s', (fen, text) => {
    expect(formatMinor(fen)).toBe(text);
  });

  it('takes bigints beyond the safe range exactly', () => {
    expect(formatMinor(123456789012345678901234567890n)).toBe('1234567890123456789012345678.90');
    expect(formatMinor(-1n)).toBe('-0.01');
  });

  it('uses the currency exponent', () => {
    expect(formatMinor(1234, 'JPY')).toBe('1234');
    expect(formatMinor(-5, 'JPY')).toBe('-5');
    expect(formatMinor(1234, 'KWD')).toBe('1.234');
    expect(formatMinor(5, 'bhd')).toBe('0.005');
    expect(formatMinor(1234, 'USD')).toBe('12.34');
  });

  it('refuses anything that is not a safe integer', () => {
    for (const bad of [0.5, 1.1, NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER + 1]) {
      let err: unknown;
      try {
        formatMinor(bad);
      } catch (e) {
        err = e;
      }
      expect(isAgentError(err, 'TXN_INVALID_AMOUNT'), String(bad)).toBe(true);
    }
  });
});

describe('formatTable', () => {
  it('aligns columns and right-aligns numbers and amounts', () => {
    const lines = formatTable(
      table(
        ['id', 'type', 'amount', 'count'],
        [
          ['t1', 'sale', formatMinor(1234), 3],
          ['t22', 'refund', formatMinor(-5), 12],
        ],
      ),
    );
    expect(lines).toEqual([
      'id   type    amount  count',
      '---  ------  ------  -----',
      't1   sale     12.34      3',
      't22  refund   -0.05     12',
    ]);
  });

  it('fits 80 columns, truncating long text cells with an ellipsis but never an amount', () => {
    const long = 'A merchant name that goes on and on well past anything a serial screen can show';
    const lines = formatTable(
      table(
        ['merchant', 'note', 'amount'],
        [
          [long, long, formatMinor(123456789)],
          ['short', 'x', formatMinor(1)],
        ],
      ),
    );
    for (const l of lines) expect(displayWidth(l)).toBeLessThanOrEqual(80);
    expect(lines[2]).toContain('…');
    expect(lines[2]).toMatch(/1234567\.89$/);
    expect(lines[3]).toMatch(/ 0\.01$/);
  });

  it('counts CJK characters as two columns', () => {
    const lines = formatTable(
      table(
        ['name', 'n'],
        [
          ['中文商户', 1],
          ['ab', 22],
        ],
      ),
    );
    expect(lines.map(displayWidth)).toEqual([12, 12, 12, 12]);
    expect(lines[2]).toBe('中文商户   1');
  });

  it('neutralises escape sequences and controls in cells', () => {
    const lines = formatTable(table(['name'], [['evil\x1b[2Jname\r\n\u202e']]));
    expect(hasTerminalControl(lines.join(''))).toBe(false);
  });

  it('can leave the header out, and says when there are no rows', () => {
    expect(formatTable(table(['a', 'b'], [['x', 'y']]), { header: false })).toEqual(['x  y']);
    expect(formatTable(table(['a'], []))).toEqual(['a', '-', '(none)']);
  });

  it('gives JSON rows keyed by column key or header', () => {
    const spec = table([{ header: 'Amount', key: 'amountFen' }, 'type'], [[1234, 'sale']]);
    expect(tableToJson(spec)).toEqual([{ amountFen: 1234, type: 'sale' }]);
    expect(toJson({ rows: spec, big: 2n ** 70n })).toBe(
      '{"rows":[{"amountFen":1234,"type":"sale"}],"big":"1180591620717411303424"}',
    );
  });
});

describe('formatKeyValue', () => {
  it('aligns values, flattens nested objects and shows missing values as -', () => {
    expect(
      formatKeyValue({ terminal: 'T0001', state: 'active', locks: { risk: false }, batch: null }),
    ).toEqual(['terminal:   T0001', 'state:      active', 'locks.risk: false', 'batch:      -']);
  });

  it('wraps a long value under its column instead of cutting it', () => {
    const hash = 'ab'.repeat(64);
    const lines = formatKeyValue([['digest', hash]]);
    expect(lines.length).toBe(2);
    for (const l of lines) expect(displayWidth(l)).toBeLessThanOrEqual(80);
    expect(lines.map((l) => l.slice('digest: '.length)).join('')).toBe(hash);
  });

  it('escapes terminal controls in JSON losslessly', () => {
    const json = toJson({ name: 'a\x1b[2J\u009b\u202eb' });
    expect(hasTerminalControl(json)).toBe(false);
    expect(JSON.parse(json)).toEqual({ name: 'a\x1b[2J\u009b\u202eb' });
  });
});
