import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError, isAgentError } from '../../base/errors.ts';
import { envelopeConnection } from '../../protocol/connection.ts';
import type { pos } from '../../protocol/messages.ts';
import { startFrameServer, type FrameServer } from '../../protocol/server.ts';
import { tlsConnector } from '../../protocol/tls-connector.ts';
import {
  ensureTestTlsMaterial,
  ensureTlsMaterial,
  type TestTlsMaterial,
  type TlsMaterial,
} from '../../protocol/tls-material.ts';

let dir: string;
let material: TlsMaterial;
let bad: TestTlsMaterial;
let server: FrameServer;
const authorised: string[] = [];
const refused: AgentError[] = [];

interface Attempt {
  reply: pos.v1.Envelope | undefined;
  reason: AgentError | undefined;
}

/** Opens a client socket, sends one heartbeat and reports what came back before the close. */
function attempt(socket: tls.TLSSocket): Promise<Attempt> {
  const conn = envelopeConnection(socket);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      conn.destroy();
      resolve({ reply: undefined, reason: new AgentError('PROTOCOL_TIMEOUT') });
    }, 5000);
    conn.once('message', (env) => {
      clearTimeout(timer);
      conn.destroy();
      resolve({ reply: env, reason: undefined });
    });
    conn.once('close', (reason) => {
      clearTimeout(timer);
      resolve({ reply: undefined, reason });
    });
    conn.send({ messageId: 'hb-1', heartbeat: { clientTimeMs: 1 } });
  });
}

function client(extra: Partial<tls.ConnectionOptions>, port = server.port): tls.TLSSocket {
  return tls.connect({
    host: '127.0.0.1',
    port,
    ca: [material.caCert],
    rejectUnauthorized: true,
    ...extra,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pos-tls-'));
  material = ensureTlsMaterial(dir, ['T1', 'T2']);
  bad = ensureTestTlsMaterial(dir, 'T1');
  server = await startFrameServer({
    ca: material.caCert,
    cert: material.serverCert,
    key: material.serverKey,
    onConnection(conn, cn) {
      authorised.push(cn);
      conn.on('message', (env) => {
        conn.send({
          messageId: `reply-${env.messageId}`,
          correlationId: env.messageId,
          heartbeatAck: { clientTimeMs: env.heartbeat?.clientTimeMs ?? 0, serverTimeMs: 2 },
        });
      });
    },
    onTlsClientError: (err) => refused.push(err),
  });
});

afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('TLS material', () => {
  it('is made once and reused, with private keys readable by the owner only', () => {
    const again = ensureTlsMaterial(dir, ['T1', 'T2']);
    expect(again.caCert).toBe(material.caCert);
    expect(again.clients.T1).toEqual(material.clients.T1);
    for (const key of ['ca.key', 'server.key', 'clients/T1.key', 'expired-client.key']) {
      expect(statSync(join(dir, key)).mode & 0o777).toBe(0o600);
    }
  });

  it('adds a client for a new terminal without touching the CA', () => {
    const more = ensureTlsMaterial(dir, ['T1', 'T2', 'T3']);
    expect(more.caCert).toBe(material.caCert);
    expect(more.clients.T3?.cert).toContain('BEGIN CERTIFICATE');
  });

  it('re-issues a certificate that no longer chains to the acquirer CA', () => {
    copyFileSync(join(dir, 'other-ca-client.crt'), join(dir, 'clients', 'T2.crt'));
    const healed = ensureTlsMaterial(dir, ['T2']).clients.T2;
    const ca = new X509Certificate(material.caCert);
    expect(new X509Certificate(healed?.cert ?? '').verify(ca.publicKey)).toBe(true);
    expect(new X509Certificate(healed?.cert ?? '').subject).toContain('CN=T2');
  });

  it('says clearly when openssl is missing', () => {
    const other = mkdtempSync(join(tmpdir(), 'pos-tls-noossl-'));
    try {
      ensureTlsMaterial(other, ['T1'], { openssl: join(other, 'no-such-openssl') });
      expect.unreachable();
    } catch (e) {
      expect(isAgentError(e, 'PROTOCOL_TLS')).toBe(true);
      expect((e as Error).message).toMatch(/openssl was not found/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('refuses a terminal id that could inject into a certificate subject', () => {
    expect(() => ensureTlsMaterial(dir, ['T1/CN=evil'])).toThrow(AgentError);
  });
});

describe('mutual TLS', () => {
  it('lets a terminal with a certificate from the acquirer CA exchange frames', async () => {
    const t1 = material.clients.T1;
    if (!t1) throw new Error('no T1 material');
    const connect = tlsConnector({
      host: '127.0.0.1',
      port: server.port,
      ca: material.caCert,
      ...t1,
    });
    const result = await attempt(connect());
    expect(result.reply?.correlationId).toBe('hb-1');
    expect(result.reply?.heartbeatAck?.clientTimeMs).toBe(1);
    expect(authorised).toContain('T1');
  });

  it('also verifies the server by host name when one is given', async () => {
    const t1 = material.clients.T1;
    if (!t1) throw new Error('no T1 material');
    const ok = tlsConnector({ host: 'localhost', port: server.port, ca: material.caCert, ...t1 });
    expect((await attempt(ok())).reply).toBeDefined();
    const wrongName = tlsConnector({
      host: '127.0.0.1',
      port: server.port,
      ca: material.caCert,
      servername: 'acquirer.example',
      ...t1,
    });
    const result = await attempt(wrongName());
    expect(result.reply).toBeUndefined();
    expect(result.reason?.code).toBe('PROTOCOL_TLS');
  });

  const refusedClients: Array<[string, () => Partial<tls.ConnectionOptions>, RegExp]> = [
    ['with no certificate', () => ({}), /CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN/],
    ['with a certificate from another CA', () => bad.otherCaClient, /UNABLE_TO_(GET|VERIFY)/],
    [
      'with an expired certificate from the acquirer CA',
      () => bad.expiredClient,
      /CERT_HAS_EXPIRED/,
    ],
  ];
  for (const [name, options, why] of refusedClients) {
    it(`refuses a client ${name}`, async () => {
      const before = { authorised: authorised.length, refused: refused.length };
      const result = await attempt(client(options()));
      expect(result.reply).toBeUndefined();
      expect(result.reason).toBeInstanceOf(AgentError);
      // TLS 1.3 clients finish their side first and then hear the server's alert, or a reset.
      expect(['PROTOCOL_TLS', 'PROTOCOL_DISCONNECTED']).toContain(result.reason?.code);
      expect(authorised.length).toBe(before.authorised);
      // The server logs the refusal as soon as the handshake fails; give it a moment to land.
      await expect.poll(() => refused.length).toBeGreaterThan(before.refused);
      const last = refused.at(-1);
      expect(last?.code).toBe('PROTOCOL_TLS');
      expect(`${last?.message} ${JSON.stringify(last?.context)}`).toMatch(why);
    });
  }

  it('refuses a server whose certificate comes from another CA', async () => {
    const impostorSeen: string[] = [];
    const impostor = await startFrameServer({
      ca: material.caCert,
      cert: bad.otherCaServer.cert,
      key: bad.otherCaServer.key,
      onConnection: (_conn, cn) => impostorSeen.push(cn),
    });
    try {
      const t1 = material.clients.T1;
      if (!t1) throw new Error('no T1 material');
      const connect = tlsConnector({
        host: '127.0.0.1',
        port: impostor.port,
        ca: material.caCert,
        ...t1,
      });
      const result = await attempt(connect());
      expect(result.reply).toBeUndefined();
      expect(result.reason?.code).toBe('PROTOCOL_TLS');
      expect(result.reason?.context.socketError).toMatch(/UNABLE_TO_VERIFY|SELF_SIGNED|CERT/);
      // Smuggling rejectUnauthorized: false in changes nothing: the connector builds its options.
      const smuggled = { ...t1, rejectUnauthorized: false } as typeof t1;
      const again = tlsConnector({
        host: '127.0.0.1',
        port: impostor.port,
        ca: material.caCert,
        ...smuggled,
      });
      expect((await attempt(again())).reason?.code).toBe('PROTOCOL_TLS');
      expect(impostorSeen).toEqual([]);
    } finally {
      await impostor.close();
    }
  });

  it('needs a pinned CA, certificate and key to build a connector', () => {
    const t1 = material.clients.T1;
    if (!t1) throw new Error('no T1 material');
    const target = { host: '127.0.0.1', port: server.port, ca: material.caCert, ...t1 };
    expect(() => tlsConnector({ ...target, ca: '' })).toThrow(AgentError);
    expect(() => tlsConnector({ ...target, key: '' })).toThrow(AgentError);
  });

  it('destroys live connections on close', async () => {
    const t1 = material.clients.T1;
    if (!t1) throw new Error('no T1 material');
    const local = await startFrameServer({
      ca: material.caCert,
      cert: material.serverCert,
      key: material.serverKey,
      onConnection: () => {},
    });
    const conn = envelopeConnection(
      tlsConnector({ host: '127.0.0.1', port: local.port, ca: material.caCert, ...t1 })(),
    );
    await expect.poll(() => local.connections.size).toBe(1);
    await local.close();
    const reason = await conn.waitClosed();
    expect(reason).toBeInstanceOf(AgentError);
    expect(local.connections.size).toBe(0);
  });
});
