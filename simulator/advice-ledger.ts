/**
 * The acquirer's record of offline advices, in the simulator's ledger file. UNIQUE
 * (terminal_id, advice_key) is the exactly-once guarantee: a resend finds the first record and
 * gets its answer again; `receipts` counts how often it came. `id` is the arrival order, so a
 * test reads "in journal order" straight off the ledger.
 */
import type { Database } from '../storage/db.ts';

type AdviceDecision = 'accepted' | 'declined';

export interface AdviceRecord {
  id: number;
  terminalId: string;
  key: string;
  seq: number;
  localId: string;
  type: string;
  amount: number;
  fee: number;
  maskedPan: string;
  originalKey: string;
  outcome: AdviceDecision;
  reference: string;
  reasonCode: string;
  reason: string;
  receivedAt: number;
  receipts: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS advices (
  id INTEGER PRIMARY KEY AUTOINCREMENT, terminal_id TEXT NOT NULL, advice_key TEXT NOT NULL,
  seq INTEGER NOT NULL, local_id TEXT NOT NULL, type TEXT NOT NULL, amount INTEGER NOT NULL,
  fee INTEGER NOT NULL, masked_pan TEXT NOT NULL, original_key TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'declined')), reference TEXT NOT NULL,
  reason_code TEXT NOT NULL, reason TEXT NOT NULL, received_at INTEGER NOT NULL,
  receipts INTEGER NOT NULL DEFAULT 1,
  UNIQUE (terminal_id, advice_key));
`;

type Row = Record<string, unknown>;

function toRecord(r: Row): AdviceRecord {
  return {
    id: Number(r.id),
    terminalId: String(r.terminal_id),
    key: String(r.advice_key),
    seq: Number(r.seq),
    localId: String(r.local_id),
    type: String(r.type),
    amount: Number(r.amount),
    fee: Number(r.fee),
    maskedPan: String(r.masked_pan),
    originalKey: String(r.original_key),
    outcome: r.outcome as AdviceDecision,
    reference: String(r.reference),
    reasonCode: String(r.reason_code),
    reason: String(r.reason),
    receivedAt: Number(r.received_at),
    receipts: Number(r.receipts),
  };
}

export class AdviceLedger {
  constructor(private readonly db: Database) {
    db.exec(SCHEMA);
  }

  /** The advice of a key, if it came before. */
  find(terminalId: string, key: string): AdviceRecord | undefined {
    const r = this.db
      .prepare('SELECT * FROM advices WHERE terminal_id = ? AND advice_key = ?')
      .get(terminalId, key) as Row | undefined;
    return r && toRecord(r);
  }

  /**
   * Every advice outcome of a terminal by key, read in one query: a detail upload looks up
   * each of its (up to 100,000) rows, and a query per row cost over a second.
   */
  outcomes(terminalId: string): Map<string, AdviceDecision> {
    const rows = this.db
      .prepare('SELECT advice_key AS k, outcome AS o FROM advices WHERE terminal_id = ?')
      .raw()
      .all(terminalId) as Array<[string, AdviceDecision]>;
    return new Map(rows);
  }

  /** The id of the terminal's newest advice (0: none): a later advice has a higher one. */
  newestId(terminalId: string): number {
    const r = this.db
      .prepare('SELECT COALESCE(MAX(id), 0) AS n FROM advices WHERE terminal_id = ?')
      .get(terminalId) as { n: number };
    return r.n;
  }

  /** Counts one more receipt of a known advice. */
  seenAgain(terminalId: string, key: string): void {
    this.db
      .prepare(
        'UPDATE advices SET receipts = receipts + 1 WHERE terminal_id = ? AND advice_key = ?',
      )
      .run(terminalId, key);
  }

  /** Records a first receipt and its decision; the UNIQUE key throws on a second one. */
  add(a: Omit<AdviceRecord, 'id' | 'receipts'>): void {
    this.db
      .prepare(
        `INSERT INTO advices (terminal_id, advice_key, seq, local_id, type, amount, fee, masked_pan,
           original_key, outcome, reference, reason_code, reason, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        a.terminalId,
        a.key,
        a.seq,
        a.localId,
        a.type,
        a.amount,
        a.fee,
        a.maskedPan,
        a.originalKey,
        a.outcome,
        a.reference,
        a.reasonCode,
        a.reason,
        a.receivedAt,
      );
  }

  /** Every advice of a terminal (or of all), in arrival order. */
  list(terminalId?: string): AdviceRecord[] {
    const rows = (
      terminalId === undefined
        ? this.db.prepare('SELECT * FROM advices ORDER BY id').all()
        : this.db.prepare('SELECT * FROM advices WHERE terminal_id = ? ORDER BY id').all(terminalId)
    ) as Row[];
    return rows.map(toRecord);
  }
}
