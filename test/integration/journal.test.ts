import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  applyActivation,
  journalPath,
  openCore,
  type Core,
  type Identity,
} from '../../agent/runtime/core.ts';
import { DEFAULT_FEE_SCHEDULE } from '../../agent/policy/fees.ts';
import { ManualClock } from '../../base/clock.ts';
import { AgentError, type ErrorCode } from '../../base/errors.ts';
import { batchDigest, computeTotals } from '../../agent/policy/batch-totals.ts';
import { Store } from '../../storage/store.ts';
import { GENESIS_HASH, rowHash } from '../../storage/journal.ts';
import type { RecordInput } from '../../agent/policy/payments.ts';

/**
 * The journal on a real SQLite file in a fresh directory per test. Tampering goes through
 * a second better-sqlite3 connection that drops the immutability triggers first, as an
 * attacker with the file would; byte tampering edits the file itself.
 */

const PAN = '4111111111111111';
const PAN2 = '5555555555554444';
const IDENTITY: Identity = {
  terminalId: 'T0001',
  merchantId: 'M100',
  merchantName: 'Test Shop',
  category: 'default',
  currency: 'CNY',
  activatedAt: Date.UTC(2026, 0, 15),
};

const dirs: string[] = [];
const cores: Core[] = [];
const extra: Array<{ close(): void }> = [];

afterEach(() => {
  for (const c of cores.splice(0)) c.close();
  for (const x of extra.splice(0)) x.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'pos-journal-'));
  dirs.push(d);
  return d;
}

function open(dir: string, clock = new ManualClock()): Core {
  const core = openCore({ dataDir: dir }, { clock });
  cores.push(core);
  return core;
}

function activated(dir = tempDir()): Core {
  const core = open(dir);
  applyActivation(core, IDENTITY, DEFAULT_FEE_SCHEDULE, 'test');
  return core;
}

function reopen(core: Core): Core {
  core.close();
  cores.splice(cores.indexOf(core), 1);
  return open(core.config.dataDir);
}

function sale(core: Core, amount: number, more: Partial<RecordInput> = {}) {
  return core.payments.record({ type: 'sale', amount, card: { pan: PAN }, ...more });
}

function refusal(fn: () => unknown): AgentError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof AgentError)) throw e;
    return e;
  }
  throw new Error('expected a refusal, but it was accepted');
}

function expectRefused(fn: () => unknown, code: ErrorCode): AgentError {
  const e = refusal(fn);
  expect(e.code, e.message).toBe(code);
  return e;
}

function txnCount(core: Core): number {
  return (
    core.store.db.prepare("SELECT count(*) AS n FROM journal WHERE kind = 'txn'").get() as {
      n: number;
    }
  ).n;
}

/** A second, attacker's connection to the same file. */
function attacker(file: string, fn: (db: Database.Database) => void): void {
  const db = new Database(file);
  try {
    db.pragma('foreign_keys = OFF');
    db.exec(
      'DROP TRIGGER IF EXISTS journal_immutable_update; DROP TRIGGER IF EXISTS journal_immutable_delete;',
    );
    fn(db);
  } finally {
    db.close();
  }
}

describe('append and verify', () => {
  it('chains every row from genesis, survives reopen, and continues the same chain', () => {
    const core = activated();
    for (let i = 1; i <= 15; i++) {
      const s = sale(core, 10_000 + i, { localId: `S${i}` });
      if (i % 3 === 0) core.payments.record({ type: 'refund', amount: 1_000, originalSeq: s.seq });
    }
    const v1 = core.store.journal.verify();
    const head = core.store.journal.headOf();
    expect(v1).toEqual({ ok: true, checked: head.seq, headSeq: head.seq, headHash: head.hash });

    // Links checked independently of verify(): first row hangs off genesis, each row off the one before.
    const rows = core.store.db.prepare('SELECT * FROM journal ORDER BY seq').all() as Array<
      Record<string, unknown> & { seq: number; prev_hash: string; hash: string }
    >;
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
    rows.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      if (i > 0) expect(r.prev_hash).toBe(rows[i - 1]!.hash);
      expect(rowHash(r.prev_hash, r as never)).toBe(r.hash);
    });

    const again = reopen(core);
    expect(again.store.journal.verify()).toEqual(v1);
    const next = sale(again, 777);
    expect(next.seq).toBe(head.seq + 1);
    const after = again.store.journal.verify();
    expect(after.ok).toBe(true);
    expect(after.checked).toBe(head.seq + 1);
    // verify from a trusted checkpoint checks only the newer rows
    expect(again.store.journal.verify(head)).toMatchObject({
      ok: true,
      checked: 1,
      headSeq: head.seq + 1,
    });
    // and a wrong checkpoint is caught at the first row after it
    expect(again.store.journal.verify({ seq: head.seq, hash: GENESIS_HASH })).toMatchObject({
      ok: false,
      firstBad: { seq: head.seq + 1 },
    });
  });

  it('an acknowledged row is visible to another connection the moment record() returns', () => {
    const core = activated();
    const reader = new Database(journalPath(core.config), { readonly: true });
    extra.push(reader);
    for (let i = 0; i < 5; i++) {
      const r = sale(core, 5_000 + i, { localId: `VIS-${i}` });
      const row = reader.prepare('SELECT local_id, amount FROM journal WHERE seq = ?').get(r.seq);
      expect(row).toEqual({ local_id: `VIS-${i}`, amount: 5_000 + i });
    }
  });

  it('journal rows cannot be updated or deleted through the agent connection', () => {
    const core = activated();
    const r = sale(core, 10_000);
    expect(() =>
      core.store.db.prepare('UPDATE journal SET amount = 1 WHERE seq = ?').run(r.seq),
    ).toThrow(/immutable/);
    expect(() => core.store.db.prepare('DELETE FROM journal WHERE seq = ?').run(r.seq)).toThrow(
      /immutable/,
    );
    expect(core.store.journal.getTxn(r.seq)?.amount).toBe(10_000);
  });

  it('runs in WAL mode with synchronous=FULL, read back from the connection, also after reopen', () => {
    let core = activated();
    for (let round = 0; round < 2; round++) {
      expect(core.store.db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(core.store.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
      expect(core.store.db.pragma('foreign_keys', { simple: true })).toBe(1);
      sale(core, 10_000);
      expect(existsSync(journalPath(core.config) + '-wal')).toBe(true);
      core = reopen(core);
    }
    // WAL is a property of the file: a fresh connection sees it too
    const other = new Database(journalPath(core.config));
    extra.push(other);
    expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
  });
});

describe('tamper evidence', () => {
  /** 30-odd rows: sales with unique auth codes, refunds, lifecycle events. */
  function buildJournal(): { dir: string; file: string; saleSeqs: number[]; head: number } {
    const core = activated();
    const saleSeqs: number[] = [];
    for (let i = 1; i <= 12; i++) {
      const s = sale(core, 20_000 + i * 101, {
        localId: `T-${i}`,
        authCode: `AUTHX${String(i).padStart(4, '0')}`,
      });
      saleSeqs.push(s.seq);
      if (i % 4 === 0) core.payments.record({ type: 'refund', amount: 500, originalSeq: s.seq });
      if (i === 6) {
        core.terminal.apply(
          { type: 'lock', source: 'maintenance', by: 'technician' },
          'cleaning',
          'console:t1',
        );
        core.terminal.apply(
          { type: 'unlock', source: 'maintenance', by: 'technician' },
          'done',
          'console:t1',
        );
      }
    }
    expect(core.store.journal.verify().ok).toBe(true);
    const head = core.store.journal.headOf().seq;
    const dir = core.config.dataDir;
    core.close();
    cores.splice(cores.indexOf(core), 1);
    return { dir, file: path.join(dir, 'journal.db'), saleSeqs, head };
  }

  /** Opens the tampered file as evidence (the agent itself refuses it: see below). */
  function verifyAfter(dir: string) {
    const store = Store.open(path.join(dir, 'journal.db'), { forensic: true });
    extra.push(store);
    return store.journal.verify();
  }

  it('the agent refuses to run on a journal whose immutability guards were dropped, and leaves it as it was', () => {
    const j = buildJournal();
    attacker(j.file, (db) =>
      db.prepare('UPDATE journal SET amount = amount + 1 WHERE seq = ?').run(j.saleSeqs[0]!),
    );
    const before = readFileSync(j.file);
    expect(() => Store.open(j.file)).toThrow(expect.objectContaining({ code: 'STORAGE_CORRUPT' }));
    expect(readFileSync(j.file).equals(before)).toBe(true);
  });

  it('a changed amount names exactly that row', () => {
    const j = buildJournal();
    const k = j.saleSeqs[5]!;
    attacker(j.file, (db) =>
      db.prepare('UPDATE journal SET amount = amount + 1 WHERE seq = ?').run(k),
    );
    const v = verifyAfter(j.dir);
    expect(v.ok).toBe(false);
    expect(v.firstBad).toEqual({ seq: k, reason: expect.stringMatching(/content/) });
    expect(v.checked).toBe(k - 1);
  });

  it('one character of a masked PAN names exactly that row', () => {
    const j = buildJournal();
    const k = j.saleSeqs[2]!;
    attacker(j.file, (db) =>
      db.prepare("UPDATE journal SET masked_pan = '411112******1111' WHERE seq = ?").run(k),
    );
    expect(verifyAfter(j.dir).firstBad?.seq).toBe(k);
  });

  it('a changed timestamp on the first txn row or the last row, or one changed word in an event, is named', () => {
    for (const pick of ['first-txn', 'last', 'event'] as const) {
      const j = buildJournal();
      const k =
        pick === 'first-txn'
          ? j.saleSeqs[0]!
          : pick === 'last'
            ? j.head
            : (() => {
                const db = new Database(j.file, { readonly: true });
                const r = db
                  .prepare(
                    "SELECT seq FROM journal WHERE kind = 'event' AND event = 'lifecycle' ORDER BY seq DESC LIMIT 1",
                  )
                  .get() as { seq: number };
                db.close();
                return r.seq;
              })();
      attacker(j.file, (db) => {
        if (pick === 'event') {
          db.prepare(
            "UPDATE journal SET detail = replace(detail, 'done', 'dine') WHERE seq = ?",
          ).run(k);
        } else {
          db.prepare('UPDATE journal SET created_at = created_at + 1 WHERE seq = ?').run(k);
        }
        expect(db.prepare('SELECT changes() AS n').get()).toEqual({ n: 1 });
      });
      expect(verifyAfter(j.dir).firstBad?.seq, pick).toBe(k);
    }
  });

  it('a deleted row is named as missing at the gap', () => {
    const j = buildJournal();
    const k = j.saleSeqs[7]!;
    attacker(j.file, (db) => db.prepare('DELETE FROM journal WHERE seq = ?').run(k));
    const v = verifyAfter(j.dir);
    expect(v.ok).toBe(false);
    expect(v.firstBad?.seq).toBe(k + 1);
    expect(v.firstBad?.reason).toBe(`row ${k} is missing`);
  });

  it('two swapped rows are named at the earlier one', () => {
    const j = buildJournal();
    const a = j.saleSeqs[3]!;
    const b = j.saleSeqs[9]!;
    attacker(j.file, (db) => {
      db.prepare('UPDATE journal SET seq = -1 WHERE seq = ?').run(a);
      db.prepare('UPDATE journal SET seq = ? WHERE seq = ?').run(a, b);
      db.prepare('UPDATE journal SET seq = ? WHERE seq = -1').run(b);
    });
    expect(verifyAfter(j.dir).firstBad?.seq).toBe(a);
  });

  it('a tampered row whose own hash was recomputed is caught by the next link', () => {
    const j = buildJournal();
    const k = j.saleSeqs[4]!;
    attacker(j.file, (db) => {
      db.prepare('UPDATE journal SET amount = 1 WHERE seq = ?').run(k);
      const raw = db.prepare('SELECT * FROM journal WHERE seq = ?').get(k) as { prev_hash: string };
      db.prepare('UPDATE journal SET hash = ? WHERE seq = ?').run(
        rowHash(raw.prev_hash, raw as never),
        k,
      );
    });
    const v = verifyAfter(j.dir);
    expect(v.firstBad).toEqual({ seq: k + 1, reason: expect.stringMatching(/link/) });
  });

  it('one byte flipped in the file itself names the row that holds it', () => {
    const j = buildJournal();
    const k = j.saleSeqs[8]!; // auth code AUTHX0009
    const bytes = readFileSync(j.file);
    const needle = Buffer.from('AUTHX0009');
    const at = bytes.indexOf(needle);
    expect(at).toBeGreaterThan(0);
    expect(bytes.indexOf(needle, at + 1)).toBe(-1);
    bytes[at + 4] = 'Y'.charCodeAt(0);
    writeFileSync(j.file, bytes);
    const v = verifyAfter(j.dir);
    expect(v.ok).toBe(false);
    expect(v.firstBad?.seq).toBe(k);
  });

  it('tampering while the agent is running is seen by its own connection', () => {
    const core = activated();
    const seqs = [sale(core, 10_000).seq, sale(core, 20_000).seq, sale(core, 30_000).seq];
    attacker(journalPath(core.config), (db) =>
      db.prepare('UPDATE journal SET fee = 0 WHERE seq = ?').run(seqs[1]),
    );
    expect(core.store.journal.verify().firstBad?.seq).toBe(seqs[1]);
  });
});

describe('refunds, voids and reversals', () => {
  it('partial refunds up to the original; one fen more is refused; fees returned equal the fee', () => {
    const core = activated();
    const s = sale(core, 10_000);
    expect(s.fee).toBe(300);
    const r1 = core.payments.record({ type: 'refund', amount: 4_000, originalSeq: s.seq });
    const r2 = core.payments.record({ type: 'refund', amount: 3_333, originalSeq: s.seq });
    expect([r1.fee, r2.fee]).toEqual([120, 99]); // 120.0, 99.99 -> 99
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 2_668, originalSeq: s.seq }),
      'TXN_EXCEEDS_ORIGINAL',
    );
    const r3 = core.payments.record({ type: 'refund', amount: 2_667, originalSeq: s.seq });
    expect(r3.fee).toBe(81); // the remainder
    expect(r1.fee + r2.fee + r3.fee).toBe(s.fee);
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: s.seq }),
      'TXN_EXCEEDS_ORIGINAL',
    );
    const rows = core.store.journal.batchRows(s.batchId);
    const totals = computeTotals(rows, 'CNY');
    expect(totals.netAmount).toBe(0);
    expect(totals.netFee).toBe(0);
    expect(
      rows.filter((r) => r.type === 'refund').every((r) => r.maskedPan === '411111******1111'),
    ).toBe(true);
  });

  it('void after a refund is refused; a void cancels the whole sale once', () => {
    const core = activated();
    const a = sale(core, 50_000);
    core.payments.record({ type: 'refund', amount: 1, originalSeq: a.seq });
    expectRefused(
      () => core.payments.record({ type: 'void', amount: 50_000, originalSeq: a.seq }),
      'TXN_EXCEEDS_ORIGINAL',
    );
    const b = sale(core, 70_000);
    expectRefused(
      () => core.payments.record({ type: 'void', amount: 69_999, originalSeq: b.seq }),
      'TXN_INVALID',
    );
    const v = core.payments.record({ type: 'void', amount: 70_000, originalSeq: b.seq });
    expect(v.fee).toBe(b.fee);
    expectRefused(
      () => core.payments.record({ type: 'void', amount: 70_000, originalSeq: b.seq }),
      'TXN_EXCEEDS_ORIGINAL',
    );
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: b.seq }),
      'TXN_EXCEEDS_ORIGINAL',
    );
  });

  it('void of a sale in a closed batch is refused; a refund of it is still allowed', () => {
    const core = activated();
    const s = sale(core, 30_000);
    const now = core.clock.now();
    core.store.atomically(() => {
      const b = core.store.batches.open(now);
      const rows = core.store.journal.batchRows(b.batchId);
      core.store.batches.close(
        b.batchId,
        {
          businessDate: '2026-01-15',
          firstSeq: rows[0]?.seq ?? null,
          lastSeq: rows.at(-1)?.seq ?? null,
          txnCount: rows.length,
          totals: computeTotals(rows, 'CNY'),
          digest: batchDigest(b.batchId, rows),
        },
        now,
      );
    });
    expectRefused(
      () => core.payments.record({ type: 'void', amount: 30_000, originalSeq: s.seq }),
      'TXN_INVALID',
    );
    const r = core.payments.record({ type: 'refund', amount: 30_000, originalSeq: s.seq });
    expect(r.fee).toBe(s.fee);
    expect(r.batchId).not.toBe(s.batchId);
  });

  it('a reversal is allowed while locked; sales, refunds and voids are not', () => {
    const core = activated();
    const a = sale(core, 40_000);
    const b = sale(core, 60_000);
    core.terminal.apply({ type: 'lock', source: 'risk', by: 'agent' }, 'decline burst', 'risk');
    expectRefused(() => sale(core, 100), 'LIFECYCLE_LOCKED');
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: a.seq }),
      'LIFECYCLE_LOCKED',
    );
    expectRefused(
      () => core.payments.record({ type: 'void', amount: 60_000, originalSeq: b.seq }),
      'LIFECYCLE_LOCKED',
    );
    const rev = core.payments.record({ type: 'reversal', amount: 40_000, originalSeq: a.seq });
    expect(rev.status).toBe('approved');
    expect(rev.fee).toBe(a.fee);
  });

  it('refunds of a declined sale, of a refund, of an event row and of nothing are refused', () => {
    const core = activated();
    const d = sale(core, 10_000, { status: 'declined' });
    expect(d.fee).toBe(0);
    expect(d.feeVersion).toBeNull();
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: d.seq }),
      'TXN_ORIGINAL_NOT_FOUND',
    );
    expectRefused(
      () => core.payments.record({ type: 'reversal', amount: 10_000, originalSeq: d.seq }),
      'TXN_ORIGINAL_NOT_FOUND',
    );
    const s = sale(core, 10_000);
    const r = core.payments.record({ type: 'refund', amount: 100, originalSeq: s.seq });
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: r.seq }),
      'TXN_ORIGINAL_NOT_FOUND',
    );
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: 1 }),
      'TXN_ORIGINAL_NOT_FOUND',
    );
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1, originalSeq: 999_999 }),
      'TXN_ORIGINAL_NOT_FOUND',
    );
    expectRefused(
      () => core.payments.record({ type: 'refund', amount: 1 }),
      'TXN_ORIGINAL_NOT_FOUND',
    );
  });

  it('a declined refund takes nothing back from the original', () => {
    const core = activated();
    const s = sale(core, 10_000);
    const dr = core.payments.record({
      type: 'refund',
      amount: 10_000,
      originalSeq: s.seq,
      status: 'declined',
    });
    expect(dr.fee).toBe(0);
    const ok = core.payments.record({ type: 'refund', amount: 10_000, originalSeq: s.seq });
    expect(ok.fee).toBe(300);
  });
});

describe('idempotent retries by localId', () => {
  it('a retry returns the same seq and adds no row, also after reopen and while locked', () => {
    let core = activated();
    const first = sale(core, 12_345, { localId: 'POS-0001' });
    const head = core.store.journal.headOf();
    const n = txnCount(core);
    const retry = sale(core, 12_345, { localId: 'POS-0001' });
    expect(retry).toEqual({ ...first, duplicate: true });
    expect(core.store.journal.headOf()).toEqual(head);
    expect(txnCount(core)).toBe(n);

    core = reopen(core);
    expect(sale(core, 12_345, { localId: 'POS-0001' })).toEqual({ ...first, duplicate: true });
    core.terminal.apply(
      { type: 'lock', source: 'technician', by: 'technician' },
      'visit',
      'console:t1',
    );
    const headLocked = core.store.journal.headOf();
    expect(sale(core, 12_345, { localId: 'POS-0001' }).seq).toBe(first.seq);
    expect(core.store.journal.headOf()).toEqual(headLocked);
    expect(core.store.journal.verify().ok).toBe(true);
  });

  it('a refund retried by localId is not taken twice', () => {
    const core = activated();
    const s = sale(core, 10_000);
    const r1 = core.payments.record({
      type: 'refund',
      amount: 6_000,
      originalSeq: s.seq,
      localId: 'RF-1',
    });
    const r2 = core.payments.record({
      type: 'refund',
      amount: 6_000,
      originalSeq: s.seq,
      localId: 'RF-1',
    });
    expect(r2.seq).toBe(r1.seq);
    expect(core.store.journal.takenFrom(s.seq)).toMatchObject({ amount: 6_000, count: 1 });
  });

  it('a conflicting reuse of a localId is refused and journals nothing but the refusal', () => {
    const core = activated();
    const s = sale(core, 10_000, { localId: 'POS-7' });
    const n = txnCount(core);
    expectRefused(() => sale(core, 10_001, { localId: 'POS-7' }), 'TXN_INVALID');
    expectRefused(
      () =>
        core.payments.record({
          type: 'refund',
          amount: 10_000,
          originalSeq: s.seq,
          localId: 'POS-7',
        }),
      'TXN_INVALID',
    );
    expectRefused(
      () =>
        core.payments.record({
          type: 'sale',
          amount: 10_000,
          card: { pan: PAN2 },
          localId: 'POS-7',
        }),
      'TXN_INVALID',
    );
    expect(txnCount(core)).toBe(n);
    expect(core.store.journal.events('txn-refused').map((e) => e.detail.localId)).toEqual([
      'POS-7',
      'POS-7',
      'POS-7',
    ]);
  });

  it('an app localId that looks like an agent-made one never blocks a later sale', () => {
    const core = activated();
    const head = core.store.journal.headOf().seq;
    // the app picks the id the agent would give the row after next
    sale(core, 1_000, { localId: `L${head + 2}` });
    const next = sale(core, 2_000);
    expect(next.status).toBe('approved');
    expect(next.localId).not.toBe(`L${head + 2}`);
    expect(core.store.journal.findByLocalId(next.localId)?.seq).toBe(next.seq);
  });

  it('a refused attempt can be retried under the same localId once allowed', () => {
    const core = activated();
    core.terminal.apply(
      { type: 'lock', source: 'technician', by: 'technician' },
      'visit',
      'console:t1',
    );
    expectRefused(() => sale(core, 5_000, { localId: 'RETRY-1' }), 'LIFECYCLE_LOCKED');
    core.terminal.apply(
      { type: 'unlock', source: 'technician', by: 'technician' },
      'left',
      'console:t1',
    );
    const ok = sale(core, 5_000, { localId: 'RETRY-1' });
    expect(ok.duplicate).toBe(false);
  });
});

describe('lifecycle persistence and refusals', () => {
  it('state, locks, transitions and chain events survive reopen', () => {
    let core = activated();
    core.terminal.apply(
      { type: 'lock', source: 'technician', by: 'technician' },
      'on-site visit',
      'console:tech1',
    );
    core.terminal.apply(
      { type: 'lock', source: 'risk', by: 'agent' },
      'five declines in a minute',
      'risk-rules',
    );
    core.terminal.apply(
      { type: 'unlock', source: 'technician', by: 'technician' },
      'visit over',
      'console:tech1',
    );
    core = reopen(core);
    expect(core.terminal.status()).toMatchObject({ state: 'active', locks: ['risk'] });
    expect(core.terminal.mayTransact()).toMatchObject({ allowed: false, code: 'LIFECYCLE_LOCKED' });

    const t = core.store.state.transitions();
    expect(
      t.map((x) => [
        x.event,
        x.fromState,
        x.toState,
        x.locksBefore,
        x.locksAfter,
        x.source,
        x.cause,
      ]),
    ).toEqual([
      ['activate', 'unactivated', 'active', [], [], 'test', 'activated for merchant M100'],
      [
        'lock technician (by technician)',
        'active',
        'active',
        [],
        ['technician'],
        'console:tech1',
        'on-site visit',
      ],
      [
        'lock risk (by agent)',
        'active',
        'active',
        ['technician'],
        ['risk', 'technician'],
        'risk-rules',
        'five declines in a minute',
      ],
      [
        'unlock technician (by technician)',
        'active',
        'active',
        ['risk', 'technician'],
        ['risk'],
        'console:tech1',
        'visit over',
      ],
    ]);
    for (const x of t) {
      const e = core.store.journal.get(x.journalSeq);
      expect(e?.kind).toBe('event');
      if (e?.kind !== 'event') continue;
      expect(e.event).toBe('lifecycle');
      expect(e.detail).toMatchObject({
        event: x.event,
        from: x.fromState,
        to: x.toState,
        source: x.source,
        cause: x.cause,
      });
    }
    expect(core.store.journal.verify().ok).toBe(true);
  });

  it('a refused lifecycle event leaves a lifecycle-refused record and changes nothing', () => {
    let core = activated();
    core.terminal.apply(
      { type: 'lock', source: 'risk', by: 'acquirer' },
      'fraud alert',
      'command:12',
    );
    const before = core.store.state.lifecycle();
    const nTransitions = core.store.state.transitions().length;
    const e = refusal(() =>
      core.terminal.applyOrRecord(
        { type: 'unlock', source: 'risk', by: 'technician' },
        'merchant asked',
        'console:tech9',
      ),
    );
    expect(e.code).toBe('LIFECYCLE_REFUSED');
    expect(core.store.state.lifecycle()).toEqual(before);
    expect(core.store.state.transitions()).toHaveLength(nTransitions);
    core = reopen(core);
    const rec = core.store.journal.events('lifecycle-refused');
    expect(rec).toHaveLength(1);
    expect(rec[0]!.detail).toMatchObject({
      event: 'unlock risk (by technician)',
      code: 'LIFECYCLE_REFUSED',
      source: 'console:tech9',
      cause: 'merchant asked',
    });
    expect(core.terminal.status().locks).toEqual(['risk']);
  });

  it('a refused transaction leaves a txn-refused record with its code and no card data', () => {
    const core = activated();
    core.terminal.apply(
      { type: 'lock', source: 'remote', by: 'acquirer' },
      'merchant suspended',
      'command:3',
    );
    expectRefused(() => sale(core, 9_999, { localId: 'BLOCKED-1' }), 'LIFECYCLE_LOCKED');
    const rec = core.store.journal.events('txn-refused');
    expect(rec).toHaveLength(1);
    expect(rec[0]!.detail).toMatchObject({
      code: 'LIFECYCLE_LOCKED',
      type: 'sale',
      amount: 9_999,
      localId: 'BLOCKED-1',
    });
    expect(JSON.stringify(rec[0])).not.toContain(PAN);
  });

  it('an unactivated terminal refuses sales', () => {
    const core = open(tempDir());
    expect(() => sale(core, 100)).toThrow(AgentError);
    expect(txnCount(core)).toBe(0);
    expect(core.store.journal.events('txn-refused')).toHaveLength(1);
  });

  it('a deactivated terminal refuses every transaction type and charges no fee, even after reopen', async () => {
    let core = activated();
    const s = sale(core, 80_000);
    core.terminal.apply(
      { type: 'request-deactivation', by: 'technician' },
      'shop closing',
      'console:t1',
    );
    expectRefused(() => sale(core, 100), 'LIFECYCLE_NOT_ACTIVE');
    core.terminal.apply({ type: 'deactivation-approved' }, 'approved', 'command:20');
    core.terminal.apply({ type: 'final-settlement-done', unsettled: 0 }, 'settled', 'settlement');
    const feesBefore = core.store.db
      .prepare("SELECT COALESCE(SUM(fee), 0) AS f, count(*) AS n FROM journal WHERE kind = 'txn'")
      .get();

    const attempts = (c: Core): Array<() => unknown> => [
      () => sale(c, 100),
      () =>
        c.payments.record({ type: 'sale', amount: 100, card: { pan: PAN }, status: 'declined' }),
      () =>
        c.payments.record({
          type: 'sale',
          amount: 100,
          card: { pan: PAN },
          status: 'pending-offline',
        }),
      () => c.payments.record({ type: 'refund', amount: 100, originalSeq: s.seq }),
      () => c.payments.record({ type: 'void', amount: 80_000, originalSeq: s.seq }),
      () => c.payments.record({ type: 'reversal', amount: 80_000, originalSeq: s.seq }),
    ];
    for (const a of attempts(core)) expectRefused(a, 'LIFECYCLE_DEACTIVATED');
    let hostCalled = false;
    await expect(
      core.payments.authorize({ type: 'sale', amount: 100, card: { pan: PAN } }, async () => {
        hostCalled = true;
        return { approved: true };
      }),
    ).rejects.toMatchObject({ code: 'LIFECYCLE_DEACTIVATED' });
    expect(hostCalled).toBe(false);

    // with the token key destroyed and after a restart: still refused, and no key re-created
    core.tokenKeys.destroy();
    core = reopen(core);
    for (const a of attempts(core)) expect(a).toThrow(AgentError);
    expect(existsSync(core.tokenKeys.file)).toBe(false);
    expect(
      core.store.db
        .prepare("SELECT COALESCE(SUM(fee), 0) AS f, count(*) AS n FROM journal WHERE kind = 'txn'")
        .get(),
    ).toEqual(feesBefore);
    expect(core.store.journal.events('txn-refused').length).toBeGreaterThanOrEqual(13);
    expect(core.terminal.status().state).toBe('deactivated');
  });
});

describe('authorize', () => {
  it('a risk lock landing while the host authorises: declined, sale and reversal journaled, totals net to zero', async () => {
    const core = activated();
    const res = await core.payments.authorize(
      { type: 'sale', amount: 25_000, card: { pan: PAN }, localId: 'AUTH-1' },
      async () => {
        expect(core.payments.authorisationsInFlight).toBe(1);
        core.terminal.apply(
          { type: 'lock', source: 'risk', by: 'acquirer' },
          'risk flag',
          'command:77',
        );
        return { approved: true, authCode: 'A12345' };
      },
    );
    expect(res.status).toBe('declined');
    expect(res.declinedBecause).toMatch(/risk/);
    expect(res.reversedSeq).toBeGreaterThan(res.seq);
    expect(core.payments.authorisationsInFlight).toBe(0);

    const rows = core.store.journal.batchRows(res.batchId);
    const saleRow = rows.find((r) => r.seq === res.seq)!;
    const rev = rows.find((r) => r.seq === res.reversedSeq)!;
    expect(saleRow).toMatchObject({
      type: 'sale',
      status: 'approved',
      amount: 25_000,
      authCode: 'A12345',
      localId: 'AUTH-1',
    });
    expect(rev).toMatchObject({
      type: 'reversal',
      status: 'approved',
      amount: 25_000,
      originalSeq: res.seq,
      fee: saleRow.fee,
    });
    const totals = computeTotals(rows, 'CNY');
    expect([totals.netAmount, totals.netFee, totals.netSettlement]).toEqual([0, 0, 0]);
    expect(core.store.journal.verify().ok).toBe(true);
  });

  it('approved and declined answers are journaled as such; a host failure journals nothing', async () => {
    const core = activated();
    const ok = await core.payments.authorize(
      { type: 'sale', amount: 10_000, card: { pan: PAN } },
      async () => ({
        approved: true,
        authCode: 'OK1',
      }),
    );
    expect(ok).toMatchObject({ status: 'approved', fee: 300 });
    const no = await core.payments.authorize(
      { type: 'sale', amount: 10_000, card: { pan: PAN } },
      async () => ({
        approved: false,
      }),
    );
    expect(no).toMatchObject({ status: 'declined', fee: 0 });
    const n = txnCount(core);
    await expect(
      core.payments.authorize({ type: 'sale', amount: 10_000, card: { pan: PAN } }, async () => {
        throw new Error('link down');
      }),
    ).rejects.toThrow('link down');
    expect(txnCount(core)).toBe(n);
    expect(core.payments.authorisationsInFlight).toBe(0);
  });

  it('a locked terminal refuses before asking the host', async () => {
    const core = activated();
    core.terminal.apply(
      { type: 'lock', source: 'hardware-fault', by: 'agent' },
      'printer jam',
      'selftest',
    );
    let asked = false;
    await expect(
      core.payments.authorize({ type: 'sale', amount: 100, card: { pan: PAN } }, async () => {
        asked = true;
        return { approved: true };
      }),
    ).rejects.toMatchObject({ code: 'LIFECYCLE_LOCKED' });
    expect(asked).toBe(false);
    expect(txnCount(core)).toBe(0);
  });
});

describe('a damaged journal file', () => {
  const cases: Array<[string, () => Buffer]> = [
    ['random bytes', () => randomBytes(8192)],
    ['a text file', () => Buffer.from('this is not a journal\n'.repeat(200))],
    [
      'a SQLite header over garbage',
      () => Buffer.concat([Buffer.from('SQLite format 3\0'), randomBytes(8176)]),
    ],
  ];
  it.each(cases)('%s: STORAGE_CORRUPT, and the file is left byte-identical', (_what, make) => {
    const dir = tempDir();
    const file = path.join(dir, 'journal.db');
    const bytes = make();
    writeFileSync(file, bytes);
    const e = refusal(() => openCore({ dataDir: dir }));
    expect(e.code).toBe('STORAGE_CORRUPT');
    expect(e.message).toContain(file);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.startsWith('journal.db'))).toEqual(['journal.db']);
  });

  it('a real journal cut short is refused as STORAGE_CORRUPT and left as it was', () => {
    const core = activated();
    for (let i = 0; i < 40; i++) sale(core, 10_000 + i, { authCode: 'X'.repeat(12) });
    const dir = core.config.dataDir;
    core.close();
    cores.splice(cores.indexOf(core), 1);
    const file = path.join(dir, 'journal.db');
    const cut = readFileSync(file).subarray(0, 4096);
    writeFileSync(file, cut);
    expect(refusal(() => openCore({ dataDir: dir })).code).toBe('STORAGE_CORRUPT');
    expect(readFileSync(file).equals(cut)).toBe(true);
  });

  it('a directory where the journal should be is a typed error', () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'journal.db'));
    expect(refusal(() => openCore({ dataDir: dir })).code).toBe('STORAGE_IO');
  });
});
