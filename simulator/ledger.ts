/**
 * The acquirer simulator's own ledger: a SQLite file of its own (WAL, synchronous=FULL), so a
 * test proves exactly-once from the acquirer's side and the ledger survives a simulator restart.
 *
 * Exactly-once is enforced by the schema, not by code paths: `settlements` has PRIMARY KEY
 * (terminal_id, batch_id), so a second settlement of a batch cannot be written even by a buggy
 * handler. Everything the terminal sent is kept, duplicates included, so tests count resends.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { loadDriver, type Database } from '../storage/db.ts';
import type { DetailRowRecord, TotalsRecord } from './acquirer-totals.ts';

/** A terminal as the acquirer registered it. */
export interface TerminalRecord {
  terminalId: string;
  activationCode: string;
  codeUsed: boolean;
  failedAttempts: number;
  merchantId: string;
  merchantName: string;
  merchantCategory: string;
  /** Raw 32-byte Ed25519 key from activation; null before. */
  publicKey: Buffer | null;
  status: 'registered' | 'active' | 'deactivated';
}

/** One settled batch. */
export interface SettlementRecord {
  terminalId: string;
  batchId: string;
  digest: string;
  settlementId: string;
  terminalTotals: TotalsRecord;
  settledTotals: TotalsRecord;
  settledAt: number;
  via: 'submit' | 'detail';
}

/** What the acquirer did with one BatchSubmit. */
export type SubmissionOutcome = 'settled' | 'duplicate' | 'out-of-balance' | 'rejected' | 'dropped';

/** One BatchSubmit as received. */
export interface SubmissionRecord {
  id: number;
  terminalId: string;
  batchId: string;
  digest: string;
  messageId: string;
  receivedAt: number;
  totals: TotalsRecord | null;
  /** True when the key was already settled when this arrived (a resend). */
  duplicate: boolean;
  outcome: SubmissionOutcome;
}

/** The out-of-balance claim on one key and what the detail upload proved. */
export interface OutOfBalanceRecord {
  terminalId: string;
  batchId: string;
  digest: string;
  claimedTotals: TotalsRecord;
  chunkCount: number | null;
  detailTotals: TotalsRecord | null;
  /** Whether the digest recomputed over the detail rows equals the batch digest. */
  detailDigestOk: boolean | null;
}

/** A command as queued for a terminal. */
export interface CommandRecord {
  id: number;
  terminalId: string;
  counter: number;
  kind: string;
  signed: Buffer;
  messageId: string;
  issuedAt: number;
  expiresAt: number;
  deliveredAt: number | null;
  deliveries: number;
}

/** A command result as received; `verified` says the terminal's signature checked out. */
export interface CommandResultRecord {
  terminalId: string;
  /** The command it answers, by the reply's correlation id; null when that is unknown. */
  commandId: number | null;
  counter: number;
  outcome: string;
  errorCode: string;
  detail: string;
  verified: boolean;
  receivedAt: number;
}

/** A deactivation request under review. */
export interface ReviewRecord {
  reviewId: string;
  terminalId: string;
  reason: string;
  requestedBy: string;
  requestedAt: number;
  decision: 'approved' | 'rejected' | null;
  decisionReason: string | null;
}

/** A risk report as received. */
export interface RiskReportRecord {
  terminalId: string;
  rule: string;
  detail: string;
  atMs: number;
  receivedAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS terminals (
  terminal_id TEXT PRIMARY KEY, activation_code TEXT NOT NULL, code_used INTEGER NOT NULL DEFAULT 0,
  failed_attempts INTEGER NOT NULL DEFAULT 0, merchant_id TEXT NOT NULL, merchant_name TEXT NOT NULL,
  merchant_category TEXT NOT NULL, public_key BLOB, status TEXT NOT NULL DEFAULT 'registered',
  activated_at INTEGER);
-- The primary key is the exactly-once guarantee: one settlement per (terminal, batch), ever.
CREATE TABLE IF NOT EXISTS settlements (
  terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL,
  settlement_id TEXT NOT NULL UNIQUE, terminal_totals TEXT NOT NULL, settled_totals TEXT NOT NULL,
  settled_at INTEGER NOT NULL, via TEXT NOT NULL CHECK (via IN ('submit', 'detail')),
  PRIMARY KEY (terminal_id, batch_id));
CREATE TABLE IF NOT EXISTS submissions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL,
  digest TEXT NOT NULL, message_id TEXT NOT NULL, received_at INTEGER NOT NULL, totals TEXT,
  duplicate INTEGER NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS out_of_balance (
  terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL,
  claimed_totals TEXT NOT NULL, chunk_count INTEGER, detail_totals TEXT, detail_digest_ok INTEGER,
  created_at INTEGER NOT NULL, PRIMARY KEY (terminal_id, batch_id, digest));
CREATE TABLE IF NOT EXISTS detail_chunks (
  terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL, chunk_index INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL, receipts INTEGER NOT NULL, received_at INTEGER NOT NULL,
  PRIMARY KEY (terminal_id, batch_id, digest, chunk_index));
CREATE TABLE IF NOT EXISTS detail_rows (
  terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL, seq INTEGER NOT NULL,
  row_json TEXT NOT NULL, PRIMARY KEY (terminal_id, batch_id, digest, seq));
CREATE TABLE IF NOT EXISTS command_counters (terminal_id TEXT PRIMARY KEY, last_counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
  id INTEGER PRIMARY KEY AUTOINCREMENT, terminal_id TEXT NOT NULL, counter INTEGER NOT NULL,
  kind TEXT NOT NULL, signed BLOB NOT NULL, message_id TEXT NOT NULL, issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, delivered_at INTEGER, deliveries INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS command_results (
  id INTEGER PRIMARY KEY AUTOINCREMENT, terminal_id TEXT NOT NULL, command_id INTEGER, counter INTEGER NOT NULL,
  outcome TEXT NOT NULL, error_code TEXT NOT NULL, detail TEXT NOT NULL, verified INTEGER NOT NULL,
  body BLOB NOT NULL, signature BLOB NOT NULL, received_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deactivation_reviews (
  review_id TEXT PRIMARY KEY, terminal_id TEXT NOT NULL, reason TEXT NOT NULL,
  requested_by TEXT NOT NULL, requested_at INTEGER NOT NULL, decision TEXT, decision_reason TEXT,
  decided_at INTEGER);
CREATE TABLE IF NOT EXISTS risk_reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT, terminal_id TEXT NOT NULL, rule TEXT NOT NULL,
  detail TEXT NOT NULL, at_ms INTEGER NOT NULL, received_at INTEGER NOT NULL);
`;

type Row = Record<string, unknown>;
const json = <T>(v: unknown): T => JSON.parse(String(v)) as T;
const orNull = <T>(v: unknown, f: (x: unknown) => T): T | null =>
  v === null || v === undefined ? null : f(v);

/** The ledger file name inside the simulator's data directory. */
export const LEDGER_FILE = 'acquirer-ledger.db';

/** The acquirer's ledger. Every method is synchronous and every write is one SQLite transaction. */
export class AcquirerLedger {
  private constructor(
    readonly db: Database,
    readonly file: string,
  ) {}

  /** Opens (creating if needed) the ledger in `dataDir`. */
  static open(dataDir: string): AcquirerLedger {
    mkdirSync(dataDir, { recursive: true });
    const file = path.join(dataDir, LEDGER_FILE);
    const Driver = loadDriver();
    const db = new Driver(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.exec(SCHEMA);
    return new AcquirerLedger(db, file);
  }

  /** Runs fn in one IMMEDIATE transaction (nested calls join it). */
  atomically<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---------------------------------------------------------------- terminals

  /** Registers a terminal; an existing one keeps its state (a restart must not reset a used code). */
  registerTerminal(
    t: Pick<
      TerminalRecord,
      'terminalId' | 'activationCode' | 'merchantId' | 'merchantName' | 'merchantCategory'
    >,
  ): void {
    this.db
      .prepare(
        `INSERT INTO terminals (terminal_id, activation_code, merchant_id, merchant_name, merchant_category)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal_id) DO NOTHING`,
      )
      .run(t.terminalId, t.activationCode, t.merchantId, t.merchantName, t.merchantCategory);
  }

  terminal(terminalId: string): TerminalRecord | undefined {
    const r = this.db.prepare('SELECT * FROM terminals WHERE terminal_id = ?').get(terminalId) as
      Row | undefined;
    if (!r) return undefined;
    return {
      terminalId: String(r.terminal_id),
      activationCode: String(r.activation_code),
      codeUsed: r.code_used === 1,
      failedAttempts: Number(r.failed_attempts),
      merchantId: String(r.merchant_id),
      merchantName: String(r.merchant_name),
      merchantCategory: String(r.merchant_category),
      publicKey: (r.public_key as Buffer | null) ?? null,
      status: r.status as TerminalRecord['status'],
    };
  }

  /** Counts a wrong activation code; returns the failures so far. */
  activationFailed(terminalId: string): number {
    this.db
      .prepare('UPDATE terminals SET failed_attempts = failed_attempts + 1 WHERE terminal_id = ?')
      .run(terminalId);
    return this.terminal(terminalId)?.failedAttempts ?? 0;
  }

  /** Marks the code used and pins the terminal's result-signing key. */
  activated(terminalId: string, publicKey: Buffer, now: number): void {
    this.db
      .prepare(
        `UPDATE terminals SET code_used = 1, public_key = ?, status = 'active', activated_at = ? WHERE terminal_id = ?`,
      )
      .run(publicKey, now, terminalId);
  }

  setTerminalStatus(terminalId: string, status: TerminalRecord['status']): void {
    this.db
      .prepare('UPDATE terminals SET status = ? WHERE terminal_id = ?')
      .run(status, terminalId);
  }

  // ---------------------------------------------------------------- settlement

  /** The settlement of a batch, whatever its digest. */
  settlement(terminalId: string, batchId: string): SettlementRecord | undefined {
    const r = this.db
      .prepare('SELECT * FROM settlements WHERE terminal_id = ? AND batch_id = ?')
      .get(terminalId, batchId) as Row | undefined;
    return r && toSettlement(r);
  }

  /** Inserts a settlement; the primary key throws on a second one for the same batch. */
  settle(s: SettlementRecord): void {
    this.db
      .prepare(
        `INSERT INTO settlements (terminal_id, batch_id, digest, settlement_id, terminal_totals, settled_totals, settled_at, via)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        s.terminalId,
        s.batchId,
        s.digest,
        s.settlementId,
        JSON.stringify(s.terminalTotals),
        JSON.stringify(s.settledTotals),
        s.settledAt,
        s.via,
      );
  }

  /** Every batch settled for a terminal, in the order it was settled. */
  settledBatches(terminalId: string): SettlementRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM settlements WHERE terminal_id = ? ORDER BY settled_at, rowid')
      .all(terminalId) as Row[];
    return rows.map(toSettlement);
  }

  /** 0 or 1, by the primary key. */
  settlementCount(terminalId: string, batchId: string): number {
    const r = this.db
      .prepare('SELECT COUNT(*) AS n FROM settlements WHERE terminal_id = ? AND batch_id = ?')
      .get(terminalId, batchId) as { n: number };
    return r.n;
  }

  recordSubmission(s: Omit<SubmissionRecord, 'id'>): number {
    const res = this.db
      .prepare(
        `INSERT INTO submissions (terminal_id, batch_id, digest, message_id, received_at, totals, duplicate, outcome)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        s.terminalId,
        s.batchId,
        s.digest,
        s.messageId,
        s.receivedAt,
        s.totals ? JSON.stringify(s.totals) : null,
        s.duplicate ? 1 : 0,
        s.outcome,
      );
    return Number(res.lastInsertRowid);
  }

  /** Every BatchSubmit received, oldest first, optionally for one terminal and batch. */
  submissions(filter: { terminalId?: string; batchId?: string } = {}): SubmissionRecord[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM submissions WHERE (?1 IS NULL OR terminal_id = ?1) AND (?2 IS NULL OR batch_id = ?2) ORDER BY id`,
      )
      .all(filter.terminalId ?? null, filter.batchId ?? null) as Row[];
    return rows.map((r) => ({
      id: Number(r.id),
      terminalId: String(r.terminal_id),
      batchId: String(r.batch_id),
      digest: String(r.digest),
      messageId: String(r.message_id),
      receivedAt: Number(r.received_at),
      totals: orNull(r.totals, (v) => json<TotalsRecord>(v)),
      duplicate: r.duplicate === 1,
      outcome: r.outcome as SubmissionOutcome,
    }));
  }

  // ---------------------------------------------------------------- out of balance and detail

  outOfBalance(
    terminalId: string,
    batchId: string,
    digest: string,
  ): OutOfBalanceRecord | undefined {
    const r = this.db
      .prepare('SELECT * FROM out_of_balance WHERE terminal_id = ? AND batch_id = ? AND digest = ?')
      .get(terminalId, batchId, digest) as Row | undefined;
    if (!r) return undefined;
    return {
      terminalId: String(r.terminal_id),
      batchId: String(r.batch_id),
      digest: String(r.digest),
      claimedTotals: json<TotalsRecord>(r.claimed_totals),
      chunkCount: orNull(r.chunk_count, Number),
      detailTotals: orNull(r.detail_totals, (v) => json<TotalsRecord>(v)),
      detailDigestOk: orNull(r.detail_digest_ok, (v) => v === 1),
    };
  }

  claimOutOfBalance(
    terminalId: string,
    batchId: string,
    digest: string,
    claimed: TotalsRecord,
    now: number,
  ): void {
    this.db
      .prepare(
        `INSERT INTO out_of_balance (terminal_id, batch_id, digest, claimed_totals, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING`,
      )
      .run(terminalId, batchId, digest, JSON.stringify(claimed), now);
  }

  /**
   * Stores one detail chunk, idempotent per chunk index: a resent chunk only bumps its receipt
   * count, and rows are keyed by sequence number so they are never counted twice.
   * Returns how many distinct chunks are in and whether this one was new.
   */
  addDetailChunk(
    key: { terminalId: string; batchId: string; digest: string },
    chunkIndex: number,
    chunkCount: number,
    rows: readonly DetailRowRecord[],
    now: number,
  ): { fresh: boolean; received: number; chunkCount: number } {
    return this.atomically(() => {
      const k = [key.terminalId, key.batchId, key.digest] as const;
      const existing = this.db
        .prepare(
          'SELECT 1 FROM detail_chunks WHERE terminal_id = ? AND batch_id = ? AND digest = ? AND chunk_index = ?',
        )
        .get(...k, chunkIndex);
      if (existing) {
        this.db
          .prepare(
            'UPDATE detail_chunks SET receipts = receipts + 1 WHERE terminal_id = ? AND batch_id = ? AND digest = ? AND chunk_index = ?',
          )
          .run(...k, chunkIndex);
      } else {
        this.db
          .prepare(
            'INSERT INTO detail_chunks (terminal_id, batch_id, digest, chunk_index, chunk_count, receipts, received_at) VALUES (?, ?, ?, ?, ?, 1, ?)',
          )
          .run(...k, chunkIndex, chunkCount, now);
        const insert = this.db.prepare(
          'INSERT INTO detail_rows (terminal_id, batch_id, digest, seq, row_json) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
        );
        for (const r of rows) insert.run(...k, r.seq, JSON.stringify(r));
      }
      const n = this.db
        .prepare(
          'SELECT COUNT(*) AS n FROM detail_chunks WHERE terminal_id = ? AND batch_id = ? AND digest = ?',
        )
        .get(...k) as { n: number };
      return { fresh: !existing, received: n.n, chunkCount };
    });
  }

  /** The chunk count an earlier chunk of this key declared, if any. */
  declaredChunkCount(terminalId: string, batchId: string, digest: string): number | undefined {
    const r = this.db
      .prepare(
        'SELECT chunk_count AS c FROM detail_chunks WHERE terminal_id = ? AND batch_id = ? AND digest = ? LIMIT 1',
      )
      .get(terminalId, batchId, digest) as { c: number } | undefined;
    return r?.c;
  }

  /** Detail rows received for a key, in sequence order. */
  detailRows(terminalId: string, batchId: string, digest: string): DetailRowRecord[] {
    const rows = this.db
      .prepare(
        'SELECT row_json FROM detail_rows WHERE terminal_id = ? AND batch_id = ? AND digest = ? ORDER BY seq',
      )
      .all(terminalId, batchId, digest) as Row[];
    return rows.map((r) => json<DetailRowRecord>(r.row_json));
  }

  /** Records what the completed detail upload proved. */
  detailComplete(
    terminalId: string,
    batchId: string,
    digest: string,
    chunkCount: number,
    totals: TotalsRecord,
    digestOk: boolean,
    now: number,
  ): void {
    this.db
      .prepare(
        `INSERT INTO out_of_balance (terminal_id, batch_id, digest, claimed_totals, chunk_count, detail_totals, detail_digest_ok, created_at)
         VALUES (?1, ?2, ?3, ?5, ?4, ?5, ?6, ?7)
         ON CONFLICT DO UPDATE SET chunk_count = ?4, detail_totals = ?5, detail_digest_ok = ?6`,
      )
      .run(terminalId, batchId, digest, chunkCount, JSON.stringify(totals), digestOk ? 1 : 0, now);
  }

  // ---------------------------------------------------------------- commands

  /** The next command counter for a terminal (persisted, so it stays monotonic across restarts). */
  nextCounter(terminalId: string): number {
    return this.atomically(() => {
      const r = this.db
        .prepare('SELECT last_counter AS c FROM command_counters WHERE terminal_id = ?')
        .get(terminalId) as { c: number } | undefined;
      const next = (r?.c ?? 0) + 1;
      this.bumpCounter(terminalId, next);
      return next;
    });
  }

  /** Raises the stored counter to at least `counter` (a test-chosen counter never lowers it). */
  bumpCounter(terminalId: string, counter: number): void {
    this.db
      .prepare(
        `INSERT INTO command_counters (terminal_id, last_counter) VALUES (?1, ?2)
         ON CONFLICT DO UPDATE SET last_counter = MAX(last_counter, ?2)`,
      )
      .run(terminalId, counter);
  }

  addCommand(c: Omit<CommandRecord, 'id' | 'deliveredAt' | 'deliveries'>): number {
    const res = this.db
      .prepare(
        'INSERT INTO commands (terminal_id, counter, kind, signed, message_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(c.terminalId, c.counter, c.kind, c.signed, c.messageId, c.issuedAt, c.expiresAt);
    return Number(res.lastInsertRowid);
  }

  markDelivered(id: number, now: number): void {
    this.db
      .prepare(
        'UPDATE commands SET delivered_at = COALESCE(delivered_at, ?), deliveries = deliveries + 1 WHERE id = ?',
      )
      .run(now, id);
  }

  /**
   * Commands to (re)send on a poll: counter above what the terminal says it applied, not yet
   * answered by a result, not expired. Oldest first, so counters arrive in order. A command
   * the terminal refused is answered too, so a forged one is not pushed again on every poll.
   */
  pendingCommands(terminalId: string, afterCounter: number, now: number): CommandRecord[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM commands c WHERE terminal_id = ?1 AND counter > ?2 AND expires_at > ?3
           AND NOT EXISTS (SELECT 1 FROM command_results r WHERE r.command_id = c.id
             OR (r.terminal_id = c.terminal_id AND r.counter = c.counter AND r.verified = 1))
         ORDER BY counter, id`,
      )
      .all(terminalId, afterCounter, now) as Row[];
    return rows.map(toCommand);
  }

  /** The command sent under an envelope message id (a result's correlation id). */
  commandByMessageId(messageId: string): CommandRecord | undefined {
    const r = this.db.prepare('SELECT * FROM commands WHERE message_id = ?').get(messageId) as
      Row | undefined;
    return r && toCommand(r);
  }

  /** Every command issued to a terminal, oldest first. */
  commands(terminalId: string): CommandRecord[] {
    return (
      this.db
        .prepare('SELECT * FROM commands WHERE terminal_id = ? ORDER BY id')
        .all(terminalId) as Row[]
    ).map(toCommand);
  }

  recordCommandResult(r: CommandResultRecord & { body: Buffer; signature: Buffer }): void {
    this.db
      .prepare(
        `INSERT INTO command_results (terminal_id, command_id, counter, outcome, error_code, detail, verified, body, signature, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.terminalId,
        r.commandId,
        r.counter,
        r.outcome,
        r.errorCode,
        r.detail,
        r.verified ? 1 : 0,
        r.body,
        r.signature,
        r.receivedAt,
      );
  }

  commandResults(terminalId: string): CommandResultRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM command_results WHERE terminal_id = ? ORDER BY id')
      .all(terminalId) as Row[];
    return rows.map((r) => ({
      terminalId: String(r.terminal_id),
      commandId: orNull(r.command_id, Number),
      counter: Number(r.counter),
      outcome: String(r.outcome),
      errorCode: String(r.error_code),
      detail: String(r.detail),
      verified: r.verified === 1,
      receivedAt: Number(r.received_at),
    }));
  }

  // ---------------------------------------------------------------- deactivation and risk

  addReview(r: Omit<ReviewRecord, 'decision' | 'decisionReason'>): void {
    this.db
      .prepare(
        'INSERT INTO deactivation_reviews (review_id, terminal_id, reason, requested_by, requested_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(r.reviewId, r.terminalId, r.reason, r.requestedBy, r.requestedAt);
  }

  /** Decides the terminal's oldest undecided review; returns it, or undefined if none is open. */
  decideReview(
    terminalId: string,
    approve: boolean,
    reason: string,
    now: number,
  ): ReviewRecord | undefined {
    return this.atomically(() => {
      const open = this.reviews(terminalId).find((r) => r.decision === null);
      if (!open) return undefined;
      const decision = approve ? 'approved' : 'rejected';
      this.db
        .prepare(
          'UPDATE deactivation_reviews SET decision = ?, decision_reason = ?, decided_at = ? WHERE review_id = ?',
        )
        .run(decision, reason, now, open.reviewId);
      return { ...open, decision, decisionReason: reason };
    });
  }

  reviews(terminalId: string): ReviewRecord[] {
    const rows = this.db
      .prepare(
        'SELECT * FROM deactivation_reviews WHERE terminal_id = ? ORDER BY requested_at, rowid',
      )
      .all(terminalId) as Row[];
    return rows.map((r) => ({
      reviewId: String(r.review_id),
      terminalId: String(r.terminal_id),
      reason: String(r.reason),
      requestedBy: String(r.requested_by),
      requestedAt: Number(r.requested_at),
      decision: (r.decision as ReviewRecord['decision']) ?? null,
      decisionReason: orNull(r.decision_reason, String),
    }));
  }

  addRiskReport(r: RiskReportRecord): void {
    this.db
      .prepare(
        'INSERT INTO risk_reports (terminal_id, rule, detail, at_ms, received_at) VALUES (?, ?, ?, ?, ?)',
      )
      .run(r.terminalId, r.rule, r.detail, r.atMs, r.receivedAt);
  }

  riskReports(terminalId: string): RiskReportRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM risk_reports WHERE terminal_id = ? ORDER BY id')
      .all(terminalId) as Row[];
    return rows.map((r) => ({
      terminalId: String(r.terminal_id),
      rule: String(r.rule),
      detail: String(r.detail),
      atMs: Number(r.at_ms),
      receivedAt: Number(r.received_at),
    }));
  }
}

function toSettlement(r: Row): SettlementRecord {
  return {
    terminalId: String(r.terminal_id),
    batchId: String(r.batch_id),
    digest: String(r.digest),
    settlementId: String(r.settlement_id),
    terminalTotals: json<TotalsRecord>(r.terminal_totals),
    settledTotals: json<TotalsRecord>(r.settled_totals),
    settledAt: Number(r.settled_at),
    via: r.via as SettlementRecord['via'],
  };
}

function toCommand(r: Row): CommandRecord {
  return {
    id: Number(r.id),
    terminalId: String(r.terminal_id),
    counter: Number(r.counter),
    kind: String(r.kind),
    signed: r.signed as Buffer,
    messageId: String(r.message_id),
    issuedAt: Number(r.issued_at),
    expiresAt: Number(r.expires_at),
    deliveredAt: orNull(r.delivered_at, Number),
    deliveries: Number(r.deliveries),
  };
}
