/**
 * Offline advices as the acquirer received them (simulator/advice-ledger.ts): every offline
 * approval a terminal forwarded, what the acquirer answered (its reference, or the reason of a
 * decline) and how many times it arrived. A merchant sees its own terminals' advices; a
 * reviewer sees all, and can narrow the list to the declined ones.
 */
import type { FastifyInstance } from 'fastify';
import { requireRole, sendPage, type BackOfficeContext } from './context.ts';
import { html, when, yuan } from './html.ts';

const LIMIT = 200;

/** The offline-advice route group. */
export async function adviceRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.addHook('onRequest', requireRole('merchant', 'reviewer'));
  app.get<{ Querystring: { outcome: 'all' | 'accepted' | 'declined' } }>(
    '/advices',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            outcome: { type: 'string', enum: ['all', 'accepted', 'declined'], default: 'all' },
          },
        },
      },
    },
    async (req, reply) => {
      const u = req.user!;
      const { ledger } = ctx.sim;
      const mine = (terminalId: string) =>
        u.role === 'reviewer' || ledger.terminal(terminalId)?.merchantId === u.merchantId;
      const want = req.query.outcome;
      const all = ledger.advices.list().filter((a) => mine(a.terminalId));
      const shown = all.filter((a) => want === 'all' || a.outcome === want).slice(-LIMIT);
      const declined = all.filter((a) => a.outcome === 'declined').length;
      return sendPage(
        reply,
        req,
        'Offline advices',
        html`<p class="muted">
            ${all.length} advices received, ${declined} declined ·
            <a href="/advices?outcome=all">All</a>
            <a href="/advices?outcome=declined">Declined</a>
            <a href="/advices?outcome=accepted">Accepted</a>
          </p>
          <table class="advices">
            <thead>
              <tr>
                <th>Received</th>
                <th>Terminal</th>
                <th>Seq</th>
                <th>Type</th>
                <th>Amount</th>
                <th>Card</th>
                <th>Answer</th>
                <th>Reference or reason</th>
                <th>Received times</th>
              </tr>
            </thead>
            <tbody>
              ${shown.reverse().map(
                (a) =>
                  html`<tr data-advice="${a.key}" data-outcome="${a.outcome}">
                    <td>${when(a.receivedAt)}</td>
                    <td>${a.terminalId}</td>
                    <td>${a.seq}</td>
                    <td>${a.type}</td>
                    <td>${yuan(a.amount)}</td>
                    <td>${a.maskedPan}</td>
                    <td>${a.outcome}</td>
                    <td>
                      ${a.outcome === 'accepted' ? a.reference : `${a.reasonCode}: ${a.reason}`}
                    </td>
                    <td>${a.receipts}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`,
      );
    },
  );
}
