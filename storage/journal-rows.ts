import { hash } from 'node:crypto';

/**
 * The journal's rows: their types, the columns in the order the hash covers them, the hash of
 * one row over the previous one, and the mapping of a stored row to a journal entry.
 */

export const GENESIS_HASH = '0'.repeat(64);

export type TxnType = 'sale' | 'refund' | 'void' | 'reversal';
export type TxnStatus = 'approved' | 'declined' | 'pending-offline';

/** A transaction as it goes into the journal: card data already masked and tokenised. */
export interface TxnRecord {
  localId: string;
  type: TxnType;
  originalSeq: number | null;
  amount: number;
  currency: string;
  category: string;
  fee: number;
  feeVersion: string | null;
  maskedPan: string | null;
  panToken: string | null;
  authCode: string | null;
  status: TxnStatus;
  batchId: string;
}

export interface TxnRow extends TxnRecord {
  seq: number;
  createdAt: number;
  hash: string;
}

/** What batch totals and the batch digest read of a transaction. */
export type TxnSumRow = Pick<TxnRow, 'seq' | 'hash' | 'type' | 'status' | 'amount' | 'fee'>;

/** A transaction as the detail upload sends it (batchDetailAfter). */
export interface TxnDetailRow {
  seq: number;
  localId: string;
  type: TxnType;
  amount: number;
  currency: string;
  fee: number;
  status: TxnStatus;
  maskedPan: string;
  panToken: string;
  authCode: string;
  originalSeq: number;
  createdAtMs: number;
  merchantCategory: string;
  hash: string;
}

/**
 * A TxnDetailRow as an array (batchDetailTuplesAfter), in pos.proto's DetailRow field order:
 * seq, local id, type, amount, currency, fee, status, masked PAN, PAN token, auth code,
 * original seq, created at (ms), category, hash.
 */
export type TxnDetailTuple = [
  seq: number,
  localId: string,
  type: TxnType,
  amount: number,
  currency: string,
  fee: number,
  status: TxnStatus,
  maskedPan: string,
  panToken: string,
  authCode: string,
  originalSeq: number,
  createdAtMs: number,
  merchantCategory: string,
  hash: string,
];

export interface EventRow {
  seq: number;
  createdAt: number;
  event: string;
  detail: Record<string, unknown>;
  hash: string;
}

export type JournalEntry = ({ kind: 'txn' } & TxnRow) | ({ kind: 'event' } & EventRow);

export interface RawRow {
  seq: number;
  kind: 'txn' | 'event';
  created_at: number;
  local_id: string | null;
  type: TxnType | null;
  original_seq: number | null;
  amount: number | null;
  currency: string | null;
  category: string | null;
  fee: number | null;
  fee_version: string | null;
  masked_pan: string | null;
  pan_token: string | null;
  auth_code: string | null;
  status: TxnStatus | null;
  batch_id: string | null;
  event: string | null;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

/** Every content column of a journal row, in the order the hash covers them. */
export const JOURNAL_COLUMNS = [
  'seq',
  'kind',
  'created_at',
  'local_id',
  'type',
  'original_seq',
  'amount',
  'currency',
  'category',
  'fee',
  'fee_version',
  'masked_pan',
  'pan_token',
  'auth_code',
  'status',
  'batch_id',
  'event',
  'detail',
] as const;

export type Content = Pick<RawRow, (typeof JOURNAL_COLUMNS)[number]>;

/** An event row's content (every transaction column empty), seq aside. */
export function eventContent(
  event: string,
  originalSeq: number | null,
  detail: Record<string, unknown>,
  createdAt: number,
): Omit<Content, 'seq'> {
  return {
    kind: 'event',
    created_at: createdAt,
    local_id: null,
    type: null,
    original_seq: originalSeq,
    amount: null,
    currency: null,
    category: null,
    fee: null,
    fee_version: null,
    masked_pan: null,
    pan_token: null,
    auth_code: null,
    status: null,
    batch_id: null,
    event,
    detail: JSON.stringify(detail),
  };
}

/** The hash of one row: covers the previous hash and every content column in order. */
export function rowHash(prevHash: string, row: Content): string {
  return chainHash(prevHash, JSON.stringify(JOURNAL_COLUMNS.map((c) => row[c] ?? null)));
}

/** The rows a chain walk reads: content columns in hash order, then prev_hash and hash. */
export const CHAIN_SQL = `SELECT ${JOURNAL_COLUMNS.join(', ')}, prev_hash, hash FROM journal WHERE seq > ? ORDER BY seq`;

/** rowHash over a canonical text already built: SHA-256(prev + newline + canonical). */
export function chainHash(prev: string, canonical: string): string {
  // One-shot hash(): a third of createHash()'s cost for a row-sized input, the same bytes.
  return hash('sha256', `${prev}\n${canonical}`, 'hex');
}

export function toEntry(r: RawRow): JournalEntry {
  if (r.kind === 'event') {
    return {
      kind: 'event',
      seq: r.seq,
      createdAt: r.created_at,
      event: r.event ?? '',
      detail: r.detail ? (JSON.parse(r.detail) as Record<string, unknown>) : {},
      hash: r.hash,
    };
  }
  return {
    kind: 'txn',
    seq: r.seq,
    createdAt: r.created_at,
    localId: r.local_id ?? '',
    type: r.type as TxnType,
    originalSeq: r.original_seq,
    amount: r.amount ?? 0,
    currency: r.currency ?? '',
    category: r.category ?? '',
    fee: r.fee ?? 0,
    feeVersion: r.fee_version,
    maskedPan: r.masked_pan,
    panToken: r.pan_token,
    authCode: r.auth_code,
    status: r.status as TxnStatus,
    batchId: r.batch_id ?? '',
    hash: r.hash,
  };
}
