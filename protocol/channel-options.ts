import type { Duplex } from 'node:stream';
import type { AgentError } from '../base/errors.ts';
import type { Logger } from '../base/log.ts';
import type { Clock } from '../base/clock.ts';
import type { EnvelopeBody, pos } from './messages.ts';
import type { TlsTarget } from './tls-connector.ts';

/** The options and events of the acquirer channel (channel.ts). */

/**
 * Handles an envelope the acquirer sent on its own (a command, ...). `reply` answers it once,
 * on the link it came on; it throws PROTOCOL_DISCONNECTED if that link is gone (the acquirer
 * then asks again, e.g. by polling commands). A throw or rejection is answered with an ErrorReply
 * carrying the AgentError's code.
 */
export type UnsolicitedHandler = (
  env: pos.v1.Envelope,
  reply: (body: EnvelopeBody) => void,
) => void | Promise<void>;

/** Options of AcquirerChannel. Durations are milliseconds. */
export interface AcquirerChannelOptions {
  terminalId: string;
  /** Opens the byte stream; give this or `tls`. */
  connect?: () => Duplex;
  tls?: TlsTarget;
  /** Called on each connect, since the journal head and lifecycle state change. */
  helloFactory: () => pos.v1.IHello;
  /** Extra heartbeat fields (lifecycle state, queued batches); client time is filled in. */
  heartbeatFactory?: () => Omit<pos.v1.IHeartbeat, 'clientTimeMs'>;
  /** Default 30 000. */
  heartbeatIntervalMs?: number;
  /** Default 15 000; also the Hello timeout (connect + handshake + HelloAck) unless set. */
  requestTimeoutMs?: number;
  helloTimeoutMs?: number;
  /** Reconnect delay is uniform in [0, min(maxMs, initialMs * 2^attempt)]. Default 500 / 60 000. */
  backoff?: { initialMs: number; maxMs: number };
  /** Default 1 MiB. */
  maxFrameBytes?: number;
  clock?: Clock;
  logger?: Logger;
  onUnsolicited?: UnsolicitedHandler;
  /** Source of jitter in [0, 1); tests may fix it. */
  random?: () => number;
}

/** What the channel learnt when the link came up. */
export interface UpInfo {
  serverTimeMs: number;
  acquirerId: string;
  clockOffsetMs: number;
  rttMs: number;
  /** The acquirer's remote-witness answer in its HelloAck, when it gave one. */
  headCheck?: { behind: boolean; knownSeq: number; knownHash: string; reason: string };
}

/** Events of AcquirerChannel. */
/**
 * One reading of the acquirer's clock (HelloAck or HeartbeatAck). The acquirer read its clock
 * about halfway through the round trip, so it is matched to the midpoints of the local clocks.
 */
export interface ClockSample {
  kind: 'hello' | 'heartbeat';
  serverTimeMs: number;
  /** Midpoint of the round trip on the wall clock (Clock.now). */
  localMidMs: number;
  /** Midpoint of the round trip on the monotonic clock. */
  monoMidMs: number;
  rttMs: number;
}

export interface AcquirerChannelEvents {
  up: [info: UpInfo];
  down: [reason: AgentError];
  /** A link that never came up failed (TLS refusal, timeout, refused connection). */
  'link-failed': [reason: AgentError];
  /** Input refused at the link level (bad frame, wrong terminal, unsolicited before HelloAck). */
  'protocol-error': [err: AgentError];
  heartbeat: [sample: { clockOffsetMs: number; rttMs: number }];
  /** Emitted before 'up' and before 'heartbeat', so a clock check sees every reading first. */
  'clock-sample': [sample: ClockSample];
}
