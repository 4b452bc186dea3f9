/**
 * The benchmark suite (issue 6): every figure next to a raw baseline measured in the same run,
 * printed as one table and, with --json FILE, written as [{name, value, unit, baseline, ratio}].
 *
 *   npm run bench                       full run (about 4 minutes on 2 cores)
 *   npm run bench -- --quick            a ~30 s smoke run: smaller data, fewer samples
 *   npm run bench -- --json out.json    also write the figures as JSON
 *   npm run bench -- --only lock,cold   run only the named figures
 *
 * Progress goes to stderr; stdout carries only the table and the notes.
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { cleanupTemps, type BenchOptions } from './fixtures.ts';
import { markdownTable, notes, textTable, writeJson, type Figure } from './report.ts';
import { msBetween, nowNs } from './stats.ts';
import * as journalAppend from './journal-append.ts';
import * as settlement from './settlement.ts';
import * as lockLatency from './lock-latency.ts';
import * as coldStart from './cold-start.ts';
import * as consoleLatency from './console-latency.ts';
import * as fleet from './fleet.ts';

const SUITES: Record<string, { run: (o: BenchOptions) => Promise<Figure[]> }> = {
  append: journalAppend,
  settlement,
  lock: lockLatency,
  cold: coldStart,
  console: consoleLatency,
  verify: await import('./journal-verify.ts'),
  fleet,
  forwarding: await import('./forwarding.ts'),
};

const USAGE = `usage: npm run bench -- [--quick] [--json FILE] [--markdown] [--only ${Object.keys(SUITES).join(',')}]`;

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        json: { type: 'string' },
        markdown: { type: 'boolean', default: false },
        only: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const only = args.only?.split(',').map((s) => s.trim());
  const unknown = only?.filter((s) => !(s in SUITES)) ?? [];
  if (unknown.length) {
    process.stderr.write(`unknown figure(s): ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  const opts: BenchOptions = {
    quick: args.quick ?? false,
    log: (msg) => void process.stderr.write(msg + '\n'),
  };
  const figures: Figure[] = [];
  const started = nowNs();
  // Other work on the machine moves every figure; the load averages go in the footer.
  const loadBefore = loadavg()[0]!;
  try {
    for (const [name, suite] of Object.entries(SUITES)) {
      if (only && !only.includes(name)) continue;
      const t0 = nowNs();
      opts.log(`[${name}] ...`);
      figures.push(...(await suite.run(opts)));
      opts.log(`[${name}] done in ${(msBetween(t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    cleanupTemps();
  }
  const out = args.markdown ? markdownTable(figures) : textTable(figures);
  process.stdout.write(`\n${out}\n\n${notes(figures)}\n`);
  process.stdout.write(
    `\n${opts.quick ? 'quick' : 'full'} run, ${(msBetween(started) / 1000).toFixed(0)} s, node ${process.versions.node}, ` +
      `${cpus().length} cores, 1-min load average ${loadBefore.toFixed(1)} at start, ${loadavg()[0]!.toFixed(1)} at end\n`,
  );
  if (args.json) {
    writeJson(args.json, figures);
    opts.log(`wrote ${args.json}`);
  }
  return 0;
}

process.exitCode = await main();
