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

  private constructor(
    readonly db: Database,
    readonly file: string,
  ) {
    this.runInTransaction = db.transaction((fn: () => unknown) => fn());
    this.journal = new Journal(db);
    this.batches = new Batches(db);
    this.state = new StateStore(db);
    this.advices = new Advices(db, this.journal);
  }

  /** Built once: better-sqlite3 prepares BEGIN, COMMIT and the savepoint statements per wrapper. */
  private readonly runInTransaction: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;

  /** True when the file was too big to check page by page at open: run `checkPagesLater`. */
  pageCheckDeferred = false;

  static open(file: string, options?: OpenOptions): Store {
    const deferred = !options?.readonly && !options?.forensic && !pagesCheckedAtOpen(file, options);
    const store = new Store(openDatabase(file, options), file);
    store.pageCheckDeferred = deferred;
    return store;
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
    if (this.db.inTransaction) return this.runInTransaction(fn) as T;
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
    try {
      return this.runInTransaction.immediate(fn) as T;
    } catch (e) {
      throw mapSqliteError(e);
    } finally {
      this.depth--;
    }
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
    if (this.db.open) this.db.close();
  }
}
