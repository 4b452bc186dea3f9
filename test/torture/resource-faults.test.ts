/**
 * The resource campaign (INVARIANTS 1, 10, 11): the journal's disk fills up, becomes read-only,
 * or is damaged before the agent starts.
 *
 * - Full disk, two ways: SQLite's `PRAGMA max_page_count` on the agent's own connection (always),
 *   and a real 512 KiB tmpfs (when this process may mount one: root with CAP_SYS_ADMIN; skipped
 *   otherwise). The agent refuses new transactions with STORAGE_FULL in plain words, through
 *   Payments and the payment socket, a group commit fails as a whole, nothing acknowledged is
 *   lost, and it takes transactions again once there is room.
 * - Read-only: the journal opened read-only, the agent's connection switched to query_only, a
 *   read-only mount (when mountable), and file modes 0444/0555 as an unprivileged user (root
 *   ignores modes, so as root a child process drops to uid 65534; skipped if it cannot). Every
 *   write is refused with STORAGE_READONLY; nothing is lost; the file is left as it was.
 * - Corrupt at start: garbage, zeros, truncation at several points, a foreign SQLite database in
 *   either journal mode, a zeroed page, and TORTURE_FLIPS (default 40) seeded byte flips in the
 *   file's pages. The agent refuses to run with STORAGE_CORRUPT, says why, and leaves the file
 *   byte-identical. Flips inside a row's content (SQLite cannot see them) are the hash chain's:
 *   `verify` names the row, and the start-up walk of the whole chain locks the terminal
 *   (journal-broken) without writing a byte to the file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent } from '../../agent/runtime/agent.ts';
import { systemClock } from '../../base/clock.ts';
import { parseConfig } from '../../agent/config.ts';
import { openCore } from '../../agent/runtime/core.ts';
import { createLogger, silentLogger } from '../../base/log.ts';
import { Payments } from '../../agent/policy/payments.ts';
import { TerminalState } from '../../agent/policy/terminal-state.ts';
import { loadDriver } from '../../storage/db.ts';
import { checkSchema } from '../../storage/schema-check.ts';
import { Store } from '../../storage/store.ts';
import { LoadProcess } from '../fixtures/load-process.ts';
import { envInt, rng } from '../fixtures/torture-env.ts';
import { mountTmpfs, canMount } from '../fixtures/tmpfs.ts';
import {
  PAN,
  activated,
  expectFull,
  expectNothingLost,
  expectRefused,
  fillUp,
  refusal,
  sha,
} from '../fixtures/journal-faults.ts';

const FLIPS = envInt('TORTURE_FLIPS', 40);
const SEED = envInt('TORTURE_SEED', 0x5d15c, 0);
const isRoot = process.getuid?.() === 0;

let root: string;
let mountable = false;
beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'pa-torture-res-'));
  chmodSync(root, 0o755); // an unprivileged child must be able to walk in
  mountable = canMount(root);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
const dir = (): string => path.join(root, `d${++n}`);
describe('a full disk', () => {
  it('max_page_count: STORAGE_FULL in plain words, nothing acknowledged lost, accepted again when room returns', async () => {
    const lines: string[] = [];
    const log = createLogger(
      { level: 'info' },
      new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }),
    );
    const d = dir();
    const core = activated(d, log);
    const acked = new Map<number, number>();
    const pages = core.store.db.pragma('page_count', { simple: true }) as number;
    core.store.db.pragma(`max_page_count = ${pages + 4}`);
    const full = fillUp(core, acked);
    expect(full.code).toBe('STORAGE_FULL');
    expect(full.message).toBe('the disk is full; the journal cannot grow');
    expect(acked.size).toBeGreaterThan(5);
    for (let i = 0; i < 20; i++)
      expect(
        refusal(() => core.payments.record({ type: 'sale', amount: 100 + i, card: { pan: PAN } }))
          .code,
      ).toBe('STORAGE_FULL');
    await expectFull(core);
    // The refusal itself could not be journaled: it is logged instead, with the reason.
    expect(
      lines.some((l) => l.includes('could not journal an event') && l.includes('disk is full')),
    ).toBe(true);
    expectNothingLost(path.join(d, 'journal.db'), acked);

    core.store.db.pragma('max_page_count = 1073741823');
    const after = core.payments.record({ type: 'sale', amount: 4_321, card: { pan: PAN } });
    expect(after.seq).toBeGreaterThan(Math.max(...acked.keys()));
    acked.set(after.seq, 4_321);
    core.close();
    expectNothingLost(path.join(d, 'journal.db'), acked);
    console.log(
      `resource: max_page_count full after ${acked.size - 1} sales; 27 refusals all STORAGE_FULL; accepted again after`,
    );
  });

  it('a group commit that fills the disk midway: told "recorded" exactly for the rows that are', async () => {
    // SQLite rolls the whole transaction back on SQLITE_FULL; the rest of the group must not
    // then commit on its own while its callers hear "failed" (it did, before storage/store.ts
    // learnt to tell a lost outer transaction from none).
    let mismatches = 0;
    let rounds = 0;
    for (const size of [3, 5, 7, 11]) {
      const core = activated(dir());
      const pages = core.store.db.pragma('page_count', { simple: true }) as number;
      core.store.db.pragma(`max_page_count = ${pages + 3}`);
      for (let round = 0; round < 60; round++, rounds++) {
        const ids = Array.from({ length: size }, (_, i) => `g${round}-${i}`);
        const res = await Promise.allSettled(
          ids.map((localId, i) =>
            core.payments.recordAsync({
              type: 'sale',
              amount: 1_000 + i,
              card: { pan: PAN },
              localId,
            }),
          ),
        );
        for (const [i, r] of res.entries()) {
          const journaled = core.store.journal.findByLocalId(ids[i]!) !== undefined;
          if ((r.status === 'fulfilled') !== journaled) mismatches++;
          if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'STORAGE_FULL' });
        }
        if (res.every((r) => r.status === 'rejected')) break;
      }
      core.close();
    }
    expect(mismatches).toBe(0);
    console.log(`resource: ${rounds} group commits into a filling disk, 0 told wrong`);
  });

  it('a real 512 KiB tmpfs fills up: STORAGE_FULL, nothing lost, accepted again after a remount with room', async (ctx) => {
    if (!mountable) ctx.skip();
    const mnt = mountTmpfs(root, '512k');
    try {
      const d = path.join(mnt.path, 'data');
      const core = activated(d);
      const acked = new Map<number, number>();
      const full = fillUp(core, acked);
      expect(full).toMatchObject({ code: 'STORAGE_FULL', context: { sqlite: 'SQLITE_FULL' } });
      await expectFull(core);
      expectNothingLost(path.join(d, 'journal.db'), acked);
      mnt.remount('size=4m');
      const after = core.payments.record({ type: 'sale', amount: 4_321, card: { pan: PAN } });
      acked.set(after.seq, 4_321);
      core.close();
      expectNothingLost(path.join(d, 'journal.db'), acked);
      console.log(
        `resource: tmpfs 512 KiB full after ${acked.size - 1} sales; STORAGE_FULL; accepted again after remount`,
      );
    } finally {
      mnt.unmount();
    }
  });
});

describe('a read-only journal', () => {
  it('opened read-only: every write refused with STORAGE_READONLY; nothing lost', () => {
    const d = dir();
    const core = activated(d);
    const acked = new Map([
      [core.payments.record({ type: 'sale', amount: 777, card: { pan: PAN } }).seq, 777],
    ]);
    core.close();
    const file = path.join(d, 'journal.db');
    const before = sha(file);
    const store = Store.open(file, { readonly: true });
    const terminal = new TerminalState(store, systemClock, silentLogger());
    const payments = new Payments({
      store,
      clock: systemClock,
      log: silentLogger(),
      config: parseConfig({}),
      terminal,
      tokenKey: () => Buffer.alloc(32, 7),
      category: () => 'default',
    });
    const e = refusal(() => payments.record({ type: 'sale', amount: 500, card: { pan: PAN } }));
    expect(e).toMatchObject({ code: 'STORAGE_READONLY', message: 'the journal cannot be written' });
    expect(
      refusal(() =>
        terminal.apply({ type: 'lock', source: 'technician', by: 'technician' }, 'x', 'y'),
      ).code,
    ).toBe('STORAGE_READONLY');
    store.close();
    expect(sha(file)).toBe(before);
    expectNothingLost(file, acked);
  });

  it("query_only on the agent's own connection: STORAGE_READONLY, then accepted when writable again", () => {
    const d = dir();
    const core = activated(d);
    const acked = new Map([
      [core.payments.record({ type: 'sale', amount: 777, card: { pan: PAN } }).seq, 777],
    ]);
    core.store.db.pragma('query_only = ON');
    for (const type of ['sale', 'refund'] as const) {
      const e = refusal(() =>
        core.payments.record({
          type,
          amount: 10,
          card: { pan: PAN },
          originalSeq: type === 'refund' ? [...acked.keys()][0] : undefined,
        }),
      );
      expect(e.code).toBe('STORAGE_READONLY');
    }
    core.store.db.pragma('query_only = OFF');
    const r = core.payments.record({ type: 'sale', amount: 888, card: { pan: PAN } });
    acked.set(r.seq, 888);
    core.close();
    expectNothingLost(path.join(d, 'journal.db'), acked);
  });

  it('on a read-only mount: the agent refuses to start with STORAGE_READONLY naming the file; byte-identical', (ctx) => {
    if (!mountable) ctx.skip();
    const mnt = mountTmpfs(root, '4m');
    try {
      const d = path.join(mnt.path, 'data');
      const core = activated(d);
      const acked = new Map([
        [core.payments.record({ type: 'sale', amount: 777, card: { pan: PAN } }).seq, 777],
      ]);
      core.close();
      const file = path.join(d, 'journal.db');
      const before = sha(file);
      mnt.remount('ro');
      const e = refusal(() => openCore({ dataDir: d }));
      expect(e.code).toBe('STORAGE_READONLY');
      expect(e.message).toContain(file);
      expect(e.message).toMatch(/EROFS/);
      expect(sha(file)).toBe(before);
      mnt.remount('rw');
      expectNothingLost(file, acked);
      const again = openCore({ dataDir: d });
      expect(
        again.payments.record({ type: 'sale', amount: 5, card: { pan: PAN } }).seq,
      ).toBeGreaterThan(1);
      again.close();
      console.log(`resource: read-only mount refused: ${e.toDisplay()}`);
    } finally {
      mnt.unmount();
    }
  });

  it('file 0444 in a 0555 directory, opened by an unprivileged user: STORAGE_READONLY; byte-identical', (ctx) => {
    const d = dir();
    const core = activated(d);
    const acked = new Map([
      [core.payments.record({ type: 'sale', amount: 777, card: { pan: PAN } }).seq, 777],
    ]);
    core.close();
    const file = path.join(d, 'journal.db');
    for (const f of readdirSync(path.join(d, 'keys'))) chmodSync(path.join(d, 'keys', f), 0o444);
    chmodSync(path.join(d, 'keys'), 0o555);
    chmodSync(file, 0o444);
    chmodSync(d, 0o555);
    const before = sha(file);
    let said: { opened: boolean; code?: string; message?: string };
    try {
      if (isRoot) {
        // Root ignores file modes: ask a child running as nobody.
        const child = spawnSync(
          process.execPath,
          ['--import', 'tsx', path.join(import.meta.dirname, '../fixtures/readonly-child.ts')],
          {
            uid: 65534,
            gid: 65534,
            encoding: 'utf8',
            env: { ...process.env, READONLY_CHILD_DIR: d, HOME: tmpdir() },
            timeout: 30_000,
          },
        );
        // Only a refused spawn (no CAP_SETUID) skips; a child that ran and failed is a failure.
        if ((child.error as NodeJS.ErrnoException | undefined)?.code === 'EPERM') ctx.skip();
        expect(child.status, child.stderr).toBe(0);
        said = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as typeof said;
      } else {
        const e = refusal(() => openCore({ dataDir: d }).close());
        said = { opened: false, code: e.code, message: e.message };
      }
    } finally {
      chmodSync(d, 0o755);
    }
    expect(said.code).toBe('STORAGE_READONLY');
    expect(said.message).toMatch(/cannot be written/);
    expect(sha(file)).toBe(before);
    expectNothingLost(file, acked);
    console.log(
      `resource: 0444 journal as ${isRoot ? 'uid 65534' : 'this user'}: ${said.code}: ${said.message}`,
    );
  });
});

describe('a corrupt journal at start', () => {
  let good: Buffer;
  /** The head witness kept beside `good`: a copy without it would be a lost witness. */
  let goodWitness: Buffer;
  beforeAll(() => {
    const d = dir();
    const core = activated(d);
    for (let i = 0; i < 300; i++) {
      const s = core.payments.record({
        type: 'sale',
        amount: 10_000 + i,
        card: { pan: PAN },
        authCode: 'X'.repeat(12),
      });
      if (i % 5 === 0) core.payments.record({ type: 'refund', amount: 1_000, originalSeq: s.seq });
    }
    core.store.checkpoint();
    core.close();
    good = readFileSync(path.join(d, 'journal.db'));
    goodWitness = readFileSync(path.join(d, 'journal.witness'));
  });

  const foreign = (wal: boolean) => (file: string) => {
    const db = new (loadDriver())(file);
    if (wal) db.pragma('journal_mode = WAL');
    db.exec(
      'CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER); INSERT INTO orders VALUES (1, 100)',
    );
    db.close();
  };
  const bytes = (make: () => Buffer) => (file: string) => writeFileSync(file, make());
  const variants: Array<[string, (file: string) => void]> = [
    ['random bytes', bytes(() => randomBytes(16_384))],
    ['zeros', bytes(() => Buffer.alloc(16_384))],
    ['a text file', bytes(() => Buffer.from('not a journal\n'.repeat(500)))],
    ['cut to the first 100 bytes', bytes(() => good.subarray(0, 100))],
    ['cut to one page', bytes(() => good.subarray(0, 4096))],
    ['cut in half', bytes(() => good.subarray(0, Math.floor(good.length / 2 / 4096) * 4096))],
    ['cut in the middle of its last page', bytes(() => good.subarray(0, good.length - 1234))],
    ['a foreign SQLite database (rollback journal)', foreign(false)],
    ['a foreign SQLite database (WAL)', foreign(true)],
    ['its third page zeroed', bytes(() => Buffer.from(good).fill(0, 2 * 4096, 3 * 4096))],
    [
      'a guard trigger emptied under its own name',
      (file) => {
        writeFileSync(file, good);
        const db = new (loadDriver())(file);
        db.exec('DROP TRIGGER journal_immutable_update');
        db.exec(
          'CREATE TRIGGER journal_immutable_update BEFORE UPDATE ON journal BEGIN SELECT 1; END',
        );
        db.close();
      },
    ],
  ];

  it.each(variants)('%s: refused with STORAGE_CORRUPT, says why, byte-identical', (_what, make) => {
    const d = dir();
    mkdirSync(d, { recursive: true });
    make(path.join(d, 'journal.db'));
    expectRefused(d, () => openCore({ dataDir: d }));
    // The whole agent, too.
    expectRefused(
      d,
      () =>
        new Agent({
          config: parseConfig({ dataDir: d, paymentSocket: { path: '' } }),
          schedules: false,
        }),
    );
  });

  it(
    `${FLIPS} seeded byte flips: page damage is refused; row tamper is the chain's`,
    async () => {
      const r = rng(SEED);
      const pages = good.length / 4096;
      const seen = { damage: 0, schema: 0, tamper: 0, harmless: 0 };
      for (let i = 0; i < FLIPS; i++) {
        const b = Buffer.from(good);
        const at = r.int(100, good.length - 1);
        b[at] = b[at]! ^ (1 << r.int(0, 7));
        const d = dir();
        mkdirSync(d, { recursive: true });
        const file = path.join(d, 'journal.db');
        writeFileSync(file, b);
        writeFileSync(path.join(d, 'journal.witness'), goodWitness);
        // The oracle: what SQLite itself and the hash chain say about a copy. Read-write on
        // purpose: a read-only connection's integrity_check skips CHECK constraints.
        const copy = path.join(d, 'oracle.db');
        writeFileSync(copy, b);
        let damaged: boolean;
        let schemaChanged = false;
        try {
          const db = new (loadDriver())(copy);
          damaged =
            (db.pragma('integrity_check') as Array<{ integrity_check: string }>)[0]
              ?.integrity_check !== 'ok';
          if (!damaged) {
            // A flip inside a table's or trigger's SQL text leaves every page sound.
            try {
              checkSchema(db, loadDriver());
            } catch {
              schemaChanged = true;
            }
          }
          db.close();
        } catch {
          damaged = true;
        }
        if (damaged || schemaChanged) {
          if (damaged) seen.damage++;
          else seen.schema++;
          expectRefused(d, () => openCore({ dataDir: d }));
          continue;
        }
        const evidence = Store.open(file, { forensic: true, readonly: true });
        const v = evidence.journal.verify();
        evidence.close();
        if (v.ok) {
          seen.harmless++; // a byte of free space inside a page
          continue;
        }
        seen.tamper++;
        expect(v.firstBad?.seq).toBeGreaterThan(0);
        // SQLite cannot see it; the start-up walk of the whole chain (or, for the head row, the
        // witness) finds it and locks without writing a byte.
        const agent = new Agent({
          config: parseConfig({ dataDir: d, paymentSocket: { path: '' }, acquirer: { port: 1 } }),
          schedules: false,
        });
        await agent.start();
        expect(agent.core.terminal.mayTransact()).toMatchObject({
          allowed: false,
          code: 'LIFECYCLE_LOCKED',
        });
        expect(agent.core.terminal.status().locks).toEqual([
          expect.stringMatching(/^journal-(broken|rollback)$/),
        ]);
        await agent.stop();
        expect(readFileSync(file).equals(b), 'the tampered file is left byte-identical').toBe(true);
      }
      console.log(
        `resource: ${FLIPS} flips over ${pages} pages: ${seen.damage} page damage refused (STORAGE_CORRUPT, byte-identical), ${seen.schema} schema text changed and refused, ${seen.tamper} row tamper named by the chain and locked at start, ${seen.harmless} in free space`,
      );
      expect(seen.damage).toBeGreaterThan(0);
    },
    60_000 + FLIPS * 100,
  );

  it('a real agent process refuses to start, says why, and exits', async () => {
    const d = dir();
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'journal.db'), good.subarray(0, good.length / 2));
    const before = sha(path.join(d, 'journal.db'));
    const p = LoadProcess.spawn({
      config: { dataDir: d, paymentSocket: { path: '' } },
      run: 0,
      seed: 1,
    });
    const exit = await p.exited;
    const fatal = p.events.find((e) => 'fatal' in e);
    expect(exit.code).toBe(70);
    expect(fatal).toMatchObject({
      code: 'STORAGE_CORRUPT',
      fatal: expect.stringContaining('is damaged'),
    });
    expect(p.events.some((e) => e.ready === true)).toBe(false);
    expect(sha(path.join(d, 'journal.db'))).toBe(before);
  });
});
