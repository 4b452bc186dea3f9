/**
 * The reviewer's queue (acquirer staff): the deactivation requests with their reasons and each
 * terminal's unsettled state, and the decision, approve or reject with a note, that reaches the
 * terminal as a signed command.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { audit, requireRole, sendPage, viewerOf, type BackOfficeContext } from './context.ts';
import { csrfField, html, when, yuan, type Html } from './html.ts';
import { decideBody, doneQuery, flashFor, reviewParams, type Done } from './route-schemas.ts';
import { decidedReviews, openReviews, shownState } from './terminal-queries.ts';

type Decide = { Params: { id: string }; Body: { decision: 'approve' | 'reject'; note: string } };

function unsettledOf(ctx: BackOfficeContext, terminalId: string): Html {
  const r = ctx.store.terminalReport(terminalId);
  if (!r || r.openCount == null) return html`<span class="muted">not reported yet</span>`;
  return html`${r.openCount} txns, ${yuan(r.openAmount)}; ${r.queuedBatches ?? 0} batches queued`;
}

/** The review route group (reviewers). */
export async function reviewRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('reviewer'));
  app.get<Done>('/review', { schema: { querystring: doneQuery } }, (req, reply) =>
    queuePage(ctx, req, reply),
  );
  app.post<Decide>(
    '/review/:id/decide',
    { schema: { params: reviewParams, body: decideBody }, preValidation: app.csrfProtection },
    (req, reply) => decide(ctx, req, reply),
  );
}

/** One request in the queue, with its decision form. */
function queueRow(
  ctx: BackOfficeContext,
  r: ReturnType<typeof openReviews>[number],
  csrf: string,
): Html {
  const ledger = () => ctx.sim.ledger;
  const viewer = { csrf };
  const t = ledger().terminal(r.terminalId)!;
  const state = shownState(t.status, ctx.store.terminalReport(r.terminalId) ?? null);
  return html`<tr data-review="${r.reviewId}">
    <td>${r.reviewId}</td>
    <td><a href="/terminals/${r.terminalId}">${r.terminalId}</a></td>
    <td>${r.merchantName}</td>
    <td>${when(r.requestedAt)}<br /><span class="muted">${r.requestedBy}</span></td>
    <td>${r.reason}</td>
    <td><span class="state ${state}">${state}</span></td>
    <td>${unsettledOf(ctx, r.terminalId)}</td>
    <td>
      <form method="post" action="/review/${r.reviewId}/decide">
        ${csrfField(viewer.csrf)}
        <label>Note <input name="note" required maxlength="200" /></label>
        <button type="submit" name="decision" value="approve">Approve</button>
        <button type="submit" name="decision" value="reject" class="plain">Reject</button>
      </form>
    </td>
  </tr>`;
}

async function queuePage(
  ctx: BackOfficeContext,
  req: FastifyRequest<Done>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const ledger = () => ctx.sim.ledger;
  const viewer = viewerOf(req, reply);
  const queue = openReviews(ledger().db);
  const decided = decidedReviews(ledger().db, 20);
  return sendPage(
    reply,
    req,
    'Deactivation review queue',
    html`${
        queue.length
          ? html`<table class="queue">
              <thead>
                <tr>
                  <th>Review</th>
                  <th>Terminal</th>
                  <th>Merchant</th>
                  <th>Requested</th>
                  <th>Reason</th>
                  <th>State</th>
                  <th>Unsettled</th>
                  <th>Decision</th>
                </tr>
              </thead>
              <tbody>
                ${queue.map((r) => queueRow(ctx, r, viewer.csrf))}
              </tbody>
            </table>`
          : html`<p class="muted">No request waits for review.</p>`
      }
      <h2>Recently decided</h2>
      ${
        decided.length
          ? html`<table>
              <thead>
                <tr>
                  <th>Review</th>
                  <th>Terminal</th>
                  <th>Decided</th>
                  <th>Decision</th>
                  <th>Note</th>
                </tr>
              </thead>
              <tbody>
                ${decided.map(
                  (r) =>
                    html`<tr>
                      <td>${r.reviewId}</td>
                      <td><a href="/terminals/${r.terminalId}">${r.terminalId}</a></td>
                      <td>${when(r.decidedAt)}</td>
                      <td>${r.decision}</td>
                      <td>${r.decisionReason}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
          : html`<p class="muted">None yet.</p>`
      }`,
    flashFor(req.query.done),
  );
}

async function decide(
  ctx: BackOfficeContext,
  req: FastifyRequest<Decide>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const ledger = () => ctx.sim.ledger;
  const row = ledger()
    .db.prepare('SELECT terminal_id, decision FROM deactivation_reviews WHERE review_id = ?')
    .get(req.params.id) as { terminal_id: string; decision: string | null } | undefined;
  const note = req.body.note.trim();
  const approve = req.body.decision === 'approve';
  // The simulator decides a terminal's oldest open review: this one must be it.
  const oldest =
    row &&
    ledger()
      .reviews(row.terminal_id)
      .find((r) => r.decision === null);
  if (!row || row.decision !== null || oldest?.reviewId !== req.params.id) {
    audit(ctx, req, approve ? 'approve-deactivation' : 'reject-deactivation', {
      terminalId: row?.terminal_id,
      detail: `${req.params.id}: ${note}`,
      outcome: 'refused: not open',
    });
    return sendPage(
      reply,
      req,
      'Already decided',
      html`<p>Review ${req.params.id} is not open.</p>`,
      { status: 409 },
    );
  }
  const cmd = ctx.sim.decideDeactivation(row.terminal_id, approve, note);
  audit(ctx, req, approve ? 'approve-deactivation' : 'reject-deactivation', {
    terminalId: row.terminal_id,
    detail: `${req.params.id}: ${note} (command ${cmd.counter} ${cmd.pushed ? 'pushed' : 'queued'})`,
  });
  return reply.redirect('/review?done=decided', 303);
}
