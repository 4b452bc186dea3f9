/**
 * The acquirer simulator's behaviours: what it does with each message, switchable at runtime by
 * a test (`sim.behave({...})`). Faults are counted ("drop the next 1 ack"), so a scenario says
 * exactly how many times the network misbehaves and the retry after it meets a healthy acquirer.
 */
import type { EnvelopeBodyKind } from '../protocol/messages.ts';

/**
 * How a BatchSubmit is answered:
 * - `approve`: settle on the terminal's totals (the acquirer cannot see rows before detail).
 * - `out-of-balance`: claim different totals on every submit of a key until its detail is in.
 * - `out-of-balance-once`: claim once per key; a resend before detail upload is approved.
 */
type SettleMode = 'approve' | 'out-of-balance' | 'out-of-balance-once';

/** Junk written to the terminal instead of a reply. */
interface GarbageFault {
  /** `random`: a frame of bytes that do not decode; `oversized`: a length prefix of ~4 GiB. */
  kind: 'random' | 'oversized';
  /** How many replies to replace; decremented as they are used. */
  times: number;
  /** Only replace replies to this kind of message (default: any). */
  on?: EnvelopeBodyKind;
}

/** Everything a test can switch. */
export interface Behaviour {
  settle: SettleMode;
  /** Delay before handling each message, in ms. */
  slowMs: number;
  /** Close the socket on the next N BatchSubmits without settling (true = every one). */
  dropBeforeAck: number;
  /** Settle the next N BatchSubmits, then close the socket without the ack (the lost ack). */
  dropAfterAck: number;
  /** Store the next N detail chunks, then close the socket without their ack. */
  dropAfterDetailChunk: number;
  /** Detail chunks a terminal may have unacknowledged at once (DetailAck.window; 0: say nothing). */
  detailWindow: number;
  /** Send every reply twice. */
  duplicateAcks: boolean;
  garbage: GarbageFault | null;
  /** Drop every connection right after the TLS handshake (and the live ones when switched on). */
  refuseConnections: boolean;
  /** Acquirer clock minus real time, for clock-offset tests. */
  clockOffsetMs: number;
  /** How deactivation requests are decided: by hand (decideDeactivation), or at once. */
  deactivation: 'manual' | 'approve' | 'reject';
  /** The reason sent with an automatic rejection. */
  deactivationRejectReason: string;
  /** Answer each risk report with a signed risk flag of this severity (null: just record it). */
  riskFlagSeverity: number | null;
  /** Wrong activation codes a terminal may try before its code is blocked. */
  maxActivationAttempts: number;
  /** A broken acquirer: a resend of a settled key gets a new settlement id, duplicate=false. */
  resendSettlesAgain: boolean;
  /** How offline advices are answered (simulator/advice-handlers.ts). */
  advice: AdviceBehaviour;
}

/**
 * The acquirer's rules for offline advices. A rule applies to an advice's first receipt only:
 * a resend is always answered with the first answer.
 */
export interface AdviceBehaviour {
  /** accept (by the rules below) | decline-all | ignore (answer none: the terminal retries). */
  mode: 'accept' | 'decline-all' | 'ignore';
  /** Decline a sale above this amount (null: no limit). */
  declineOver: number | null;
  /** Decline a card whose masked PAN starts with one of these prefixes (a BIN range). */
  declineCardPrefixes: string[];
  /** Close the link on the next N AdviceBatches without recording them. */
  dropBefore: number;
  /** Record the next N AdviceBatches, then close the link without the answer. */
  dropAfter: number;
}

/** A behaviour switch: counters may be given as booleans (true = always, false = never). */
export type BehaviourPatch = Partial<
  Omit<Behaviour, 'dropBeforeAck' | 'dropAfterAck' | 'dropAfterDetailChunk' | 'advice'> & {
    dropBeforeAck: number | boolean;
    dropAfterAck: number | boolean;
    dropAfterDetailChunk: number | boolean;
    advice: Partial<AdviceBehaviour>;
  }
>;

/** The behaviour of a healthy acquirer. */
export function defaultBehaviour(): Behaviour {
  return {
    settle: 'approve',
    slowMs: 0,
    dropBeforeAck: 0,
    dropAfterAck: 0,
    dropAfterDetailChunk: 0,
    detailWindow: 8,
    duplicateAcks: false,
    garbage: null,
    refuseConnections: false,
    clockOffsetMs: 0,
    deactivation: 'manual',
    deactivationRejectReason: 'unsettled obligations remain',
    riskFlagSeverity: null,
    maxActivationAttempts: 5,
    resendSettlesAgain: false,
    advice: {
      mode: 'accept',
      declineOver: null,
      declineCardPrefixes: [],
      dropBefore: 0,
      dropAfter: 0,
    },
  };
}

function count(v: number | boolean | undefined, current: number): number {
  if (v === undefined) return current;
  if (v === true) return Number.POSITIVE_INFINITY;
  if (v === false) return 0;
  if (!(v >= 0)) throw new RangeError('a fault count must be 0 or more');
  return v;
}

/** Applies a patch to a behaviour, in place, and returns it. */
export function applyPatch(b: Behaviour, patch: BehaviourPatch): Behaviour {
  const { dropBeforeAck, dropAfterAck, dropAfterDetailChunk, garbage, advice, ...rest } = patch;
  Object.assign(b, rest);
  if (advice) b.advice = { ...b.advice, ...advice };
  b.dropBeforeAck = count(dropBeforeAck, b.dropBeforeAck);
  b.dropAfterAck = count(dropAfterAck, b.dropAfterAck);
  b.dropAfterDetailChunk = count(dropAfterDetailChunk, b.dropAfterDetailChunk);
  if (garbage !== undefined) b.garbage = garbage && { ...garbage };
  return b;
}

/** Takes one use of a counted fault; true when it fires. */
export function takeFault(
  b: Behaviour,
  fault: 'dropBeforeAck' | 'dropAfterAck' | 'dropAfterDetailChunk',
): boolean {
  if (b[fault] <= 0) return false;
  b[fault] -= 1;
  return true;
}
