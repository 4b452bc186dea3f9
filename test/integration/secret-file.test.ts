/**
 * One writer for every key and certificate (base/secret-file.ts): temp file in the same
 * directory, fsync, rename, directory fsync, mode 0600. Proved from the outside: a real child
 * process is SIGKILLed half way through writing the card token key (and the terminal's signing
 * key), and the next start on that directory still works, with a whole key and no stale temp.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { destroySecretFile, writeSecretFile } from '../../base/secret-file.ts';
import { TokenKeyFile } from '../../agent/policy/card.ts';
import { generateEd25519, TerminalKeyFile } from '../../agent/policy/keys.ts';
import type { KeyObject } from 'node:crypto';
import { openCore } from '../../agent/runtime/core.ts';
import { activateForTest } from '../fixtures/core.ts';
import { ensureTlsMaterial } from '../../protocol/tls-material.ts';

const CHILD = path.join(import.meta.dirname, '..', 'fixtures', 'secret-writer-child.ts');
const dirs: string[] = [];
const fresh = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'pos-secret-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Runs the child until it reports it is half way through the write, then SIGKILLs it. */
async function killMidWrite(kind: 'token' | 'signing', file: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, SECRET_CHILD_FILE: file, SECRET_CHILD_KIND: kind },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(child, 'exit');
  const written = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /mid-write (.+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code} early: ${err}`)));
  });
  child.kill('SIGKILL');
  const [, signal] = (await exited) as [number | null, string | null];
  expect(signal).toBe('SIGKILL');
  return written;
}

const temps = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith('.tmp'));

describe('a key write killed half way', () => {
  it('leaves no token key under its name, and the next start makes a whole one', async () => {
    const dataDir = fresh();
    const file = path.join(dataDir, 'keys', 'token.key');
    const written = await killMidWrite('token', file);
    // The half-written bytes are in a temp beside the key, never in the key itself.
    expect(path.dirname(written)).toBe(path.dirname(file));
    expect(written).not.toBe(file);
    expect(existsSync(file)).toBe(false);
    expect(temps(path.dirname(file))).toEqual([path.basename(written)]);
    expect(statSync(written).size).toBe(16);

    // The next start: an activated core tokenises a card under a new whole key.
    const core = openCore({ terminalId: 'TSECRET1', dataDir });
    try {
      activateForTest(core);
      const sale = core.payments.record({
        type: 'sale',
        amount: 10_000,
        card: { pan: '4111111111111111' },
      });
      expect(sale.maskedPan).toBe('411111******1111');
    } finally {
      core.close();
    }
    expect(readFileSync(file)).toHaveLength(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(temps(path.dirname(file))).toEqual([]);
  });

  it('leaves no signing key under its name, and the next activation makes a whole one', async () => {
    const file = path.join(fresh(), 'keys', 'terminal-ed25519.pem');
    await killMidWrite('signing', file);
    expect(existsSync(file)).toBe(false);
    const key = new TerminalKeyFile(file).loadOrCreate();
    expect(key.asymmetricKeyType).toBe('ed25519');
    expect(new TerminalKeyFile(file).load()?.export({ format: 'pem', type: 'pkcs8' })).toBe(
      key.export({ format: 'pem', type: 'pkcs8' }),
    );
    expect(temps(path.dirname(file))).toEqual([]);
  });

  it('an empty key left by the old in-place writer is replaced, not refused', () => {
    const dataDir = fresh();
    const token = path.join(dataDir, 'keys', 'token.key');
    const signing = path.join(dataDir, 'keys', 'terminal-ed25519.pem');
    mkdirSync(path.dirname(token), { recursive: true });
    writeFileSync(token, '');
    writeFileSync(signing, '');
    expect(new TokenKeyFile(token).load(true)).toHaveLength(32);
    expect(new TerminalKeyFile(signing).loadOrCreate().asymmetricKeyType).toBe('ed25519');
    // A key of the wrong length is damage, not a crash: still refused.
    writeFileSync(token, Buffer.alloc(31, 1));
    expect(() => new TokenKeyFile(token).load(true)).toThrow(
      expect.objectContaining({ code: 'CARD_KEY_MISSING' }),
    );
  });
});

describe('the terminal signing key, kept parsed', () => {
  const pem = (k: KeyObject | undefined) => k?.export({ format: 'pem', type: 'pkcs8' });

  it("is the file's key: parsed once, read again when the file is replaced or removed", () => {
    const file = path.join(fresh(), 'keys', 'terminal-ed25519.pem');
    const keys = new TerminalKeyFile(file);
    const made = keys.loadOrCreate();
    const first = keys.load();
    expect(pem(first)).toBe(pem(made));
    expect(keys.load()).toBe(first); // the same object: not parsed again
    // Replaced from outside (a restore, a re-key by hand): the new key, not the remembered one.
    const other = generateEd25519().privateKey;
    writeSecretFile(file, other.export({ format: 'pem', type: 'pkcs8' }));
    expect(pem(keys.load())).toBe(pem(other));
    rmSync(file);
    expect(keys.load()).toBeUndefined();
    // Destroyed through the agent: nothing left to sign with, even from memory.
    const again = keys.loadOrCreate();
    expect(pem(again)).not.toBe(pem(other));
    keys.destroy();
    expect(keys.load()).toBeUndefined();
  });
});

describe('writeSecretFile', () => {
  it('writes owner-only whatever the umask, leaves no temp, and replaces atomically', () => {
    const file = path.join(fresh(), 'a', 'b', 'secret.pem');
    const old = process.umask(0);
    try {
      writeSecretFile(file, 'first');
      writeSecretFile(file, 'second');
    } finally {
      process.umask(old);
    }
    expect(readFileSync(file, 'utf8')).toBe('second');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(temps(path.dirname(file))).toEqual([]);
  });

  it('exclusive refuses to replace an existing key and leaves it as it was', () => {
    const file = path.join(fresh(), 'key');
    writeSecretFile(file, 'winner', { exclusive: true });
    expect(() => writeSecretFile(file, 'loser', { exclusive: true })).toThrow(
      expect.objectContaining({ code: 'EEXIST' }),
    );
    expect(readFileSync(file, 'utf8')).toBe('winner');
    expect(temps(path.dirname(file))).toEqual([]);
  });

  it('destroySecretFile removes the key and is a no-op when it is gone', () => {
    const file = path.join(fresh(), 'key');
    writeSecretFile(file, 'secret');
    destroySecretFile(file);
    expect(existsSync(file)).toBe(false);
    expect(() => destroySecretFile(file)).not.toThrow();
  });

  it('every TLS key and certificate is written owner-only', () => {
    const dir = fresh();
    ensureTlsMaterial(dir, ['T1']);
    for (const name of ['ca.key', 'ca.crt', 'server.key', 'server.crt', 'clients/T1.key']) {
      expect(statSync(path.join(dir, name)).mode & 0o777, name).toBe(0o600);
    }
    expect(temps(dir)).toEqual([]);
  });
});
