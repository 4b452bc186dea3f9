import { createRequire } from 'node:module';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { AgentError, type ErrorCode } from '../base/errors.ts';
import { ensureDataDirDurable, makeDirDurable } from '../base/durable-dir.ts';
import { migrations } from './migrations.ts';
import { checkSchema, SCHEMA_MIGRATIONS_SQL } from './schema-check.ts';

export type Database = BetterSqlite3.Database;

const require = createRequire(import.meta.url);
let driver: typeof BetterSqlite3 | undefined;

/**
 * Loads better-sqlite3 with a clear refusal instead of a crash: 13.x segfaults on
 * Node 20 (so we refuse it before loading), and a binary built for another Node ABI
 * throws an opaque dlopen error that we translate into plain words.
 */
export function loadDriver(): typeof BetterSqlite3 {
  if (driver) return driver;
  const version = (require('better-sqlite3/package.json') as { version: string }).version;
  const major = Number(version.split('.')[0]);
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (major >= 13 && nodeMajor < 22) {
    throw new AgentError(
      'STORAGE_NATIVE_MODULE',
      `better-sqlite3 ${version} needs Node.js 22 or later; this is Node.js ${process.versions.node}. Install better-sqlite3 12.x.`,
    );
  }
  try {
    driver = require('better-sqlite3') as typeof BetterSqlite3;
    return driver;
  } catch (e) {
    throw new AgentError(
      'STORAGE_NATIVE_MODULE',
      `the SQLite driver (better-sqlite3 ${version}) cannot load on Node.js ${process.versions.node} (ABI ${process.versions.modules}); run "npm rebuild better-sqlite3": ${(e as Error).message}`,
      {},
      { cause: e },
    );
  }
}

const sqliteCodes: Record<string, ErrorCode> = {
  SQLITE_FULL: 'STORAGE_FULL',
  SQLITE_READONLY: 'STORAGE_READONLY',
  SQLITE_READONLY_DBMOVED: 'STORAGE_READONLY',
  SQLITE_READONLY_DIRECTORY: 'STORAGE_READONLY',
  SQLITE_CORRUPT: 'STORAGE_CORRUPT',
  SQLITE_NOTADB: 'STORAGE_CORRUPT',
  SQLITE_IOERR: 'STORAGE_IO',
  SQLITE_CANTOPEN: 'STORAGE_IO',
  SQLITE_PERM: 'STORAGE_READONLY',
};

/** Turns a SQLite failure into the agent's typed error; AgentErrors pass through. */
export function mapSqliteError(e: unknown): AgentError {
  if (e instanceof AgentError) return e;
  const code = (e as { code?: string }).code ?? '';
  const base = code.split('_').slice(0, 2).join('_');
  const mapped =
    sqliteCodes[code] ??
    sqliteCodes[base] ??
    (code.startsWith('SQLITE_IOERR') ? 'STORAGE_IO' : undefined);
  if (!mapped) {
    return new AgentError(
      'STORAGE_IO',
      `journal error: ${(e as Error).message}`,
      { sqlite: code },
      { cause: e },
    );
  }
  return new AgentError(
    mapped,
    undefined,
    { sqlite: code, detail: (e as Error).message },
    { cause: e },
  );
}

/** Runs fn and rethrows any SQLite error as an AgentError. */
export function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw mapSqliteError(e);
  }
}

export interface OpenOptions {
  /** Refuse to create a new file (commands that only read an existing journal). */
  mustExist?: boolean;
  readonly?: boolean;
  /**
   * Open a journal as evidence: no migrations, no refusal of a file whose guards were
   * removed, so `journal verify` can still name the row that was changed.
   */
  forensic?: boolean;
  /**
   * Check every page before the first write only when the file is at most this big
   * (default 64 MiB, about 175,000 rows). A bigger journal opens at once and is checked
   * by `checkPagesInWorker` while the agent runs: the check is linear in the file (about
   * 2.3 s per million rows) and a terminal must not take that long to come back after a
   * power cut.
   */
  syncPageCheckMaxBytes?: number;
  /** Check pages on a read-only open too (a journal opened frozen after a rollback). */
  checkPages?: boolean;
}

const DEFAULT_SYNC_PAGE_CHECK_MAX_BYTES = 64 * 1024 * 1024;

/** Whether openDatabase checks this file's pages itself (false: the caller must do it later). */
export function pagesCheckedAtOpen(file: string, options: OpenOptions = {}): boolean {
  const max = options.syncPageCheckMaxBytes ?? DEFAULT_SYNC_PAGE_CHECK_MAX_BYTES;
  return !existsSync(file) || statSync(file).size <= max;
}

/**
 * Opens the journal database: for the agent's own (writable) open, a read-only check that
 * the file is ours and its pages are sound; then WAL, synchronous=FULL, foreign keys,
 * numbered migrations run once, and a cheap probe. A damaged file is refused with
 * STORAGE_CORRUPT and left exactly where it is, for forensics.
 */
export function openDatabase(file: string, options: OpenOptions = {}): Database {
  const Driver = loadDriver();
  if (options.mustExist && !existsSync(file)) {
    throw new AgentError('STORAGE_NOT_FOUND', `no journal at ${file}`);
  }
  // The data directory a power cut could take away whole, journal and all, were its name new.
  if (options.readonly) makeDirDurable(path.dirname(file));
  else ensureDataDirDurable(path.dirname(file));
  if (existsSync(file) && statSync(file).isDirectory()) {
    throw new AgentError('STORAGE_IO', `${file} is a directory, not a journal file`);
  }
  let db: Database | undefined;
  try {
    db = new Driver(file, {
      readonly: options.readonly ?? false,
      fileMustExist: options.mustExist ?? false,
    });
    db.pragma('busy_timeout = 5000');
    // The header read fails on a file that is not SQLite at all. It and the checks after it
    // only read: switching a rollback-mode file to WAL rewrites its header, so a file that is
    // not ours, or is damaged, is refused before anything is written to it.
    db.prepare('SELECT count(*) AS n FROM sqlite_schema').get();
    if ((!options.readonly || options.checkPages) && !options.forensic) {
      refuseForeign(db);
      checkSchema(db, Driver);
      if (pagesCheckedAtOpen(file, options)) checkPages(db);
    }
    if (!options.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    db.pragma('foreign_keys = ON');
    if (!options.readonly && !options.forensic) runMigrations(db);
    probe(db, !options.forensic);
    return db;
  } catch (e) {
    db?.close();
    const err = mapSqliteError(e);
    if (err.code === 'STORAGE_CORRUPT') {
      throw new AgentError(
        'STORAGE_CORRUPT',
        `the journal file ${file} is damaged (${String(err.context.detail ?? err.message).replace(/\s*\n\s*/g, ' ')}); it was left untouched for forensics`,
        err.context,
        { cause: e },
      );
    }
    // SQLite says only "unable to open database file" when it cannot create the WAL beside a
    // journal on a read-only file system or in a directory it may not write: say which.
    if ((err.code === 'STORAGE_IO' || err.code === 'STORAGE_READONLY') && !options.readonly) {
      const denied = notWritable(file);
      if (denied)
        throw new AgentError(
          'STORAGE_READONLY',
          `the journal ${file} cannot be written (${denied}); nothing was changed`,
          err.context,
          { cause: e },
        );
    }
    throw err;
  }
}

/** Why the journal or its directory cannot be written, or undefined when both can. */
function notWritable(file: string): string | undefined {
  for (const p of [path.dirname(file), ...(existsSync(file) ? [file] : [])]) {
    try {
      accessSync(p, constants.W_OK);
    } catch (e) {
      return `${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
    }
  }
  return undefined;
}

function refuseForeign(db: Database): void {
  const tables = (
    db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as { name: string }[]
  ).map((r) => r.name);
  if (tables.length > 0 && !tables.includes('schema_migrations')) {
    // Someone else's SQLite file: converting it in place would destroy evidence.
    throw new AgentError(
      'STORAGE_CORRUPT',
      `the file is a SQLite database but not a pos-agent journal (tables: ${tables.slice(0, 5).join(', ')})`,
    );
  }
}

/**
 * Every page, and every index against its table, before the agent writes: a byte flipped
 * in a b-tree page, or an index that lost a row (a batch would silently miss a transaction),
 * is otherwise found only when a later read trips over it, after new rows were written into
 * the damaged file. Linear in the file: about 2.3 s per million journal rows, once per start
 * (bigger files: see syncPageCheckMaxBytes).
 */
function checkPages(db: Database): void {
  const found = (db.pragma('integrity_check(5)') as Array<{ integrity_check: string }>).map(
    (r) => r.integrity_check,
  );
  if (found.length !== 1 || found[0] !== 'ok') {
    const what = found.slice(0, 3).join('; ');
    throw new AgentError('STORAGE_CORRUPT', `integrity_check: ${what.replace(/\s*\n\s*/g, '; ')}`);
  }
}

function runMigrations(db: Database): void {
  refuseForeign(db);
  db.exec(SCHEMA_MIGRATIONS_SQL);
  const done = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
      (r) => r.version,
    ),
  );
  const newest = migrations.at(-1)?.version ?? 0;
  const unknown = [...done].filter((v) => v > newest);
  if (unknown.length) {
    throw new AgentError(
      'STORAGE_CORRUPT',
      `the journal was written by a newer pos-agent (schema ${Math.max(...unknown)}, this one knows ${newest})`,
    );
  }
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(
        m.version,
        Date.now(),
      );
    })();
  }
}

/**
 * A cheap probe that also runs on read-only and forensic opens (which skip the page
 * check above). It touches the tables we need and the newest rows.
 */
function probe(db: Database, requireGuards: boolean): void {
  const tables = new Set(
    (
      db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as { name: string }[]
    ).map((r) => r.name),
  );
  for (const t of ['journal', 'batches', 'lifecycle', 'meta']) {
    if (!tables.has(t))
      throw new AgentError('STORAGE_CORRUPT', `the journal file has no ${t} table`);
  }
  const triggers = new Set(
    (
      db.prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger'").all() as {
        name: string;
      }[]
    ).map((r) => r.name),
  );
  for (const t of requireGuards ? ['journal_immutable_update', 'journal_immutable_delete'] : []) {
    // Only someone editing the journal by hand drops these: fail closed and keep the file.
    if (!triggers.has(t))
      throw new AgentError(
        'STORAGE_CORRUPT',
        `the journal's ${t} guard was removed; the file may have been edited`,
      );
  }
  db.prepare('SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 8').all();
}

/**
 * Prepared statements, made once per SQL text: preparing costs more than running the
 * small queries a transaction makes, and the journal runs them on every record.
 */
export function statementCache(db: Database): (sql: string) => BetterSqlite3.Statement {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return (sql) => {
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = db.prepare(sql);
      cache.set(sql, stmt);
    }
    return stmt;
  };
}
