import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { Store } from '../../storage/store.ts';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { loadConfigFile, parseConfig } from '../config.ts';
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
} from '../runtime/views.ts';
import { adviceTable } from '../console/advice-commands.ts';
import { formatKeyValue, formatTable, table } from '../console/table.ts';

// Fit a terminal's width; piped output (scripts, evidence) is never cut to 80 columns.
const renderTable = (headers: string[], rows: Array<Array<string | number>>) =>
  formatTable(table(headers, rows), { width: process.stdout.columns ?? Infinity }).join('\n');
const renderKeyValues = (pairs: Array<[string, string]>) => formatKeyValue(pairs).join('\n');

const HELP = `pos-agent: the firmware-side agent of a card-payment POS terminal

usage:
  pos-agent demo [--data DIR]                 agent + embedded acquirer simulator + card simulator,
                                              console on this terminal (what npm start runs)
  pos-agent run --config FILE                 the daemon for real hardware
  pos-agent status --data DIR [--json]        lifecycle state, locks, open batch, queue
  pos-agent journal verify --data DIR         walk the hash chain; exit 1 naming the first bad row
  pos-agent journal tail --data DIR [-n N] [--json]
  pos-agent batch list --data DIR [--json]
  pos-agent advices [pending|accepted|declined|expired] --data DIR [--json]
                                              offline approvals forwarded to the acquirer and
                                              its answers (declined and expired ones need action)
  pos-agent simulate acquirer --port N --data DIR [--terminal ID --code CODE]
  pos-agent hash-pin                          read a technician PIN on stdin, print its scrypt hash
  pos-agent --help

environment: POS_TERMINAL_ID, POS_DATA_DIR, POS_ACQUIRER_HOST, POS_ACQUIRER_PORT, POS_LOG_LEVEL,
POS_SERIAL_PATH override the config file.`;

type Out = { out: (s: string) => void; err: (s: string) => void };
const stdio: Out = {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
};

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Out = stdio): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (isAgentError(e)) {
      io.err(e.toDisplay('error'));
      return 2;
    }
    io.err(`error (INTERNAL): ${(e as Error).stack ?? String(e)}`);
    return 70;
  }
}

async function dispatch(argv: string[], io: Out): Promise<number> {
  const [cmd, sub] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.out(HELP);
    return 0;
  }
  switch (cmd) {
    case 'status':
      return withStore(argv.slice(1), io, (store, flags, dataDir) => {
        const terminal = new TerminalState(store, systemClock, silentLogger());
        const identity = store.state.getJson<Identity>('identity');
        const view = statusView(store, terminal.status(), {
          terminalId: identity?.terminalId ?? '(not activated)',
          identity,
          currency: identity?.currency ?? 'CNY',
          now: Date.now(),
          firmwareVersion: parseConfig({ dataDir }).firmwareVersion,
        });
        io.out(flags.json ? JSON.stringify(view, null, 2) : renderKeyValues(flattenStatus(view)));
        return 0;
      });
    case 'journal':
      if (sub === 'verify') {
        return withStore(argv.slice(2), io, (store, flags) => {
          const r = store.journal.verify();
          if (flags.json) io.out(JSON.stringify(r, null, 2));
          if (r.ok) {
            if (!flags.json)
              io.out(`journal ok: ${r.checked} rows, head ${r.headSeq} ${r.headHash}`);
            return 0;
          }
          io.err(
            `journal BROKEN at row ${r.firstBad!.seq}: ${r.firstBad!.reason} (${r.checked} rows before it verify)`,
          );
          return 1;
        });
      }
      if (sub === 'tail') {
        return withStore(argv.slice(2), io, (store, flags) => {
          const n = Number(flags.n ?? 20);
          if (!Number.isInteger(n) || n < 1 || n > 10_000)
            throw new AgentError('CONSOLE_BAD_ARGUMENTS', '-n takes 1 to 10000');
          const views = store.journal.tail(n).map(entryView);
          io.out(
            flags.json
              ? JSON.stringify(views, null, 2)
              : renderTable(
                  ['seq', 'time', 'what', 'amount', 'fee', 'status', 'card'],
                  views.map((v) => [
                    v.seq,
                    v.at.slice(0, 19),
                    v.what,
                    v.amount ?? '',
                    v.fee ?? '',
                    v.status ?? '',
                    v.card ?? '',
                  ]),
                ),
          );
          return 0;
        });
      }
      break;
    case 'batch':
      if (sub === 'list') {
        return withStore(argv.slice(2), io, (store, flags) => {
          const views = store.batches.list().map(batchView);
          io.out(
            flags.json
              ? JSON.stringify(views, null, 2)
              : renderTable(
                  ['batch', 'state', 'date', 'txns', 'net', 'fees'],
                  views.map((b) => [
                    b.batchId,
                    b.state,
                    b.businessDate ?? '',
                    b.transactions ?? '',
                    b.netAmount ?? '',
                    b.netFee ?? '',
                  ]),
                ),
          );
          return 0;
        });
      }
      break;
    case 'advices': {
      const filters = ['pending', 'accepted', 'declined', 'expired'] as const;
      const only = filters.find((f) => f === sub);
      if (sub && !sub.startsWith('-') && !only)
        throw new AgentError(
          'CONSOLE_BAD_ARGUMENTS',
          `advices takes one of: ${filters.join(', ')}`,
        );
      return withStore(argv.slice(only ? 2 : 1), io, (store, flags) => {
        const views = adviceViews(store, only);
        if (flags.json) {
          io.out(JSON.stringify(views, null, 2));
          return 0;
        }
        io.out(adviceQueueLine(adviceQueueView(store, Date.now())));
        io.out(
          views.length
            ? formatTable(adviceTable(views, String), {
                width: process.stdout.columns ?? Infinity,
              }).join('\n')
            : '(none)',
        );
        return 0;
      });
    }
    case 'run': {
      const { values } = parseArgs({
        args: argv.slice(1),
        options: { config: { type: 'string' } },
      });
      const { runDaemon } = await import('../runtime/daemon.ts');
      return runDaemon(loadConfigFile(values.config));
    }
    case 'demo':
    case 'simulate':
      // The demo and the simulators are development tools: the production package does not
      // carry them (dev/cli.ts serves these commands in a checkout).
      io.err(`${cmd} is a development command: run it from a checkout (npm start)`);
      return 64;
    case 'hash-pin': {
      const { hashPin } = await import('../console/auth.ts');
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const pin = Buffer.concat(chunks).toString('utf8').trim();
      if (!/^\d{4,12}$/.test(pin))
        throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'a PIN is 4 to 12 digits');
      io.out(await hashPin(pin));
      return 0;
    }
  }
  io.err(`unknown command: ${argv.join(' ')}\n\n${HELP}`);
  return 64;
}

type Flags = { json?: boolean; n?: string };

function withStore(
  args: string[],
  io: Out,
  fn: (store: Store, flags: Flags, dataDir: string) => number,
): number {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: 'string' },
      json: { type: 'boolean' },
      n: { type: 'string', short: 'n' },
    },
  });
  const dataDir = values.data ?? process.env.POS_DATA_DIR;
  if (!dataDir) throw new AgentError('CONFIG_INVALID', '--data DIR is required');
  const file = journalPath({ dataDir });
  if (!existsSync(file)) throw new AgentError('STORAGE_NOT_FOUND', `no journal at ${file}`);
  const store = Store.open(file, { mustExist: true, forensic: true });
  try {
    return fn(store, values, dataDir);
  } finally {
    store.close();
    void io;
  }
}

function flattenStatus(v: ReturnType<typeof statusView>): Array<[string, string]> {
  return [
    ['terminal', v.terminalId],
    ['state', v.state],
    ['locks', v.locks.length ? v.locks.join(', ') : 'none'],
    ['may transact', v.mayTransact ? 'yes' : 'no'],
    ['last change', v.reason ?? '-'],
    ['merchant', v.merchant ?? '-'],
    [
      'open batch',
      `${v.openBatch.batchId}: ${v.openBatch.transactions} txns, net ${v.openBatch.netAmount}, fees ${v.openBatch.netFee}`,
    ],
    ['queued batches', String(v.queuedBatches)],
    ['offline advices', adviceQueueLine(v.advices)],
    ['journal head', `${v.journal.headSeq} ${v.journal.headHash.slice(0, 16)}`],
    ...(v.link
      ? ([
          ['link', `${v.link.up ? 'up' : 'down'}, clock offset ${v.link.clockOffsetMs ?? '?'} ms`],
        ] as Array<[string, string]>)
      : []),
    ['versions', `agent ${v.versions.agent}, node ${v.versions.node}`],
  ];
}
