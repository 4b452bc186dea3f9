/**
 * Read models of the back office over the acquirer's ledger: the POS list (one page at a time,
 * by an index on merchant and terminal id, so 1,000 terminals cost what 25 do), a terminal's
 * page, and fees this period by category under the schedule in force. A merchant's queries are
 * always filtered by its merchant id in SQL; there is no unfiltered path for that role.
 */
import { DEFAULT_FEE_SCHEDULE, ruleFor, type FeeRule } from '../../agent/policy/fees.ts';
import type { Database } from '../../storage/db.ts';
import type { AcquirerLedger, ReviewRecord, TerminalRecord } from '../ledger.ts';
import { toReport, type TerminalReport } from './store.ts';

/** Whose terminals a query may see: one merchant's, or (a reviewer) all. */
export type Scope = { merchantId: string } | { all: true };

/** One line of the POS list. */
export interface TerminalLine {
  terminalId: string;
  merchantId: string;
  merchantName: string;
  category: string;
  brand: string;
  model: string;
  acquirerStatus: TerminalRecord['status'];
  state: string;
  locks: string[];
  report: TerminalReport | null;
  settledBatches: number;
  periodFee: number;
  openReview: boolean;
}

const PAGE_SIZE = 25;

/** The schedule the acquirer grants at activation: the one in force. */
export const SCHEDULE_IN_FORCE = DEFAULT_FEE_SCHEDULE;

/** "0.50%, min ¥3.00" for a rule. */
export function describeRule(rule: FeeRule): string {
  const pct = `${Math.trunc(rule.rateBp / 100)}.${String(rule.rateBp % 100).padStart(2, '0')}%`;
  const money = (f: number): string =>
    `¥${Math.trunc(f / 100)}.${String(f % 100).padStart(2, '0')}`;
  return [
    pct,
    rule.fixed ? `+ ${money(rule.fixed)}` : '',
    `min ${money(rule.minimum)}`,
    rule.cap ? `cap ${money(rule.cap)}` : '',
  ]
    .filter(Boolean)
    .join(', ');
}

export function ruleInForce(category: string): FeeRule {
  return ruleFor(SCHEDULE_IN_FORCE, category);
}

/** The first instant of the current calendar month (UTC): the fee period. */
export function periodStart(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

function scopeSql(scope: Scope): { where: string; m: string | null } {
  return 'merchantId' in scope
    ? { where: 't.merchant_id = @m', m: scope.merchantId }
    : { where: '1', m: null };
}

/** The lifecycle state to show: what the terminal last reported, else the acquirer's view. */
export function shownState(
  status: TerminalRecord['status'],
  report: TerminalReport | null,
): string {
  // Activation is the acquirer's own answer: it is newer than a Hello sent before it.
  if (report?.lifecycleState === 'unactivated' && status !== 'registered') return status;
  if (report?.lifecycleState) return report.lifecycleState;
  return status === 'registered' ? 'unactivated' : status;
}

/** One page of the POS list, searched by terminal id, brand, model or merchant name. */
export function terminalPage(
  db: Database,
  scope: Scope,
  o: { q: string; page: number; now: number },
): { lines: TerminalLine[]; total: number; page: number; pages: number } {
  const { where, m } = scopeSql(scope);
  const q = o.q.trim() ? `%${o.q.trim().replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  const filter = `${where} AND (@q IS NULL OR t.terminal_id LIKE @q ESCAPE '\\' OR md.brand LIKE @q ESCAPE '\\'
    OR md.model LIKE @q ESCAPE '\\' OR t.merchant_name LIKE @q ESCAPE '\\')`;
  const from = 'FROM terminals t LEFT JOIN bo_terminal_models md ON md.terminal_id = t.terminal_id';
  const total = (
    db.prepare(`SELECT COUNT(*) AS n ${from} WHERE ${filter}`).get({ m, q }) as { n: number }
  ).n;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const page = Math.min(Math.max(1, o.page), pages);
  const rows = db
    .prepare(
      `SELECT t.*, md.brand, md.model ${from} WHERE ${filter} ORDER BY t.terminal_id LIMIT @limit OFFSET @offset`,
    )
    .all({ m, q, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE }) as Array<
    Record<string, unknown>
  >;
  // Aggregates only for the rows on this page.
  const since = periodStart(o.now);
  const report = db.prepare('SELECT * FROM bo_terminal_reports WHERE terminal_id = ?');
  const settled = db.prepare(
    `SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN settled_at >= ? THEN json_extract(settled_totals, '$.netFee') END), 0) AS fee
     FROM settlements WHERE terminal_id = ?`,
  );
  const review = db.prepare(
    'SELECT 1 FROM deactivation_reviews WHERE terminal_id = ? AND decision IS NULL LIMIT 1',
  );
  const lines = rows.map((r): TerminalLine => {
    const id = String(r.terminal_id);
    const rep = report.get(id) as Record<string, unknown> | undefined;
    const rp = rep ? toReport(rep) : null;
    const s = settled.get(since, id) as { n: number; fee: number };
    const status = r.status as TerminalRecord['status'];
    return {
      terminalId: id,
      merchantId: String(r.merchant_id),
      merchantName: String(r.merchant_name),
      category: String(r.merchant_category),
      brand: r.brand == null ? '-' : String(r.brand),
      model: r.model == null ? '-' : String(r.model),
      acquirerStatus: status,
      state: shownState(status, rp),
      locks: rp?.locks ?? [],
      report: rp,
      settledBatches: s.n,
      periodFee: Number(s.fee) + (rp?.openFee ?? 0),
      openReview: review.get(id) !== undefined,
    };
  });
  return { lines, total, page, pages };
}

/** Fees this period by category (settled batches plus the open batches last reported). */
export function feesByCategory(
  db: Database,
  scope: Scope,
  now: number,
): Array<{
  category: string;
  terminals: number;
  settledFee: number;
  openFee: number;
  rule: string;
}> {
  const { where, m } = scopeSql(scope);
  const rows = db
    .prepare(
      `SELECT t.merchant_category AS category, COUNT(*) AS terminals,
         COALESCE(SUM((SELECT SUM(json_extract(s.settled_totals, '$.netFee')) FROM settlements s
           WHERE s.terminal_id = t.terminal_id AND s.settled_at >= @since)), 0) AS settled,
         COALESCE(SUM(r.open_fee), 0) AS open
       FROM terminals t LEFT JOIN bo_terminal_reports r ON r.terminal_id = t.terminal_id
       WHERE ${where} GROUP BY t.merchant_category ORDER BY t.merchant_category`,
    )
    .all({ m, since: periodStart(now) }) as Array<Record<string, unknown>>;
  return rows.map((r) => ({
    category: String(r.category),
    terminals: Number(r.terminals),
    settledFee: Number(r.settled),
    openFee: Number(r.open),
    rule: describeRule(ruleInForce(String(r.category))),
  }));
}

/** A terminal the scope may see, or undefined (the same answer for "not yours" and "no such"). */
export function visibleTerminal(
  ledger: AcquirerLedger,
  scope: Scope,
  terminalId: string,
): TerminalRecord | undefined {
  const t = ledger.terminal(terminalId);
  if (!t) return undefined;
  if ('merchantId' in scope && t.merchantId !== scope.merchantId) return undefined;
  return t;
}

/** The review now open for a terminal, else its newest one. */
export function currentReview(
  ledger: AcquirerLedger,
  terminalId: string,
): ReviewRecord | undefined {
  const all = ledger.reviews(terminalId);
  return all.find((r) => r.decision === null) ?? all.at(-1);
}

/** Open reviews across all terminals, oldest first (the reviewer's queue). */
export function openReviews(db: Database): Array<ReviewRecord & { merchantName: string }> {
  const rows = db
    .prepare(
      `SELECT v.*, t.merchant_name FROM deactivation_reviews v JOIN terminals t ON t.terminal_id = v.terminal_id
       WHERE v.decision IS NULL ORDER BY v.requested_at, v.rowid`,
    )
    .all() as Array<Record<string, unknown>>;
  return rows.map((r) => ({ ...toReview(r), merchantName: String(r.merchant_name) }));
}

/** Recently decided reviews, newest first. */
export function decidedReviews(
  db: Database,
  limit: number,
): Array<ReviewRecord & { decidedAt: number }> {
  const rows = db
    .prepare(
      'SELECT * FROM deactivation_reviews WHERE decision IS NOT NULL ORDER BY decided_at DESC LIMIT ?',
    )
    .all(limit) as Array<Record<string, unknown>>;
  return rows.map((r) => ({ ...toReview(r), decidedAt: Number(r.decided_at ?? 0) }));
}

function toReview(r: Record<string, unknown>): ReviewRecord {
  return {
    reviewId: String(r.review_id),
    terminalId: String(r.terminal_id),
    reason: String(r.reason),
    requestedBy: String(r.requested_by),
    requestedAt: Number(r.requested_at),
    decision: (r.decision as ReviewRecord['decision']) ?? null,
    decisionReason: r.decision_reason == null ? null : String(r.decision_reason),
  };
}
