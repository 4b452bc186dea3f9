import path from 'node:path';
import { Store } from '../../storage/store.ts';
import type { Clock } from '../../base/clock.ts';
import { systemClock } from '../../base/clock.ts';
import type { Config } from '../config.ts';
import { parseConfig } from '../config.ts';
import type { Logger } from '../../base/log.ts';
import { silentLogger } from '../../base/log.ts';
import { TokenKeyFile } from '../policy/card.ts';
import { Payments } from '../policy/payments.ts';
import { TerminalState } from '../policy/terminal-state.ts';
import { parseFeeSchedule, type FeeSchedule } from '../policy/fees.ts';
import type { TxnRow } from '../../storage/journal.ts';

/**
 * The offline heart of the agent: journal, lifecycle and payments on one data directory,
 * with no network. The full agent (agent.ts) adds the acquirer channel, settlement,
 * commands, schedules and the console around it; tests and tools use it alone.
 */
export interface Core {
  config: Config;
  store: Store;
  terminal: TerminalState;
  payments: Payments;
  clock: Clock;
  log: Logger;
  tokenKeys: TokenKeyFile;
  /** Terminal and merchant identity once activated. */
  identity(): Identity | undefined;
  close(): void;
}

export interface Identity {
  terminalId: string;
  merchantId: string;
  merchantName: string;
  category: string;
  currency: string;
  activatedAt: number;
}

const JOURNAL_FILE = 'journal.db';

export function journalPath(config: Pick<Config, 'dataDir'>): string {
  return path.join(config.dataDir, JOURNAL_FILE);
}

export function witnessPath(config: Pick<Config, 'dataDir' | 'storage'>): string {
  return path.resolve(config.dataDir, config.storage.witnessFile);
}

export function openCore(
  configInput: Config | Record<string, unknown>,
  opts: { clock?: Clock; log?: Logger; onRecorded?: (row: TxnRow) => void } = {},
): Core {
  const config =
    'acquirer' in configInput && 'console' in configInput
      ? (configInput as Config)
      : parseConfig(configInput);
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? silentLogger();
  const store = Store.open(journalPath(config), {
    syncPageCheckMaxBytes: config.storage.syncPageCheckMaxBytes,
    witnessFile: witnessPath(config),
  });
  const terminal = new TerminalState(store, clock, log);
  // A journal behind its witness was opened frozen: it is evidence now, and the terminal
  // takes nothing new until a technician recovers it (docs/recovery.md).
  if (store.frozen) terminal.hold('journal-rollback', store.frozen.reason);
  else if (store.witnessVerdict?.kind === 'upgrade')
    log.warn('no head witness yet for this journal: one is kept from now on');
  const tokenKeys = new TokenKeyFile(path.join(config.dataDir, 'keys', 'token.key'));
  // Read on every transaction (its category prices the fee); written once, at activation.
  let known: Identity | undefined;
  const identity = (): Identity | undefined =>
    (known ??= store.state.getJson<Identity>('identity'));
  let tokenKey: Buffer | undefined;
  const payments = new Payments({
    store,
    clock,
    log,
    config,
    terminal,
    tokenKey: () => {
      // Once deactivated the key is gone and must stay gone: never re-create it.
      tokenKey ??= tokenKeys.load(terminal.status().state !== 'deactivated');
      return tokenKey;
    },
    category: () => identity()?.category ?? config.merchantCategory,
    onRecorded: opts.onRecorded,
  });
  return {
    config,
    store,
    terminal,
    payments,
    clock,
    log,
    tokenKeys,
    identity,
    close: () => store.close(),
  };
}

/** Installs a fee schedule version; an already installed version is left as it was. */
export function installFeeSchedule(
  core: Pick<Core, 'store' | 'clock'>,
  schedule: FeeSchedule,
): boolean {
  const s = parseFeeSchedule(schedule);
  return core.store.atomically(() => {
    const added = core.store.state.installFeeSchedule(
      s.version,
      s.effectiveFrom,
      s,
      core.clock.now(),
    );
    if (added)
      core.store.journal.appendEvent(
        'fee-schedule',
        { version: s.version, effectiveFrom: s.effectiveFrom },
        core.clock.now(),
      );
    return added;
  });
}

/**
 * Activates the terminal locally from an acquirer grant already verified by the caller:
 * identity, fee schedule and lifecycle transition commit together.
 */
export function applyActivation(
  core: Core,
  identity: Identity,
  schedule: FeeSchedule,
  source: string,
): void {
  core.store.atomically(() => {
    core.store.state.setJson('identity', identity);
    installFeeSchedule(core, schedule);
    core.terminal.apply(
      { type: 'activate' },
      `activated for merchant ${identity.merchantId}`,
      source,
    );
  });
}
