/**
 * The conformance kit's own view of one link to an acquirer: mutual TLS and framing from
 * protocol/, but no AcquirerChannel, because the kit must see what the channel hides (the
 * correlation id of each reply, the envelope terminal id, pushed messages, an error then close).
 */
import { AgentError } from '../../base/errors.ts';
import { envelopeConnection, type FrameConnection } from '../../protocol/connection.ts';
import { newMessageId, type EnvelopeBody, type pos } from '../../protocol/messages.ts';
import { tlsConnector, type TlsTarget } from '../../protocol/tls-connector.ts';

type Conn = FrameConnection<pos.v1.Envelope, pos.v1.IEnvelope>;

/** A reply and the request message id it should answer. */
export interface Exchange {
  requestId: string;
  reply: pos.v1.Envelope;
}

export class ConformanceLink {
  /** Messages that answered nothing (pushed commands, stray errors), in arrival order. */
  readonly pushed: pos.v1.Envelope[] = [];
  /** Replies whose correlation id named no request of ours. */
  readonly strays: pos.v1.Envelope[] = [];
  private readonly waiting = new Map<string, (env: pos.v1.Envelope) => void>();
  private readonly pushWaiters = new Set<() => void>();
  private closeReason: AgentError | undefined;

  private constructor(
    private readonly conn: Conn,
    readonly terminalId: string,
  ) {
    conn.on('message', (env) => this.onMessage(env));
    conn.on('close', (reason) => {
      this.closeReason = reason;
      for (const w of this.pushWaiters) w();
    });
  }

  /** Opens the mutual-TLS link and resolves once the handshake is done. */
  static async open(
    target: TlsTarget,
    terminalId: string,
    timeoutMs: number,
  ): Promise<ConformanceLink> {
    const socket = tlsConnector(target)();
    const link = new ConformanceLink(envelopeConnection(socket, { terminalId }), terminalId);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new AgentError('PROTOCOL_TIMEOUT', 'TLS handshake')),
        timeoutMs,
      );
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        resolve();
      });
      void link.conn.waitClosed().then((reason) => {
        clearTimeout(timer);
        reject(reason);
      });
    });
    return link;
  }

  /** Why the link closed; undefined while it is open. */
  get closed(): AgentError | undefined {
    return this.closeReason;
  }

  /** Sends one request and waits for the envelope correlated with it (whatever its body). */
  request(body: EnvelopeBody, timeoutMs: number): Promise<Exchange> {
    const requestId = newMessageId();
    return new Promise<Exchange>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(requestId);
        reject(
          new AgentError(
            'PROTOCOL_TIMEOUT',
            `no reply to ${Object.keys(body)[0]} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.waiting.set(requestId, (reply) => {
        clearTimeout(timer);
        resolve({ requestId, reply });
      });
      try {
        this.send(body, { messageId: requestId });
      } catch (e) {
        clearTimeout(timer);
        this.waiting.delete(requestId);
        reject(e);
      }
    });
  }

  /** Sends an envelope that expects no reply (a CommandResult answering a pushed command). */
  send(body: EnvelopeBody, ids: { messageId?: string; correlationId?: string } = {}): void {
    this.conn.send({
      ...body,
      messageId: ids.messageId ?? newMessageId(),
      correlationId: ids.correlationId ?? '',
      terminalId: this.terminalId,
      sentAtMs: Date.now(),
    });
  }

  /** Waits until `pred` holds over the pushed messages, the link closes, or the time is up. */
  async waitPushed(
    pred: (pushed: pos.v1.Envelope[]) => boolean,
    timeoutMs: number,
  ): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.pushed) && !this.closeReason && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.pushWaiters.delete(wake);
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(wake, Math.max(1, deadline - Date.now()));
        this.pushWaiters.add(wake);
      });
    }
    return pred(this.pushed);
  }

  /** Writes bytes as they are, outside any frame (the bad-input check). */
  writeRaw(bytes: Uint8Array): void {
    this.conn.socket.write(bytes);
  }

  /** Resolves with the close reason once the acquirer (or we) closed the link. */
  waitClosed(timeoutMs: number): Promise<AgentError | undefined> {
    return Promise.race([
      this.conn.waitClosed(),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref()),
    ]);
  }

  async close(): Promise<void> {
    this.conn.end();
    await this.conn.waitClosed();
  }

  private onMessage(env: pos.v1.Envelope): void {
    const waiter = env.correlationId ? this.waiting.get(env.correlationId) : undefined;
    if (waiter) {
      this.waiting.delete(env.correlationId);
      waiter(env);
    } else if (env.correlationId) {
      this.strays.push(env);
    } else {
      this.pushed.push(env);
      for (const w of this.pushWaiters) w();
    }
  }
}
