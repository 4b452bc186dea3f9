/**
 * The reviewer's side (acquirer staff): the queue of deactivation requests with each terminal's
 * unsettled state, approve or reject with a note (the decision reaches the terminal as a signed
 * command), the risk flag that locks a terminal by itself and its clearing, lock and unlock, and
 * the offline unlock code for a challenge a technician reads out.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { formatUnlockCode } from '../../agent/policy/unlock-code.ts';
import type { CommandBody } from '../acquirer.ts';
import {
  audit,
  requireRole,
  scopeOf,
  sendPage,
  viewerOf,
  type BackOfficeContext,
} from './context.ts';
import { csrfField, html, when, yuan, type Html } from './html.ts';
import { DONE, idParams, listQuery } from './merchant-routes.ts';
import {
  decidedReviews,
  openReviews,
  shownState,
  terminalPage,
  visibleTerminal,
} from './terminal-queries.ts';
import {
  liveStatus,
  searchAndPager,
  terminalFees,
  terminalSummary,
  terminalTable,
} from './terminal-view.ts';
import { terminalHistory } from './terminal-history.ts';

/** Severity of the back office's risk flag: at or above every terminal's lock threshold (1..10). */
const RISK_FLAG_SEVERITY = 10;
/** How long an offline unlock code is good for. */
const UNLOCK_CODE_TTL_MS = 30 * 60_000;

const csrf = { _csrf: { type: 'string', maxLength: 200 } } as const;
const noteBody = {
  type: 'object',
  required: ['note', '_csrf'],
  additionalProperties: false,
  properties: { note: { type: 'string', minLength: 3, maxLength: 200, pattern: '\\S' }, ...csrf },
} as const;
const decideBody = {
  type: 'object',
  required: ['decision', 'note', '_csrf'],
  additionalProperties: false,
  properties: {
    decision: { type: 'string', enum: ['approve', 'reject'] },
    note: { type: 'string', minLength: 3, maxLength: 200, pattern: '\\S' },
    ...csrf,
  },
} as const;
const unlockCodeBody = {
  type: 'object',
  required: ['challenge', '_csrf'],
  additionalProperties: false,
  properties: {
    // The terminal's challenge alphabet (agent/policy/unlock-code.ts), ten characters.
    challenge: { type: 'string', pattern: '^\\s*[A-HJ-NP-Za-hj-np-z2-9]{10}\\s*$' },
    ...csrf,
  },
} as const;

type Id = { Params: { id: string } };
type ActionName = 'risk-flag' | 'risk-clear' | 'lock' | 'unlock';

const ACTIONS: Record<ActionName, { done: string; body: (note: string) => CommandBody }> = {
  'risk-flag': {
    done: 'flagged',
    body: (note) => ({
      riskFlag: { code: 'BACKOFFICE', severity: RISK_FLAG_SEVERITY, reason: note },
    }),
  },
  'risk-clear': { done: 'cleared', body: (note) => ({ unlock: { source: 'risk', reason: note } }) },
  lock: { done: 'locked', body: (note) => ({ lock: { reason: note } }) },
  unlock: { done: 'unlocked', body: (note) => ({ unlock: { source: 'remote', reason: note } }) },
};

function unsettledOf(ctx: BackOfficeContext, terminalId: string): Html {
  const r = ctx.store.terminalReport(terminalId);
  if (!r || r.openCount == null) return html`<span class="muted">not reported yet</span>`;
  return html`${r.openCount} txns, ${yuan(r.openAmount)}; ${r.queuedBatches ?? 0} batches queued`;
}

/** The reviewer's route group. */
export async function reviewRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('reviewer'));
  const ledger = () => ctx.sim.ledger;
  const notFound = (req: FastifyRequest, reply: FastifyReply) =>
    sendPage(reply, req, 'Not found', html`<p>No such terminal.</p>`, { status: 404 });

  app.get<{ Querystring: { done?: string } }>('/review', async (req, reply) => {
    const viewer = viewerOf(req, reply);
    const queue = openReviews(ledger().db);
    const decided = decidedReviews(ledger().db, 20);
    const done = req.query.done && DONE[req.query.done];
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
                  ${queue.map((r) => {
                    const t = ledger().terminal(r.terminalId)!;
                    const state = shownState(
                      t.status,
                      ctx.store.terminalReport(r.terminalId) ?? null,
                    );
                    return html`<tr data-review="${r.reviewId}">
                      <td>${r.reviewId}</td>
                      <td><a href="/terminals/${r.terminalId}">${r.terminalId}</a></td>
                      <td>${r.merchantName}</td>
                      <td>
                        ${when(r.requestedAt)}<br /><span class="muted">${r.requestedBy}</span>
                      </td>
                      <td>${r.reason}</td>
                      <td><span class="state ${state}">${state}</span></td>
                      <td>${unsettledOf(ctx, r.terminalId)}</td>
                      <td>
                        <form method="post" action="/review/${r.reviewId}/decide">
                          ${csrfField(viewer.csrf)}
                          <label>Note <input name="note" required maxlength="200" /></label>
                          <button type="submit" name="decision" value="approve">Approve</button>
                          <button type="submit" name="decision" value="reject" class="plain">
                            Reject
                          </button>
                        </form>
                      </td>
                    </tr>`;
                  })}
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
      done ? { flash: { kind: 'ok', text: done } } : {},
    );
  });

  app.post<{ Params: { id: string }; Body: { decision: 'approve' | 'reject'; note: string } }>(
    '/review/:id/decide',
    {
      schema: {
        params: {
          type: 'object',
          properties: { id: { type: 'string', pattern: '^RV-[A-F0-9]{12}$' } },
        },
        body: decideBody,
      },
      preValidation: app.csrfProtection,
    },
    async (req, reply) => {
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
    },
  );

  app.get<{ Querystring: { q: string; page: number } }>(
    '/terminals',
    { schema: { querystring: listQuery } },
    async (req, reply) => {
      const list = terminalPage(ledger().db, scopeOf(req), {
        q: req.query.q,
        page: req.query.page,
        now: ctx.now(),
      });
      return sendPage(
        reply,
        req,
        'Terminals',
        html`${searchAndPager('/terminals', req.query.q, list.page, list.pages, list.total)}${terminalTable(list.lines, '/terminals', true)}`,
      );
    },
  );

  const terminalPageFor = (
    req: FastifyRequest<Id & { Querystring: { done?: string } }>,
    reply: FastifyReply,
    code?: { challenge: string; code: string; expiresAt: number },
  ) => {
    const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
    if (!t) return notFound(req, reply);
    const viewer = viewerOf(req, reply);
    const form = (action: ActionName, label: string, cls = '') =>
      html`<form method="post" action="/terminals/${t.terminalId}/${action}" class="card">
        ${csrfField(viewer.csrf)}
        <label>${label}: note <input name="note" required maxlength="200" /></label
        ><button type="submit" class="${cls}">${label}</button>
      </form>`;
    const done = req.query.done && DONE[req.query.done];
    return sendPage(
      reply,
      req,
      `Terminal ${t.terminalId}`,
      html`${terminalSummary(ledger(), ctx.store, t, `/terminals/${encodeURIComponent(t.terminalId)}/status.json`)}
        <h2>Acquirer actions</h2>
        <div class="row">
          ${form('risk-flag', 'Flag for risk', 'danger')}${form('risk-clear', 'Clear risk flag')}
        </div>
        <div class="row">${form('lock', 'Lock')}${form('unlock', 'Unlock')}</div>
        <section class="card">
          <h2>Offline unlock code</h2>
          <p>
            For a terminal locked for risk with no link: the technician reads the challenge shown on
            its console.
          </p>
          <form method="post" action="/terminals/${t.terminalId}/unlock-code">
            ${csrfField(viewer.csrf)}<label
              >Challenge <input name="challenge" required maxlength="20" autocomplete="off"
            /></label>
            <button type="submit">Make unlock code</button>
          </form>
          ${
            code
              ? html`<p>
                    Code for challenge <span class="code">${code.challenge}</span>, good until
                    ${when(code.expiresAt)}:
                  </p>
                  <p><span class="code" id="unlock-code">${code.code}</span></p>`
              : ''
          }
        </section>
        ${terminalFees(ledger(), ctx.store, t, ctx.now())}${terminalHistory(ledger(), t, true)}`,
      done ? { flash: { kind: 'ok', text: done } } : {},
    );
  };

  app.get<Id & { Querystring: { done?: string } }>(
    '/terminals/:id',
    { schema: { params: idParams } },
    async (req, reply) => terminalPageFor(req, reply),
  );

  app.get<Id>(
    '/terminals/:id/status.json',
    { schema: { params: idParams } },
    async (req, reply) => {
      const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
      if (!t) return reply.code(404).send({ error: 'not found' });
      return liveStatus(ledger(), ctx.store, t);
    },
  );

  for (const [name, action] of Object.entries(ACTIONS) as Array<
    [ActionName, (typeof ACTIONS)[ActionName]]
  >) {
    app.post<Id & { Body: { note: string } }>(
      `/terminals/:id/${name}`,
      { schema: { params: idParams, body: noteBody }, preValidation: app.csrfProtection },
      async (req, reply) => {
        const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
        if (!t) return notFound(req, reply);
        const note = req.body.note.trim();
        const cmd = ctx.sim.issueCommand(t.terminalId, action.body(note));
        audit(ctx, req, name, {
          terminalId: t.terminalId,
          detail: `${note} (command ${cmd.counter} ${cmd.pushed ? 'pushed' : 'queued'})`,
        });
        return reply.redirect(
          `/terminals/${encodeURIComponent(t.terminalId)}?done=${action.done}`,
          303,
        );
      },
    );
  }

  app.post<Id & { Body: { challenge: string }; Querystring: { done?: string } }>(
    '/terminals/:id/unlock-code',
    { schema: { params: idParams, body: unlockCodeBody }, preValidation: app.csrfProtection },
    async (req, reply) => {
      const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
      if (!t) return notFound(req, reply);
      const challenge = req.body.challenge.trim().toUpperCase();
      const expiresAt = ctx.sim.now() + UNLOCK_CODE_TTL_MS;
      const { signature } = ctx.sim.signUnlockGrant(t.terminalId, challenge, expiresAt, 'risk');
      audit(ctx, req, 'unlock-code', {
        terminalId: t.terminalId,
        detail: `challenge ${challenge}, good until ${when(expiresAt)}`,
      });
      return terminalPageFor(req, reply, {
        challenge,
        code: formatUnlockCode(expiresAt, signature),
        expiresAt,
      });
    },
  );
}
