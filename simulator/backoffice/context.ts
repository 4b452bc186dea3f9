/**
 * What every route group of the back office shares: the simulator, the store, the clock, the
 * viewer of a request, and the audit call that every human action goes through.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AcquirerSimulator } from '../acquirer.ts';
import { html, page, type Html, type Viewer } from './html.ts';
import type { BackOfficeStore, User } from './store.ts';
import type { Scope } from './terminal-queries.ts';

/** Login throttling: failures allowed per username and per address within the window. */
export interface ThrottleOptions {
  maxFailuresPerUser: number;
  maxFailuresPerIp: number;
  windowMs: number;
}

/** Shared by every plugin (passed as plugin options). */
export interface BackOfficeContext {
  sim: AcquirerSimulator;
  store: BackOfficeStore;
  now(): number;
  sessionTtlMs: number;
  throttle: ThrottleOptions;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The logged-in user, set from the session cookie before any route runs. */
    user: User | null;
    /** sha256 of the session cookie: CSRF tokens are bound to it. */
    sessionHash: string | null;
  }
}

export const SESSION_COOKIE = 'bo_session';

/** The CSRF binding of a request: its session, or the login form's fixed value. */
export function csrfUserInfo(req: FastifyRequest): string {
  return req.sessionHash ?? 'login';
}

const tokens = new WeakMap<FastifyRequest, string>();

/**
 * The CSRF token for every form of one response. Made once per request: the plugin makes a
 * new secret on each call while the request has no secret cookie yet, and only the last one
 * would be kept, so a second call would leave the first token's forms refused.
 */
export function csrfToken(req: FastifyRequest, reply: FastifyReply): string {
  let t = tokens.get(req);
  if (t === undefined) {
    t = reply.generateCsrf({ userInfo: csrfUserInfo(req) });
    tokens.set(req, t);
  }
  return t;
}

/** The viewer for the page frame, with the CSRF token for its forms. */
export function viewerOf(req: FastifyRequest, reply: FastifyReply): Viewer {
  const u = req.user!;
  return {
    username: u.username,
    role: u.role,
    displayName: u.displayName,
    csrf: csrfToken(req, reply),
  };
}

/** The terminals a request's user may see. */
export function scopeOf(req: FastifyRequest): Scope {
  const u = req.user!;
  return u.role === 'merchant' ? { merchantId: u.merchantId! } : { all: true };
}

/** Writes one audit row: who, what, when, from where, and how it ended. */
export function audit(
  ctx: BackOfficeContext,
  req: FastifyRequest,
  action: string,
  o: { terminalId?: string; detail?: string; outcome?: string; actor?: string } = {},
): void {
  const u = req.user;
  ctx.store.audit({
    at: ctx.now(),
    actor: o.actor ?? u?.username ?? 'anonymous',
    role: u?.role ?? 'none',
    merchantId: u?.merchantId ?? null,
    action,
    terminalId: o.terminalId ?? null,
    detail: o.detail ?? '',
    outcome: o.outcome ?? 'ok',
    ip: req.ip,
    userAgent: String(req.headers['user-agent'] ?? ''),
  });
}

/** Sends a full page. */
export function sendPage(
  reply: FastifyReply,
  req: FastifyRequest,
  title: string,
  body: Html,
  o: { status?: number; flash?: { kind: 'ok' | 'error'; text: string } } = {},
): FastifyReply {
  const viewer = req.user ? viewerOf(req, reply) : undefined;
  return reply
    .code(o.status ?? 200)
    .type('text/html; charset=utf-8')
    .send(page(title, body, viewer, o.flash));
}

/** A guard for a plugin's routes: logged in, and in one of the roles. */
export function requireRole(...roles: Array<User['role']>) {
  // An async hook that answers must return the reply, or fastify would go on to the handler.
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!req.user) {
      if (req.method === 'GET') return reply.redirect('/login', 303);
      return reply.code(401).type('text/plain').send('log in first');
    }
    if (!roles.includes(req.user.role)) {
      return sendPage(reply, req, 'Not allowed', html`<p>Your role cannot open this page.</p>`, {
        status: 403,
      });
    }
    return undefined;
  };
}
