import { toAgentError } from '../base/errors.ts';
import type { Logger } from '../base/log.ts';
import type { Clock } from '../base/clock.ts';
import type { FrameConnection } from './connection.ts';
import { errorReplyFor, newMessageId, type EnvelopeBody, type pos } from './messages.ts';
import { checkOneBody, unexpected } from './envelope-checks.ts';
import type { UnsolicitedHandler } from './channel-options.ts';

export type Conn = FrameConnection<pos.v1.Envelope, pos.v1.IEnvelope>;

/**
 * Hands an envelope the acquirer sent on its own to the handler, with a `reply` that answers
 * it once on the link it came on. A throw or rejection is answered with an ErrorReply, unless
 * the handler already replied or the link is gone.
 */
export function answerUnsolicited(
  conn: Conn,
  env: pos.v1.Envelope,
  handler: UnsolicitedHandler | undefined,
  d: { terminalId: string; clock: Clock; logger: Logger },
): void {
  let replied = false;
  const reply = (body: EnvelopeBody): void => {
    if (replied) throw unexpected('an unsolicited message was answered twice', env.body);
    checkOneBody(body);
    replied = true;
    conn.send({
      ...body,
      messageId: newMessageId(),
      terminalId: d.terminalId,
      correlationId: env.messageId,
      sentAtMs: d.clock.now(),
    });
  };
  const fail = (e: unknown): void => {
    const err = toAgentError(e, 'PROTOCOL_UNEXPECTED');
    d.logger.error({ code: err.code, kind: env.body }, 'unsolicited message not handled');
    if (replied || conn.closed) return;
    try {
      reply({ error: errorReplyFor(err) });
    } catch (sendErr) {
      d.logger.debug({ err: sendErr }, 'could not send the error reply');
    }
  };
  if (!handler) return fail(unexpected('the terminal has no handler for this message', env.body));
  try {
    const result = handler(env, reply);
    if (result instanceof Promise) result.catch(fail);
  } catch (e) {
    fail(e);
  }
}
