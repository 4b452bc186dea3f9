/**
 * The acquirer's web back office: a fastify server beside the acquirer simulator, on loopback,
 * for two kinds of people. Merchants see their own terminals, request deactivation and follow
 * its review live; reviewers (acquirer staff) decide reviews, flag, lock and unlock terminals,
 * and make offline unlock codes. Every action goes to the terminal the way the simulator
 * already sends commands (signed, counted, pushed or polled), and into the audit trail.
 *
 * One plugin per route group, each with JSON schemas for its input; cookies and CSRF come
 * from @fastify/cookie and @fastify/csrf-protection. Dev tooling only: the production agent
 * never imports simulator/ (dependency-cruiser holds that).
 */
import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifyCsrf from '@fastify/csrf-protection';
import fastifyFormbody from '@fastify/formbody';
import type { AcquirerSimulator } from '../acquirer.ts';
import { activationRoutes } from './activation-routes.ts';
import { assetRoutes } from './assets.ts';
import { auditRoutes } from './audit-routes.ts';
import { adviceRoutes } from './advice-routes.ts';
import { authRoutes } from './auth-routes.ts';
import {
  audit,
  csrfUserInfo,
  sendPage,
  SESSION_COOKIE,
  type BackOfficeContext,
  type ThrottleOptions,
} from './context.ts';
import { holdsCardNumber } from './card-text.ts';
import { html } from './html.ts';
import { merchantRoutes } from './merchant-routes.ts';
import { hashPassword } from './passwords.ts';
import { reviewRoutes } from './review-routes.ts';
import { terminalRoutes } from './terminal-actions.ts';
import { BackOfficeStore, type User } from './store.ts';
import { watchTerminals } from './terminal-reports.ts';

/** Options of startBackOffice. */
export interface BackOfficeOptions {
  sim: AcquirerSimulator;
  /** Default 127.0.0.1: the back office is a local tool. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 8 hours. */
  sessionTtlMs?: number;
  /** Default: 5 failures per user name, 20 per address, in 15 minutes. */
  throttle?: Partial<ThrottleOptions>;
  /** Time for sessions, throttling and audit; default the simulator's clock. */
  now?: () => number;
}

/** A running back office. */
export interface BackOffice {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly store: BackOfficeStore;
  /** Creates or updates an account (password hashed with scrypt). */
  addUser(u: Omit<User, 'passwordHash'> & { password: string }): Promise<void>;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

/** Starts the back office on loopback. */
export async function startBackOffice(o: BackOfficeOptions): Promise<BackOffice> {
  const { sim } = o;
  const store = new BackOfficeStore(() => sim.ledger.db);
  const ctx: BackOfficeContext = {
    sim,
    store,
    now: o.now ?? (() => sim.now()),
    sessionTtlMs: o.sessionTtlMs ?? 8 * 3_600_000,
    throttle: { maxFailuresPerUser: 5, maxFailuresPerIp: 20, windowMs: 15 * 60_000, ...o.throttle },
  };
  const app = await buildApp(ctx);
  const unwatch = watchTerminals(sim, store);
  await app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://${o.host ?? '127.0.0.1'}:${port}`,
    app,
    store,
    async addUser(u) {
      const { password, ...rest } = u;
      store.putUser({ ...rest, passwordHash: await hashPassword(password) }, ctx.now());
    },
    async close() {
      unwatch();
      await app.close();
    },
  };
}

/** The fastify app: plugins, hooks, error pages, and one plugin per route group. */
async function buildApp(ctx: BackOfficeContext): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: 16 * 1024 });
  await app.register(fastifyCookie);
  await app.register(fastifyFormbody);
  await app.register(fastifyCsrf, {
    getUserInfo: csrfUserInfo,
    csrfOpts: { hmacKey: randomBytes(32).toString('base64') },
    cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true },
    getToken: (req) => (req.body as { _csrf?: string } | undefined)?._csrf,
  });
  addHooks(app, ctx);
  setErrorPages(app, ctx);
  await app.register(assetRoutes);
  await app.register(authRoutes, ctx);
  await app.register(merchantRoutes, ctx);
  await app.register(activationRoutes, ctx);
  await app.register(reviewRoutes, ctx);
  await app.register(terminalRoutes, ctx);
  await app.register(auditRoutes, ctx);
  await app.register(adviceRoutes, ctx);
  return app;
}

/** Who is asking (from the session cookie), typed card numbers refused, security headers. */
function addHooks(app: FastifyInstance, ctx: BackOfficeContext): void {
  app.decorateRequest('user', null);
  app.decorateRequest('sessionHash', null);
  app.addHook('onRequest', async (req) => {
    const token = req.cookies[SESSION_COOKIE];
    const s = token ? ctx.store.session(token, ctx.now()) : undefined;
    req.user = s?.user ?? null;
    req.sessionHash = s?.sessionHash ?? null;
  });
  // After CSRF and schema checks, before any route stores or shows what was typed.
  app.addHook('preHandler', async (req, reply) => {
    const body = req.body as Record<string, unknown> | undefined;
    const typed = [body?.reason, body?.note].filter((v): v is string => typeof v === 'string');
    if (!typed.some(holdsCardNumber)) return undefined;
    audit(ctx, req, 'refused-card-number', {
      detail: `${req.method} ${req.url}`,
      outcome: 'refused',
    });
    return sendPage(
      reply,
      req,
      'Check the form',
      html`<p>
        That text looks like a card number. Card numbers are never typed here; describe the reason
        without one.
      </p>`,
      { status: 400 },
    );
  });
  app.addHook('onSend', async (_req, reply) => {
    reply.headers(SECURITY_HEADERS);
  });
}

/** Every error as a page: CSRF refusals (audited), bad input, not found, the rest. */
function setErrorPages(app: FastifyInstance, ctx: BackOfficeContext): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.code?.startsWith('FST_CSRF')) {
      audit(ctx, req, 'csrf-refused', { detail: `${req.method} ${req.url}`, outcome: 'refused' });
      return sendPage(
        reply,
        req,
        'Refused',
        html`<p>
          This form has expired or did not come from this site. Go back, reload the page and try
          again.
        </p>`,
        { status: 403 },
      );
    }
    if (err.validation) {
      return sendPage(reply, req, 'Check the form', html`<p>${err.message}</p>`, { status: 400 });
    }
    const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    return sendPage(
      reply,
      req,
      'Something went wrong',
      html`<p>${status < 500 ? err.message : 'The back office could not do that.'}</p>`,
      { status },
    );
  });
  app.setNotFoundHandler((req, reply) =>
    sendPage(reply, req, 'Not found', html`<p>There is nothing here.</p>`, { status: 404 }),
  );
}
