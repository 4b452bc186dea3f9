import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { journalPath, openCore, type Core } from '../../agent/runtime/core.ts';
import { ManualClock } from '../../base/clock.ts';
import { AgentError } from '../../base/errors.ts';
import { activateForTest } from '../fixtures/core.ts';

/**
 * A sale into an open batch commits as one lone INSERT (no BEGIN/COMMIT around it); a
 * record that must open a batch first still commits both in one transaction. These tests
 * make the insert fail from inside SQLite (a TEMP trigger, invisible to the schema check)
 * and look at the file through a second connection, as a restart would.
 */

const PAN = '4111111111111111';
const dirs: string[] = [];
const cores: Core[] = [];

afterEach(() => {
  for (const c of cores.splice(0)) c.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function activated(): Core {
  const dir = mkdtempSync(path.join(tmpdir(), 'pos-append-'));
  dirs.push(dir);
  const core = openCore({ dataDir: dir }, { clock: new ManualClock() });
  cores.push(core);
  activateForTest(core);
  return core;
}

function sale(core: Core, amount: number, localId?: string) {
  return core.payments.record({ type: 'sale', amount, card: { pan: PAN }, localId });
}

/** What a restart would find: rows and batches read through a connection of its own. */
function onDisk(core: Core): { rows: number; txns: number; openBatches: number } {
  const db = new Database(journalPath(core.config), { readonly: true });
  try {
    const n = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    return {
      rows: n('SELECT COUNT(*) AS n FROM journal'),
      txns: n("SELECT COUNT(*) AS n FROM journal WHERE kind = 'txn'"),
      openBatches: n("SELECT COUNT(*) AS n FROM batches WHERE state = 'open'"),
    };
  } finally {
    db.close();
  }
}

function failInserts(core: Core, on: boolean): void {
  core.store.db.exec(
    on
      ? `CREATE TEMP TRIGGER refuse_txn BEFORE INSERT ON main.journal WHEN NEW.kind = 'txn'
           BEGIN SELECT RAISE(ABORT, 'the disk says no'); END`
      : 'DROP TRIGGER temp.refuse_txn',
  );
}

describe('a sale commits as one durable row', () => {
  it('is on disk for another connection the moment record returns', () => {
    const core = activated();
    const first = sale(core, 1_000);
    const before = onDisk(core);
    const second = sale(core, 2_000);
    expect(second.batchId).toBe(first.batchId);
    expect(onDisk(core)).toEqual({ ...before, rows: before.rows + 1, txns: before.txns + 1 });
    expect(core.store.journal.verify().ok).toBe(true);
  });

  it('a failed insert into the open batch leaves nothing, and the chain goes on from the file', () => {
    const core = activated();
    sale(core, 1_000);
    const before = onDisk(core);
    failInserts(core, true);
    expect(() => sale(core, 2_000)).toThrow(AgentError);
    failInserts(core, false);
    // The refusal is journaled as an event; no transaction row, no second open batch.
    expect(onDisk(core).txns).toBe(before.txns);
    expect(onDisk(core).openBatches).toBe(1);
    const next = sale(core, 3_000);
    expect(next.status).toBe('approved');
    expect(core.store.journal.verify().ok).toBe(true);
  });

  it('the first sale of a new batch opens it in the same commit as its row, or neither', () => {
    const core = activated();
    expect(onDisk(core).openBatches).toBe(0);
    failInserts(core, true);
    expect(() => sale(core, 1_000)).toThrow(AgentError);
    failInserts(core, false);
    expect(onDisk(core)).toMatchObject({ txns: 0, openBatches: 0 });
    const ok = sale(core, 1_000);
    expect(onDisk(core)).toMatchObject({ txns: 1, openBatches: 1 });
    expect(core.store.batches.openIfAny()?.batchId).toBe(ok.batchId);
  });

  it('a write that may add one row refuses a second before writing it', () => {
    const core = activated();
    const before = onDisk(core).rows;
    let thrown: unknown;
    try {
      core.store.appendAlone(() => {
        core.store.journal.appendEvent('probe', { n: 1 }, core.clock.now());
        core.store.journal.appendEvent('probe', { n: 2 }, core.clock.now());
      });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(AgentError);
    expect((thrown as AgentError).code).toBe('STORAGE_IO');
    expect(onDisk(core).rows).toBe(before + 1);
    expect(core.store.journal.verify().ok).toBe(true);
  });

  it('an agent id the payment app took first is skipped, alone or in a group commit', async () => {
    const core = activated();
    const head = core.store.journal.headOf().seq;
    sale(core, 1_000, `L${head + 3}`);
    sale(core, 1_000, `L${head + 3}.2`);
    const alone = sale(core, 2_000);
    expect(alone.localId).toBe(`L${head + 3}.3`);
    sale(core, 1_000, `L${head + 5}`);
    const [a, b] = await Promise.all([
      core.payments.recordAsync({ type: 'sale', amount: 3_000, card: { pan: PAN } }),
      core.payments.recordAsync({ type: 'sale', amount: 4_000, card: { pan: PAN } }),
    ]);
    expect(a.localId).toBe(`L${head + 5}.2`);
    expect(b.localId).toBe(`L${head + 6}`);
    expect(new Set([a.seq, b.seq]).size).toBe(2);
    expect(core.store.journal.verify().ok).toBe(true);
  });
});
