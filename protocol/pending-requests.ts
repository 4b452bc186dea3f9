/**
 * The table of requests waiting for their reply, matched by `correlation_id == message_id`.
 * Each entry settles exactly once: by its reply, by its timeout, or by rejectAll() when the
 * link drops, so no caller ever waits on a connection that no longer exists.
 */
import { AgentError } from '../base/errors.ts';
import type { pos } from './messages.ts';

interface Entry {
  resolve: (env: pos.v1.Envelope) => void;
  reject: (err: AgentError) => void;
  timer: NodeJS.Timeout;
}

/** The AgentError for an ErrorReply body: PROTOCOL_PEER_ERROR, the peer's code in context. */
export function peerError(reply: pos.v1.IErrorReply | null | undefined): AgentError {
  const peerCode = reply?.code ?? '';
  const peerMessage = reply?.message ?? '';
  return new AgentError(
    'PROTOCOL_PEER_ERROR',
    `the acquirer reported ${peerCode || 'an error'}: ${peerMessage}`,
    { peerCode, peerMessage },
  );
}

/** Requests in flight on one link. */
export class PendingRequests {
  private readonly entries = new Map<string, Entry>();

  /** Number of requests waiting. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Registers `messageId` before its request is written, so even an instant reply finds it.
   * The promise rejects with PROTOCOL_TIMEOUT (context {kind, timeoutMs}) if no reply comes.
   */
  track(messageId: string, kind: string | undefined, timeoutMs: number): Promise<pos.v1.Envelope> {
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
  settle(env: pos.v1.Envelope): boolean {
    const entry = this.entries.get(env.correlationId);
    if (!entry) return false;
    this.entries.delete(env.correlationId);
    clearTimeout(entry.timer);
    if (env.body === 'error') entry.reject(peerError(env.error));
    else entry.resolve(env);
    return true;
  }

  /** Rejects one request (e.g. its write failed). */
  reject(messageId: string, err: AgentError): void {
    const entry = this.entries.get(messageId);
    if (!entry) return;
    this.entries.delete(messageId);
    clearTimeout(entry.timer);
    entry.reject(err);
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
