/**
 * One framed, message-oriented connection over any byte stream (TLS socket to the acquirer,
 * the simulator's accepted sockets, the payment app's Unix socket, an in-memory Duplex in tests).
 *
 * Bad input is refused, not obeyed or fatal: a malformed, oversized or truncated frame emits a
 * typed 'protocol-error', answers with an ErrorReply frame where the stream is still writable,
 * then closes the connection. Nothing read after the bad frame is ever parsed.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { AgentError, toAgentError } from '../base/errors.ts';
import type { Logger } from '../base/log.ts';
import { silentLogger } from '../base/log.ts';
import type { Clock } from '../base/clock.ts';
import { systemClock } from '../base/clock.ts';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encodeFrame, frameHeader } from './framer.ts';
import {
  decodeEnvelope,
  decodeLocalReply,
  decodeLocalRequest,
  encodeEnvelope,
  encodeLocalReply,
  encodeLocalRequest,
  errorReplyFor,
  newMessageId,
  type pos,
} from './messages.ts';

/** Events of a FrameConnection. */
export interface FrameConnectionEvents<In> {
  /** A decoded message, in arrival order, with the payload bytes it was decoded from. */
  message: [msg: In, payload: Buffer];
  /** The peer sent bad input; the connection is closing. Never named 'error', so it never throws. */
  'protocol-error': [err: AgentError];
  /** Emitted once, after the stream closed; `reason` says why (PROTOCOL_DISCONNECTED if clean). */
  close: [reason: AgentError];
}

/** Options of a FrameConnection. */
export interface FrameConnectionOptions<In, Out> {
  socket: Duplex;
  /** Payload bytes to a message; must throw (ideally AgentError PROTOCOL_MALFORMED) on bad bytes. */
  decode: (payload: Uint8Array) => In;
  encode: (msg: Out) => Uint8Array;
  /** Largest payload accepted and sent. Default 1 MiB. */
  maxFrameBytes?: number;
  /** The message to send before closing on bad input; undefined sends nothing. */
  errorReply?: (err: AgentError) => Out | undefined;
  logger?: Logger;
  /** How long an ending connection may take to flush before it is destroyed. Default 1000 ms. */
  closeGraceMs?: number;
}

// OpenSSL's own errors, and every X.509 verification code Node reports on a socket (a server
// certificate made for client authentication fails with INVALID_PURPOSE, a CA that is not one
// with INVALID_CA): none of them is a network fault a retry would fix.
const tlsErrorCode =
  /^(ERR_SSL_|ERR_TLS_|ERR_OSSL_|CERT_|CRL_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH$|INVALID_PURPOSE$|INVALID_CA$|PATH_LENGTH_EXCEEDED$|ERROR_IN_CERT_|ERROR_IN_CRL_)/;

/**
 * Maps a socket error to PROTOCOL_TLS (handshake or certificate problems, which retrying will not
 * fix without a technician) or PROTOCOL_DISCONNECTED (the network).
 */
export function classifySocketError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const e = err as { code?: unknown; library?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const isTls = tlsErrorCode.test(code) || e.library === 'SSL routines';
  return new AgentError(
    isTls ? 'PROTOCOL_TLS' : 'PROTOCOL_DISCONNECTED',
    `${isTls ? 'TLS failure' : 'connection lost'}: ${String(e.message ?? err)}`,
    { socketError: code || undefined },
    { cause: err },
  );
}

/** Payloads from this size on are written without copying them into their frame. */
const LARGE_PAYLOAD = 64 * 1024;

/** A framed connection carrying messages of type `In` in and `Out` out. */
export class FrameConnection<In, Out> extends EventEmitter<FrameConnectionEvents<In>> {
  readonly socket: Duplex;
  readonly maxFrameBytes: number;
  private readonly decoder: FrameDecoder;
  private readonly decodeMessage: (payload: Uint8Array) => In;
  private readonly encodeMessage: (msg: Out) => Uint8Array;
  private readonly errorReply: ((err: AgentError) => Out | undefined) | undefined;
  private readonly logger: Logger;
  private readonly closeGraceMs: number;
  private closing = false;
  private failed = false;
  private isClosed = false;
  private reason: AgentError | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly closedPromise: Promise<AgentError>;

  constructor(options: FrameConnectionOptions<In, Out>) {
    super();
    this.socket = options.socket;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.decoder = new FrameDecoder(this.maxFrameBytes);
    this.decodeMessage = options.decode;
    this.encodeMessage = options.encode;
    this.errorReply = options.errorReply;
    this.logger = options.logger ?? silentLogger();
    this.closeGraceMs = options.closeGraceMs ?? 1000;
    this.closedPromise = new Promise((resolve) => this.once('close', resolve));

    const s = this.socket as Duplex & { setNoDelay?: (on: boolean) => unknown };
    // Frames are small and latency-bound (heartbeats, acks); Nagle would only delay them.
    s.setNoDelay?.(true);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('error', (err) => {
      this.reason ??= classifySocketError(err);
      this.logger.debug({ err, code: this.reason.code }, 'frame connection socket error');
    });
    this.socket.on('close', () => this.onClose());
    if (this.socket.destroyed) queueMicrotask(() => this.onClose());
  }

  /** True once closing started or the stream closed; send() then throws. */
  get closed(): boolean {
    return this.closing || this.isClosed;
  }

  /** Resolves with the close reason once the stream has closed. */
  waitClosed(): Promise<AgentError> {
    return this.closedPromise;
  }

  /**
   * Encodes, frames and writes one message. Returns false when the stream asks the writer to
   * wait for 'drain' (the message is still queued).
   * @throws AgentError PROTOCOL_DISCONNECTED when closed, or the encoder's error.
   */
  send(msg: Out): boolean {
    if (this.closed || !this.socket.writable) {
      throw new AgentError('PROTOCOL_DISCONNECTED', 'the connection is closed', {
        reason: this.reason?.code,
      });
    }
    return this.sendPayload(this.encodeMessage(msg));
  }

  /** Frames and writes a message already encoded (send() is this after encoding). */
  sendPayload(payload: Uint8Array): boolean {
    if (this.closed || !this.socket.writable) {
      throw new AgentError('PROTOCOL_DISCONNECTED', 'the connection is closed', {
        reason: this.reason?.code,
      });
    }
    if (payload.length < LARGE_PAYLOAD) {
      return this.socket.write(encodeFrame(payload, this.maxFrameBytes));
    }
    // A large payload (a detail chunk) follows its length prefix as a write of its own, corked
    // into one, rather than being copied behind it.
    const head = frameHeader(payload.length, this.maxFrameBytes);
    this.socket.cork();
    this.socket.write(head);
    const ok = this.socket.write(payload);
    this.socket.uncork();
    return ok;
  }

  /** Flushes what was sent, then closes; destroys after the grace period if the peer lingers. */
  end(reason?: AgentError): void {
    if (this.isClosed) return;
    this.reason ??= reason;
    if (!this.closing) {
      this.closing = true;
      this.socket.end();
      this.graceTimer = setTimeout(() => this.socket.destroy(), this.closeGraceMs);
      this.graceTimer.unref();
    }
  }

  /** Closes at once, dropping anything unsent. */
  destroy(reason?: AgentError): void {
    this.reason ??= reason;
    this.closing = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closing || this.failed) return;
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.refuse(toAgentError(e, 'PROTOCOL_MALFORMED'));
      return;
    }
    for (const frame of frames) {
      if (this.closing) return;
      let msg: In;
      try {
        msg = this.decodeMessage(frame);
      } catch (e) {
        this.refuse(toAgentError(e, 'PROTOCOL_MALFORMED'));
        return;
      }
      this.deliver(msg, frame);
    }
    if (this.decoder.failure) this.refuse(this.decoder.failure);
  }

  private deliver(msg: In, payload: Buffer): void {
    this.safeEmit('message', msg, payload);
  }

  /** A listener bug must not look like the peer's bad input, nor escape into the socket. */
  private safeEmit<K extends keyof FrameConnectionEvents<In>>(
    event: K,
    ...args: FrameConnectionEvents<In>[K]
  ): void {
    try {
      (this.emit as (e: K, ...a: FrameConnectionEvents<In>[K]) => boolean)(event, ...args);
    } catch (err) {
      this.logger.error({ err, event }, 'frame connection listener threw');
    }
  }

  private onEnd(): void {
    // Our own end() stops reading, so a partial frame then is ours to drop, not the peer's fault.
    if (this.failed || this.closing) return;
    try {
      this.decoder.end();
    } catch (e) {
      this.refuse(toAgentError(e, 'PROTOCOL_FRAME_TRUNCATED'));
    }
  }

  /** Bad input: report it, tell the peer why where we still can, and close. */
  private refuse(err: AgentError): void {
    if (this.failed) return;
    this.failed = true;
    this.reason ??= err;
    this.logger.debug({ code: err.code, context: err.context }, 'frame connection refused input');
    this.safeEmit('protocol-error', err);
    const reply = this.errorReply?.(err);
    if (reply !== undefined && !this.closing && this.socket.writable) {
      try {
        this.socket.write(encodeFrame(this.encodeMessage(reply), this.maxFrameBytes));
      } catch (e) {
        this.logger.debug({ err: e }, 'could not send the error reply');
      }
    }
    this.end(err);
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closing = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.safeEmit(
      'close',
      this.reason ?? new AgentError('PROTOCOL_DISCONNECTED', 'the peer closed the connection'),
    );
  }
}

/** Options shared by the ready-made connection factories below. */
export interface ConnectionFactoryOptions {
  maxFrameBytes?: number;
  /** Envelope decoder (default decodeEnvelope); it must decode exactly as that one does. */
  decode?: (payload: Uint8Array) => pos.v1.Envelope;
  logger?: Logger;
  /** Stamped on error replies. */
  terminalId?: string;
  clock?: Clock;
  closeGraceMs?: number;
}

/** A connection carrying Envelopes both ways (acquirer channel, simulator side). */
export function envelopeConnection(
  socket: Duplex,
  options: ConnectionFactoryOptions = {},
): FrameConnection<pos.v1.Envelope, pos.v1.IEnvelope> {
  const clock = options.clock ?? systemClock;
  return new FrameConnection<pos.v1.Envelope, pos.v1.IEnvelope>({
    socket,
    decode: options.decode ?? decodeEnvelope,
    encode: encodeEnvelope,
    maxFrameBytes: options.maxFrameBytes,
    logger: options.logger,
    closeGraceMs: options.closeGraceMs,
    errorReply: (err) => ({
      messageId: newMessageId(),
      terminalId: options.terminalId ?? '',
      sentAtMs: clock.now(),
      error: errorReplyFor(err),
    }),
  });
}

/** The agent's side of the payment-app socket: LocalRequests in, LocalReplies out. */
export function localServerConnection(
  socket: Duplex,
  options: ConnectionFactoryOptions = {},
): FrameConnection<pos.v1.LocalRequest, pos.v1.ILocalReply> {
  return new FrameConnection<pos.v1.LocalRequest, pos.v1.ILocalReply>({
    socket,
    decode: decodeLocalRequest,
    encode: encodeLocalReply,
    maxFrameBytes: options.maxFrameBytes,
    logger: options.logger,
    closeGraceMs: options.closeGraceMs,
    // The bad frame's request id is unknowable, so the reply carries none.
    errorReply: (err) => ({ requestId: '', error: errorReplyFor(err) }),
  });
}

/** The payment app's side (and tests'): LocalReplies in, LocalRequests out. */
export function localClientConnection(
  socket: Duplex,
  options: ConnectionFactoryOptions = {},
): FrameConnection<pos.v1.LocalReply, pos.v1.ILocalRequest> {
  return new FrameConnection<pos.v1.LocalReply, pos.v1.ILocalRequest>({
    socket,
    decode: decodeLocalReply,
    encode: encodeLocalRequest,
    maxFrameBytes: options.maxFrameBytes,
    logger: options.logger,
    closeGraceMs: options.closeGraceMs,
  });
}
