/**
 * The business date of an instant in the terminal's time zone, as YYYY-MM-DD. A day
 * that starts at `startHour` (not midnight) puts late-night sales on the previous date,
 * as acquirers that cut over after closing time expect.
 */
export function businessDate(at: number, timeZone: string, startHour = 0): string {
  const shifted = new Date(at - startHour * 3600_000);
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).formatToParts(shifted);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '00';
  return `${get('year')}-${get('month')}-${get('day')}`;
}
