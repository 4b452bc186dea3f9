import { hash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fdatasync,
  fsyncSync,
  openSync,
  readFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../base/durable-dir.ts';

/**
 * The local head witness: a small file outside journal.db that remembers the newest journal
 * row known durable (its seq and hash) and the journal's incarnation. A journal whose head is
 * behind it (a lost WAL, an older copy put back, a 0-byte file) or whose row at the witnessed
 * seq has another hash (a rewritten or replaced journal) is a rollback.
 *
 * Cost: the witness is written after every commit with one pwrite into the page cache, and
 * made durable by an fdatasync in the background (libuv pool) at most every `syncEveryMs`.
 * It is written only after the journal's commit is durable, so it can lag the journal (a
 * power cut may lose its last updates) but never lead it: a lag weakens detection for that
 * window, it never raises a false alarm. A SIGKILL loses nothing (the page cache survives).
 *
 * Layout: two fixed slots written in turn; each slot holds one JSON record with a generation
 * number and a checksum. A torn write spoils one slot at most; the reader takes the valid slot
 * with the highest generation.
 */

export const WITNESS_FILE = 'journal.witness';
const SLOT_BYTES = 512;
const MAGIC = 'POSW1';

/** Set when a rollback was reported from outside (the acquirer): it holds across restarts. */
export interface WitnessHold {
  source: string;
  reason: string;
  at: number;
}

export interface WitnessRecord {
  incarnation: string;
  seq: number;
  hash: string;
  hold?: WitnessHold;
}

export type WitnessRead =
  | { state: 'absent' }
  | { state: 'damaged'; detail: string }
  | { state: 'ok'; record: WitnessRecord; gen: number };

function checksum(body: string): string {
  return hash('sha256', body, 'hex').slice(0, 32);
}

function encodeSlot(rec: WitnessRecord, gen: number): Buffer {
  const body = JSON.stringify({ gen, ...rec });
  const line = `${MAGIC} ${checksum(body)} ${body}\n`;
  const buf = Buffer.alloc(SLOT_BYTES);
  if (buf.write(line, 'utf8') < Buffer.byteLength(line))
    throw new Error('a witness record is too long for its slot');
  return buf;
}

function decodeSlot(buf: Buffer): (WitnessRecord & { gen: number }) | undefined {
  const text = buf.toString('utf8').replace(/\0+$/, '');
  const m = /^POSW1 ([0-9a-f]{32}) (\{.*\})\n$/.exec(text);
  if (!m || checksum(m[2]!) !== m[1]) return undefined;
  try {
    const r = JSON.parse(m[2]!) as WitnessRecord & { gen: number };
    const valid =
      Number.isSafeInteger(r.gen) &&
      Number.isSafeInteger(r.seq) &&
      r.seq >= 0 &&
      typeof r.hash === 'string' &&
      typeof r.incarnation === 'string';
    return valid ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Reads the witness file as it is on disk. */
export function readWitness(file: string): WitnessRead {
  if (!existsSync(file)) return { state: 'absent' };
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    return { state: 'damaged', detail: `it cannot be read: ${(e as Error).message}` };
  }
  const slots = [0, 1]
    .map((i) => decodeSlot(bytes.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES)))
    .filter((s): s is WitnessRecord & { gen: number } => s !== undefined)
    .sort((a, b) => b.gen - a.gen);
  const best = slots[0];
  if (!best) return { state: 'damaged', detail: `no valid record in its ${bytes.length} bytes` };
  const { gen, ...record } = best;
  return { state: 'ok', record, gen };
}

/** The witness file open for writing, kept open for the life of the store. */
export class HeadWitness {
  private fd: number | undefined;
  private gen: number;
  private last: WitnessRecord | undefined;
  private dirty = false;
  private syncing = false;
  private timer: NodeJS.Timeout | undefined;
  /** Made by this open: its name is durable only once its directory is fsynced. */
  private unnamed: boolean;

  private constructor(
    readonly file: string,
    previous: WitnessRead,
    private readonly syncEveryMs: number,
  ) {
    this.gen = previous.state === 'ok' ? previous.gen : 0;
    this.last = previous.state === 'ok' ? previous.record : undefined;
    this.unnamed = !existsSync(file);
    this.fd = openSync(file, this.unnamed ? 'w+' : 'r+', 0o600);
  }

  static open(file: string, previous: WitnessRead, syncEveryMs = 1000): HeadWitness {
    return new HeadWitness(file, previous, syncEveryMs);
  }

  get record(): WitnessRecord | undefined {
    return this.last;
  }

  /** Records a new head (page cache only; see the module comment for durability). */
  write(rec: WitnessRecord): void {
    if (this.fd === undefined) return;
    const l = this.last;
    if (l && l.seq === rec.seq && l.hash === rec.hash && l.incarnation === rec.incarnation) {
      if (JSON.stringify(l.hold) === JSON.stringify(rec.hold)) return;
    }
    this.gen++;
    writeSync(this.fd, encodeSlot(rec, this.gen), 0, SLOT_BYTES, (this.gen % 2) * SLOT_BYTES);
    this.last = rec;
    this.dirty = true;
    this.timer ??= setTimeout(() => this.syncInBackground(), this.syncEveryMs).unref();
  }

  /** Writes and makes durable now (first record, a hold, close). */
  writeDurably(rec: WitnessRecord): void {
    this.write(rec);
    this.syncNow();
  }

  syncNow(): void {
    if (this.fd === undefined) return;
    fsyncSync(this.fd);
    this.dirty = false;
    if (this.unnamed) {
      // A power cut must not leave the journal's "a witness is kept" mark without the witness
      // (a false rollback alarm): the new file's name is made durable, after its bytes.
      fsyncDir(path.dirname(this.file));
      this.unnamed = false;
    }
  }

  private syncInBackground(): void {
    this.timer = undefined;
    if (this.fd === undefined || !this.dirty || this.syncing) return;
    this.dirty = false;
    this.syncing = true;
    fdatasync(this.fd, () => {
      this.syncing = false;
      if (this.dirty && this.fd !== undefined)
        this.timer ??= setTimeout(() => this.syncInBackground(), this.syncEveryMs).unref();
    });
  }

  close(): void {
    if (this.fd === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dirty) fsyncSync(this.fd);
    // A background fdatasync may still hold the descriptor: close it once that returns.
    const fd = this.fd;
    this.fd = undefined;
    if (this.syncing) setImmediate(() => closeSync(fd));
    else closeSync(fd);
  }
}

/** What the journal says about itself, read before anything is written to it. */
export interface JournalFacts {
  /** False for a missing or empty (0-byte, or no tables yet) file. */
  hasRows: boolean;
  incarnation: string | undefined;
  /** True once a witness was made for this journal (written in the journal itself). */
  witnessed: boolean;
  head: { seq: number; hash: string };
  hashAt(seq: number): string | undefined;
}

export type WitnessVerdict =
  | { ok: true; kind: 'first-run' | 'upgrade' | 'current' }
  | { ok: false; kind: 'rollback'; reason: string };

/**
 * Compares the journal with its witness. A first run (no witness, an empty journal) and a
 * journal from before witnesses existed (rows, no witness, and no mark in the journal that one
 * was ever made) start a witness; a lost witness (the journal says it had one) is a rollback
 * as much as a journal behind its witness is: the agent cannot prove what it acknowledged.
 */
export function judgeWitness(w: WitnessRead, j: JournalFacts): WitnessVerdict {
  const rollback = (reason: string): WitnessVerdict => ({ ok: false, kind: 'rollback', reason });
  if (w.state === 'damaged') return rollback(`the head witness is damaged (${w.detail})`);
  if (w.state === 'absent') {
    if (!j.hasRows) return { ok: true, kind: 'first-run' };
    if (!j.witnessed) return { ok: true, kind: 'upgrade' };
    return rollback(
      `the head witness is missing, yet the journal (head ${j.head.seq}) says one was kept: it cannot be shown that no acknowledged row is lost`,
    );
  }
  const r = w.record;
  if (r.hold) return rollback(`${r.hold.reason} (reported by ${r.hold.source})`);
  if (r.seq === 0 && !j.hasRows) return { ok: true, kind: 'first-run' };
  if (!j.hasRows)
    return rollback(
      `the journal is empty or missing, but the witness saw it reach row ${r.seq} (${r.hash.slice(0, 16)})`,
    );
  if (j.incarnation !== r.incarnation)
    return rollback(
      `the journal is incarnation ${j.incarnation ?? '(none)'}, the witness knows incarnation ${r.incarnation}: the journal was replaced`,
    );
  if (j.head.seq < r.seq)
    return rollback(
      `the journal ends at row ${j.head.seq}, behind row ${r.seq} that the witness saw durable: acknowledged rows are lost (a deleted WAL or an older copy)`,
    );
  const at = j.hashAt(r.seq);
  if (r.seq > 0 && at !== r.hash)
    return rollback(
      `row ${r.seq} is not the one the witness saw (${r.hash.slice(0, 16)} vs ${at?.slice(0, 16) ?? 'missing'}): the journal was rewritten`,
    );
  return { ok: true, kind: 'current' };
}
