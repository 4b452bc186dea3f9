/**
 * The child process of the cold-start benchmark (bench/cold-start.ts). It starts, becomes
 * ready, prints one JSON line and exits; the parent times spawn-to-line.
 *
 *   cold-start-child.ts agent CONFIG_JSON   Agent constructed (opens the journal, migrations,
 *                                           probe), start(): self-test quick (chain walk from
 *                                           the checkpoint, disk, clock) and the acquirer link
 *                                           dialled, then the first mayTransact() answered.
 *   cold-start-child.ts raw JOURNAL_FILE    better-sqlite3 opens the file with the same pragmas
 *                                           and reads the newest row.
 *
 * Modules are imported dynamically so the phases can be timed; `bootMs` is what Node and the
 * loader took before this file's first line ran.
 */
import { readFileSync, writeSync } from 'node:fs';

const bootMs = performance.now();
const [mode, arg] = process.argv.slice(2);

/**
 * This process's own peak RSS (VmHWM). Not resourceUsage().maxRSS: Linux carries the parent's
 * RSS at spawn into it (this raw child read 204 MB when spawned by a 243 MB parent, 51 MB from
 * a shell), so the figure moved with whatever the bench process had run before the cold suite.
 */
function peakRssKb(): number {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS;
}

function ready(fields: Record<string, unknown>): never {
  const maxRssKb = peakRssKb();
  writeSync(1, JSON.stringify({ ready: true, mode, bootMs, maxRssKb, ...fields }) + '\n');
  // Ready is the measurement: exit at once, as a killed process would, without a tidy stop.
  process.exit(0);
}

if (mode === 'agent') {
  const { Agent } = await import('../agent/runtime/agent.ts');
  const { parseConfig } = await import('../agent/config.ts');
  const imported = performance.now();
  const rssImportedMb = process.memoryUsage.rss() / 1048576;
  const agent = new Agent({ config: parseConfig(JSON.parse(arg!)), schedules: false });
  const constructed = performance.now();
  const rssConstructedMb = process.memoryUsage.rss() / 1048576;
  await agent.start();
  const started = performance.now();
  const may = agent.core.terminal.mayTransact();
  ready({
    allowed: may.allowed,
    importMs: imported - bootMs,
    constructMs: constructed - imported,
    startMs: started - constructed,
    mayMs: performance.now() - started,
    rssImportedMb,
    rssConstructedMb,
  });
} else if (mode === 'raw') {
  const { default: Database } = await import('better-sqlite3');
  const imported = performance.now();
  const db = new Database(arg!);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  const row = db.prepare('SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1').get() as
    { seq: number } | undefined;
  ready({ importMs: imported - bootMs, openMs: performance.now() - imported, head: row?.seq ?? 0 });
} else {
  process.stderr.write('usage: cold-start-child.ts agent CONFIG_JSON | raw JOURNAL_FILE\n');
  process.exit(2);
}
