/**
 * The table of requests waiting for their reply, matched by id (`correlation_id ==
 * message_id` on the acquirer link, `request_id` on the payment socket). Each entry settles
 * exactly once: by its reply, by its timeout, or by rejectAll() when the link drops, so no
 * caller ever waits on a connection that no longer exists.
 */
import { AgentError } from '../base/errors.ts';
import type { pos } from './messages.ts';

interface Entry<R> {
  resolve: (reply: R) => void;
  reject: (err: AgentError) => void;
  timer: NodeJS.Timeout;
}

/** The AgentError for an ErrorReply body: PROTOCOL_PEER_ERROR, the peer's code in context. */
function peerError(reply: pos.v1.IErrorReply | null | undefined): AgentError {
  const peerCode = reply?.code ?? '';
  const peerMessage = reply?.message ?? '';
  return new AgentError(
    'PROTOCOL_PEER_ERROR',
    `the acquirer reported ${peerCode || 'an error'}: ${peerMessage}`,
    { peerCode, peerMessage },
  );
}

/** Requests in flight on one link; `R` is the reply type. */
export class PendingRequests<R = pos.v1.Envelope> {
  private readonly entries = new Map<string, Entry<R>>();

  /** Number of requests waiting. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Registers `messageId` before its request is written, so even an instant reply finds it.
   * The promise rejects with PROTOCOL_TIMEOUT (context {kind, timeoutMs}) if no reply comes.
   */
  track(messageId: string, kind: string | undefined, timeoutMs: number): Promise<R> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.entries.delete(messageId);
        reject(new AgentError('PROTOCOL_TIMEOUT', undefined, { kind, timeoutMs }));
      }, timeoutMs);
      this.entries.set(messageId, { resolve, reject, timer });
    });
  }

  /**
   * Settles the request `env` answers: resolves with it, or rejects with PROTOCOL_PEER_ERROR
   * when it is an ErrorReply. Returns false when nothing waits (a late reply after a timeout).
   */
  settle(this: PendingRequests<pos.v1.Envelope>, env: pos.v1.Envelope): boolean {
    if (env.body === 'error') return this.reject(env.correlationId, peerError(env.error));
    return this.resolve(env.correlationId, env);
  }

  /** Resolves request `id` with its reply. Returns false when nothing waits for it. */
  resolve(id: string, reply: R): boolean {
    const entry = this.take(id);
    entry?.resolve(reply);
    return entry !== undefined;
  }

  /** Rejects one request (e.g. its write failed). Returns false when nothing waits for it. */
  reject(messageId: string, err: AgentError): boolean {
    const entry = this.take(messageId);
    entry?.reject(err);
    return entry !== undefined;
  }

  private take(id: string): Entry<R> | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    clearTimeout(entry.timer);
    return entry;
  }

  /** Rejects every waiting request with `err`, at once. */
  rejectAll(err: AgentError): void {
    const all = [...this.entries.values()];
    this.entries.clear();
    for (const entry of all) {
      clearTimeout(entry.timer);
      entry.reject(err);
    }
  }
}
