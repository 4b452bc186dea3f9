/**
 * The audit page: every human action (logins good and bad, requests, decisions, flags, locks,
 * unlock codes, refused forms), newest first, with who, what, when and from where. A merchant
 * sees the entries of its own people; a reviewer sees all.
 */
import type { FastifyInstance } from 'fastify';
import { requireRole, sendPage, type BackOfficeContext } from './context.ts';
import { html, when } from './html.ts';

const PAGE = 50;

/** The audit route group. */
export async function auditRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('merchant', 'reviewer'));
  app.get<{ Querystring: { page: number } }>(
    '/audit',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { page: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 1 } },
        },
      },
    },
    async (req, reply) => {
      const u = req.user!;
      const { rows, total } = ctx.store.auditEntries({
        ...(u.role === 'merchant' ? { merchantId: u.merchantId! } : {}),
        limit: PAGE,
        offset: (req.query.page - 1) * PAGE,
      });
      const pages = Math.max(1, Math.ceil(total / PAGE));
      const p = req.query.page;
      return sendPage(
        reply,
        req,
        'Audit',
        html`<p class="muted">
            ${total} entries · page ${p} of ${pages}
            ${p > 1 ? html`<a href="/audit?page=${p - 1}">Newer</a>` : ''}
            ${p < pages ? html`<a href="/audit?page=${p + 1}">Older</a>` : ''}
          </p>
          <table class="audit">
            <thead>
              <tr>
                <th>When</th>
                <th>Who</th>
                <th>Role</th>
                <th>Action</th>
                <th>Terminal</th>
                <th>Detail</th>
                <th>Outcome</th>
                <th>From</th>
              </tr>
            </thead>
            <tbody>
              ${rows.map(
                (r) =>
                  html`<tr>
                    <td>${when(r.at)}</td>
                    <td>${r.actor}</td>
                    <td>${r.role}</td>
                    <td>${r.action}</td>
                    <td>${r.terminalId ?? ''}</td>
                    <td>${r.detail}</td>
                    <td>${r.outcome}</td>
                    <td>${r.ip}<br /><span class="muted">${r.userAgent.slice(0, 60)}</span></td>
                  </tr>`,
              )}
            </tbody>
          </table>`,
      );
    },
  );
}
