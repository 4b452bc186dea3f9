/**
 * The back office's own tables, kept in the acquirer's ledger file beside the terminals, reviews
 * and settlements they describe: people (scrypt hashes), sessions (only a hash of the cookie),
 * login attempts (throttling), the audit trail of every human action, what each terminal last
 * reported about itself, and the model of each terminal. Every write is one SQLite statement or
 * one transaction; the database handle is looked up on each call because the simulator reopens
 * its ledger on restart.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../../storage/db.ts';

const DDL = `
CREATE TABLE IF NOT EXISTS bo_users (
  username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('merchant', 'reviewer')), merchant_id TEXT,
  display_name TEXT NOT NULL, created_at INTEGER NOT NULL,
  CHECK ((role = 'merchant') = (merchant_id IS NOT NULL)));
CREATE TABLE IF NOT EXISTS bo_sessions (
  id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, ip TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bo_login_failures (
  id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL, ip TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bo_login_failures_user ON bo_login_failures (username, at);
CREATE INDEX IF NOT EXISTS bo_login_failures_ip ON bo_login_failures (ip, at);
CREATE TABLE IF NOT EXISTS bo_audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
  merchant_id TEXT, action TEXT NOT NULL, terminal_id TEXT, detail TEXT NOT NULL,
  outcome TEXT NOT NULL, ip TEXT NOT NULL, user_agent TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bo_audit_merchant ON bo_audit (merchant_id, id);
CREATE TABLE IF NOT EXISTS bo_terminal_reports (
  terminal_id TEXT PRIMARY KEY, last_contact INTEGER NOT NULL, lifecycle_state TEXT,
  locks TEXT, open_count INTEGER, open_amount INTEGER, open_fee INTEGER,
  queued_batches INTEGER, reported_at INTEGER);
CREATE TABLE IF NOT EXISTS bo_terminal_models (
  terminal_id TEXT PRIMARY KEY, brand TEXT NOT NULL, model TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bo_terminals_merchant ON terminals (merchant_id, terminal_id);
`;

/** A back-office account. */
export interface User {
  username: string;
  passwordHash: string;
  role: 'merchant' | 'reviewer';
  merchantId: string | null;
  displayName: string;
}

/** One audited action. */
export interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  role: string;
  merchantId: string | null;
  action: string;
  terminalId: string | null;
  detail: string;
  outcome: string;
  ip: string;
  userAgent: string;
}

/** What a terminal last told the acquirer about itself. */
export interface TerminalReport {
  terminalId: string;
  lastContact: number;
  lifecycleState: string | null;
  locks: string[] | null;
  openCount: number | null;
  openAmount: number | null;
  openFee: number | null;
  queuedBatches: number | null;
  reportedAt: number | null;
}

type Row = Record<string, unknown>;
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The back office's persistence. */
export class BackOfficeStore {
  constructor(private readonly db: () => Database) {
    this.db().exec(DDL);
  }

  private get d(): Database {
    return this.db();
  }

  // ---------------------------------------------------------------- users and sessions

  putUser(u: User, now: number): void {
    this.d
      .prepare(
        `INSERT INTO bo_users (username, password_hash, role, merchant_id, display_name, created_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,
         role = excluded.role, merchant_id = excluded.merchant_id, display_name = excluded.display_name`,
      )
      .run(u.username, u.passwordHash, u.role, u.merchantId, u.displayName, now);
  }

  user(username: string): User | undefined {
    const r = this.d.prepare('SELECT * FROM bo_users WHERE username = ?').get(username) as
      Row | undefined;
    if (!r) return undefined;
    return {
      username: String(r.username),
      passwordHash: String(r.password_hash),
      role: r.role as User['role'],
      merchantId: r.merchant_id === null ? null : String(r.merchant_id),
      displayName: String(r.display_name),
    };
  }

  /** Opens a session; returns the cookie value (only its hash is stored). */
  openSession(username: string, ip: string, now: number, ttlMs: number): string {
    const token = randomBytes(32).toString('base64url');
    // Expired sessions and failures older than a day go as new sessions come.
    this.d.prepare('DELETE FROM bo_sessions WHERE expires_at <= ?').run(now);
    this.d.prepare('DELETE FROM bo_login_failures WHERE at <= ?').run(now - 86_400_000);
    this.d
      .prepare(
        'INSERT INTO bo_sessions (id_hash, username, created_at, expires_at, ip) VALUES (?, ?, ?, ?, ?)',
      )
      .run(sha256(token), username, now, now + ttlMs, ip);
    return token;
  }

  /** The user behind a live session cookie, with the session's hash (for CSRF binding). */
  session(token: string, now: number): { user: User; sessionHash: string } | undefined {
    const h = sha256(token);
    const r = this.d
      .prepare('SELECT username FROM bo_sessions WHERE id_hash = ? AND expires_at > ?')
      .get(h, now) as { username: string } | undefined;
    const user = r && this.user(r.username);
    return user && { user, sessionHash: h };
  }

  closeSession(token: string): void {
    this.d.prepare('DELETE FROM bo_sessions WHERE id_hash = ?').run(sha256(token));
  }

  // ---------------------------------------------------------------- login throttling

  recordLoginFailure(username: string, ip: string, now: number): void {
    this.d
      .prepare('INSERT INTO bo_login_failures (username, ip, at) VALUES (?, ?, ?)')
      .run(username, ip, now);
  }

  /** Failures for a username and from an address since `since`. */
  loginFailures(username: string, ip: string, since: number): { user: number; ip: number } {
    const count = (col: 'username' | 'ip', v: string): number =>
      (
        this.d
          .prepare(`SELECT COUNT(*) AS n FROM bo_login_failures WHERE ${col} = ? AND at > ?`)
          .get(v, since) as { n: number }
      ).n;
    return { user: count('username', username), ip: count('ip', ip) };
  }

  /** The newest failure for a username or address (to say when to try again). */
  lastLoginFailure(username: string, ip: string): number {
    const r = this.d
      .prepare('SELECT MAX(at) AS t FROM bo_login_failures WHERE username = ? OR ip = ?')
      .get(username, ip) as { t: number | null };
    return r.t ?? 0;
  }

  clearLoginFailures(username: string): void {
    this.d.prepare('DELETE FROM bo_login_failures WHERE username = ?').run(username);
  }

  // ---------------------------------------------------------------- audit

  audit(e: Omit<AuditEntry, 'id'>): void {
    this.d
      .prepare(
        `INSERT INTO bo_audit (at, actor, role, merchant_id, action, terminal_id, detail, outcome, ip, user_agent)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        e.at,
        e.actor,
        e.role,
        e.merchantId,
        e.action,
        e.terminalId,
        e.detail.slice(0, 500),
        e.outcome,
        e.ip,
        e.userAgent.slice(0, 200),
      );
  }

  /** Audit entries, newest first; a merchant sees only its own. */
  auditEntries(o: { merchantId?: string; limit: number; offset: number }): {
    rows: AuditEntry[];
    total: number;
  } {
    const where = o.merchantId === undefined ? '1' : 'merchant_id = @m';
    const p = { m: o.merchantId ?? null, limit: o.limit, offset: o.offset };
    const total = (
      this.d.prepare(`SELECT COUNT(*) AS n FROM bo_audit WHERE ${where}`).get(p) as { n: number }
    ).n;
    const rows = this.d
      .prepare(`SELECT * FROM bo_audit WHERE ${where} ORDER BY id DESC LIMIT @limit OFFSET @offset`)
      .all(p) as Row[];
    return {
      total,
      rows: rows.map((r) => ({
        id: Number(r.id),
        at: Number(r.at),
        actor: String(r.actor),
        role: String(r.role),
        merchantId: r.merchant_id === null ? null : String(r.merchant_id),
        action: String(r.action),
        terminalId: r.terminal_id === null ? null : String(r.terminal_id),
        detail: String(r.detail),
        outcome: String(r.outcome),
        ip: String(r.ip),
        userAgent: String(r.user_agent),
      })),
    };
  }

  // ---------------------------------------------------------------- terminal reports and models

  /** Merges what a terminal just said into its report; absent fields keep their last value. */
  report(r: Partial<TerminalReport> & { terminalId: string; lastContact: number }): void {
    this.d
      .prepare(
        `INSERT INTO bo_terminal_reports (terminal_id, last_contact, lifecycle_state, locks, open_count,
           open_amount, open_fee, queued_batches, reported_at)
         VALUES (@terminalId, @lastContact, @state, @locks, @openCount, @openAmount, @openFee, @queued, @reportedAt)
         ON CONFLICT (terminal_id) DO UPDATE SET last_contact = MAX(last_contact, @lastContact),
           lifecycle_state = COALESCE(@state, lifecycle_state), locks = COALESCE(@locks, locks),
           open_count = COALESCE(@openCount, open_count), open_amount = COALESCE(@openAmount, open_amount),
           open_fee = COALESCE(@openFee, open_fee), queued_batches = COALESCE(@queued, queued_batches),
           reported_at = COALESCE(@reportedAt, reported_at)`,
      )
      .run({
        terminalId: r.terminalId,
        lastContact: r.lastContact,
        state: r.lifecycleState ?? null,
        locks: r.locks ? JSON.stringify(r.locks) : null,
        openCount: r.openCount ?? null,
        openAmount: r.openAmount ?? null,
        openFee: r.openFee ?? null,
        queued: r.queuedBatches ?? null,
        reportedAt: r.reportedAt ?? null,
      });
  }

  terminalReport(terminalId: string): TerminalReport | undefined {
    const r = this.d
      .prepare('SELECT * FROM bo_terminal_reports WHERE terminal_id = ?')
      .get(terminalId) as Row | undefined;
    return r && toReport(r);
  }

  setModel(terminalId: string, brand: string, model: string): void {
    this.d
      .prepare(
        `INSERT INTO bo_terminal_models (terminal_id, brand, model) VALUES (?, ?, ?)
         ON CONFLICT (terminal_id) DO UPDATE SET brand = excluded.brand, model = excluded.model`,
      )
      .run(terminalId, brand, model);
  }
}

/** A bo_terminal_reports row (also joined into list queries) as a record. */
export function toReport(r: Row): TerminalReport {
  const n = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    terminalId: String(r.terminal_id),
    lastContact: Number(r.last_contact ?? 0),
    lifecycleState: r.lifecycle_state == null ? null : String(r.lifecycle_state),
    locks: r.locks == null ? null : (JSON.parse(String(r.locks)) as string[]),
    openCount: n(r.open_count),
    openAmount: n(r.open_amount),
    openFee: n(r.open_fee),
    queuedBatches: n(r.queued_batches),
    reportedAt: n(r.reported_at),
  };
}
