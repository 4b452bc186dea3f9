import type { KeyObject } from 'node:crypto';
import { decodeActivationGrant } from '../../protocol/messages.ts';
import type { Core } from '../runtime/core.ts';
import { applyActivation } from '../runtime/core.ts';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { feeScheduleFromWire } from './fees.ts';
import { publicKeyFromRaw, rawPublicKey, verifyEd25519 } from './keys.ts';
import { createPublicKey, randomUUID } from 'node:crypto';
import { recordEvent } from './terminal-state.ts';
import { hasDeactivationReason } from './lifecycle.ts';
import type { AcquirerLink } from './settlement.ts';
import type { CommandProcessor } from './commands.ts';

/**
 * The conversations with the acquirer that change who the terminal is: activation with
 * a code, and the deactivation request of the seed (request with a reason, then review).
 */

const META_ATTEMPTS = 'activation_attempts';
const META_DEACTIVATION_REQUEST = 'deactivation_request_pending';

interface Attempts {
  failures: number;
  lockedUntil: number;
}

export interface FlowDeps {
  core: Core;
  link: AcquirerLink;
  commands: CommandProcessor;
  /** The terminal's own signing key, made at first activation attempt. */
  terminalKey: () => KeyObject;
}

/**
 * Activates with a code typed on the terminal. The acquirer's answer arrives over the
 * pinned mutual-TLS link and its grant is signed by the command key it carries; identity,
 * fee schedule, pinned key and the lifecycle transition commit together.
 */
export async function activate(d: FlowDeps, code: string, by: string): Promise<void> {
  const { config } = d.core;
  const attempts = checkMayActivate(d, code, by);
  const publicKey = rawPublicKey(createPublicKey(d.terminalKey()));
  const reply = await d.link.request({
    activationRequest: {
      terminalId: config.terminalId,
      activationCode: code,
      terminalPublicKey: publicKey,
      firmwareVersion: config.firmwareVersion,
    },
  });
  const res = reply.activationResponse;
  if (!res)
    throw new AgentError(
      'PROTOCOL_UNEXPECTED',
      'the acquirer did not answer the activation request',
    );
  try {
    applyGrant(d, res, by);
  } catch (e) {
    if (!isAgentError(e)) throw e;
    throw countFailure(d, attempts, res, e, by);
  }
}

type ActivationResponse = NonNullable<
  Awaited<ReturnType<AcquirerLink['request']>>['activationResponse']
>;

/** A well-formed code on an unactivated terminal outside a lockout; returns the failure count. */
function checkMayActivate(d: FlowDeps, code: string, by: string): Attempts {
  const { store, clock, log } = d.core;
  if (!/^[A-Za-z0-9-]{4,32}$/.test(code))
    throw new AgentError('ACTIVATION_REFUSED', 'an activation code is 4 to 32 letters or digits');
  const status = d.core.terminal.status();
  if (status.state !== 'unactivated')
    throw new AgentError('LIFECYCLE_REFUSED', `the terminal is already ${status.state}`);
  const attempts = store.state.getJson<Attempts>(META_ATTEMPTS) ?? { failures: 0, lockedUntil: 0 };
  if (clock.now() < attempts.lockedUntil) {
    const minutes = Math.ceil((attempts.lockedUntil - clock.now()) / 60_000);
    recordEvent(store, clock, log, 'activation-refused', { code: 'ACTIVATION_RETRY_LIMIT', by });
    throw new AgentError(
      'ACTIVATION_RETRY_LIMIT',
      `too many wrong activation codes; try again in ${minutes} min`,
    );
  }
  return attempts;
}

/** Verifies the acquirer's grant and commits identity, schedule, pinned key and state together. */
function applyGrant(d: FlowDeps, res: ActivationResponse, by: string): void {
  const { core } = d;
  const { config, store, clock, log } = core;
  if (!res.accepted)
    throw new AgentError(
      res.errorCode === 'ACTIVATION_RETRY_LIMIT' ? 'ACTIVATION_RETRY_LIMIT' : 'ACTIVATION_REFUSED',
      `the acquirer refused the code: ${res.reason || res.errorCode || 'no reason given'}`,
    );
  const grantBytes = res.grant ?? new Uint8Array();
  const grant = decodeActivationGrant(grantBytes);
  const key = publicKeyFromRaw(grant.commandPublicKey);
  if (!verifyEd25519(key, grantBytes, res.signature ?? new Uint8Array())) {
    throw new AgentError(
      'ACTIVATION_REFUSED',
      'the activation grant is not signed by the key it carries',
    );
  }
  if (grant.terminalId !== config.terminalId)
    throw new AgentError('ACTIVATION_REFUSED', 'the activation grant is for another terminal');
  const spec = grant.feeSchedule;
  const schedule = feeScheduleFromWire(spec);
  store.atomically(() => {
    d.commands.pinKey(grant.commandPublicKey);
    applyActivation(
      core,
      {
        terminalId: grant.terminalId,
        merchantId: grant.merchantId,
        merchantName: grant.merchantName,
        category: grant.merchantCategory || config.merchantCategory,
        currency: grant.currency || config.currency,
        activatedAt: clock.now(),
      },
      schedule,
      by,
    );
    store.state.deleteMeta(META_ATTEMPTS);
  });
  log.info({ merchant: grant.merchantId }, 'terminal activated');
}

/** Counts a refused attempt (locking activation after too many) and words the error to throw. */
function countFailure(
  d: FlowDeps,
  attempts: Attempts,
  res: ActivationResponse,
  e: AgentError,
  by: string,
): AgentError {
  const { config, store, clock, log } = d.core;
  const failures = attempts.failures + 1;
  const max = config.activation.maxAttempts;
  const next: Attempts = {
    failures: failures >= max ? 0 : failures,
    lockedUntil: failures >= max ? clock.now() + config.activation.lockoutMs : 0,
  };
  store.atomically(() => store.state.setJson(META_ATTEMPTS, next));
  recordEvent(store, clock, log, 'activation-refused', {
    code: e.code,
    reason: e.message,
    by,
    failures,
  });
  // The acquirer's count is the one that blocks the code: never promise more attempts than it.
  const acquirerLeft = res.accepted ? Infinity : (res.attemptsLeft ?? 0);
  const left = Math.max(0, Math.min(max - failures, acquirerLeft));
  return new AgentError(
    e.code,
    failures >= max
      ? `${e.message}; activation is locked for a while`
      : left > 0
        ? `${e.message} (${left} attempts left)`
        : e.message,
  );
}

/**
 * The merchant's (or technician's) request to deactivate: the terminal stops taking
 * transactions at once and waits for the acquirer's review. The request itself is sent
 * now if the link is up, and otherwise on next contact.
 */
export function requestDeactivation(d: FlowDeps, reason: string, by: string): void {
  const { core } = d;
  if (!hasDeactivationReason(reason))
    throw new AgentError('CONSOLE_BAD_ARGUMENTS', 'give a reason for the deactivation');
  try {
    core.store.atomically(() => {
      core.terminal.apply(
        { type: 'request-deactivation', by: 'technician' },
        `deactivation requested: ${reason}`,
        by,
      );
      core.store.state.setJson(META_DEACTIVATION_REQUEST, {
        reason,
        by,
        at: core.clock.now(),
        requestId: randomUUID(),
      });
    });
  } catch (e) {
    if (isAgentError(e))
      recordEvent(core.store, core.clock, core.log, 'lifecycle-refused', {
        event: 'request-deactivation',
        code: e.code,
        reason: e.message,
        source: by,
      });
    throw e;
  }
}

/** Sends a pending deactivation request; safe to call on every contact. */
export async function sendPendingDeactivationRequest(d: FlowDeps): Promise<boolean> {
  const { core } = d;
  const pending = core.store.state.getJson<{ reason: string; by: string; requestId?: string }>(
    META_DEACTIVATION_REQUEST,
  );
  if (!pending) return false;
  const reply = await d.link.request({
    deactivationRequest: {
      reason: pending.reason,
      requestedBy: pending.by,
      requestId: pending.requestId ?? '',
    },
  });
  if (!reply.deactivationRequestAck)
    throw new AgentError(
      'PROTOCOL_UNEXPECTED',
      'the acquirer did not acknowledge the deactivation request',
    );
  core.store.atomically(() => {
    core.store.state.deleteMeta(META_DEACTIVATION_REQUEST);
    core.store.journal.appendEvent(
      'deactivation-request-sent',
      { reviewId: reply.deactivationRequestAck!.reviewId ?? '', reason: pending.reason },
      core.clock.now(),
    );
  });
  return true;
}
