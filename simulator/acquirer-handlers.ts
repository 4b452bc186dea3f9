/**
 * What the acquirer simulator does with each message a terminal sends. Pure of sockets: a
 * handler reads and writes the ledger and returns what to answer (or to drop the link), and
 * acquirer.ts does the sending, so the exactly-once rules read in one place.
 *
 * The terminal is always the client certificate's CN (`cn` below), never a field of the message.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AgentError, isAgentError } from '../base/errors.ts';
import type { Logger } from '../base/log.ts';
import { DEFAULT_FEE_SCHEDULE } from '../agent/policy/fees.ts';
import { decodeCommandResultBody, errorReplyFor, type pos } from '../protocol/messages.ts';
import { ed25519FromRaw, verifySignature } from './command-signer.ts';
import { reply, type HandlerContext, type HandlerResult } from './handler-context.ts';
import { onBatchSubmit, onDetailChunk } from './settlement-handlers.ts';
import { checkHello, forgetHead, recordHeartbeat } from './head-watch.ts';
import { onAdviceBatch } from './advice-handlers.ts';

export type { HandlerContext, HandlerResult };

function checkNamed(cn: string, named: string | null | undefined, what: string): void {
  if (named && named !== cn) {
    throw new AgentError(
      'PROTOCOL_UNEXPECTED',
      `${what} names terminal ${named.slice(0, 16)} but the certificate is ${cn}`,
    );
  }
}

/**
 * Dispatches one envelope from terminal `cn`. Throws AgentError for an ErrorReply answer.
 * `payload` is the envelope's bytes as received (a detail chunk is stored as them).
 */
export function handleEnvelope(
  ctx: HandlerContext,
  cn: string,
  env: pos.v1.Envelope,
  payload?: Uint8Array,
): HandlerResult {
  switch (env.body) {
    case 'hello': {
      checkNamed(cn, env.hello?.terminalId, 'Hello');
      const headCheck = checkHello(ctx.ledger, cn, env.hello!, ctx.now());
      return reply({
        helloAck: { serverTimeMs: ctx.now(), acquirerId: ctx.acquirerId, headCheck },
      });
    }
    case 'heartbeat':
      if (env.heartbeat) recordHeartbeat(ctx.ledger, cn, env.heartbeat, ctx.now());
      return reply({
        heartbeatAck: { clientTimeMs: env.heartbeat?.clientTimeMs ?? 0, serverTimeMs: ctx.now() },
      });
    case 'batchSubmit':
      return onBatchSubmit(ctx, cn, env);
    case 'adviceBatch':
      return onAdviceBatch(ctx, cn, env);
    case 'batchDetailChunk':
      return onDetailChunk(ctx, cn, env, payload);
    case 'commandPoll': {
      const sent = ctx.deliverPending(cn, Number(env.commandPoll?.afterCounter ?? 0));
      return reply({ commandPollDone: { sent } });
    }
    case 'commandResult':
      onCommandResult(ctx, cn, env);
      return { kind: 'none' };
    case 'activationRequest':
      return onActivation(ctx, cn, env.activationRequest!);
    case 'deactivationRequest':
      return onDeactivationRequest(ctx, cn, env.deactivationRequest!);
    case 'riskReport':
      return onRiskReport(ctx, cn, env.riskReport!);
    case 'error':
      // Never answered: replying to an error invites an error loop.
      ctx.log.info({ terminalId: cn, code: env.error?.code }, 'terminal reported an error');
      return { kind: 'none' };
    default:
      throw new AgentError(
        'PROTOCOL_UNEXPECTED',
        `the acquirer does not take ${env.body ?? 'an empty message'} from a terminal`,
      );
  }
}

/** handleEnvelope's answer, or the ErrorReply for what it threw. */
export function answerOrRefusal(
  ctx: HandlerContext,
  cn: string,
  env: pos.v1.Envelope,
  payload: Uint8Array,
): HandlerResult {
  try {
    // The certificate names the terminal; an envelope naming another one is refused outright.
    if (env.terminalId && env.terminalId !== cn) {
      throw new AgentError(
        'PROTOCOL_UNEXPECTED',
        `the envelope names terminal ${env.terminalId.slice(0, 16)} but the certificate is ${cn}`,
      );
    }
    return handleEnvelope(ctx, cn, env, payload);
  } catch (e) {
    return refusal(ctx.log, e, env.body);
  }
}

/** The ErrorReply for a throw: an AgentError's own code, anything else a logged failure. */
export function refusal(log: Logger, e: unknown, kind: string | undefined): HandlerResult {
  if (!isAgentError(e)) log.error({ err: e, kind }, 'simulator handler failed');
  const err = isAgentError(e)
    ? e
    : new AgentError('PROTOCOL_UNEXPECTED', 'the acquirer failed to handle the message');
  return { kind: 'reply', body: { error: errorReplyFor(err) } };
}

// ---------------------------------------------------------------- commands

function onCommandResult(ctx: HandlerContext, cn: string, env: pos.v1.Envelope): void {
  const r = env.commandResult!;
  const bodyBytes = Buffer.from(r.body ?? []);
  const signature = Buffer.from(r.signature ?? []);
  const command = env.correlationId ? ctx.ledger.commandByMessageId(env.correlationId) : undefined;
  const key = ed25519FromRaw(ctx.ledger.terminal(cn)?.publicKey);
  let body: pos.v1.CommandResultBody | undefined;
  try {
    body = decodeCommandResultBody(bodyBytes);
  } catch {
    body = undefined;
  }
  // Verified only under the key pinned at activation, and only if it names this terminal.
  const verified =
    !!key && !!body && body.terminalId === cn && verifySignature(key, bodyBytes, signature);
  ctx.ledger.recordCommandResult({
    terminalId: cn,
    commandId: command && command.terminalId === cn ? command.id : null,
    counter: Number(body?.counter ?? 0),
    outcome: body?.outcome ?? '',
    errorCode: body?.errorCode ?? '',
    detail: body?.detail ?? '',
    verified,
    receivedAt: ctx.now(),
    body: bodyBytes,
    signature,
  });
}

// ---------------------------------------------------------------- activation, deactivation, risk

function refused(
  code: 'ACTIVATION_REFUSED' | 'ACTIVATION_RETRY_LIMIT',
  reason: string,
  attemptsLeft: number,
): HandlerResult {
  return reply({ activationResponse: { accepted: false, errorCode: code, reason, attemptsLeft } });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function onActivation(
  ctx: HandlerContext,
  cn: string,
  req: pos.v1.IActivationRequest,
): HandlerResult {
  checkNamed(cn, req.terminalId, 'the activation request');
  const { ledger } = ctx;
  const max = ctx.behaviour.maxActivationAttempts;
  const t = ledger.terminal(cn);
  if (!t)
    return refused('ACTIVATION_REFUSED', 'this terminal is not registered with the acquirer', 0);
  if (t.status === 'deactivated')
    return refused('ACTIVATION_REFUSED', 'this terminal was deactivated', 0);
  const key = Buffer.from(req.terminalPublicKey ?? []);
  const codeOk = sameBytes(Buffer.from(req.activationCode ?? ''), Buffer.from(t.activationCode));
  const left = (failures: number): number => Math.max(0, max - failures);
  if (t.codeUsed) {
    // The same terminal key with the same code is the answer lost on the way: grant it again.
    const resend = codeOk && t.publicKey !== null && sameBytes(t.publicKey, key);
    if (!resend) return refused('ACTIVATION_REFUSED', 'the activation code was already used', 0);
  } else {
    if (t.failedAttempts >= max)
      return refused(
        'ACTIVATION_RETRY_LIMIT',
        'too many wrong codes; ask the acquirer for a new one',
        0,
      );
    if (!codeOk) {
      const failures = ledger.activationFailed(cn);
      return left(failures) > 0
        ? refused('ACTIVATION_REFUSED', 'the activation code is wrong', left(failures))
        : refused(
            'ACTIVATION_RETRY_LIMIT',
            'the activation code is wrong; no attempts are left',
            0,
          );
    }
    if (!ed25519FromRaw(key)) {
      return refused(
        'ACTIVATION_REFUSED',
        'the terminal key is not a raw 32-byte Ed25519 key',
        left(t.failedAttempts),
      );
    }
    ledger.activated(cn, key, ctx.now());
    forgetHead(ledger, cn);
  }
  const s = DEFAULT_FEE_SCHEDULE;
  const grant = ctx.signer.grant({
    terminalId: cn,
    merchantId: t.merchantId,
    merchantName: t.merchantName,
    merchantCategory: t.merchantCategory,
    feeSchedule: {
      version: s.version,
      currency: s.currency,
      effectiveFromMs: s.effectiveFrom,
      rules: s.rules.map((r) => ({
        category: r.category,
        rateBp: r.rateBp,
        fixed: r.fixed,
        minimum: r.minimum,
        cap: r.cap ?? 0,
      })),
    },
    issuedAtMs: ctx.now(),
    currency: s.currency,
  });
  return reply({
    activationResponse: {
      accepted: true,
      grant: grant.bytes,
      signature: grant.signature,
      attemptsLeft: left(t.failedAttempts),
    },
  });
}

function onDeactivationRequest(
  ctx: HandlerContext,
  cn: string,
  req: pos.v1.IDeactivationRequest,
): HandlerResult {
  // A resend of the same request (its ack was lost) is answered with the same review.
  const reviewId = req.requestId
    ? `RV-${createHash('sha256').update(`${cn}\n${req.requestId}`).digest('hex').slice(0, 12).toUpperCase()}`
    : `RV-${randomBytes(6).toString('hex').toUpperCase()}`;
  if (ctx.ledger.reviews(cn).some((r) => r.reviewId === reviewId)) {
    return reply({ deactivationRequestAck: { reviewId } });
  }
  ctx.ledger.addReview({
    reviewId,
    terminalId: cn,
    reason: req.reason ?? '',
    requestedBy: req.requestedBy ?? '',
    requestedAt: ctx.now(),
  });
  const mode = ctx.behaviour.deactivation;
  const rejectReason = ctx.behaviour.deactivationRejectReason;
  // The decision goes out after the ack, as a real review would come later.
  const then =
    mode === 'manual'
      ? undefined
      : () =>
          ctx.decideDeactivation(
            cn,
            mode === 'approve',
            mode === 'approve' ? 'approved on review' : rejectReason,
          );
  return reply({ deactivationRequestAck: { reviewId } }, then);
}

function onRiskReport(ctx: HandlerContext, cn: string, r: pos.v1.IRiskReport): HandlerResult {
  const rule = r.rule ?? '';
  const detail = r.detail ?? '';
  ctx.ledger.addRiskReport({
    terminalId: cn,
    rule,
    detail,
    atMs: Number(r.atMs ?? 0),
    receivedAt: ctx.now(),
  });
  const severity = ctx.behaviour.riskFlagSeverity;
  const then =
    severity === null
      ? undefined
      : () => ctx.issueRiskFlag(cn, rule || 'risk', severity, detail || 'reported by the terminal');
  return reply({ riskReportAck: {} }, then);
}
