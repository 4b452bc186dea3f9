/**
 * The agent's long-lived link to the acquirer: mutual TLS, Hello on every connect, heartbeats
 * that measure the clock offset, request/reply correlation, unsolicited messages (commands) to a
 * handler, and reconnection forever with capped exponential backoff and full jitter.
 *
 * Every failure is an AgentError: PROTOCOL_TIMEOUT, PROTOCOL_DISCONNECTED (pending requests are
 * rejected the moment the link drops), PROTOCOL_PEER_ERROR (the acquirer answered with an
 * ErrorReply; its code is in context.peerCode), PROTOCOL_TLS. Bad input from the acquirer is
 * logged with its code, the connection is dropped, and the channel reconnects.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { AgentError, isAgentError, toAgentError } from '../base/errors.ts';
import type { Logger } from '../base/log.ts';
import { silentLogger } from '../base/log.ts';
import { systemClock, type Clock } from '../base/clock.ts';
import { classifySocketError, envelopeConnection } from './connection.ts';
import { errorReplyFor, newMessageId, type EnvelopeBody, type pos } from './messages.ts';
import { PendingRequests } from './pending-requests.ts';
import { encodeDetailChunkEnvelope } from './detail-rows.ts';
import { tlsConnector } from './tls-connector.ts';
import { checkOneBody, unexpected } from './envelope-checks.ts';
import { answerUnsolicited, type Conn } from './unsolicited.ts';
import { UpWaiters } from './up-waiters.ts';
import type {
  AcquirerChannelEvents,
  AcquirerChannelOptions,
  ClockSample,
  UnsolicitedHandler,
  UpInfo,
} from './channel-options.ts';

export { tlsConnector };
export type { AcquirerChannelEvents, AcquirerChannelOptions, ClockSample, UnsolicitedHandler };

/** The agent's client link to the acquirer. */
export class AcquirerChannel extends EventEmitter<AcquirerChannelEvents> {
  /** Handler for envelopes that answer no request of ours. */
  onUnsolicited: UnsolicitedHandler | undefined;
  private readonly opts: AcquirerChannelOptions;
  private readonly connectFn: () => Duplex;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;
  private conn: Conn | undefined;
  private up = false;
  private started = false;
  private closed = false;
  private attempt = 0;
  private upSince = 0;
  private offset: number | undefined;
  private rtt: number | undefined;
  private heartbeatInFlight = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private firstDial: NodeJS.Immediate | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly pending = new PendingRequests();
  private readonly upWaiters = new UpWaiters();

  constructor(options: AcquirerChannelOptions) {
    super();
    this.opts = options;
    if (options.connect) this.connectFn = options.connect;
    else if (options.tls) this.connectFn = tlsConnector(options.tls);
    else throw new AgentError('CONFIG_INVALID', 'the acquirer channel needs `connect` or `tls`');
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger()).child({ component: 'acquirer-channel' });
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 30_000;
    this.onUnsolicited = options.onUnsolicited;
  }

  /** True between a HelloAck and the link dropping. */
  get isUp(): boolean {
    return this.up;
  }

  /** Acquirer time minus local clock time, from the latest Hello or heartbeat round trip. */
  get clockOffsetMs(): number | undefined {
    return this.offset;
  }

  /** Round-trip time of the latest Hello or heartbeat. */
  get rttMs(): number | undefined {
    return this.rtt;
  }

  /** Starts connecting; the channel then keeps itself connected until close(). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    // The first dial on the next turn, not inside the caller's start-up: building the TLS
    // context and the socket takes about 20 ms, and an agent answers "may I transact" without
    // the acquirer. close() before then cancels it like a pending reconnect.
    this.firstDial = setImmediate(() => {
      this.firstDial = undefined;
      this.connectNow();
    });
  }

  /** Resolves once the link is up. @throws PROTOCOL_TIMEOUT, or PROTOCOL_DISCONNECTED on close(). */
  waitUntilUp(timeoutMs: number): Promise<void> {
    if (this.up) return Promise.resolve();
    if (this.closed) return Promise.reject(new AgentError('PROTOCOL_DISCONNECTED'));
    return this.upWaiters.wait(timeoutMs);
  }

  /**
   * Sends `body` (one envelope body field, e.g. `{ batchSubmit }`) and resolves with the reply
   * whose correlation id is this request's message id.
   */
  request(body: EnvelopeBody, options: { timeoutMs?: number } = {}): Promise<pos.v1.Envelope> {
    const conn = this.conn;
    if (!this.up || !conn) {
      const kind = Object.keys(body)[0];
      return Promise.reject(new AgentError('PROTOCOL_DISCONNECTED', undefined, { kind }));
    }
    return this.sendRequest(conn, body, options.timeoutMs ?? this.requestTimeoutMs);
  }

  /**
   * The same as request({ batchDetailChunk }) for a chunk whose rows are already encoded
   * (protocol/detail-rows.ts encodeDetailRows): the same envelope on the wire, without an
   * object per row.
   */
  requestDetailChunk(
    header: Omit<pos.v1.IBatchDetailChunk, 'rows'>,
    rows: Uint8Array | readonly Uint8Array[],
    options: { timeoutMs?: number } = {},
  ): Promise<pos.v1.Envelope> {
    const conn = this.conn;
    if (!this.up || !conn) {
      return Promise.reject(
        new AgentError('PROTOCOL_DISCONNECTED', undefined, { kind: 'batchDetailChunk' }),
      );
    }
    return this.track(
      conn,
      'batchDetailChunk',
      options.timeoutMs ?? this.requestTimeoutMs,
      (head) => conn.sendPayload(encodeDetailChunkEnvelope(head, header, rows)),
    );
  }

  /** Stops for good: no reconnect, pending requests rejected, socket closed, no timers left. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    clearImmediate(this.firstDial);
    this.stopHeartbeat();
    const err = new AgentError('PROTOCOL_DISCONNECTED', 'the acquirer channel was closed');
    this.upWaiters.settle(err);
    this.pending.rejectAll(err);
    const conn = this.conn;
    if (conn) {
      conn.end(err);
      await conn.waitClosed();
    }
  }

  private connectNow(): void {
    if (this.closed) return;
    let conn: Conn;
    try {
      conn = envelopeConnection(this.connectFn(), {
        maxFrameBytes: this.opts.maxFrameBytes,
        logger: this.logger,
        terminalId: this.opts.terminalId,
        clock: this.clock,
      });
    } catch (e) {
      const err = classifySocketError(e);
      this.logger.warn({ code: err.code, reason: err.message }, 'could not open the acquirer link');
      this.scheduleReconnect();
      return;
    }
    this.conn = conn;
    conn.on('message', (env) => this.onMessage(conn, env));
    conn.on('protocol-error', (err) => this.reportBadInput(err));
    conn.on('close', (reason) => this.onConnClose(conn, reason));
    void this.hello(conn);
  }

  private async hello(conn: Conn): Promise<void> {
    const sentAt = this.clock.now();
    const monoSent = this.monotonic();
    try {
      const hello = { ...this.opts.helloFactory(), terminalId: this.opts.terminalId };
      const timeoutMs = this.opts.helloTimeoutMs ?? this.requestTimeoutMs;
      const env = await this.sendRequest(conn, { hello }, timeoutMs);
      if (env.body !== 'helloAck' || !env.helloAck) {
        throw unexpected('the acquirer did not answer Hello with HelloAck', env.body);
      }
      if (conn !== this.conn || this.closed) return;
      const serverTimeMs = env.helloAck.serverTimeMs ?? 0;
      this.sample('hello', sentAt, monoSent, serverTimeMs);
      this.up = true;
      this.upSince = performance.now();
      this.heartbeatTimer = setInterval(() => void this.beat(conn), this.heartbeatIntervalMs);
      const info: UpInfo = {
        serverTimeMs,
        acquirerId: env.helloAck.acquirerId ?? '',
        clockOffsetMs: this.offset ?? 0,
        rttMs: this.rtt ?? 0,
        ...(env.helloAck.headCheck
          ? {
              headCheck: {
                behind: env.helloAck.headCheck.behind === true,
                knownSeq: Number(env.helloAck.headCheck.knownSeq ?? 0),
                knownHash: env.helloAck.headCheck.knownHash ?? '',
                reason: env.helloAck.headCheck.reason ?? '',
              },
            }
          : {}),
      };
      this.logger.info(info, 'acquirer link up');
      this.upWaiters.settle();
      this.emit('up', info);
    } catch (e) {
      if (conn !== this.conn) return;
      const err = toAgentError(e, 'PROTOCOL_UNEXPECTED');
      this.logger.warn({ code: err.code, context: err.context }, 'acquirer handshake failed');
      conn.destroy(err);
    }
  }

  private sendRequest(conn: Conn, body: EnvelopeBody, timeoutMs: number): Promise<pos.v1.Envelope> {
    let kind: string;
    try {
      kind = checkOneBody(body);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.track(conn, kind, timeoutMs, (head) => conn.send({ ...body, ...head }));
  }

  /** Sends a request with `send` (given its envelope header) and waits for its reply. */
  private track(
    conn: Conn,
    kind: string,
    timeoutMs: number,
    send: (head: { messageId: string; terminalId: string; sentAtMs: number }) => void,
  ): Promise<pos.v1.Envelope> {
    const messageId = newMessageId();
    const reply = this.pending.track(messageId, kind, timeoutMs);
    try {
      const { terminalId } = this.opts;
      send({ messageId, terminalId, sentAtMs: this.clock.now() });
    } catch (e) {
      const err = toAgentError(e, 'PROTOCOL_DISCONNECTED');
      this.pending.reject(messageId, err);
      // A link that cannot take a write though nobody is closing it is dead, even when its
      // socket never said so (a TLS socket can end both ways and never emit 'close'): drop it,
      // or the channel stays "up" on it for good and every request fails at once. A link we
      // are already ending (close(), a refusal) is left to finish its graceful close.
      const dead = conn === this.conn && !conn.closed && !this.closed;
      if (dead && isAgentError(err, 'PROTOCOL_DISCONNECTED')) conn.destroy(err);
    }
    return reply;
  }

  private onMessage(conn: Conn, env: pos.v1.Envelope): void {
    if (conn !== this.conn) return;
    if (env.terminalId && env.terminalId !== this.opts.terminalId) {
      this.refuse(conn, unexpected('a message for another terminal arrived', env.body));
    } else if (env.correlationId) {
      // A reply nobody waits for arrived after its request timed out; it is dropped.
      if (!this.pending.settle(env)) this.logger.debug({ kind: env.body }, 'late reply dropped');
    } else if (env.body === 'error') {
      // Never answered: replying to an error invites an error loop.
      const { code, message } = env.error ?? {};
      this.logger.warn({ peerCode: code, peerMessage: message }, 'the acquirer reported an error');
    } else if (!this.up || !env.messageId) {
      this.refuse(conn, unexpected('unsolicited message before HelloAck or without id', env.body));
    } else {
      answerUnsolicited(conn, env, this.onUnsolicited, {
        terminalId: this.opts.terminalId,
        clock: this.clock,
        logger: this.logger,
      });
    }
  }

  private reportBadInput(err: AgentError): void {
    this.logger.warn({ code: err.code, context: err.context }, 'bad input from the acquirer');
    this.emit('protocol-error', err);
  }

  /** Input we will not act on: reported like a bad frame, answered, then the link is dropped. */
  private refuse(conn: Conn, err: AgentError): void {
    this.reportBadInput(err);
    try {
      const { terminalId } = this.opts;
      const error = errorReplyFor(err);
      conn.send({ messageId: newMessageId(), terminalId, sentAtMs: this.clock.now(), error });
    } catch {
      // The link is already going; the error reply was a courtesy.
    }
    conn.end(err);
  }

  private monotonic(): number {
    return this.clock.monotonic?.() ?? performance.now();
  }

  private sample(
    kind: ClockSample['kind'],
    sentAt: number,
    monoSent: number,
    serverTimeMs: number,
  ) {
    const receivedAt = this.clock.now();
    const monoReceived = this.monotonic();
    // The server read its clock about halfway through the round trip.
    const localMidMs = (sentAt + receivedAt) / 2;
    this.offset = Math.round(serverTimeMs - localMidMs);
    this.rtt = receivedAt - sentAt;
    const monoMidMs = (monoSent + monoReceived) / 2;
    this.emit('clock-sample', { kind, serverTimeMs, localMidMs, monoMidMs, rttMs: this.rtt });
  }

  private async beat(conn: Conn): Promise<void> {
    if (this.heartbeatInFlight || conn !== this.conn || !this.up) return;
    this.heartbeatInFlight = true;
    const sentAt = this.clock.now();
    const monoSent = this.monotonic();
    try {
      const heartbeat = { ...this.opts.heartbeatFactory?.(), clientTimeMs: sentAt };
      const env = await this.sendRequest(conn, { heartbeat }, this.requestTimeoutMs);
      if (conn !== this.conn) return;
      if (env.body !== 'heartbeatAck' || !env.heartbeatAck) {
        this.refuse(conn, unexpected('Heartbeat not answered with HeartbeatAck', env.body));
        return;
      }
      this.sample('heartbeat', sentAt, monoSent, env.heartbeatAck.serverTimeMs ?? 0);
      this.emit('heartbeat', { clockOffsetMs: this.offset ?? 0, rttMs: this.rtt ?? 0 });
    } catch (e) {
      if (conn !== this.conn) return;
      const err = toAgentError(e, 'PROTOCOL_UNEXPECTED');
      this.logger.warn({ code: err.code }, 'heartbeat failed');
      // A link that cannot carry a heartbeat carries nothing: drop it and reconnect.
      if (isAgentError(err, 'PROTOCOL_TIMEOUT')) conn.destroy(err);
    } finally {
      this.heartbeatInFlight = false;
    }
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private onConnClose(conn: Conn, reason: AgentError): void {
    if (conn !== this.conn) return;
    this.conn = undefined;
    const wasUp = this.up;
    this.up = false;
    this.stopHeartbeat();
    this.pending.rejectAll(
      new AgentError('PROTOCOL_DISCONNECTED', undefined, { reason: reason.code }),
    );
    // Our own close at shutdown is routine: warn only when the link went down by itself.
    this.logger[this.closed ? 'info' : 'warn'](
      { code: reason.code, reason: reason.message },
      wasUp ? 'link down' : 'link failed',
    );
    if (wasUp) {
      // Only a link that stayed up a while earns a fast retry; a flapping one keeps backing off.
      if (performance.now() - this.upSince >= this.heartbeatIntervalMs) this.attempt = 0;
      this.emit('down', reason);
    } else {
      this.emit('link-failed', reason);
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const { initialMs, maxMs } = this.opts.backoff ?? { initialMs: 500, maxMs: 60_000 };
    const cap = Math.min(maxMs, initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    // Full jitter: terminals that lost the acquirer together do not return together.
    const delayMs = Math.floor((this.opts.random ?? Math.random)() * cap);
    this.logger.debug({ delayMs, attempt: this.attempt }, 'reconnecting after backoff');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connectNow();
    }, delayMs);
  }
}
