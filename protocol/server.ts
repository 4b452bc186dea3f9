/**
 * A small mutual-TLS frame server: the acquirer simulator's listening side, and the test
 * acquirers. Client certificates are always requested and always verified against the given CA
 * (there is no option to turn that off), so a handler only ever sees an authenticated peer,
 * named by its certificate's CN (the terminal id).
 */
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../base/log.ts';
import { silentLogger } from '../base/log.ts';
import type { Clock } from '../base/clock.ts';
import { AgentError } from '../base/errors.ts';
import { classifySocketError, envelopeConnection, type FrameConnection } from './connection.ts';
import type { pos } from './messages.ts';

/** An Envelope connection as the server sees it. */
export type ServerConnection = FrameConnection<pos.v1.Envelope, pos.v1.IEnvelope>;

/** Options of startFrameServer. */
export interface FrameServerOptions {
  /** Default 127.0.0.1: the simulator is never reachable from outside the machine. */
  host?: string;
  /** 0 (default) picks a free port; read it from the result. */
  port?: number;
  /** PEM of the CA that client certificates must chain to; the only CA trusted. */
  ca: string | Buffer;
  /** PEM of the server certificate and its key. */
  cert: string | Buffer;
  key: string | Buffer;
  maxFrameBytes?: number;
  /** Envelope decoder of every connection (default decodeEnvelope); see envelopeConnection. */
  decode?: (payload: Uint8Array) => pos.v1.Envelope;
  /** Called for each authenticated connection; `peerCertCN` is the client certificate's CN. */
  onConnection: (conn: ServerConnection, peerCertCN: string) => void;
  /** Called when a client fails the handshake (no cert, wrong CA, expired...). */
  onTlsClientError?: (err: AgentError) => void;
  /** A handshake taking longer than this is dropped. Default 10 s. */
  handshakeTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/** A running frame server. */
export interface FrameServer {
  readonly port: number;
  /** Live authenticated connections. */
  readonly connections: ReadonlySet<ServerConnection>;
  /** Stops listening and destroys every live socket, authenticated or mid-handshake. */
  close(): Promise<void>;
}

function commonName(socket: tls.TLSSocket): string | undefined {
  const cn: unknown = socket.getPeerCertificate().subject?.CN;
  if (typeof cn === 'string' && cn.length > 0) return cn;
  // A certificate with several CNs names no one terminal; refuse rather than pick one.
  return undefined;
}

/** A client the TLS layer refused: logged and reported with the certificate's fault. */
function reportTlsClientError(
  err: Error,
  socket: tls.TLSSocket,
  options: FrameServerOptions,
): void {
  const logger = options.logger ?? silentLogger();
  // Node verifies the client certificate itself and just drops the socket, so the error is a
  // bare hang-up; the certificate's fault (CERT_HAS_EXPIRED, ...) is on the socket.
  const authorizationError = socket.authorizationError
    ? String(socket.authorizationError)
    : undefined;
  const cause = classifySocketError(err);
  const refused = new AgentError(
    'PROTOCOL_TLS',
    `TLS client refused: ${authorizationError ?? cause.message}`,
    { ...cause.context, authorizationError },
  );
  logger.info({ code: refused.code, context: refused.context }, 'TLS client refused');
  options.onTlsClientError?.(refused);
}

/** A verified client: framed, tracked until it closes and handed to onConnection with its CN. */
function acceptSecure(
  socket: tls.TLSSocket,
  options: FrameServerOptions,
  connections: Set<ServerConnection>,
): void {
  const logger = options.logger ?? silentLogger();
  const cn = socket.authorized ? commonName(socket) : undefined;
  if (cn === undefined) {
    // Unreachable with rejectUnauthorized, kept as a second lock on the door.
    logger.warn({ authorized: socket.authorized }, 'client without a usable certificate dropped');
    options.onTlsClientError?.(
      new AgentError('PROTOCOL_TLS', 'client certificate has no usable CN', {
        authorized: socket.authorized,
      }),
    );
    socket.destroy();
    return;
  }
  const conn = envelopeConnection(socket, {
    maxFrameBytes: options.maxFrameBytes,
    decode: options.decode,
    logger,
    clock: options.clock,
  });
  connections.add(conn);
  conn.once('close', () => connections.delete(conn));
  try {
    options.onConnection(conn, cn);
  } catch (err) {
    logger.error({ err }, 'frame server onConnection threw; dropping the connection');
    conn.destroy();
  }
}

/** Listens and resolves with the bound TCP port. */
async function listen(server: tls.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') {
    server.close();
    throw new AgentError('PROTOCOL_TLS', 'frame server has no TCP address');
  }
  return address.port;
}

/** Starts a mutual-TLS frame server; resolves once it listens. */
export async function startFrameServer(options: FrameServerOptions): Promise<FrameServer> {
  const logger = options.logger ?? silentLogger();
  const connections = new Set<ServerConnection>();
  const rawSockets = new Set<Socket>();

  const server = tls.createServer({
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
  });

  // Tracked from the TCP accept on, so close() also ends sockets stuck in the handshake.
  server.on('connection', (raw: Socket) => {
    rawSockets.add(raw);
    raw.once('close', () => rawSockets.delete(raw));
  });

  server.on('tlsClientError', (err, socket: tls.TLSSocket) =>
    reportTlsClientError(err, socket, options),
  );
  server.on('secureConnection', (socket: tls.TLSSocket) =>
    acceptSecure(socket, options, connections),
  );
  server.on('error', (err) => logger.error({ err }, 'frame server error'));

  const port = await listen(server, options.port ?? 0, options.host ?? '127.0.0.1');

  let closing: Promise<void> | undefined;
  return {
    port,
    connections,
    close(): Promise<void> {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const live = [...connections];
        for (const conn of live) conn.destroy();
        for (const raw of rawSockets) raw.destroy();
        // Resolve only once every socket has closed, so callers (and tests) leave nothing behind.
        await Promise.all([stopped, ...live.map((conn) => conn.waitClosed())]);
      })();
      return closing;
    },
  };
}
