import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { AcquirerChannel, tlsConnector } from '../../protocol/channel.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import { dataPath, type Config } from '../config.ts';
import type { CommandProcessor } from '../policy/commands.ts';
import type { Core } from './core.ts';
import type { pos } from '../../protocol/messages.ts';
import { openBatchTally } from '../policy/open-batch-tally.ts';
import { computeTotals } from '../policy/batch-totals.ts';

/**
 * The agent's channel to the acquirer, configured from the config file: the Hello and
 * heartbeat carry the journal head, lifecycle state and command counter as they are at
 * each connect or beat, so they are read through the core at that moment.
 */
export function openAcquirerLink(d: {
  config: Config;
  core: Core;
  commands: () => CommandProcessor;
  clock: Clock;
  log: Logger;
  /** Replaces the TLS connect (tests put a fault-injecting proxy here). */
  connect?: () => Duplex;
}): AcquirerChannel {
  const { config, core } = d;
  return new AcquirerChannel({
    terminalId: config.terminalId,
    connect: d.connect ?? (() => tlsConnect(config)),
    helloFactory: () => ({
      terminalId: config.terminalId,
      firmwareVersion: config.firmwareVersion,
      journalHeadHash: core.store.journal.headOf().hash,
      journalHeadSeq: core.store.journal.headOf().seq,
      journalIncarnation: core.store.incarnation,
      lifecycleState: core.terminal.status().state,
      lastCommandCounter: d.commands().lastCounter(),
    }),
    heartbeatFactory: () => heartbeatReport(core, config),
    heartbeatIntervalMs: config.acquirer.heartbeatIntervalMs,
    requestTimeoutMs: config.acquirer.requestTimeoutMs,
    backoff: { initialMs: config.acquirer.backoffInitialMs, maxMs: config.acquirer.backoffMaxMs },
    maxFrameBytes: config.acquirer.maxFrameBytes,
    clock: d.clock,
    logger: d.log.child({ part: 'channel' }),
  });
}

/**
 * What a heartbeat tells the acquirer: lifecycle state, locks, queued batches and the open
 * batch's totals (the acquirer's back office shows what must settle first). Read-only: no open
 * batch is made for the asking, so a deactivated terminal's last report writes nothing.
 */
export function heartbeatReport(
  core: Core,
  config: Config,
): Omit<pos.v1.IHeartbeat, 'clientTimeMs'> {
  const status = core.terminal.status();
  const currency = core.identity()?.currency ?? config.currency;
  const newest = core.store.batches.list(1)[0];
  const open = newest?.state === 'open' ? newest : undefined;
  // Through the running tally (only rows since the last look), never the whole batch: a
  // heartbeat must not hold the event loop for a 100,000-row read. With an open batch present,
  // openBatchTally writes nothing.
  const totals = open
    ? openBatchTally(core.store, core.clock.now()).tally.totals(currency)
    : computeTotals([], currency);
  const head = core.store.journal.headOf();
  return {
    journalHeadSeq: head.seq,
    journalHeadHash: head.hash,
    lifecycleState: status.state,
    locks: status.locks,
    queuedBatches: core.store.batches.unsettled().length,
    openBatch: {
      batchId: open?.batchId ?? '',
      transactionCount: totals.transactionCount,
      netAmount: totals.netAmount,
      netFee: totals.netFee,
      currency,
    },
  };
}

/** Reads the CA, certificate and key on every connect, so renewed files take effect. */
function tlsConnect(c: Config): Duplex {
  const read = (p: string) => readFileSync(dataPath(c, p));
  return tlsConnector({
    host: c.acquirer.host,
    port: c.acquirer.port,
    servername: c.acquirer.servername,
    ca: read(c.acquirer.caFile),
    cert: read(c.acquirer.certFile),
    key: read(c.acquirer.keyFile),
  })();
}
