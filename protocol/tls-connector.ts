/**
 * How the agent opens its mutual-TLS link to the acquirer. Verification is always on: there is
 * deliberately no way to pass rejectUnauthorized: false, and the acquirer CA replaces the
 * system CA store, so only a server certificate issued by the acquirer is accepted.
 */
import { isIP } from 'node:net';
import tls from 'node:tls';
import { AgentError } from '../base/errors.ts';

/** Where and how to reach the acquirer over mutual TLS. */
export interface TlsTarget {
  host: string;
  port: number;
  /** PEM of the acquirer CA: pinned as the only CA trusted for the server certificate. */
  ca: string | Buffer;
  /** PEM of this terminal's client certificate and key. */
  cert: string | Buffer;
  key: string | Buffer;
  /** Name the server certificate must carry; defaults to `host` unless it is an IP address. */
  servername?: string;
}

/** A connect function for AcquirerChannel that opens a verified mutual-TLS socket. */
export function tlsConnector(target: TlsTarget): () => tls.TLSSocket {
  if (!target.ca || !target.cert || !target.key) {
    throw new AgentError('CONFIG_INVALID', 'the acquirer link needs a CA, a certificate and a key');
  }
  // SNI must be a host name; for an IP the certificate's IP SAN is checked against `host`.
  const servername = target.servername ?? (isIP(target.host) ? undefined : target.host);
  return () =>
    tls.connect({
      host: target.host,
      port: target.port,
      ca: [target.ca],
      cert: target.cert,
      key: target.key,
      servername,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
}
