import { describe, it, expect } from 'vitest';
import {
  mkdtempSync,
  openSync,
  writeSync,
  closeSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { loadDriver } from '../../storage/db.ts';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openCore } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { parseConfig } from '../../agent/config.ts';
import { Agent } from '../../agent/runtime/agent.ts';
import { SelfTest } from '../../agent/policy/selftest.ts';

/**
 * A journal too big to check before start is checked on a worker thread while the agent
 * runs; a damaged page found there locks the terminal. A small one is refused at open.
 */
function buildJournal(dataDir: string): string {
  const config = parseConfig({ dataDir });
  const core = openCore(config);
  activateForTest(core);
  for (let i = 0; i < 3000; i++)
    core.payments.record({ type: 'sale', amount: 1000 + i, card: { pan: '4111111111111111' } });
  // A verified checkpoint at the head: the start-up chain walk then reads no old page.
  new SelfTest({
    store: core.store,
    clock: core.clock,
    log: core.log,
    config,
    terminal: core.terminal,
    clockOffsetMs: () => null,
  }).run({ full: true });
  core.store.checkpoint();
  core.close();
  return path.join(dataDir, 'journal.db');
}

function damageMiddlePage(file: string): void {
  const size = readFileSync(file).length;
  const page = Math.floor(size / 4096 / 2);
  const fd = openSync(file, 'r+');
  // Over the page's cell pointers (after its 8-byte header): page structure, not row content
  // (a byte flipped inside a row is the chain's to find, journal-rollback.test.ts).
  writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, page * 4096 + 8);
  closeSync(fd);
}

describe('page check of the journal file', () => {
  it('a big journal starts at once and a damaged page found in the background locks hardware-fault', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pa-pages-'));
    try {
      damageMiddlePage(buildJournal(dir));
      const agent = new Agent({
        config: parseConfig({
          dataDir: dir,
          storage: { syncPageCheckMaxBytes: 0 },
          paymentSocket: { path: '' },
        }),
        schedules: false,
      });
      await agent.start();
      expect(agent.core.store.pageCheckDeferred).toBe(true);
      expect(await agent.pageCheck).toBe(false);
      expect(agent.core.terminal.status().locks).toContain('hardware-fault');
      expect(agent.core.store.journal.events('page-check-failed')).toHaveLength(1);
      await agent.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('a sound big journal passes the background check and stays unlocked', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pa-pages-'));
    try {
      buildJournal(dir);
      const agent = new Agent({
        config: parseConfig({
          dataDir: dir,
          storage: { syncPageCheckMaxBytes: 0 },
          paymentSocket: { path: '' },
        }),
        schedules: false,
      });
      await agent.start();
      expect(await agent.pageCheck).toBe(true);
      expect(agent.core.terminal.status().locks).toEqual([]);
      await agent.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('a big journal: no sale until the worker has walked the whole chain; a changed old row locks journal-broken, nothing written', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pa-pages-'));
    try {
      const file = buildJournal(dir);
      // One hex digit of row 10's stored hash, every copy of it: SQLite sees nothing wrong.
      const db = new (loadDriver())(file, { readonly: true });
      const { hash } = db.prepare('SELECT hash FROM journal WHERE seq = 10').get() as {
        hash: string;
      };
      db.close();
      const bytes = readFileSync(file);
      for (let at = bytes.indexOf(hash); at >= 0; at = bytes.indexOf(hash, at + 1))
        bytes[at] = hash[0] === 'a' ? 0x62 : 0x61;
      writeFileSync(file, bytes);
      const agent = new Agent({
        config: parseConfig({
          dataDir: dir,
          storage: { syncPageCheckMaxBytes: 0 },
          paymentSocket: { path: '' },
        }),
        schedules: false,
      });
      await agent.start();
      // The walk runs on its worker: start has returned, and sales wait for it.
      expect(() =>
        agent.core.payments.record({
          type: 'sale',
          amount: 999,
          card: { pan: '4111111111111111' },
        }),
      ).toThrow(/being verified/);
      expect(await agent.pageCheck).toBe(false);
      expect(agent.core.terminal.status()).toMatchObject({
        locks: ['journal-broken'],
        reason: expect.stringMatching(/chain is broken at row (10|11)/),
      });
      expect(agent.core.store.frozen?.source).toBe('journal-broken');
      await agent.stop();
      expect(readFileSync(file).equals(bytes)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('a small damaged journal is refused at open and left as it was', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pa-pages-'));
    try {
      const file = buildJournal(dir);
      damageMiddlePage(file);
      const before = readFileSync(file);
      expect(() => openCore({ dataDir: dir })).toThrow(
        expect.objectContaining({ code: 'STORAGE_CORRUPT' }),
      );
      expect(readFileSync(file).equals(before)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
