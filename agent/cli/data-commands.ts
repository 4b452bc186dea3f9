import path from 'node:path';
import { existsSync } from 'node:fs';
import { Store } from '../../storage/store.ts';
import { WITNESS_FILE } from '../../storage/head-witness.ts';
import { AgentError } from '../../base/errors.ts';
import { parseConfig } from '../config.ts';
import { journalPath, type Identity } from '../runtime/core.ts';
import { TerminalState } from '../policy/terminal-state.ts';
import { silentLogger } from '../../base/log.ts';
import { systemClock } from '../../base/clock.ts';
import {
  adviceQueueLine,
  adviceQueueView,
  adviceViews,
  batchView,
  entryView,
  statusView,
  type StatusView,
} from '../runtime/views.ts';
import { ADVICE_FILTERS, adviceTable } from '../console/advice-commands.ts';
import { formatKeyValue, formatTable, type TableSpec } from '../console/table.ts';
import {
  batchListTable,
  batchReport,
  entryReport,
  journalTable,
  money,
  tailEntries,
} from '../console/reports.ts';
import {
  intOption,
  requiredOption,
  usageError,
  type CliCommand,
  type CliContext,
} from './cli-command.ts';
import { EXIT } from './exit-codes.ts';

/**
 * The offline commands on a data directory: status, journal and batches. They open the
 * journal read-only (forensic), so they are safe next to a running agent.
 */

const dataOption = { data: { type: 'string' } } as const;
const jsonOption = { json: { type: 'boolean' } } as const;

interface Opened {
  store: Store;
  dataDir: string;
  currency: string;
}

function withStore(ctx: CliContext, fn: (o: Opened) => number): number {
  const dataDir = requiredOption(ctx.values, 'data', ctx.io, 'POS_DATA_DIR');
  const file = journalPath({ dataDir });
  if (!existsSync(file))
    throw new AgentError(
      'STORAGE_NOT_FOUND',
      `no journal at ${file}: is ${dataDir} the agent's data directory?`,
      { noJournal: true },
    );
  const store = Store.open(file, { mustExist: true, forensic: true });
  try {
    const currency = store.state.getJson<Identity>('identity')?.currency ?? 'CNY';
    return fn({ store, dataDir, currency });
  } finally {
    store.close();
  }
}

const json = (v: unknown) => JSON.stringify(v, null, 2);

function render(ctx: CliContext, spec: TableSpec): string {
  return formatTable(spec, { width: ctx.io.columns ?? Infinity }).join('\n');
}

const status: CliCommand = {
  name: 'status',
  args: '--data DIR [--json]',
  summary: 'lifecycle state, locks, open batch, queue',
  options: { ...dataOption, ...jsonOption },
  run: (ctx) =>
    withStore(ctx, ({ store, dataDir, currency }) => {
      const terminal = new TerminalState(store, systemClock, silentLogger());
      // The agent's own judgement of the journal against its head witness, read-only.
      const verdict = Store.judge(store.file, path.join(dataDir, WITNESS_FILE));
      if (!verdict.ok) terminal.hold('journal-rollback', verdict.reason);
      const identity = store.state.getJson<Identity>('identity');
      const view = statusView(store, terminal.status(), {
        terminalId: identity?.terminalId ?? '(not activated)',
        identity,
        currency,
        now: Date.now(),
        firmwareVersion: parseConfig({ dataDir }).firmwareVersion,
      });
      ctx.io.out(ctx.values.json ? json(view) : formatKeyValue(statusPairs(view)).join('\n'));
      return EXIT.OK;
    }),
};

function statusPairs(v: StatusView): Array<[string, string]> {
  const c = v.openBatch.currency;
  return [
    ['terminal', v.terminalId],
    ['state', v.state],
    ['locks', v.locks.length ? v.locks.join(', ') : 'none'],
    ['may transact', v.mayTransact ? 'yes' : 'no'],
    ['last change', v.reason ?? '-'],
    ['merchant', v.merchant ?? '-'],
    [
      'open batch',
      `${v.openBatch.batchId}: ${v.openBatch.transactions} txns, net ${money(v.openBatch.netAmount, c)}, fees ${money(v.openBatch.netFee, c)} ${c}`,
    ],
    ['queued batches', String(v.queuedBatches)],
    ...v.disputedBatches.map((b): [string, string] => [
      'disputed batch',
      `${b.batchId}: ${b.problem ?? '-'}`,
    ]),
    ['offline advices', adviceQueueLine(v.advices)],
    ['journal head', `${v.journal.headSeq} ${v.journal.headHash.slice(0, 16)}`],
    ['versions', `agent ${v.versions.agent}, node ${v.versions.node}`],
  ];
}

const journalVerify: CliCommand = {
  name: 'journal verify',
  args: '--data DIR [--json]',
  summary: 'walk the hash chain; exit 1 naming the first bad row',
  options: { ...dataOption, ...jsonOption },
  run: (ctx) =>
    withStore(ctx, ({ store }) => {
      const r = store.journal.verify();
      if (ctx.values.json) ctx.io.out(json(r));
      if (r.ok) {
        if (!ctx.values.json)
          ctx.io.out(`journal ok: ${r.checked} rows, head ${r.headSeq} ${r.headHash}`);
        return EXIT.OK;
      }
      ctx.io.err(
        `journal BROKEN at row ${r.firstBad!.seq}: ${r.firstBad!.reason} (${r.checked} rows before it verify)`,
      );
      return EXIT.CHECK_FAILED;
    }),
};

const journalTail: CliCommand = {
  name: 'journal tail',
  args: '--data DIR [-n N] [--type TYPE] [--audit] [--json]',
  summary: 'the last N rows (default 20); TYPE: txn, event, sale, refund, an event name',
  options: {
    ...dataOption,
    ...jsonOption,
    n: { type: 'string', short: 'n' },
    type: { type: 'string' },
    audit: { type: 'boolean' },
  },
  run: (ctx) => {
    const n = intOption(ctx.values, 'n', { min: 1, max: 10_000, fallback: 20 });
    const type = ctx.values.type as string | undefined;
    if (type !== undefined && !/^[a-z][a-z0-9-]{0,63}$/.test(type))
      throw usageError(`--type takes a name like sale, txn, event or lifecycle-refused`);
    return withStore(ctx, ({ store, currency }) => {
      const views = tailEntries(store, n, { type, audit: ctx.values.audit === true });
      ctx.io.out(ctx.values.json ? json(views) : render(ctx, journalTable(views, { currency })));
      return EXIT.OK;
    });
  },
};

const journalShow: CliCommand = {
  name: 'journal show',
  args: 'SEQ --data DIR [--json]',
  summary: 'one journal row in full',
  options: { ...dataOption, ...jsonOption },
  positionals: ['SEQ'],
  run: (ctx) => {
    const seq = intOption({ seq: ctx.positionals[0] }, 'seq', {
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
      fallback: 0,
    });
    return withStore(ctx, ({ store, currency }) => {
      const e = store.journal.get(seq);
      if (!e) throw new AgentError('STORAGE_NOT_FOUND', `no journal row ${seq}`);
      const v = entryView(e);
      ctx.io.out(ctx.values.json ? json(v) : entryReport(v, { currency, width: 100 }).join('\n'));
      return EXIT.OK;
    });
  },
};

const batchList: CliCommand = {
  name: 'batch list',
  args: '--data DIR [--json]',
  summary: 'batches, newest last, with their totals',
  options: { ...dataOption, ...jsonOption },
  run: (ctx) =>
    withStore(ctx, ({ store, currency }) => {
      const views = store.batches.list().map(batchView);
      ctx.io.out(ctx.values.json ? json(views) : render(ctx, batchListTable(views, currency)));
      return EXIT.OK;
    }),
};

const batchShow: CliCommand = {
  name: 'batch show',
  args: 'ID --data DIR [--json]',
  summary: 'one batch: totals by type, the acquirer totals, its transactions',
  options: { ...dataOption, ...jsonOption },
  positionals: ['ID'],
  run: (ctx) =>
    withStore(ctx, ({ store, currency }) => {
      const id = ctx.positionals[0]!;
      const b = store.batches.get(id);
      if (!b) throw new AgentError('STORAGE_NOT_FOUND', `no batch ${id}`);
      ctx.io.out(
        ctx.values.json
          ? json({ ...batchView(b), totals: b.totals, acquirerTotals: b.acquirerTotals })
          : batchReport(store, b, { currency, width: ctx.io.columns ?? 120 }).join('\n'),
      );
      return EXIT.OK;
    }),
};

const advices: CliCommand = {
  name: 'advices',
  args: '--data DIR [--only pending|accepted|declined|expired] [--json]',
  summary: 'offline approvals forwarded to the acquirer and its answers (declined, expired)',
  options: { ...dataOption, ...jsonOption, only: { type: 'string' } },
  run: (ctx) => {
    const only = ctx.values.only as string | undefined;
    const filter = ADVICE_FILTERS.find((f) => f === only);
    if (only !== undefined && !filter)
      throw usageError(`--only takes one of: ${ADVICE_FILTERS.join(', ')}`);
    return withStore(ctx, ({ store, currency }) => {
      const views = adviceViews(store, filter);
      if (ctx.values.json) {
        ctx.io.out(json(views));
        return EXIT.OK;
      }
      ctx.io.out(adviceQueueLine(adviceQueueView(store, Date.now())));
      ctx.io.out(
        views.length
          ? render(
              ctx,
              adviceTable(views, (n) => money(n, currency)),
            )
          : '(none)',
      );
      return EXIT.OK;
    });
  },
};

export const dataCommands: readonly CliCommand[] = [
  status,
  journalVerify,
  journalTail,
  journalShow,
  batchList,
  batchShow,
  advices,
];
