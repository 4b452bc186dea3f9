/**
 * How a terminal looks in the back office, for both roles: the POS list, the terminal page
 * (live status, fees, batches, settlement history, reviews, commands) and the live status the
 * page polls. Only masked data reaches a page: the acquirer ledger holds no full card number.
 */
import type { AcquirerLedger, TerminalRecord } from '../ledger.ts';
import { html, when, yuan, type Html } from './html.ts';
import type { BackOfficeStore, TerminalReport } from './store.ts';
import {
  currentReview,
  describeRule,
  periodStart,
  ruleInForce,
  SCHEDULE_IN_FORCE,
  shownState,
  type TerminalLine,
} from './terminal-queries.ts';

/** The fields the live status box shows, by data-field name. */
export interface LiveStatus {
  fields: Record<string, string>;
  final: boolean;
  /** Changes when the page's tables and forms would: state, locks, review, settled batches. */
  version: string;
}

const stateBadge = (s: string): Html =>
  html`<span class="state ${s}" data-field="state">${s}</span>`;
const lockBadges = (locks: readonly string[]): Html =>
  locks.length ? html`${locks.map((l) => html`<span class="lock">${l}</span>`)}` : html``;

/** Where a terminal stands in its deactivation, in words a merchant understands. */
function deactivationStage(
  ledger: AcquirerLedger,
  t: TerminalRecord,
  report: TerminalReport | null,
): {
  text: string;
  final: boolean;
} {
  const state = shownState(t.status, report);
  const review = currentReview(ledger, t.terminalId);
  if (state === 'deactivated')
    return {
      text: 'Deactivated: every transaction was settled first; no new fees from now on.',
      final: true,
    };
  if (!review) return { text: 'No deactivation requested.', final: false };
  if (review.decision === 'rejected')
    return {
      text: `Rejected by the acquirer: ${review.decisionReason ?? ''}`.trim(),
      final: state === 'active',
    };
  if (review.decision === 'approved')
    return {
      text: 'Approved: the terminal is settling its last batch before it deactivates.',
      final: false,
    };
  if (state === 'deactivation-pending')
    return {
      text: 'Under review by the acquirer. The terminal takes no new sales meanwhile.',
      final: false,
    };
  return { text: 'Requested: waiting for the terminal to confirm the request.', final: false };
}

/** The live status of a terminal (also rendered into the page first). */
export function liveStatus(
  ledger: AcquirerLedger,
  store: BackOfficeStore,
  t: TerminalRecord,
): LiveStatus {
  const report = store.terminalReport(t.terminalId) ?? null;
  const settled = ledger.settledBatches(t.terminalId);
  const last = settled.at(-1);
  const review = currentReview(ledger, t.terminalId);
  const stage = deactivationStage(ledger, t, report);
  return {
    fields: {
      state: shownState(t.status, report),
      locks: (report?.locks ?? []).join(', ') || 'none',
      lastContact: when(report?.lastContact),
      openCount: report?.openCount == null ? 'not reported' : String(report.openCount),
      openAmount: yuan(report?.openAmount),
      queued: report?.queuedBatches == null ? '-' : String(report.queuedBatches),
      settledBatches: String(settled.length),
      lastBatch: last ? `${last.batchId} at ${when(last.settledAt)}` : 'none',
      review: review ? `${review.reviewId}: ${review.decision ?? 'under review'}` : 'none',
      reviewNote: review?.decisionReason ?? '',
      stage: stage.text,
    },
    final: stage.final,
    version: [
      t.status,
      shownState(t.status, report),
      (report?.locks ?? []).join('+'),
      review?.reviewId ?? '',
      review?.decision ?? '',
      settled.length,
    ].join('|'),
  };
}

/** The POS list table, linking each terminal to `${base}/${id}`. */
export function terminalTable(lines: TerminalLine[], base: string, showMerchant: boolean): Html {
  if (!lines.length) return html`<p class="muted">No terminals match.</p>`;
  return html`<table class="terminals">
    <thead>
      <tr>
        <th>Terminal</th>
        ${showMerchant ? html`<th>Merchant</th>` : ''}
        <th>Brand / model</th>
        <th>State and locks</th>
        <th>Last contact</th>
        <th class="num">Open batch</th>
        <th class="num">Unsettled amount</th>
        <th>Fees this period</th>
        <th class="num">Settled batches</th>
      </tr>
    </thead>
    <tbody>
      ${lines.map(
        (l) =>
          html`<tr data-terminal="${l.terminalId}">
            <td><a href="${base}/${encodeURIComponent(l.terminalId)}">${l.terminalId}</a></td>
            ${showMerchant ? html`<td>${l.merchantName}</td>` : ''}
            <td>${l.brand} ${l.model}</td>
            <td>
              <span class="state ${l.state}">${l.state}</span
              >${lockBadges(l.locks)}${l.openReview ? html` <span class="muted">review open</span>` : ''}
            </td>
            <td>${when(l.report?.lastContact)}</td>
            <td class="num">${l.report?.openCount ?? '-'}</td>
            <td class="num">${yuan(l.report?.openAmount)}</td>
            <td>${yuan(l.periodFee)} <span class="muted">${l.category}</span></td>
            <td class="num">${l.settledBatches}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

/** Search box and pager for a list at `path`. */
export function searchAndPager(
  path: string,
  q: string,
  page: number,
  pages: number,
  total: number,
): Html {
  const link = (p: number): string =>
    `${path}?${new URLSearchParams({ q, page: String(p) }).toString()}`;
  return html`<form method="get" action="${path}" class="search" role="search">
      <input
        name="q"
        value="${q}"
        placeholder="Terminal id, brand, model or merchant"
        aria-label="Search"
      />
      <button type="submit">Search</button>
    </form>
    <div class="pager">
      <span>${total} terminals · page ${page} of ${pages}</span>
      ${page > 1 ? html`<a href="${link(1)}">First</a><a href="${link(page - 1)}" rel="prev">Previous</a>` : ''}
      ${page < pages ? html`<a href="${link(page + 1)}" rel="next">Next</a><a href="${link(pages)}">Last</a>` : ''}
    </div>`;
}

/** The header facts and the live status box. */
export function terminalSummary(
  ledger: AcquirerLedger,
  store: BackOfficeStore,
  t: TerminalRecord,
  statusUrl: string,
): Html {
  const live = liveStatus(ledger, store, t);
  const f = live.fields;
  const md = ledger.db
    .prepare('SELECT brand, model FROM bo_terminal_models WHERE terminal_id = ?')
    .get(t.terminalId) as { brand: string; model: string } | undefined;
  return html`<div class="row">
    <section class="card">
      <h2>Terminal</h2>
      <dl class="facts">
        <dt>Terminal id</dt>
        <dd>${t.terminalId}</dd>
        <dt>Merchant</dt>
        <dd>${t.merchantName} (${t.merchantId})</dd>
        <dt>Brand / model</dt>
        <dd>${md ? `${md.brand} ${md.model}` : '-'}</dd>
        <dt>Category</dt>
        <dd>${t.merchantCategory}</dd>
        <dt>Acquirer record</dt>
        <dd>${t.status}</dd>
      </dl>
    </section>
    <section
      class="card"
      id="live"
      data-status-url="${statusUrl}"
      data-page-url="${statusUrl.replace(/\/status\.json$/, '')}"
      data-version="${live.version}"
      data-final="${live.final ? 'yes' : 'no'}"
    >
      <h2>Live status</h2>
      <dl class="facts">
        <dt>Lifecycle state</dt>
        <dd>${stateBadge(f.state!)}</dd>
        <dt>Locks</dt>
        <dd data-field="locks">${f.locks}</dd>
        <dt>Last contact</dt>
        <dd data-field="lastContact">${f.lastContact}</dd>
        <dt>Open batch</dt>
        <dd>
          <span data-field="openCount">${f.openCount}</span> transactions,
          <span data-field="openAmount">${f.openAmount}</span> unsettled
        </dd>
        <dt>Batches waiting to settle</dt>
        <dd data-field="queued">${f.queued}</dd>
        <dt>Settled batches</dt>
        <dd>
          <span data-field="settledBatches">${f.settledBatches}</span> (last:
          <span data-field="lastBatch">${f.lastBatch}</span>)
        </dd>
        <dt>Deactivation review</dt>
        <dd data-field="review">${f.review}</dd>
        <dt>Reviewer's note</dt>
        <dd data-field="reviewNote">${f.reviewNote}</dd>
        <dt>Where it stands</dt>
        <dd class="stage" data-field="stage">${f.stage}</dd>
      </dl>
    </section>
  </div>`;
}

/** Fees this period for one terminal, under the schedule in force. */
export function terminalFees(
  ledger: AcquirerLedger,
  store: BackOfficeStore,
  t: TerminalRecord,
  now: number,
): Html {
  const since = periodStart(now);
  const settled = ledger.settledBatches(t.terminalId).filter((s) => s.settledAt >= since);
  const byType = new Map<string, number>();
  for (const s of settled)
    for (const bt of s.settledTotals.byType)
      byType.set(bt.type, (byType.get(bt.type) ?? 0) + bt.fee);
  const open = store.terminalReport(t.terminalId)?.openFee ?? null;
  const total = settled.reduce((a, s) => a + s.settledTotals.netFee, 0);
  return html`<section class="card">
    <h2>Fees this period</h2>
    <p>
      Category <strong>${t.merchantCategory}</strong> under schedule ${SCHEDULE_IN_FORCE.version}:
      ${describeRule(ruleInForce(t.merchantCategory))}. Period from ${when(since)}.
    </p>
    <table>
      <thead>
        <tr>
          <th>Category</th>
          <th>Transaction type</th>
          <th class="num">Fees settled</th>
        </tr>
      </thead>
      <tbody>
        ${[...byType].map(
          ([type, fee]) =>
            html`<tr>
              <td>${t.merchantCategory}</td>
              <td>${type}</td>
              <td class="num">${yuan(fee)}</td>
            </tr>`,
        )}
        <tr>
          <td>${t.merchantCategory}</td>
          <td>open batch (not settled yet)</td>
          <td class="num">${yuan(open)}</td>
        </tr>
        <tr>
          <th colspan="2">Total this period</th>
          <th class="num">${yuan(total + (open ?? 0))}</th>
        </tr>
      </tbody>
    </table>
  </section>`;
}
