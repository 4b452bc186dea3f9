import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// Plain CommonJS so the worker needs no TypeScript loader; it only reads the file.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Driver = require(workerData.driver);
let db;
try {
  db = new Driver(workerData.file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  const found = db.pragma('integrity_check(5)').map((r) => r.integrity_check);
  parentPort.postMessage({ found });
} catch (e) {
  parentPort.postMessage({ found: [String((e && e.message) || e)] });
} finally {
  if (db) db.close();
}
`;

/**
 * SQLite's page-level integrity check on its own read-only connection in a worker thread,
 * so a large journal is checked without holding the agent's event loop for seconds.
 * Resolves with SQLite's findings: `['ok']` when the file is sound.
 */
export function checkPagesInWorker(file: string): Promise<string[]> {
  return new Promise((resolve) => {
    const worker = new Worker(WORKER, {
      eval: true,
      workerData: { file, driver: require.resolve('better-sqlite3') },
    });
    worker.once('message', (m: { found: string[] }) => resolve(m.found));
    worker.once('error', (e) => resolve([`the page check could not run: ${e.message}`]));
    worker.once('exit', (code) => {
      if (code !== 0) resolve([`the page check stopped with code ${code}`]);
    });
  });
}
