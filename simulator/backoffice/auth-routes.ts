/**
 * Logging in and out. Passwords are checked with scrypt; a username or an address with too many
 * recent failures is refused before its password is even checked, and every attempt, good or
 * bad, is audited. The session cookie is random, HttpOnly and SameSite=Strict, and only its hash
 * is stored.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { audit, csrfToken, sendPage, SESSION_COOKIE, type BackOfficeContext } from './context.ts';
import { csrfField, html } from './html.ts';
import { DECOY_HASH, verifyPassword } from './passwords.ts';

const loginBody = {
  type: 'object',
  required: ['username', 'password', '_csrf'],
  additionalProperties: false,
  properties: {
    username: { type: 'string', minLength: 1, maxLength: 64 },
    password: { type: 'string', minLength: 1, maxLength: 200 },
    _csrf: { type: 'string', maxLength: 200 },
  },
} as const;

type LoginBody = { username: string; password: string; _csrf: string };

function loginForm(
  req: FastifyRequest,
  reply: FastifyReply,
  username = '',
): ReturnType<typeof html> {
  const token = csrfToken(req, reply);
  return html`<form method="post" action="/login" class="card narrow">
    ${csrfField(token)}
    <label
      >User name <input name="username" autocomplete="username" value="${username}" required
    /></label>
    <label
      >Password <input name="password" type="password" autocomplete="current-password" required
    /></label>
    <button type="submit">Log in</button>
  </form>`;
}

/** The login and logout routes. */
export async function authRoutes(app: FastifyInstance, ctx: BackOfficeContext): Promise<void> {
  app.get('/login', async (req, reply) => {
    if (req.user) return reply.redirect('/', 303);
    return sendPage(reply, req, 'Log in', loginForm(req, reply));
  });

  app.post<{ Body: LoginBody }>(
    '/login',
    { schema: { body: loginBody }, preValidation: app.csrfProtection },
    async (req, reply) => {
      const { username, password } = req.body;
      const now = ctx.now();
      const t = ctx.throttle;
      const failures = ctx.store.loginFailures(username, req.ip, now - t.windowMs);
      if (failures.user >= t.maxFailuresPerUser || failures.ip >= t.maxFailuresPerIp) {
        const retry = ctx.store.lastLoginFailure(username, req.ip) + t.windowMs;
        const minutes = Math.max(1, Math.ceil((retry - now) / 60_000));
        audit(ctx, req, 'login', { actor: username, outcome: 'throttled' });
        reply.header('retry-after', String(Math.ceil((retry - now) / 1000)));
        return sendPage(reply, req, 'Log in', loginForm(req, reply, username), {
          status: 429,
          flash: {
            kind: 'error',
            text: `Too many failed attempts. Try again in ${minutes} minutes.`,
          },
        });
      }
      const user = ctx.store.user(username);
      // A missing user costs the same scrypt as a wrong password.
      const ok = await verifyPassword(password, user?.passwordHash ?? DECOY_HASH);
      if (!user || !ok) {
        ctx.store.recordLoginFailure(username, req.ip, now);
        audit(ctx, req, 'login', { actor: username, outcome: 'refused' });
        return sendPage(reply, req, 'Log in', loginForm(req, reply, username), {
          status: 401,
          flash: { kind: 'error', text: 'Wrong user name or password.' },
        });
      }
      ctx.store.clearLoginFailures(username);
      const token = ctx.store.openSession(username, req.ip, now, ctx.sessionTtlMs);
      req.user = user;
      audit(ctx, req, 'login');
      reply.setCookie(SESSION_COOKIE, token, {
        path: '/',
        httpOnly: true,
        sameSite: 'strict',
        maxAge: Math.floor(ctx.sessionTtlMs / 1000),
      });
      // A fresh CSRF secret for the session, so a token minted before login is worthless after.
      reply.clearCookie('_csrf', { path: '/' });
      return reply.redirect('/', 303);
    },
  );

  app.post('/logout', { preValidation: app.csrfProtection }, async (req, reply) => {
    const token = req.cookies[SESSION_COOKIE];
    if (req.user && token) {
      audit(ctx, req, 'logout');
      ctx.store.closeSession(token);
    }
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.redirect('/login', 303);
  });

  app.get('/', async (req, reply) => {
    if (!req.user) return reply.redirect('/login', 303);
    return reply.redirect(req.user.role === 'merchant' ? '/pos' : '/review', 303);
  });
}
