/**
 * The journal and batch reports, shared by the console and the CLI so both show the same
 * thing in the same units: money in yuan with two decimals (the journal keeps fen, and
 * `--json` prints fen), times in UTC, card numbers masked.
 */

import type { Store } from '../../storage/store.ts';
import type { Batch, BatchTotals } from '../../storage/batches.ts';
import { batchView, entryView, type BatchView, type EntryView } from '../runtime/views.ts';
import { totalsEqual } from '../policy/batch-totals.ts';
import { formatKeyValue, formatMinor, formatTable, table, type TableSpec } from './table.ts';

const right = (header: string) => ({ header, align: 'right' as const });

export function money(n: number | null | undefined, currency = 'CNY'): string {
  return n === null || n === undefined ? '' : formatMinor(n, currency);
}

/** `2026-11-26 02:57:06`, or `11-26 02:57:06` when short (80-column console). */
function when(iso: string, short: boolean): string {
  return iso.slice(short ? 5 : 0, 19).replace('T', ' ');
}

/** Events the console writes about itself: shown only when asked for. */
function isAuditEvent(v: EntryView): boolean {
  return v.kind === 'event' && v.what.startsWith('console-');
}

export interface TailFilter {
  /** `txn`, `event`, a transaction type (`sale`) or an event name or prefix (`lifecycle`). */
  readonly type?: string;
  /** Include the console's audit rows (console-login, console-command, ...). */
  readonly audit?: boolean;
}

function matches(v: EntryView, f: TailFilter): boolean {
  const t = f.type;
  if (t !== undefined && t !== '') {
    if (t === 'txn' || t === 'event') return v.kind === t;
    const name = v.kind === 'txn' ? v.what.split(' ')[0]! : v.what;
    if (!(name === t || name.startsWith(`${t}-`))) return false;
    // Asking for console events by name is asking for audit rows.
    return true;
  }
  return f.audit === true || !isAuditEvent(v);
}

/** How far back a filtered tail looks before it settles for fewer rows. */
const scanLimit = 200_000;

/** The newest `n` rows that pass the filter, oldest first. */
export function tailEntries(store: Store, n: number, filter: TailFilter = {}): EntryView[] {
  const head = store.journal.headOf().seq;
  if (filter.audit === true && filter.type === undefined)
    return store.journal.tail(n).map(entryView);
  const out: EntryView[] = [];
  for (let seq = head; seq >= 1 && seq > head - scanLimit && out.length < n; seq--) {
    const e = store.journal.get(seq);
    if (!e) continue;
    const v = entryView(e);
    if (matches(v, filter)) out.push(v);
  }
  return out.reverse();
}

/** A short, readable summary of an event's detail for the `what` column's neighbour. */
function eventNote(v: EntryView): string {
  const d = v.detail ?? {};
  if (typeof d.line === 'string') return `${String(d.technician ?? '')}: ${d.line}`.trim();
  if (v.what === 'lifecycle' && typeof d.event === 'string') {
    const what = d.event.replace(/ \(by [^)]*\)$/, '');
    return d.from === d.to ? what : `${what}: ${String(d.from)} -> ${String(d.to)}`;
  }
  const parts: string[] = [];
  for (const key of ['technician', 'event', 'reason', 'code', 'batchId', 'to']) {
    const value = d[key];
    if (typeof value === 'string' || typeof value === 'number') parts.push(String(value));
  }
  return parts.join(' ');
}

export function journalTable(
  views: readonly EntryView[],
  o: { currency?: string; short?: boolean } = {},
): TableSpec {
  const c = o.currency ?? 'CNY';
  return table(
    ['seq', `time (UTC)`, 'what', right('amount'), right('fee'), 'status', 'card / detail'],
    views.map((v) => [
      v.seq,
      when(v.at, o.short ?? false),
      v.what,
      money(v.amount, c),
      money(v.fee, c),
      v.status ?? '',
      v.kind === 'txn' ? (v.card ?? '') : eventNote(v),
    ]),
  );
}

/** One journal row in full: every field, detail keys flattened, money in yuan. */
export function entryReport(v: EntryView, o: { currency?: string; width?: number } = {}): string[] {
  const c = o.currency ?? 'CNY';
  const pairs: Array<[string, unknown]> = [
    ['seq', v.seq],
    ['time (UTC)', when(v.at, false)],
    ['kind', v.kind],
    ['what', v.what],
  ];
  if (v.kind === 'txn') {
    pairs.push(
      ['amount', `${money(v.amount, c)} ${c}`],
      ['fee', `${money(v.fee, c)} ${c}`],
      ['status', v.status],
      ['card', v.card],
      ['batch', v.batch],
    );
  } else if (v.detail) {
    for (const [k, value] of Object.entries(v.detail)) pairs.push([k, value]);
  }
  pairs.push(['hash', v.hash]);
  return formatKeyValue(pairs, o.width ?? 80);
}

export function batchListTable(views: readonly BatchView[], currency = 'CNY'): TableSpec {
  return table(
    ['batch', 'state', 'date', right('txns'), right('net'), right('fees'), right('to merchant')],
    views.map((b) => [
      b.batchId,
      b.state,
      b.businessDate ?? '',
      b.transactions ?? '',
      money(b.netAmount, currency),
      money(b.netFee, currency),
      money(b.netSettlement, currency),
    ]),
  );
}

function totalsRows(t: BatchTotals | null, c: string): Array<Array<string | number>> {
  if (!t) return [];
  return [
    ...t.byType
      .filter((x) => x.count > 0)
      .map((x) => [x.type, x.count, money(x.amount, c), money(x.fee, c)]),
    ['net', t.transactionCount, money(t.netAmount, c), money(t.netFee, c)],
  ];
}

/**
 * `batch show ID`: the batch's facts, its totals by type (and the acquirer's, when they
 * differed), then its transactions (the first `maxRows` when there are more).
 */
export function batchReport(
  store: Store,
  b: Batch,
  o: { currency?: string; width?: number; maxRows?: number; short?: boolean } = {},
): string[] {
  const c = b.totals?.currency ?? o.currency ?? 'CNY';
  const v = batchView(b);
  const iso = (t: number | null) => (t === null ? '-' : when(new Date(t).toISOString(), false));
  const lines = formatKeyValue(
    [
      ['batch', v.batchId],
      ['state', v.state],
      ['business date', v.businessDate ?? '-'],
      ['opened (UTC)', iso(b.openedAt)],
      ['closed (UTC)', iso(b.closedAt)],
      ['net amount', b.totals ? `${money(b.totals.netAmount, c)} ${c}` : '-'],
      ['fees', b.totals ? `${money(b.totals.netFee, c)} ${c}` : '-'],
      ['to merchant', b.totals ? `${money(b.totals.netSettlement, c)} ${c}` : '-'],
      ['settlement id', v.settlementId ?? '-'],
      ['digest', v.digest ?? '-'],
    ],
    o.width ?? 80,
  );
  const width = o.width ?? 80;
  if (b.totals) {
    lines.push('', 'totals');
    lines.push(
      ...formatTable(
        table(['type', right('count'), right('amount'), right('fee')], totalsRows(b.totals, c)),
        { width },
      ),
    );
  }
  if (b.acquirerTotals && b.totals && totalsEqual(b.acquirerTotals, b.totals)) {
    lines.push('', "the acquirer's totals: the same");
  } else if (b.acquirerTotals) {
    lines.push('', "the acquirer's totals, which differ");
    lines.push(
      ...formatTable(
        table(
          ['type', right('count'), right('amount'), right('fee')],
          totalsRows(b.acquirerTotals, c),
        ),
        { width },
      ),
    );
  }
  const count = store.journal.batchCount(b.batchId);
  const max = o.maxRows ?? 50;
  const shown = store.journal
    .batchRowsAfter(b.batchId, 0, max)
    .map((r) => entryView({ kind: 'txn', ...r }));
  lines.push(
    '',
    count > max ? `transactions (the first ${max} of ${count})` : `transactions (${count})`,
  );
  lines.push(...formatTable(journalTable(shown, { currency: c, short: o.short }), { width }));
  return lines;
}
