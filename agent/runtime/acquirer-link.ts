import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { AcquirerChannel, tlsConnector } from '../../protocol/channel.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../base/log.ts';
import { dataPath, type Config } from '../config.ts';
import type { CommandProcessor } from '../policy/commands.ts';
import type { Core } from './core.ts';

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
      lifecycleState: core.terminal.status().state,
      lastCommandCounter: d.commands().lastCounter(),
    }),
    heartbeatFactory: () => ({
      lifecycleState: core.terminal.status().state,
      queuedBatches: core.store.batches.unsettled().length,
    }),
    heartbeatIntervalMs: config.acquirer.heartbeatIntervalMs,
    requestTimeoutMs: config.acquirer.requestTimeoutMs,
    backoff: { initialMs: config.acquirer.backoffInitialMs, maxMs: config.acquirer.backoffMaxMs },
    maxFrameBytes: config.acquirer.maxFrameBytes,
    clock: d.clock,
    logger: d.log.child({ part: 'channel' }),
  });
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
