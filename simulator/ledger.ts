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
import { loadDriver } from '../storage/db.ts';
import { ControlLedger } from './ledger-control.ts';
import { AdviceLedger } from './advice-ledger.ts';
import { decodeEnvelope } from '../protocol/messages.ts';
import { detailRowFromWire } from './acquirer-totals.ts';
import {
  LEDGER_FILE,
  SCHEMA,
  json,
  orNull,
  toSettlement,
  type DetailRowRecord,
  type OutOfBalanceRecord,
  type Row,
  type SettlementRecord,
  type SubmissionOutcome,
  type SubmissionRecord,
  type TotalsRecord,
} from './ledger-schema.ts';

export * from './ledger-schema.ts';

/**
 * The acquirer's ledger. Every method is synchronous and every write is one SQLite transaction.
 * Settlement lives here; terminals, commands, reviews and risk reports in ControlLedger.
 */
export class AcquirerLedger extends ControlLedger {
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
    const ledger = new AcquirerLedger(db, file);
    void ledger.advices;
    return ledger;
  }

  private adviceLedger: AdviceLedger | undefined;

  /** Offline advices as received (simulator/advice-ledger.ts). */
  get advices(): AdviceLedger {
    return (this.adviceLedger ??= new AdviceLedger(this.db));
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
        `SELECT * FROM submissions WHERE (@t IS NULL OR terminal_id = @t) AND (@b IS NULL OR batch_id = @b) ORDER BY id`,
      )
      .all({ t: filter.terminalId ?? null, b: filter.batchId ?? null }) as Row[];
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
   * count, and rows are keyed by sequence number so they are never counted twice. `envelope`
   * is the Envelope that carried the chunk, as received.
   * Returns how many distinct chunks are in and whether this one was new.
   */
  addDetailChunk(
    key: { terminalId: string; batchId: string; digest: string },
    chunkIndex: number,
    chunkCount: number,
    envelope: Uint8Array,
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
        this.db
          .prepare(
            'INSERT INTO detail_chunk_frames (terminal_id, batch_id, digest, chunk_index, envelope) VALUES (?, ?, ?, ?, ?)',
          )
          .run(...k, chunkIndex, envelope);
      }
      const n = this.db
        .prepare(
          'SELECT COUNT(*) AS n FROM detail_chunks WHERE terminal_id = ? AND batch_id = ? AND digest = ?',
        )
        .get(...k) as { n: number };
      return { fresh: !existing, received: n.n, chunkCount };
    });
  }

  /** The lowest chunk index of a key not stored yet (`chunkCount` when every one is in). */
  nextMissingChunk(
    terminalId: string,
    batchId: string,
    digest: string,
    chunkCount: number,
  ): number {
    const held = this.db
      .prepare(
        'SELECT chunk_index AS i FROM detail_chunks WHERE terminal_id = ? AND batch_id = ? AND digest = ? ORDER BY chunk_index',
      )
      .pluck()
      .all(terminalId, batchId, digest) as number[];
    let next = 0;
    for (const i of held) {
      if (i !== next) break;
      next++;
    }
    return Math.min(next, chunkCount);
  }

  /** How many times each chunk of a key was received, by chunk index (resends counted). */
  detailReceipts(terminalId: string, batchId: string, digest: string): Map<number, number> {
    const rows = this.db
      .prepare(
        'SELECT chunk_index AS i, receipts AS n FROM detail_chunks WHERE terminal_id = ? AND batch_id = ? AND digest = ?',
      )
      .all(terminalId, batchId, digest) as Array<{ i: number; n: number }>;
    return new Map(rows.map((r) => [r.i, r.n]));
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

  /** Detail rows received for a key, in sequence order, each sequence number once. */
  detailRows(terminalId: string, batchId: string, digest: string): DetailRowRecord[] {
    // Chunks stored as JSON (an older ledger file) and as received envelopes, in index order.
    const chunks = this.db
      .prepare(
        `SELECT chunk_index AS i, rows_json AS j, NULL AS e FROM detail_chunk_rows
           WHERE terminal_id = @t AND batch_id = @b AND digest = @d
         UNION ALL
         SELECT chunk_index, NULL, envelope FROM detail_chunk_frames
           WHERE terminal_id = @t AND batch_id = @b AND digest = @d
         ORDER BY 1`,
      )
      .all({ t: terminalId, b: batchId, d: digest }) as Array<{
      j: string | null;
      e: Buffer | null;
    }>;
    // A row sent in two chunks (a terminal that re-chunked) still counts once.
    const bySeq = new Map<number, DetailRowRecord>();
    for (const c of chunks) {
      const rows = c.e ? detailChunkRows(c.e) : json<DetailRowRecord[]>(c.j);
      for (const r of rows) if (!bySeq.has(r.seq)) bySeq.set(r.seq, r);
    }
    return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
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
         VALUES (@terminalId, @batchId, @digest, @totals, @chunkCount, @totals, @ok, @now)
         ON CONFLICT DO UPDATE SET chunk_count = @chunkCount, detail_totals = @totals, detail_digest_ok = @ok`,
      )
      .run({
        terminalId,
        batchId,
        digest,
        chunkCount,
        totals: JSON.stringify(totals),
        ok: digestOk ? 1 : 0,
        now,
      });
  }
}

/** The rows of a stored detail chunk envelope, as the acquirer reads them. */
function detailChunkRows(envelope: Uint8Array): DetailRowRecord[] {
  return (decodeEnvelope(envelope).batchDetailChunk?.rows ?? []).map(detailRowFromWire);
}
