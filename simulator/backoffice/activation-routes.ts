/**
 * Activation codes: a merchant adds a terminal (brand and model) and gets its terminal id and a
 * one-time code for the technician who installs it; the codes not used yet are listed.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { audit, requireRole, sendPage, viewerOf, type BackOfficeContext } from './context.ts';
import { csrfField, html, when } from './html.ts';
import { BRANDS, DONE, doneQuery, newTerminalBody, type Done } from './route-schemas.ts';

const CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const newCode = (): string =>
  [...randomBytes(8)].map((b, i) => (i === 4 ? '-' : '') + CODE_ALPHABET[b % 32]).join('');

type NewTerminal = { Body: { brand: string; model: string } };

/** The activation-code route group (merchants). */
export async function activationRoutes(
  app: FastifyInstance,
  ctx: BackOfficeContext,
): Promise<void> {
  app.addHook('onRequest', requireRole('merchant'));
  app.get<Done>('/activation-codes', { schema: { querystring: doneQuery } }, (req, reply) =>
    codesPage(ctx, req, reply),
  );
  app.post<NewTerminal>(
    '/activation-codes',
    { schema: { body: newTerminalBody }, preValidation: app.csrfProtection },
    (req, reply) => newTerminal(ctx, req, reply),
  );
}

async function codesPage(
  ctx: BackOfficeContext,
  req: FastifyRequest<Done>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const rows = ctx.sim.ledger.db
    .prepare(
      `SELECT t.terminal_id, t.activation_code, t.failed_attempts, md.brand, md.model FROM terminals t
       LEFT JOIN bo_terminal_models md ON md.terminal_id = t.terminal_id
       WHERE t.merchant_id = ? AND t.code_used = 0 AND t.status = 'registered' ORDER BY t.terminal_id LIMIT 200`,
    )
    .all(req.user!.merchantId!) as Array<{
    terminal_id: string;
    activation_code: string;
    failed_attempts: number;
    brand: string | null;
    model: string | null;
  }>;
  const viewer = viewerOf(req, reply);
  const done = req.query.done;
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
              ${BRANDS.map((b) => html`<option>${b}</option>`)}
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
}

async function newTerminal(
  ctx: BackOfficeContext,
  req: FastifyRequest<NewTerminal>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const m = req.user!.merchantId!;
  const l = ctx.sim.ledger;
  const like = l.db
    .prepare('SELECT merchant_name, merchant_category FROM terminals WHERE merchant_id = ? LIMIT 1')
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
}
