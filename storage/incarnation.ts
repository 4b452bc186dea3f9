import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { loadDriver, type Database } from './db.ts';
import { GENESIS_HASH } from './journal.ts';
import type { JournalFacts } from './head-witness.ts';

/**
 * A journal's incarnation: a random id made when the journal is created (or first opened by
 * an agent that keeps witnesses), stored in its meta table. The head witness names it, so a
 * journal swapped for another is told apart from its own older self, and every batch id
 * carries it, so batches of two incarnations never share an id.
 */

export const META_INCARNATION = 'incarnation';
/** Set once a head witness was made for this journal: without it, a missing witness is an upgrade. */
export const META_WITNESSED = 'witness_since';

export function newIncarnation(): string {
  return randomBytes(8).toString('hex').toUpperCase();
}

const EMPTY: JournalFacts = {
  hasRows: false,
  incarnation: undefined,
  witnessed: false,
  head: { seq: 0, hash: GENESIS_HASH },
  hashAt: () => undefined,
};

/**
 * What the journal file says about itself, read on a read-only connection before the agent
 * writes anything (a rolled-back file must stay byte-identical). A missing, 0-byte or
 * table-less file has no rows. `witnessSeq` is the one row whose hash the witness asks for.
 * Undefined when the file cannot be read at all: the normal open then refuses it with its own
 * reason (a damaged file).
 */
export function journalFacts(
  file: string,
  witnessSeq: number | undefined,
): JournalFacts | undefined {
  if (!existsSync(file) || statSync(file).size === 0) return EMPTY;
  const Driver = loadDriver();
  let db: Database | undefined;
  try {
    db = new Driver(file, { readonly: true, fileMustExist: true });
    const conn = db;
    const tables = new Set(
      (
        conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as {
          name: string;
        }[]
      ).map((r) => r.name),
    );
    if (!tables.has('journal') || !tables.has('meta')) return EMPTY;
    const meta = (key: string) =>
      (
        conn.prepare('SELECT value FROM meta WHERE key = ?').get(key) as
          { value: string } | undefined
      )?.value;
    const head = conn.prepare('SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1').get() as
      { seq: number; hash: string } | undefined;
    const atWitness =
      witnessSeq === undefined
        ? undefined
        : (conn.prepare('SELECT hash FROM journal WHERE seq = ?').get(witnessSeq) as
            { hash: string } | undefined);
    return {
      hasRows: head !== undefined,
      incarnation: meta(META_INCARNATION),
      witnessed: meta(META_WITNESSED) !== undefined,
      head: head ?? { seq: 0, hash: GENESIS_HASH },
      hashAt: (seq) => (seq === witnessSeq ? atWitness?.hash : undefined),
    };
  } catch {
    return undefined;
  } finally {
    db?.close();
  }
}
