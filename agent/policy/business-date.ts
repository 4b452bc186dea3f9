/**
 * The business date of an instant in the terminal's time zone, as YYYY-MM-DD. A day
 * that starts at `startHour` (not midnight) puts late-night sales on the previous date,
 * as acquirers that cut over after closing time expect.
 */
export function businessDate(at: number, timeZone: string, startHour = 0): string {
  const shifted = new Date(at - startHour * 3600_000);
  const parts = formatterFor(timeZone).formatToParts(shifted);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '00';
  return `${get('year')}-${get('month')}-${get('day')}`;
}

/**
 * One formatter per time zone, kept: making one loads the zone's rules through ICU, about
 * 10 ms the first time in a process, which a cutover would otherwise pay inside the closing
 * transaction while a command waits behind it.
 */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
    });
    formatters.set(timeZone, f);
  }
  return f;
}
