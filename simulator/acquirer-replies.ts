import type { Logger } from '../base/log.ts';
import type { ServerConnection } from '../protocol/server.ts';
import { newMessageId, type EnvelopeBody, type pos } from '../protocol/messages.ts';
import type { Behaviour } from './behaviour.ts';
import { garbageBytes } from './garbage.ts';
import type { HandlerResult } from './acquirer-handlers.ts';
import type { TerminalLinks } from './terminal-links.ts';

/**
 * Sends a handler's answer the way the live behaviour says: dropped, junk instead of the
 * reply, or the reply (twice with duplicate acks), then the handler's follow-up.
 */
export function answer(
  conn: ServerConnection,
  cn: string,
  env: pos.v1.Envelope,
  result: HandlerResult,
  d: { behaviour: Behaviour; links: TerminalLinks; now: () => number; log: Logger },
): void {
  if (result.kind === 'drop') {
    conn.destroy();
    return;
  }
  if (result.kind === 'none') return;
  const g = d.behaviour.garbage;
  if (g && g.times > 0 && (!g.on || g.on === env.body)) {
    // The message was handled (a submit may be settled); only the answer is junk.
    g.times -= 1;
    conn.socket.write(garbageBytes(g.kind));
    return;
  }
  if (env.body === 'hello' && result.body.helloAck) d.links.greet(conn);
  if (sendReply(conn, cn, result.body, env.messageId, d) && d.behaviour.duplicateAcks) {
    sendReply(conn, cn, result.body, env.messageId, d);
  }
  try {
    result.then?.();
  } catch (e) {
    d.log.error({ err: e, kind: env.body }, 'simulator follow-up failed');
  }
}

function sendReply(
  conn: ServerConnection,
  cn: string,
  body: EnvelopeBody,
  correlationId: string,
  d: { now: () => number; log: Logger },
): boolean {
  try {
    conn.send({
      ...body,
      messageId: newMessageId(),
      terminalId: cn,
      correlationId,
      sentAtMs: d.now(),
    });
    return true;
  } catch (e) {
    d.log.debug({ err: e, terminalId: cn }, 'could not send to the terminal');
    return false;
  }
}
