import { AgentError } from '../base/errors.ts';
import {
  guarded,
  openDatabase,
  mapSqliteError,
  pagesCheckedAtOpen,
  type Database,
  type OpenOptions,
} from './db.ts';
import { checkPagesInWorker } from './page-check.ts';
import type BetterSqlite3 from 'better-sqlite3';
import { Journal } from './journal.ts';
import { Batches } from './batches.ts';
import { StateStore } from './state-store.ts';
import {
  HeadWitness,
  judgeWitness,
  readWitness,
  type WitnessHold,
  type WitnessVerdict,
} from './head-witness.ts';
import { journalFacts, newIncarnation, META_INCARNATION, META_WITNESSED } from './incarnation.ts';

export interface StoreOptions extends OpenOptions {
  /**
   * Keep a head witness in this file (the agent's own open). Before anything is written, the
   * journal is compared with it; a journal behind it is opened frozen (see `frozen`).
   */
  witnessFile?: string;
  witnessSyncEveryMs?: number;
}

/** Why a store takes no write: the journal is kept byte-identical for forensics. */
export interface Frozen {
  source: string;
  reason: string;
}
import { Advices } from './advices.ts';

/**
 * The journal database and its parts. Every change the agent makes goes through
 * `atomically`, so a transaction row, its batch, a lifecycle transition and the chain
 * events that record them commit together or not at all.
 */
export class Store {
  readonly journal: Journal;
  readonly batches: Batches;
  readonly state: StateStore;
  readonly advices: Advices;
  /** atomically() calls on the stack, to tell a lost outer transaction from none at all. */
  private depth = 0;

  /** Set when the journal must not change: every write is refused, the witness is left alone. */
  frozen: Frozen | undefined;
  /** How the journal compared with its head witness at open (undefined: no witness kept). */
  witnessVerdict: WitnessVerdict | undefined;
  private witness: HeadWitness | undefined;
  private incarnationId: string | undefined;

  private constructor(
    readonly db: Database,
    readonly file: string,
  ) {
    this.runInTransaction = db.transaction((fn: () => unknown) => fn());
    this.journal = new Journal(db);
    this.batches = new Batches(db, () => this.incarnation);
    this.state = new StateStore(db);
    this.advices = new Advices(db, this.journal);
  }

  /** The journal's incarnation: a random id made with the journal, part of every batch id. */
  get incarnation(): string {
    this.incarnationId ??= this.state.getMeta(META_INCARNATION);
    return this.incarnationId ?? '00000000';
  }

  /** Built once: better-sqlite3 prepares BEGIN, COMMIT and the savepoint statements per wrapper. */
  private readonly runInTransaction: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;

  /** True when the file was too big to check page by page at open: run `checkPagesLater`. */
  pageCheckDeferred = false;

  static open(file: string, options?: StoreOptions): Store {
    const writable = !options?.readonly && !options?.forensic;
    if (writable && options?.witnessFile)
      return Store.openWitnessed(file, options.witnessFile, options);
    const deferred = writable && !pagesCheckedAtOpen(file, options);
    const store = new Store(openDatabase(file, options), file);
    store.pageCheckDeferred = deferred;
    return store;
  }

  /**
   * The agent's own open: the journal is compared with its head witness before anything is
   * written. A rollback opens the file read-only (or, when it is empty or missing, an empty
   * stand-in in memory so status can still be shown) and frozen: nothing is ever written.
   */
  private static openWitnessed(file: string, witnessFile: string, options: StoreOptions): Store {
    const seen = readWitness(witnessFile);
    const facts = journalFacts(file, seen.state === 'ok' ? seen.record.seq : undefined);
    if (!facts) {
      // Not readable at all: the normal open refuses it (damaged) and leaves it as it is.
      openDatabase(file, options).close();
      throw new AgentError(
        'STORAGE_CORRUPT',
        `the journal file ${file} is damaged (its head or meta rows cannot be read); it was left untouched for forensics`,
      );
    }
    const verdict = judgeWitness(seen, facts);
    if (!verdict.ok) {
      // A damaged file is refused as it always was (pages first); a sound one behind its
      // witness is opened read-only, so not one byte of it changes.
      const db = facts.hasRows
        ? openDatabase(file, { readonly: true, mustExist: true, checkPages: true })
        : openDatabase(':memory:', {});
      const store = new Store(db, file);
      store.witnessVerdict = verdict;
      store.frozen = { source: 'journal-rollback', reason: verdict.reason };
      return store;
    }
    const store = Store.open(file, { ...options, witnessFile: undefined });
    store.witnessVerdict = verdict;
    if (!store.state.getMeta(META_INCARNATION))
      store.atomically(() => store.state.setMeta(META_INCARNATION, newIncarnation()));
    store.witness = HeadWitness.open(witnessFile, seen, options.witnessSyncEveryMs);
    store.witness.writeDurably({ incarnation: store.incarnation, ...store.journal.headOf() });
    // Marked only once the witness (bytes and name) is durable: a power cut in between leaves
    // an unmarked journal with or without a witness, never a marked one without it.
    if (!store.state.getMeta(META_WITNESSED))
      store.atomically(() => store.state.setMeta(META_WITNESSED, String(Date.now())));
    return store;
  }

  /** How a journal compares with its witness, read without writing to either (status, recovery). */
  static judge(file: string, witnessFile: string): WitnessVerdict {
    const seen = readWitness(witnessFile);
    const facts = journalFacts(file, seen.state === 'ok' ? seen.record.seq : undefined);
    if (!facts) return { ok: false, kind: 'rollback', reason: 'the journal cannot be read' };
    return judgeWitness(seen, facts);
  }

  /**
   * Refuses every write for a while (the whole chain is being walked on a worker at start):
   * nothing is appended to a file that may yet turn out to be evidence. `resumeWrites` ends it.
   */
  pauseWrites(why: Frozen): void {
    this.frozen ??= why;
  }

  resumeWrites(why: Frozen): void {
    if (this.frozen === why) this.frozen = undefined;
  }

  /** Stops every write from now on (a break found in the chain, a rollback reported remotely). */
  freeze(why: Frozen, hold?: WitnessHold): void {
    if (hold && this.witness?.record) this.witness.writeDurably({ ...this.witness.record, hold });
    this.frozen ??= why;
    this.witness?.close();
    this.witness = undefined;
    if (this.db.open && !this.db.readonly) guarded(() => this.db.pragma('query_only = ON'));
  }

  /** The page-level check on a worker thread; `['ok']` when sound. */
  checkPagesLater(): Promise<string[]> {
    return checkPagesInWorker(this.file);
  }

  /**
   * Runs fn in one IMMEDIATE SQLite transaction (the write lock is taken up front, so
   * two writers never deadlock on upgrade). Returns only after the commit is durable
   * (synchronous=FULL). A nested call becomes a savepoint: its failure rolls back only
   * its own writes, and they become durable when the outermost transaction commits.
   */
  atomically<T>(fn: () => T): T {
    this.refuseIfFrozen();
    if (this.db.inTransaction) {
      try {
        return this.runInTransaction(fn) as T;
      } catch (e) {
        // The savepoint rolled back: what the parts keep in memory may name undone writes.
        this.forgetCached();
        throw e;
      }
    }
    if (this.depth > 0) {
      // Nested, yet no transaction: SQLite rolled the outer one back by itself (it does on
      // SQLITE_FULL and I/O errors). Starting a fresh one here would commit this part alone
      // while the caller still counts it as part of the outer transaction that failed.
      throw new AgentError(
        'STORAGE_IO',
        'the journal transaction was rolled back after a storage error; nothing of it was written',
      );
    }
    this.depth++;
    let out: T;
    try {
      out = this.runInTransaction.immediate(fn) as T;
    } catch (e) {
      this.forgetCached();
      throw mapSqliteError(e);
    } finally {
      this.depth--;
    }
    this.afterCommit();
    return out;
  }

  /**
   * Runs fn, whose one and only write is a single journal row (`Journal.appendTxn`), without
   * an explicit transaction: SQLite commits the lone INSERT (and what its triggers do) as one
   * transaction of its own, just as durably (synchronous=FULL) and all or nothing. fn's reads
   * need no enclosing transaction: this connection is the journal's only writer and nothing
   * else runs between them and the insert. It saves BEGIN IMMEDIATE and COMMIT, two statements
   * that are about 6% of a 1-lane append. Inside a transaction, fn simply joins it.
   */
  appendAlone<T>(fn: () => T): T {
    if (this.db.inTransaction || this.depth > 0) return this.atomically(fn);
    this.refuseIfFrozen();
    const before = this.journal.headOf().seq;
    let out: T;
    try {
      out = this.journal.soleAppend(fn);
    } catch (e) {
      this.forgetCached();
      throw mapSqliteError(e);
    }
    if (this.journal.headOf().seq !== before) this.afterCommit();
    return out;
  }

  private refuseIfFrozen(): void {
    if (this.frozen) {
      throw new AgentError(
        'STORAGE_FROZEN',
        `the journal is kept unchanged for forensics (${this.frozen.source}): ${this.frozen.reason}`,
      );
    }
  }

  /** Durable now: the witness may move up to the new head (it never runs ahead of it). */
  private afterCommit(): void {
    this.witness?.write({ incarnation: this.incarnation, ...this.journal.headOf() });
  }

  /** Drops the head, open batch, lifecycle and schedules the parts keep between writes. */
  forgetCached(): void {
    this.journal.forget();
    this.batches.forget();
    this.state.forget();
  }

  /** Full page-level check; slow on large files, so it runs on demand and in self-test. */
  integrityCheck(): string[] {
    const rows = guarded(() => this.db.pragma('integrity_check')) as Array<{
      integrity_check: string;
    }>;
    return rows.map((r) => r.integrity_check);
  }

  /** Moves WAL content into the main file; safe to call at idle moments. */
  checkpoint(): void {
    guarded(() => this.db.pragma('wal_checkpoint(TRUNCATE)'));
  }

  close(): void {
    this.witness?.close();
    this.witness = undefined;
    if (this.db.open) this.db.close();
  }
}
