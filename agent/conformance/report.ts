import type { CheckResult } from './kit.ts';

/** The conformance table as plain text: one row per check, then a one-line verdict. */
export function formatResults(rows: readonly CheckResult[]): string {
  const mark = (ok: boolean | null) => (ok === true ? 'PASS' : ok === false ? 'FAIL' : 'SKIP');
  const width = Math.max('check'.length, ...rows.map((r) => r.check.length));
  const lines = [
    `${'check'.padEnd(width)}  result  detail`,
    `${'-'.repeat(width)}  ------  ${'-'.repeat(40)}`,
    ...rows.map((r) => `${r.check.padEnd(width)}  ${mark(r.ok).padEnd(6)}  ${r.detail}`),
  ];
  const failed = rows.filter((r) => r.ok === false).length;
  lines.push(
    '',
    failed === 0
      ? `conformance: PASS (${rows.length} checks)`
      : `conformance: FAIL (${failed} of ${rows.length} checks failed)`,
  );
  return lines.join('\n');
}
