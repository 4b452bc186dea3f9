/**
 * Options, terminals and events of the acquirer simulator (acquirer.ts), apart so the class file
 * reads as behaviour.
 */
import type { Clock } from '../base/clock.ts';
import type { Logger } from '../base/log.ts';
import type { pos } from '../protocol/messages.ts';
import type { BehaviourPatch } from './behaviour.ts';
import type { SettlementRecord, SubmissionRecord } from './ledger.ts';

/** A terminal the acquirer knows before it ever connects. */
export interface SimTerminal {
  terminalId: string;
  activationCode: string;
  merchantId?: string;
  merchantName?: string;
  merchantCategory?: string;
}

/** Options of AcquirerSimulator.start. */
export interface AcquirerSimulatorOptions {
  /** Default 127.0.0.1; the simulator is never meant to be reachable from elsewhere. */
  host?: string;
  /** 0 (default) picks a free port; pass the old port to restart in place. */
  port?: number;
  /** Holds the ledger, the command key and (unless tlsDir is given) tls/. */
  dataDir: string;
  tlsDir?: string;
  terminals?: SimTerminal[];
  /** Extra client certificate CNs to make (terminals that need no activation code). */
  clientIds?: string[];
  clockOffsetMs?: number;
  behaviour?: BehaviourPatch;
  acquirerId?: string;
  maxFrameBytes?: number;
  clock?: Clock;
  logger?: Logger;
}

/** Events of the simulator, for tests that act at a precise moment. */
export interface AcquirerSimulatorEvents {
  /** A message arrived (before any slowMs delay). */
  received: [terminalId: string, env: pos.v1.Envelope];
  /** A BatchSubmit was recorded. */
  submission: [s: Omit<SubmissionRecord, 'id'>];
  settled: [s: SettlementRecord];
  connected: [terminalId: string];
}
