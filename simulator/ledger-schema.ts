/**
 * The acquirer ledger's schema, record types and row mappers. The tables live in one file of
 * their own (WAL, synchronous=FULL) beside the simulator's other state; see ledger.ts.
 */
import type { DetailRowRecord, TotalsRecord } from './acquirer-totals.ts';

export type { DetailRowRecord, TotalsRecord };

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

/** Idempotent DDL: run on every open. */
export const SCHEMA = `
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
-- One row per stored chunk: its rows as a JSON array (one insert per chunk, not per row).
-- detail_rows above and this table are no longer written; they stay so an older ledger file
-- still opens and its uploads still complete.
CREATE TABLE IF NOT EXISTS detail_chunk_rows (
  terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL, chunk_index INTEGER NOT NULL,
  rows_json TEXT NOT NULL, PRIMARY KEY (terminal_id, batch_id, digest, chunk_index));
-- One row per stored chunk: the Envelope that carried it, as the bytes received (no encoding
-- on the way in; decoded again only if the totals must be recomputed from the ledger).
CREATE TABLE IF NOT EXISTS detail_chunk_frames (
  terminal_id TEXT NOT NULL, batch_id TEXT NOT NULL, digest TEXT NOT NULL, chunk_index INTEGER NOT NULL,
  envelope BLOB NOT NULL, PRIMARY KEY (terminal_id, batch_id, digest, chunk_index));
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

/** A row as better-sqlite3 returns it. */
export type Row = Record<string, unknown>;
/** Parses a JSON column. */
export const json = <T>(v: unknown): T => JSON.parse(String(v)) as T;
/** Maps a nullable column. */
export const orNull = <T>(v: unknown, f: (x: unknown) => T): T | null =>
  v === null || v === undefined ? null : f(v);

/** The ledger file name inside the simulator's data directory. */
export const LEDGER_FILE = 'acquirer-ledger.db';

/** A settlements row as a record. */
export function toSettlement(r: Row): SettlementRecord {
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

/** A commands row as a record. */
export function toCommand(r: Row): CommandRecord {
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
