import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { AgentError } from '../../base/errors.ts';
import { destroySecretFile, isEmptyFile, writeSecretFile } from '../../base/secret-file.ts';

/**
 * Ed25519 helpers. The acquirer's command key is pinned as raw 32 bytes; the terminal's
 * own key (made at activation) signs command results and lives in a 0600 file that is
 * destroyed at deactivation.
 */

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** A public key object from the raw 32 bytes carried on the wire. */
export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32)
    throw new AgentError('COMMAND_NO_KEY', 'an Ed25519 public key is 32 bytes');
  return createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, Buffer.from(raw)]),
    format: 'der',
    type: 'spki',
  });
}

/** The raw 32 bytes of an Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** Verifies without ever throwing: malformed keys or signatures simply do not verify. */
export function verifyEd25519(
  publicKey: KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (signature.length !== 64) return false;
  try {
    return verify(null, data, publicKey, signature);
  } catch {
    return false;
  }
}

export function signEd25519(privateKey: KeyObject, data: Uint8Array): Buffer {
  return sign(null, data, privateKey);
}

export function generateEd25519(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/** The terminal's own signing key file. */
export class TerminalKeyFile {
  private parsed: { id: string; key: KeyObject } | undefined;

  constructor(readonly file: string) {}

  exists(): boolean {
    return existsSync(this.file);
  }

  /**
   * Loads the key, making one the first time (at activation). An empty file (an older
   * in-place writer killed mid-create) never signed anything and is replaced.
   */
  loadOrCreate(): KeyObject {
    if (isEmptyFile(this.file)) rmSync(this.file, { force: true });
    const existing = this.load();
    if (existing) return existing;
    const { privateKey } = generateEd25519();
    try {
      writeSecretFile(this.file, privateKey.export({ format: 'pem', type: 'pkcs8' }), {
        exclusive: true,
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST')
        return createPrivateKey(readFileSync(this.file));
      throw e;
    }
    return privateKey;
  }

  /**
   * The key as the file holds it now. Parsed once and kept while the file is the same one
   * (inode, size, mtime): every command result is signed, and parsing the PEM each time was a
   * quarter of a lock's CPU. A file replaced or removed from outside is read again.
   */
  load(): KeyObject | undefined {
    const st = statSync(this.file, { throwIfNoEntry: false, bigint: true });
    if (!st) return (this.parsed = undefined);
    const id = `${st.ino}:${st.size}:${st.mtimeNs}`;
    if (this.parsed?.id !== id)
      this.parsed = { id, key: createPrivateKey(readFileSync(this.file)) };
    return this.parsed.key;
  }

  destroy(): void {
    this.parsed = undefined;
    destroySecretFile(this.file);
  }
}
