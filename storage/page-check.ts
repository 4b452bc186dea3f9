import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { walkChain, type ChainWalkResult } from './chain-walk.ts';
import { CHAIN_SQL, GENESIS_HASH, JOURNAL_COLUMNS } from './journal.ts';

const require = createRequire(import.meta.url);

// Plain CommonJS so the worker needs no TypeScript loader; it only reads the file. The chain
// walk is storage/chain-walk.ts itself, passed as source text, so the worker hashes exactly
// as the journal does.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const Driver = require(workerData.driver);
const walkChain = new Function('return (' + workerData.walk + ')')();
const sha256 = (prev, canonical) =>
  createHash('sha256').update(prev).update('\\n').update(canonical).digest('hex');
let db;
const out = { found: null, chain: null };
try {
  db = new Driver(workerData.file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  // 2 MB of page cache, not better-sqlite3's 16 MB: integrity_check reads the file once
  // through, and on a 350 MB journal the bigger cache only added 18 MB of peak RSS and time.
  db.pragma('cache_size = -2000');
  if (workerData.pages) out.found = db.pragma('integrity_check(5)').map((r) => r.integrity_check);
  if (workerData.chain) {
    const c = workerData.chain;
    const rows = db.prepare(c.sql).raw(true).iterate(c.from.seq);
    out.chain = walkChain(rows, c.from, c.columns, sha256);
  }
} catch (e) {
  out.error = String((e && e.message) || e);
} finally {
  if (db) db.close();
}
parentPort.postMessage(out);
`;

export interface JournalCheck {
  /** SQLite's integrity_check findings (`['ok']` when sound); null when not asked. */
  pages: string[] | null;
  /** The chain walk from `from` to the head; null when not asked. */
  chain: ChainWalkResult | null;
  /** Set when the file could not be read or the worker failed. */
  error?: string;
}

/**
 * Checks the journal file on its own read-only connection in a worker thread, so a large
 * journal is checked without holding the agent's event loop for seconds: SQLite's page-level
 * integrity check, the whole hash chain, or both.
 */
export function checkJournalInWorker(
  file: string,
  what: { pages: boolean; chainFrom?: { seq: number; hash: string } | 'genesis' },
): Promise<JournalCheck> {
  const from = what.chainFrom === 'genesis' ? { seq: 0, hash: GENESIS_HASH } : what.chainFrom;
  return new Promise((resolve) => {
    const worker = new Worker(WORKER, {
      eval: true,
      workerData: {
        file,
        driver: require.resolve('better-sqlite3'),
        pages: what.pages,
        chain: from ? { from, sql: CHAIN_SQL, columns: JOURNAL_COLUMNS.length } : null,
        walk: walkChain.toString(),
      },
    });
    const failed = (error: string): JournalCheck => ({ pages: null, chain: null, error });
    worker.once(
      'message',
      (m: { found: string[] | null; chain: ChainWalkResult | null; error?: string }) =>
        resolve({ pages: m.found, chain: m.chain, ...(m.error ? { error: m.error } : {}) }),
    );
    worker.once('error', (e) => resolve(failed(`the check could not run: ${e.message}`)));
    worker.once('exit', (code) => {
      if (code !== 0) resolve(failed(`the check stopped with code ${code}`));
    });
  });
}

/**
 * SQLite's page-level integrity check in a worker thread. Resolves with SQLite's findings:
 * `['ok']` when the file is sound.
 */
export async function checkPagesInWorker(file: string): Promise<string[]> {
  const r = await checkJournalInWorker(file, { pages: true });
  return r.pages ?? [r.error ?? 'the page check gave no answer'];
}
