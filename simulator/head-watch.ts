import type { pos } from '../protocol/messages.ts';
import type { AcquirerLedger } from './ledger.ts';

/**
 * The acquirer's side of the remote witness (docs/protocol.md, "Journal head"): it remembers
 * the newest journal head each terminal reported (Hello, Heartbeat) and, at every Hello, says
 * whether the terminal's journal is behind it. A terminal that reports no head (an older
 * agent) or says it is unactivated (a fresh install, whose activation starts a new record) is
 * not judged. A recovery grant lets the next Hello start a new incarnation.
 */

export interface ReportedHead {
  terminalId: string;
  incarnation: string;
  seq: number;
  hash: string;
  at: number;
  /** Why the last Hello was found behind; null while the terminal is current. */
  behind: string | null;
  /** True after a recovery grant: the next incarnation replaces this record. */
  recoveryGranted: boolean;
}

function ensureTable(ledger: AcquirerLedger): void {
  ledger.db.exec(`CREATE TABLE IF NOT EXISTS reported_heads (
    terminal_id TEXT PRIMARY KEY, incarnation TEXT NOT NULL, seq INTEGER NOT NULL,
    hash TEXT NOT NULL, at INTEGER NOT NULL, behind TEXT, recovery_granted INTEGER NOT NULL DEFAULT 0)`);
}

export function reportedHead(ledger: AcquirerLedger, terminalId: string): ReportedHead | undefined {
  ensureTable(ledger);
  const r = ledger.db
    .prepare('SELECT * FROM reported_heads WHERE terminal_id = ?')
    .get(terminalId) as Record<string, unknown> | undefined;
  return (
    r && {
      terminalId,
      incarnation: String(r.incarnation),
      seq: Number(r.seq),
      hash: String(r.hash),
      at: Number(r.at),
      behind: (r.behind as string | null) ?? null,
      recoveryGranted: Number(r.recovery_granted) === 1,
    }
  );
}

function save(ledger: AcquirerLedger, h: ReportedHead): void {
  ledger.db
    .prepare(
      `INSERT INTO reported_heads (terminal_id, incarnation, seq, hash, at, behind, recovery_granted)
       VALUES (@terminalId, @incarnation, @seq, @hash, @at, @behind, @granted)
       ON CONFLICT (terminal_id) DO UPDATE SET incarnation = excluded.incarnation, seq = excluded.seq,
         hash = excluded.hash, at = excluded.at, behind = excluded.behind,
         recovery_granted = excluded.recovery_granted`,
    )
    .run({ ...h, granted: h.recoveryGranted ? 1 : 0 });
}

/** Forgets a terminal's head (a new activation starts from nothing). */
export function forgetHead(ledger: AcquirerLedger, terminalId: string): void {
  ensureTable(ledger);
  ledger.db.prepare('DELETE FROM reported_heads WHERE terminal_id = ?').run(terminalId);
}

/** A recovery grant was issued: the next Hello of a new incarnation is accepted as the new head. */
export function allowNewIncarnation(ledger: AcquirerLedger, terminalId: string): void {
  const h = reportedHead(ledger, terminalId);
  if (h) save(ledger, { ...h, recoveryGranted: true });
}

/** Judges a Hello against the remembered head and records it when it is not behind. */
export function checkHello(
  ledger: AcquirerLedger,
  cn: string,
  hello: pos.v1.IHello,
  now: number,
): pos.v1.IJournalHeadCheck | undefined {
  const seq = Number(hello.journalHeadSeq ?? 0);
  const hash = hello.journalHeadHash ?? '';
  const incarnation = hello.journalIncarnation ?? '';
  if (!incarnation || hello.lifecycleState === 'unactivated') return undefined;
  const known = reportedHead(ledger, cn);
  const fresh: ReportedHead = {
    terminalId: cn,
    incarnation,
    seq,
    hash,
    at: now,
    behind: null,
    recoveryGranted: false,
  };
  if (!known || (known.recoveryGranted && known.incarnation !== incarnation)) {
    save(ledger, fresh);
    return { behind: false, knownSeq: seq, knownHash: hash };
  }
  const when = new Date(known.at).toISOString();
  const behind =
    known.incarnation !== incarnation
      ? `the terminal presents journal incarnation ${incarnation}, but reported incarnation ${known.incarnation} (row ${known.seq}) at ${when}, and no recovery was granted`
      : seq < known.seq
        ? `the terminal's journal ends at row ${seq}, behind row ${known.seq} it reported at ${when}`
        : seq === known.seq && hash !== known.hash
          ? `row ${seq} is not the one the terminal reported at ${when}: the journal was rewritten`
          : null;
  if (behind) {
    save(ledger, { ...known, behind });
    return { behind: true, knownSeq: known.seq, knownHash: known.hash, reason: behind };
  }
  save(ledger, fresh);
  return { behind: false, knownSeq: seq, knownHash: hash };
}

/** A Heartbeat moves the remembered head on (same incarnation, never backwards). */
export function recordHeartbeat(
  ledger: AcquirerLedger,
  cn: string,
  hb: pos.v1.IHeartbeat,
  now: number,
): void {
  const seq = Number(hb.journalHeadSeq ?? 0);
  const known = reportedHead(ledger, cn);
  if (!known || known.behind || !hb.journalHeadHash || seq <= known.seq) return;
  save(ledger, { ...known, seq, hash: hb.journalHeadHash, at: now });
}
