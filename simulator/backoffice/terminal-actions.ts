/**
 * A reviewer's view of the terminals: the list of all of them, a terminal's page with the
 * acquirer's actions (risk flag and its clearing, lock, unlock, each a signed command with a
 * note), and the offline unlock code for a challenge a technician reads from the console.
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
import { csrfField, html, when } from './html.ts';
import {
  doneQuery,
  flashFor,
  idParams,
  listQuery,
  noteBody,
  unlockCodeBody,
  type Done,
  type Id,
  type ListQ,
} from './route-schemas.ts';
import { terminalHistory } from './terminal-history.ts';
import { terminalPage, visibleTerminal } from './terminal-queries.ts';
import {
  liveStatus,
  searchAndPager,
  terminalFees,
  terminalSummary,
  terminalTable,
} from './terminal-view.ts';

/** Severity of the back office's risk flag: at or above every terminal's lock threshold (1..10). */
const RISK_FLAG_SEVERITY = 10;
/** How long an offline unlock code is good for. */
const UNLOCK_CODE_TTL_MS = 30 * 60_000;

type ActionName = 'risk-flag' | 'risk-clear' | 'lock' | 'unlock';
type UnlockCode = { challenge: string; code: string; expiresAt: number };

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

const notFound = (req: FastifyRequest, reply: FastifyReply): FastifyReply =>
  sendPage(reply, req, 'Not found', html`<p>No such terminal.</p>`, { status: 404 });

/** The terminals route group (reviewers). */
export async function terminalRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('reviewer'));
  app.get<ListQ>('/terminals', { schema: { querystring: listQuery } }, async (req, reply) => {
    const list = terminalPage(ctx.sim.ledger.db, scopeOf(req), {
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
  });
  app.get<Id & Done>(
    '/terminals/:id',
    { schema: { params: idParams, querystring: doneQuery } },
    (req, reply) => terminalPageOf(ctx, req, reply),
  );
  app.get<Id>(
    '/terminals/:id/status.json',
    { schema: { params: idParams } },
    async (req, reply) => {
      const t = visibleTerminal(ctx.sim.ledger, scopeOf(req), req.params.id);
      if (!t) return reply.code(404).send({ error: 'not found' });
      return liveStatus(ctx.sim.ledger, ctx.store, t);
    },
  );
  for (const name of Object.keys(ACTIONS) as ActionName[]) {
    app.post<Id & { Body: { note: string } }>(
      `/terminals/:id/${name}`,
      { schema: { params: idParams, body: noteBody }, preValidation: app.csrfProtection },
      (req, reply) => act(ctx, name, req, reply),
    );
  }
  app.post<Id & Done & { Body: { challenge: string } }>(
    '/terminals/:id/unlock-code',
    { schema: { params: idParams, body: unlockCodeBody }, preValidation: app.csrfProtection },
    (req, reply) => unlockCode(ctx, req, reply),
  );
}

/** Sends one of the acquirer's actions to the terminal as a signed command. */
async function act(
  ctx: BackOfficeContext,
  name: ActionName,
  req: FastifyRequest<Id & { Body: { note: string } }>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const t = visibleTerminal(ctx.sim.ledger, scopeOf(req), req.params.id);
  if (!t) return notFound(req, reply);
  const note = req.body.note.trim();
  const cmd = ctx.sim.issueCommand(t.terminalId, ACTIONS[name].body(note));
  audit(ctx, req, name, {
    terminalId: t.terminalId,
    detail: `${note} (command ${cmd.counter} ${cmd.pushed ? 'pushed' : 'queued'})`,
  });
  return reply.redirect(
    `/terminals/${encodeURIComponent(t.terminalId)}?done=${ACTIONS[name].done}`,
    303,
  );
}

async function unlockCode(
  ctx: BackOfficeContext,
  req: FastifyRequest<Id & Done & { Body: { challenge: string } }>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const t = visibleTerminal(ctx.sim.ledger, scopeOf(req), req.params.id);
  if (!t) return notFound(req, reply);
  const challenge = req.body.challenge.trim().toUpperCase();
  const expiresAt = ctx.sim.now() + UNLOCK_CODE_TTL_MS;
  const { signature } = ctx.sim.signUnlockGrant(t.terminalId, challenge, expiresAt, 'risk');
  audit(ctx, req, 'unlock-code', {
    terminalId: t.terminalId,
    detail: `challenge ${challenge}, good until ${when(expiresAt)}`,
  });
  return terminalPageOf(ctx, req, reply, {
    challenge,
    code: formatUnlockCode(expiresAt, signature),
    expiresAt,
  });
}

async function terminalPageOf(
  ctx: BackOfficeContext,
  req: FastifyRequest<Id & Done>,
  reply: FastifyReply,
  code?: UnlockCode,
): Promise<FastifyReply> {
  const ledger = () => ctx.sim.ledger;
  const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
  if (!t) return notFound(req, reply);
  const viewer = viewerOf(req, reply);
  const form = (action: ActionName, label: string, cls = '') =>
    html`<form method="post" action="/terminals/${t.terminalId}/${action}" class="card">
      ${csrfField(viewer.csrf)}
      <label>${label}: note <input name="note" required maxlength="200" /></label
      ><button type="submit" class="${cls}">${label}</button>
    </form>`;
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
    flashFor(req.query.done),
  );
}
