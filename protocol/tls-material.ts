/**
 * Makes the TLS material for the demo and the tests with the openssl CLI: an acquirer CA, a
 * server certificate for localhost, and one client certificate per terminal (CN = terminal id).
 * Test helpers add what must be refused: a client of an unrelated CA, a server of an unrelated
 * CA, and an expired client certificate from the real CA.
 *
 * openssl runs through execFileSync with argument arrays (no shell), terminal ids are checked
 * against a strict pattern before they reach a subject line, and private keys are written 0600
 * by this process (openssl prints them to stdout), so no key is ever world-readable, even briefly.
 * Everything is idempotent: what exists is reused, what is missing is made.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentError } from '../base/errors.ts';
import { writeSecretFile } from '../base/secret-file.ts';

/** A certificate and its private key, as PEM text. */
interface CertAndKey {
  cert: string;
  key: string;
}

/** The material the agent and the acquirer simulator need. */
export interface TlsMaterial {
  dir: string;
  /** PEM of the acquirer CA: the only CA either side trusts. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  clients: Record<string, CertAndKey>;
}

/** Material that must be refused, for tests. */
export interface TestTlsMaterial {
  /** A CA unrelated to the acquirer's. */
  otherCaCert: string;
  /** A client certificate (CN = the first terminal id given) signed by the unrelated CA. */
  otherCaClient: CertAndKey;
  /** A localhost server certificate signed by the unrelated CA. */
  otherCaServer: CertAndKey;
  /** A client certificate from the real CA whose validity ended in 2020. */
  expiredClient: CertAndKey;
}

/** Options of the generators. */
export interface TlsMaterialOptions {
  /** The openssl binary; default `openssl` from PATH. */
  openssl?: string;
}

const terminalIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

// Our own config, so the host's openssl.cnf (which differs between distributions) cannot add
// or clash with extensions.
const opensslConfig = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
default_ca = backdating_ca
[backdating_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
commonName = supplied
`;

class OpenSsl {
  constructor(
    private readonly bin: string,
    private readonly configPath: string,
  ) {}

  run(args: string[], cwd?: string): string {
    try {
      return execFileSync(this.bin, args, {
        cwd,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: string };
      if (err.code === 'ENOENT') {
        throw new AgentError(
          'PROTOCOL_TLS',
          `openssl was not found (${this.bin}); install openssl to make the TLS certificates`,
          { openssl: this.bin },
          { cause: e },
        );
      }
      throw new AgentError(
        'PROTOCOL_TLS',
        `openssl ${args[0]} failed: ${firstLine(String(err.stderr ?? err.message))}`,
        { openssl: this.bin, command: args[0] },
        { cause: e },
      );
    }
  }

  /** A new EC P-256 private key, written 0600 atomically. */
  newKey(path: string): void {
    const pem = this.run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    writeSecretFile(path, pem);
  }

  csr(keyPath: string, cn: string): string {
    // prettier-ignore
    return this.run(['req', '-new', '-config', this.configPath, '-key', keyPath, '-subj', `/CN=${cn}`]);
  }

  selfSignedCa(keyPath: string, cn: string, certPath: string): void {
    // prettier-ignore
    const pem = this.run([
      'req', '-x509', '-new', '-config', this.configPath, '-extensions', 'v3_ca',
      '-key', keyPath, '-subj', `/CN=${cn}`, '-days', '3650', '-sha256', '-set_serial', serial(),
    ]);
    writeSecretFile(certPath, pem);
  }

  /** Signs a CSR (PEM on disk) with the CA; `profile` is a section of our config. */
  sign(
    csrPath: string,
    ca: { cert: string; key: string },
    profile: string,
    certPath: string,
  ): void {
    // prettier-ignore
    const pem = this.run([
      'x509', '-req', '-in', csrPath, '-CA', ca.cert, '-CAkey', ca.key,
      '-extfile', this.configPath, '-extensions', profile,
      '-days', '825', '-sha256', '-set_serial', serial(),
    ]);
    writeSecretFile(certPath, pem);
  }
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}

function serial(): string {
  // Positive (top bit clear), unique enough that no two certificates of a CA share one.
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

function checkTerminalId(id: string): void {
  if (!terminalIdPattern.test(id)) {
    throw new AgentError(
      'CONFIG_INVALID',
      'a terminal id must be 1-64 letters, digits, dot, dash or underscore',
      { terminalId: id },
    );
  }
}

function prepare(dir: string, options: TlsMaterialOptions): OpenSsl {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mkdirSync(join(dir, 'clients'), { recursive: true, mode: 0o700 });
  const configPath = join(dir, 'openssl.cnf');
  if (!existsSync(configPath) || readFileSync(configPath, 'utf8') !== opensslConfig) {
    writeSecretFile(configPath, opensslConfig);
  }
  return new OpenSsl(options.openssl ?? 'openssl', configPath);
}

/**
 * An existing certificate is reused only while it is signed by the current CA and valid for
 * another day, so a CA replaced by hand, or a demo left for two years, heals on the next run.
 */
function reusable(keyPath: string, certPath: string, caCertPath: string): boolean {
  if (!existsSync(keyPath) || !existsSync(certPath)) return false;
  try {
    const cert = new X509Certificate(readFileSync(certPath));
    const ca = new X509Certificate(readFileSync(caCertPath));
    const dayFromNow = Date.now() + 24 * 3600 * 1000;
    return cert.verify(ca.publicKey) && new Date(cert.validTo).getTime() > dayFromNow;
  } catch {
    return false;
  }
}

/** Makes key + CSR + signed cert at `base`.{key,crt} unless both exist and `force` is false. */
function issue(
  ssl: OpenSsl,
  base: string,
  cn: string,
  ca: { cert: string; key: string },
  profile: 'server' | 'client',
  force: boolean,
): CertAndKey {
  const keyPath = `${base}.key`;
  const certPath = `${base}.crt`;
  if (force || !reusable(keyPath, certPath, ca.cert)) {
    ssl.newKey(keyPath);
    const csrPath = `${base}.csr`;
    writeFileSync(csrPath, ssl.csr(keyPath, cn));
    try {
      ssl.sign(csrPath, ca, profile, certPath);
    } finally {
      rmSync(csrPath, { force: true });
    }
  }
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
}

/** Makes a CA at `base`.{key,crt} if missing; returns whether it is new (its certs must be re-issued). */
function ensureCa(
  ssl: OpenSsl,
  base: string,
  cn: string,
): { fresh: boolean; cert: string; key: string } {
  const keyPath = `${base}.key`;
  const certPath = `${base}.crt`;
  const fresh = !existsSync(keyPath) || !existsSync(certPath);
  if (fresh) {
    ssl.newKey(keyPath);
    ssl.selfSignedCa(keyPath, cn, certPath);
  }
  return { fresh, cert: certPath, key: keyPath };
}

/**
 * Makes (first run) or reuses (later runs) the acquirer CA, the localhost server certificate and
 * a client certificate per terminal id in `dir`:
 * `ca.{crt,key}`, `server.{crt,key}`, `clients/<terminal id>.{crt,key}`.
 * @throws AgentError PROTOCOL_TLS if openssl is missing or fails, CONFIG_INVALID on a bad id.
 */
export function ensureTlsMaterial(
  dir: string,
  terminalIds: readonly string[],
  options: TlsMaterialOptions = {},
): TlsMaterial {
  for (const id of terminalIds) checkTerminalId(id);
  dir = resolve(dir);
  const ssl = prepare(dir, options);
  const ca = ensureCa(ssl, join(dir, 'ca'), 'pos-agent acquirer CA');
  const server = issue(ssl, join(dir, 'server'), 'localhost', ca, 'server', ca.fresh);
  const clients: Record<string, CertAndKey> = {};
  for (const id of terminalIds) {
    clients[id] = issue(ssl, join(dir, 'clients', id), id, ca, 'client', ca.fresh);
  }
  return {
    dir,
    caCert: readFileSync(ca.cert, 'utf8'),
    serverCert: server.cert,
    serverKey: server.key,
    clients,
  };
}

/**
 * Test-only material next to what ensureTlsMaterial made in `dir` (call that first):
 * `other-ca.*`, `other-ca-client.*`, `other-ca-server.*` and `expired-client.*`.
 */
export function ensureTestTlsMaterial(
  dir: string,
  terminalId: string,
  options: TlsMaterialOptions = {},
): TestTlsMaterial {
  checkTerminalId(terminalId);
  dir = resolve(dir);
  const ssl = prepare(dir, options);
  const realCa = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  if (!existsSync(realCa.cert) || !existsSync(realCa.key)) {
    throw new AgentError('CONFIG_INVALID', 'run ensureTlsMaterial on this directory first', {
      dir,
    });
  }
  const other = ensureCa(ssl, join(dir, 'other-ca'), 'unrelated CA');
  const otherCaClient = issue(
    ssl,
    join(dir, 'other-ca-client'),
    terminalId,
    other,
    'client',
    other.fresh,
  );
  const otherCaServer = issue(
    ssl,
    join(dir, 'other-ca-server'),
    'localhost',
    other,
    'server',
    other.fresh,
  );
  return {
    otherCaCert: readFileSync(other.cert, 'utf8'),
    otherCaClient,
    otherCaServer,
    expiredClient: ensureExpiredClient(ssl, dir, terminalId, realCa),
  };
}

/**
 * openssl 3.0's `x509 -req` cannot set a start date, so the expired certificate comes from
 * `openssl ca`, which takes -startdate/-enddate, run over a throwaway database directory.
 */
function ensureExpiredClient(
  ssl: OpenSsl,
  dir: string,
  terminalId: string,
  ca: { cert: string; key: string },
): CertAndKey {
  const keyPath = join(dir, 'expired-client.key');
  const certPath = join(dir, 'expired-client.crt');
  if (!existsSync(keyPath) || !existsSync(certPath)) {
    const work = join(dir, '.expired-ca-work');
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { mode: 0o700 });
    try {
      writeFileSync(join(work, 'index.txt'), '');
      writeFileSync(join(work, 'serial'), `${serial().slice(2)}\n`);
      ssl.newKey(keyPath);
      writeFileSync(join(work, 'req.csr'), ssl.csr(keyPath, terminalId));
      // prettier-ignore
      const args = [
        'ca', '-batch', '-config', join(dir, 'openssl.cnf'), '-cert', ca.cert, '-keyfile', ca.key,
        '-in', 'req.csr', '-out', 'cert.pem', '-notext', '-extensions', 'client',
        '-startdate', '20200101000000Z', '-enddate', '20200201000000Z',
      ];
      ssl.run(args, work);
      writeSecretFile(certPath, readFileSync(join(work, 'cert.pem'), 'utf8'));
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
}
