import type { Database } from 'better-sqlite3';
import { AgentError } from '../base/errors.ts';
import { migrations } from './migrations.ts';

/** The bookkeeping table of the numbered migrations; part of every journal's schema. */
export const SCHEMA_MIGRATIONS_SQL =
  'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)';

type SchemaRows = Map<string, string>;

const expected = new Map<string, SchemaRows>();

function schemaOf(db: Database): SchemaRows {
  const rows = db
    .prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name')
    .all() as Array<{ type: string; name: string; tbl_name: string; sql: string | null }>;
  return new Map(rows.map((r) => [`${r.type} ${r.name}`, `${r.tbl_name}\n${r.sql ?? ''}`]));
}

/** The schema that exactly these migrations leave, made once per set in a memory database. */
function expectedSchema(Driver: new (file: string) => Database, versions: number[]): SchemaRows {
  const key = versions.join(',');
  let rows = expected.get(key);
  if (!rows) {
    const mem = new Driver(':memory:');
    try {
      mem.exec(SCHEMA_MIGRATIONS_SQL);
      for (const m of migrations) if (versions.includes(m.version)) mem.exec(m.sql);
      rows = schemaOf(mem);
    } finally {
      mem.close();
    }
    expected.set(key, rows);
  }
  return rows;
}

/**
 * Refuses a journal whose schema is not, to the byte, what its recorded migrations made.
 * Row hashes cover rows, not the schema: a changed trigger body (a guard turned into a no-op,
 * a trigger pointed at a table that is not there) or an altered table would otherwise pass
 * every other check and only show as a failed write, or not at all. Runs before anything is
 * written, so the file is left as it was found.
 */
export function checkSchema(db: Database, Driver: new (file: string) => Database): void {
  const actual = schemaOf(db);
  if (actual.size === 0 || !actual.has('table schema_migrations')) return; // new, or refused as foreign
  let versions: number[];
  try {
    versions = (
      db.prepare('SELECT version FROM schema_migrations').all() as Array<{
        version: number;
      }>
    ).map((r) => r.version);
  } catch (e) {
    throw new AgentError('STORAGE_CORRUPT', `the migrations table cannot be read (${String(e)})`);
  }
  const known = new Set(migrations.map((m) => m.version));
  if (versions.some((v) => !known.has(v))) return; // a newer agent's file: the migration step says so
  const want = expectedSchema(Driver, versions);
  const differs = [...new Set([...want.keys(), ...actual.keys()])].filter(
    (k) => want.get(k) !== actual.get(k),
  );
  if (differs.length > 0) {
    throw new AgentError(
      'STORAGE_CORRUPT',
      `the journal's schema was changed (${differs.slice(0, 3).join(', ')}); the file may have been edited`,
    );
  }
}
