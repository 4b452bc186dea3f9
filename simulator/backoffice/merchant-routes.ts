/**
 * The merchant's side (the seed's steps): POS management, a terminal's page, the deactivation
 * request with its reason and what must settle first, and the live review status. Every query
 * is scoped to the merchant's id; a terminal of another merchant answers exactly as one that
 * does not exist.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  audit,
  requireRole,
  scopeOf,
  sendPage,
  viewerOf,
  type BackOfficeContext,
} from './context.ts';
import { csrfField, html, yuan, type Html } from './html.ts';
import { flashFor, idParams, listQuery, reasonBody, type Id, type ListQ } from './route-schemas.ts';
import { terminalHistory } from './terminal-history.ts';
import {
  currentReview,
  feesByCategory,
  shownState,
  terminalPage,
  visibleTerminal,
} from './terminal-queries.ts';
import type { TerminalRecord } from '../ledger.ts';
import type { TerminalReport } from './store.ts';
import {
  liveStatus,
  searchAndPager,
  terminalFees,
  terminalSummary,
  terminalTable,
} from './terminal-view.ts';

type Reply = Promise<FastifyReply>;

const notFound = (req: FastifyRequest, reply: FastifyReply): FastifyReply =>
  sendPage(reply, req, 'Not found', html`<p>There is no such terminal among yours.</p>`, {
    status: 404,
  });

/** The merchant's route group. */
export async function merchantRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('merchant'));
  app.get<ListQ>('/pos', { schema: { querystring: listQuery } }, (req, reply) =>
    posList(ctx, req, reply),
  );
  app.get<Id & ListQ>(
    '/pos/:id',
    { schema: { params: idParams, querystring: listQuery } },
    (req, reply) => terminalPageOf(ctx, req, reply),
  );
  app.get<Id>('/pos/:id/status.json', { schema: { params: idParams } }, async (req, reply) => {
    const t = visibleTerminal(ctx.sim.ledger, scopeOf(req), req.params.id);
    if (!t) return reply.code(404).send({ error: 'not found' });
    return liveStatus(ctx.sim.ledger, ctx.store, t);
  });
  app.post<Id & { Body: { reason: string } }>(
    '/pos/:id/deactivate',
    { schema: { params: idParams, body: reasonBody }, preValidation: app.csrfProtection },
    (req, reply) => requestDeactivation(ctx, req, reply),
  );
}

async function posList(
  ctx: BackOfficeContext,
  req: FastifyRequest<ListQ>,
  reply: FastifyReply,
): Reply {
  const ledger = () => ctx.sim.ledger;
  const scope = scopeOf(req);
  const now = ctx.now();
  const list = terminalPage(ledger().db, scope, { q: req.query.q, page: req.query.page, now });
  const fees = feesByCategory(ledger().db, scope, now);
  return sendPage(
    reply,
    req,
    'POS management',
    html`<section class="card">
        <h2>Fees this period by category</h2>
        <table class="fees">
          <thead>
            <tr>
              <th>Category</th>
              <th>Rule in force</th>
              <th class="num">Terminals</th>
              <th class="num">Settled</th>
              <th class="num">In open batches</th>
            </tr>
          </thead>
          <tbody>
            ${fees.map(
              (f) =>
                html`<tr>
                  <td>${f.category}</td>
                  <td>${f.rule}</td>
                  <td class="num">${f.terminals}</td>
                  <td class="num">${yuan(f.settledFee)}</td>
                  <td class="num">${yuan(f.openFee)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </section>
      ${searchAndPager('/pos', req.query.q, list.page, list.pages, list.total)}${terminalTable(list.lines, '/pos', false)}`,
  );
}

/** The deactivation form with what must settle first, or why there is none. */
function deactivationForm(
  t: TerminalRecord,
  report: TerminalReport | null,
  state: string,
  canRequest: boolean,
  csrf: string,
): Html {
  const viewer = { csrf };
  return canRequest
    ? html`<section class="card" id="deactivate">
        <h2>Deactivate this terminal</h2>
        <p>
          <strong>What must settle first:</strong> the open batch holds
          ${report?.openCount ?? 'an unknown number of'} transactions (${yuan(report?.openAmount)}),
          and ${report?.queuedBatches ?? 0} closed batches wait to settle. Once the acquirer
          approves, the terminal closes its open batch, settles every transaction, and only then
          deactivates. It takes no new sales while the request is reviewed, and no new fee is
          charged after deactivation.
        </p>
        <form method="post" action="/pos/${t.terminalId}/deactivate">
          ${csrfField(viewer.csrf)}
          <label
            >Reason for deactivation
            <textarea name="reason" rows="2" maxlength="200" required></textarea>
          </label>
          <button type="submit" class="danger">Request deactivation</button>
        </form>
      </section>`
    : html`<p class="muted">
        ${state === 'active' ? 'A deactivation request is under review.' : `Deactivation can be requested while the terminal is active; it is ${state}.`}
      </p>`;
}

async function terminalPageOf(
  ctx: BackOfficeContext,
  req: FastifyRequest<Id & ListQ>,
  reply: FastifyReply,
): Reply {
  const ledger = () => ctx.sim.ledger;
  const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
  if (!t) return notFound(req, reply);
  const report = ctx.store.terminalReport(t.terminalId) ?? null;
  const state = shownState(t.status, report);
  const open = currentReview(ledger(), t.terminalId);
  const canRequest = state === 'active' && !(open && open.decision === null);
  const form = deactivationForm(t, report, state, canRequest, viewerOf(req, reply).csrf);
  return sendPage(
    reply,
    req,
    `Terminal ${t.terminalId}`,
    html`${terminalSummary(ledger(), ctx.store, t, `/pos/${encodeURIComponent(t.terminalId)}/status.json`)}
    ${form}${terminalFees(ledger(), ctx.store, t, ctx.now())}${terminalHistory(ledger(), t, false)}`,
    flashFor(req.query.done),
  );
}

/** Records the request for review and sends it to the terminal as a signed command. */
async function requestDeactivation(
  ctx: BackOfficeContext,
  req: FastifyRequest<Id & { Body: { reason: string } }>,
  reply: FastifyReply,
): Reply {
  const ledger = () => ctx.sim.ledger;
  const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
  if (!t) {
    audit(ctx, req, 'request-deactivation', {
      terminalId: req.params.id,
      outcome: "refused: not this merchant's terminal",
    });
    return notFound(req, reply);
  }
  const reason = req.body.reason.trim();
  const report = ctx.store.terminalReport(t.terminalId) ?? null;
  const state = shownState(t.status, report);
  const open = ledger()
    .reviews(t.terminalId)
    .find((r) => r.decision === null);
  if (state !== 'active' || open) {
    audit(ctx, req, 'request-deactivation', {
      terminalId: t.terminalId,
      detail: reason,
      outcome: `refused: ${open ? 'already under review' : state}`,
    });
    return sendPage(
      reply,
      req,
      'Not possible now',
      html`<p>
        Terminal ${t.terminalId} is ${state}${open ? ' with a request under review' : ''}: a new
        request cannot be made.
      </p>`,
      { status: 409 },
    );
  }
  const reviewId = `RV-${randomBytes(6).toString('hex').toUpperCase()}`;
  ledger().addReview({
    reviewId,
    terminalId: t.terminalId,
    reason,
    requestedBy: `merchant:${req.user!.username}`,
    requestedAt: ctx.now(),
  });
  // The terminal learns of the request the way it learns anything from the acquirer: a signed command.
  const cmd = ctx.sim.issueCommand(t.terminalId, { deactivate: { reason, violation: false } });
  audit(ctx, req, 'request-deactivation', {
    terminalId: t.terminalId,
    detail: `${reviewId}: ${reason} (open batch ${report?.openCount ?? '?'} txns ${yuan(report?.openAmount)}; command ${cmd.counter} ${cmd.pushed ? 'pushed' : 'queued'})`,
  });
  return reply.redirect(`/pos/${encodeURIComponent(t.terminalId)}?done=requested`, 303);
}
