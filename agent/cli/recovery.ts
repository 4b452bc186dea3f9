import { existsSync, readFileSync } from 'node:fs';
import { AgentError } from '../../base/errors.ts';
import { systemClock } from '../../base/clock.ts';
import { loadConfigFile, parseConfig, type Config } from '../config.ts';
import { journalPath } from '../runtime/core.ts';
import { exportForensics, recoveryReport, startNewIncarnation } from '../runtime/recovery.ts';
import { requiredOption, type CliCommand, type CliContext } from './cli-command.ts';
import { EXIT } from './exit-codes.ts';

/**
 * The technician's recovery commands for a rolled-back or broken journal (docs/recovery.md).
 * `report` and `export` only read; `start` moves the old journal into forensics/ and starts a
 * new incarnation, and only with a grant signed by the acquirer.
 */

const common = {
  data: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function configOf(ctx: CliContext): Config {
  if (typeof ctx.values.config === 'string') return loadConfigFile(ctx.values.config);
  return parseConfig({ dataDir: requiredOption(ctx.values, 'data', ctx.io, 'POS_DATA_DIR') });
}

function grantOf(ctx: CliContext, required: boolean): string | undefined {
  const file = ctx.values.grant;
  if (typeof file !== 'string') {
    if (required) requiredOption(ctx.values, 'grant', ctx.io);
    return undefined;
  }
  if (!existsSync(file)) throw new AgentError('CONFIG_INVALID', `no grant file at ${file}`);
  return readFileSync(file, 'utf8');
}

const report: CliCommand = {
  name: 'recovery report',
  args: '--data DIR | --config FILE [--grant FILE] [--json]',
  summary:
    "what the journal lost: its witness, its chain, and (with a grant) the acquirer's batches",
  options: { ...common, grant: { type: 'string' } },
  run: (ctx) => {
    const config = configOf(ctx);
    const r = recoveryReport(config, systemClock, grantOf(ctx, false));
    if (ctx.values.json) {
      ctx.io.out(JSON.stringify(r, null, 2));
      return r.journal.verdict.ok ? EXIT.OK : EXIT.CHECK_FAILED;
    }
    const j = r.journal;
    const v = j.verify;
    ctx.io.out(`journal    ${journalPath(config)} (incarnation ${j.incarnation ?? '-'})`);
    ctx.io.out(
      `head       ${j.head ? `${j.head.seq} ${j.head.hash.slice(0, 16)}` : 'none (empty or missing)'}`,
    );
    ctx.io.out(
      `witness    ${j.witness.state === 'ok' ? `row ${j.witness.record.seq} ${j.witness.record.hash.slice(0, 16)}` : j.witness.state}`,
    );
    ctx.io.out(
      `verdict    ${j.verdict.ok ? `sound (${j.verdict.kind})` : `ROLLBACK: ${j.verdict.reason}`}`,
    );
    ctx.io.out(
      `chain      ${!v ? '-' : 'error' in v ? `unreadable: ${v.error}` : v.ok ? `ok, ${v.checked} rows` : `BROKEN at row ${v.firstBad!.seq}: ${v.firstBad!.reason}`}`,
    );
    if (r.acquirer) {
      const a = r.acquirer;
      ctx.io.out(
        `acquirer   last reported head ${a.lastReportedHead ? a.lastReportedHead.seq : '-'}; rows missing here: ${a.rowsMissing ?? 'unknown'}`,
      );
      for (const s of a.settled) ctx.io.out(`  settled ${s.batchId}: here ${s.local}`);
      for (const b of a.unsettledHere) ctx.io.out(`  closed here, never settled: ${b}`);
    }
    return j.verdict.ok && (!v || ('ok' in v && v.ok)) ? EXIT.OK : EXIT.CHECK_FAILED;
  },
};

const exportCmd: CliCommand = {
  name: 'recovery export',
  args: '--data DIR | --config FILE --out DIR',
  summary: 'copy the journal, its WAL and its witness with their SHA-256 into DIR (reads only)',
  options: { ...common, out: { type: 'string' } },
  run: (ctx) => {
    const out = requiredOption(ctx.values, 'out', ctx.io);
    const files = exportForensics(configOf(ctx), out);
    for (const f of files) ctx.io.out(`${f.file}  ${f.bytes} bytes  sha256 ${f.sha256}`);
    ctx.io.out(`manifest: ${out}/manifest.json`);
    return EXIT.OK;
  },
};

const start: CliCommand = {
  name: 'recovery start',
  args: '--data DIR | --config FILE --grant FILE',
  summary: 'move the journal into forensics/ and start a new incarnation under an acquirer grant',
  options: { ...common, grant: { type: 'string' } },
  run: (ctx) => {
    const r = startNewIncarnation(configOf(ctx), systemClock, grantOf(ctx, true)!);
    ctx.io.out(
      ctx.values.json
        ? JSON.stringify(r, null, 2)
        : `new journal incarnation ${r.incarnation} (was ${r.previous ?? 'unknown'}); the old files are in ${r.forensicsDir}`,
    );
    return EXIT.OK;
  },
};

export const recoveryCommands: readonly CliCommand[] = [report, exportCmd, start];
