/**
 * The merchant's side (the seed's steps): POS management, a terminal's page, the deactivation
 * request with its reason and what must settle first, the live review status, and activation
 * codes for a new terminal. Every query is scoped to the merchant's id; a terminal of another
 * merchant answers exactly as one that does not exist.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  audit,
  requireRole,
  scopeOf,
  sendPage,
  viewerOf,
  type BackOfficeContext,
} from './context.ts';
import { csrfField, html, when, yuan } from './html.ts';
import {
  currentReview,
  feesByCategory,
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

const TERMINAL_ID = '^[A-Za-z0-9_-]{1,64}$';
export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    q: { type: 'string', maxLength: 64, default: '' },
    page: { type: 'integer', minimum: 1, maximum: 100_000, default: 1 },
    done: { type: 'string', maxLength: 40 },
  },
} as const;
export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: TERMINAL_ID } },
} as const;
const reasonBody = {
  type: 'object',
  required: ['reason', '_csrf'],
  additionalProperties: false,
  properties: {
    reason: { type: 'string', minLength: 3, maxLength: 200, pattern: '\\S' },
    _csrf: { type: 'string', maxLength: 200 },
  },
} as const;
const newTerminalBody = {
  type: 'object',
  required: ['brand', 'model', '_csrf'],
  additionalProperties: false,
  properties: {
    brand: { type: 'string', enum: ['Lakala', 'PAX', 'Newland', 'Sunmi'] },
    model: { type: 'string', minLength: 1, maxLength: 40, pattern: '^[A-Za-z0-9 ._-]+$' },
    _csrf: { type: 'string', maxLength: 200 },
  },
} as const;

/** Fixed messages for ?done=..., so nothing a request carries is echoed into a page. */
export const DONE: Record<string, string> = {
  requested: 'Deactivation requested. The acquirer reviews it; this page follows it live.',
  decided: 'Decision recorded and sent to the terminal as a signed command.',
  flagged: 'Risk flag sent: the terminal locks itself as soon as it receives it.',
  cleared: 'Risk flag cleared: a signed unlock is on its way to the terminal.',
  locked: 'Lock sent to the terminal.',
  unlocked: 'Unlock sent to the terminal.',
  created: 'New terminal registered; give its activation code to the technician who installs it.',
};

type Id = { Params: { id: string } };
type ListQ = { Querystring: { q: string; page: number; done?: string } };

const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const newCode = (): string =>
  [...randomBytes(8)].map((b, i) => (i === 4 ? '-' : '') + CODE_ALPHABET[b % 32]).join('');

/** The merchant's route group. */
export async function merchantRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('merchant'));
  const ledger = () => ctx.sim.ledger;
  const notFound = (req: FastifyRequest, reply: FastifyReply) =>
    sendPage(reply, req, 'Not found', html`<p>There is no such terminal among yours.</p>`, {
      status: 404,
    });

  app.get<ListQ>('/pos', { schema: { querystring: listQuery } }, async (req, reply) => {
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
  });

  app.get<Id & ListQ>(
    '/pos/:id',
    { schema: { params: idParams, querystring: listQuery } },
    async (req, reply) => {
      const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
      if (!t) return notFound(req, reply);
      const report = ctx.store.terminalReport(t.terminalId) ?? null;
      const state = shownState(t.status, report);
      const open = currentReview(ledger(), t.terminalId);
      const canRequest = state === 'active' && !(open && open.decision === null);
      const done = req.query.done && DONE[req.query.done];
      const viewer = viewerOf(req, reply);
      const form = canRequest
        ? html`<section class="card" id="deactivate">
            <h2>Deactivate this terminal</h2>
            <p>
              <strong>What must settle first:</strong> the open batch holds
              ${report?.openCount ?? 'an unknown number of'} transactions
              (${yuan(report?.openAmount)}), and ${report?.queuedBatches ?? 0} closed batches wait
              to settle. Once the acquirer approves, the terminal closes its open batch, settles
              every transaction, and only then deactivates. It takes no new sales while the request
              is reviewed, and no new fee is charged after deactivation.
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
      return sendPage(
        reply,
        req,
        `Terminal ${t.terminalId}`,
        html`${terminalSummary(ledger(), ctx.store, t, `/pos/${encodeURIComponent(t.terminalId)}/status.json`)}
        ${form}${terminalFees(ledger(), ctx.store, t, ctx.now())}${terminalHistory(ledger(), t, false)}`,
        done ? { flash: { kind: 'ok', text: done } } : {},
      );
    },
  );

  app.get<Id>('/pos/:id/status.json', { schema: { params: idParams } }, async (req, reply) => {
    const t = visibleTerminal(ledger(), scopeOf(req), req.params.id);
    if (!t) return reply.code(404).send({ error: 'not found' });
    return liveStatus(ledger(), ctx.store, t);
  });

  app.post<Id & { Body: { reason: string } }>(
    '/pos/:id/deactivate',
    { schema: { params: idParams, body: reasonBody }, preValidation: app.csrfProtection },
    async (req, reply) => {
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
    },
  );

  app.get('/activation-codes', async (req, reply) => {
    const m = req.user!.merchantId!;
    const rows = ledger()
      .db.prepare(
        `SELECT t.terminal_id, t.activation_code, t.failed_attempts, md.brand, md.model FROM terminals t
         LEFT JOIN bo_terminal_models md ON md.terminal_id = t.terminal_id
         WHERE t.merchant_id = ? AND t.code_used = 0 AND t.status = 'registered' ORDER BY t.terminal_id LIMIT 200`,
      )
      .all(m) as Array<{
      terminal_id: string;
      activation_code: string;
      failed_attempts: number;
      brand: string | null;
      model: string | null;
    }>;
    const viewer = viewerOf(req, reply);
    const done = (req.query as { done?: string }).done;
    return sendPage(
      reply,
      req,
      'Activation codes',
      html`<section class="card narrow">
          <h2>Add a terminal</h2>
          <form method="post" action="/activation-codes">
            ${csrfField(viewer.csrf)}
            <label
              >Brand
              <select name="brand">
                ${['Lakala', 'PAX', 'Newland', 'Sunmi'].map((b) => html`<option>${b}</option>`)}
              </select></label
            >
            <label>Model <input name="model" required maxlength="40" value="A8" /></label
            ><button type="submit">Get an activation code</button>
          </form>
        </section>
        <h2>Codes not used yet</h2>
        ${
          rows.length
            ? html`<table class="codes">
                <thead>
                  <tr>
                    <th>Terminal</th>
                    <th>Brand / model</th>
                    <th>Activation code</th>
                    <th class="num">Wrong tries</th>
                  </tr>
                </thead>
                <tbody>
                  ${rows.map(
                    (r) =>
                      html`<tr>
                        <td>${r.terminal_id}</td>
                        <td>${r.brand ?? '-'} ${r.model ?? ''}</td>
                        <td><span class="code">${r.activation_code}</span></td>
                        <td class="num">${r.failed_attempts}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>`
            : html`<p class="muted">Every terminal is activated.</p>`
        }
        <p class="muted">
          A technician types the code on the new terminal's console (<span class="code"
            >activate CODE</span
          >); the code works once. Codes shown ${when(ctx.now())}.
        </p>`,
      done === 'created' ? { flash: { kind: 'ok', text: DONE.created! } } : {},
    );
  });

  app.post<{ Body: { brand: string; model: string } }>(
    '/activation-codes',
    { schema: { body: newTerminalBody }, preValidation: app.csrfProtection },
    async (req, reply) => {
      const m = req.user!.merchantId!;
      const l = ledger();
      const like = l.db
        .prepare(
          'SELECT merchant_name, merchant_category FROM terminals WHERE merchant_id = ? LIMIT 1',
        )
        .get(m) as { merchant_name: string; merchant_category: string } | undefined;
      let terminalId = '';
      do terminalId = `T${String(randomInt(10_000_000)).padStart(7, '0')}`;
      while (l.terminal(terminalId));
      const code = newCode();
      l.registerTerminal({
        terminalId,
        activationCode: code,
        merchantId: m,
        merchantName: like?.merchant_name ?? req.user!.displayName,
        merchantCategory: like?.merchant_category ?? 'default',
      });
      ctx.store.setModel(terminalId, req.body.brand, req.body.model);
      audit(ctx, req, 'create-activation-code', {
        terminalId,
        detail: `${req.body.brand} ${req.body.model}`,
      });
      return reply.redirect('/activation-codes?done=created', 303);
    },
  );
}
