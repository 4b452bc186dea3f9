/**
 * The history half of a terminal's page: settled batches, every submission as the acquirer
 * received it (the settlement history), deactivation requests and, for reviewers, the signed
 * commands with the terminal's verified answers.
 */
import type { TerminalRecord } from '../ledger.ts';
import type { AcquirerLedger } from '../ledger.ts';
import { html, when, yuan, type Html } from './html.ts';

/** Settled batches, the settlement history, reviews and (for reviewers) commands. */
export function terminalHistory(
  ledger: AcquirerLedger,
  t: TerminalRecord,
  withCommands: boolean,
): Html {
  return html`<h2>Settled batches</h2>
    ${settledTable(ledger, t)}
    <h2>Settlement history</h2>
    ${submissionsTable(ledger, t)}
    <h2>Deactivation requests</h2>
    ${reviewsTable(ledger, t)}
    ${
      withCommands
        ? html`<h2>Signed commands</h2>
            ${commandsTable(ledger, t)}`
        : ''
    }`;
}

function settledTable(ledger: AcquirerLedger, t: TerminalRecord): Html {
  const settled = ledger.settledBatches(t.terminalId).reverse();
  return html`${
    settled.length
      ? html`<table class="batches">
          <thead>
            <tr>
              <th>Batch</th>
              <th>Settled at</th>
              <th class="num">Transactions</th>
              <th class="num">Net amount</th>
              <th class="num">Fees</th>
              <th class="num">Net settlement</th>
              <th>Settlement id</th>
            </tr>
          </thead>
          <tbody>
            ${settled.map(
              (s) =>
                html`<tr>
                  <td>${s.batchId}</td>
                  <td>${when(s.settledAt)}</td>
                  <td class="num">${s.settledTotals.transactionCount}</td>
                  <td class="num">${yuan(s.settledTotals.netAmount)}</td>
                  <td class="num">${yuan(s.settledTotals.netFee)}</td>
                  <td class="num">${yuan(s.settledTotals.netSettlement)}</td>
                  <td>${s.settlementId}${s.via === 'detail' ? ' (after detail check)' : ''}</td>
                </tr>`,
            )}
          </tbody>
        </table>`
      : html`<p class="muted">No batch settled yet.</p>`
  }`;
}

function submissionsTable(ledger: AcquirerLedger, t: TerminalRecord): Html {
  const subs = ledger.submissions({ terminalId: t.terminalId }).reverse().slice(0, 50);
  return html`${
    subs.length
      ? html`<table>
          <thead>
            <tr>
              <th>Received</th>
              <th>Batch</th>
              <th>Outcome</th>
            </tr>
          </thead>
          <tbody>
            ${subs.map(
              (s) =>
                html`<tr>
                  <td>${when(s.receivedAt)}</td>
                  <td>${s.batchId}</td>
                  <td>${s.outcome}${s.duplicate ? ' (resend)' : ''}</td>
                </tr>`,
            )}
          </tbody>
        </table>`
      : html`<p class="muted">Nothing submitted yet.</p>`
  }`;
}

function reviewsTable(ledger: AcquirerLedger, t: TerminalRecord): Html {
  const reviews = ledger.reviews(t.terminalId).reverse();
  return html`${
    reviews.length
      ? html`<table>
          <thead>
            <tr>
              <th>Review</th>
              <th>Requested</th>
              <th>By</th>
              <th>Reason</th>
              <th>Decision</th>
              <th>Note</th>
            </tr>
          </thead>
          <tbody>
            ${reviews.map(
              (r) =>
                html`<tr>
                  <td>${r.reviewId}</td>
                  <td>${when(r.requestedAt)}</td>
                  <td>${r.requestedBy}</td>
                  <td>${r.reason}</td>
                  <td>${r.decision ?? 'under review'}</td>
                  <td>${r.decisionReason ?? ''}</td>
                </tr>`,
            )}
          </tbody>
        </table>`
      : html`<p class="muted">None.</p>`
  }`;
}

function commandsTable(ledger: AcquirerLedger, t: TerminalRecord): Html {
  const commands = ledger.commands(t.terminalId).reverse().slice(0, 30);
  const results = new Map(ledger.commandResults(t.terminalId).map((r) => [r.commandId, r]));
  return commands.length
    ? html`<table>
        <thead>
          <tr>
            <th>Issued</th>
            <th>Counter</th>
            <th>Command</th>
            <th>Delivered</th>
            <th>Terminal's answer</th>
          </tr>
        </thead>
        <tbody>
          ${commands.map((c) => {
            const r = results.get(c.id);
            return html`<tr>
              <td>${when(c.issuedAt)}</td>
              <td>${c.counter}</td>
              <td>${c.kind}</td>
              <td>${when(c.deliveredAt)}</td>
              <td>
                ${r ? `${r.outcome}${r.errorCode ? ` ${r.errorCode}` : ''}${r.verified ? '' : ' (signature not verified)'}` : 'waiting'}
              </td>
            </tr>`;
          })}
        </tbody>
      </table>`
    : html`<p class="muted">None.</p>`;
}
