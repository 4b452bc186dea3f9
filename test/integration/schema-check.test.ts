import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isAgentError } from '../../base/errors.ts';
import { loadDriver, openDatabase } from '../../storage/db.ts';
import { migrations } from '../../storage/migrations.ts';
import { SCHEMA_MIGRATIONS_SQL } from '../../storage/schema-check.ts';

const fresh = () => path.join(mkdtempSync(path.join(tmpdir(), 'schema-')), 'journal.db');

function refused(file: string): string {
  const before = readFileSync(file);
  try {
    openDatabase(file).close();
  } catch (e) {
    expect(isAgentError(e, 'STORAGE_CORRUPT')).toBe(true);
    expect(readFileSync(file).equals(before), 'left byte-identical').toBe(true);
    return (e as Error).message;
  }
  throw new Error('the journal was opened');
}

describe('the journal schema is what its migrations made, to the byte', () => {
  it('a journal of the first schema migrates, then reopens cleanly', () => {
    const file = fresh();
    const db = new (loadDriver())(file);
    db.exec(SCHEMA_MIGRATIONS_SQL);
    db.exec(migrations[0]!.sql);
    db.prepare('INSERT INTO schema_migrations VALUES (1, 0)').run();
    db.close();
    openDatabase(file).close();
    openDatabase(file).close();
    const check = new (loadDriver())(file, { readonly: true });
    const versions = check.prepare('SELECT version FROM schema_migrations').all();
    check.close();
    expect(versions).toHaveLength(migrations.length);
  });

  it('a column added to the journal is refused', () => {
    const file = fresh();
    openDatabase(file).close();
    const db = new (loadDriver())(file);
    db.exec('ALTER TABLE journal ADD COLUMN note TEXT');
    db.close();
    expect(refused(file)).toMatch(/schema was changed \(table journal/);
  });

  it('an extra trigger is refused', () => {
    const file = fresh();
    openDatabase(file).close();
    const db = new (loadDriver())(file);
    db.exec('CREATE TRIGGER quiet AFTER INSERT ON journal BEGIN SELECT 1; END');
    db.close();
    expect(refused(file)).toMatch(/trigger quiet/);
  });
});
