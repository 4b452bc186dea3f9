/**
 * The acquirer's Ed25519 command key: it signs commands, activation grants and unlock grants.
 * The key is kept in the simulator's data directory (0600), so a restarted simulator signs with
 * the key the terminal pinned at activation; a new key would make every later command a forgery.
 * Only node:crypto is used, so a test that verifies a signature with node:crypto checks the
 * real thing and not a helper that agrees with itself.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeSecretFile } from '../base/secret-file.ts';
import path from 'node:path';
import {
  encodeActivationGrant,
  encodeCommand,
  encodeUnlockGrant,
  type pos,
} from '../protocol/messages.ts';

/** File name of the command key inside the simulator's data directory. */
const COMMAND_KEY_FILE = 'command-key.pem';

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** The raw 32 bytes of an Ed25519 public key (what the grant carries). */
export function rawEd25519(publicKey: KeyObject): Buffer {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** A public key from raw 32 bytes; undefined when the bytes cannot be an Ed25519 key. */
export function ed25519FromRaw(raw: Uint8Array | null | undefined): KeyObject | undefined {
  if (!raw || raw.length !== 32) return undefined;
  try {
    return createPublicKey({
      key: Buffer.concat([SPKI_ED25519_PREFIX, Buffer.from(raw)]),
      format: 'der',
      type: 'spki',
    });
  } catch {
    return undefined;
  }
}

/** Verifies an Ed25519 signature without ever throwing. */
export function verifySignature(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return signature.length === 64 && verify(null, data, key, signature);
  } catch {
    return false;
  }
}

/** Options for crafting a signed command by hand (forgeries and replays in tests). */
export interface RawCommandOptions {
  /** Sign with this private key instead of the acquirer's (a forgery). */
  signWith?: KeyObject;
  /** Flip one byte of the command after signing (an altered command). */
  tamper?: boolean;
  /** Send no signature at all. */
  unsigned?: boolean;
}

/** A signed command with the decoded command it carries. */
export interface SignedCommandParts {
  signed: pos.v1.ISignedCommand;
  command: pos.v1.ICommand;
  bytes: Uint8Array;
}

/** The acquirer's signing key and what it signs. */
export class CommandSigner {
  readonly publicKey: KeyObject;
  /** Raw 32-byte public key, as carried in the activation grant. */
  readonly publicKeyRaw: Buffer;

  private constructor(private readonly privateKey: KeyObject) {
    this.publicKey = createPublicKey(privateKey);
    this.publicKeyRaw = rawEd25519(this.publicKey);
  }

  /** Loads the key from `dataDir`, making and saving one on first run. */
  static loadOrCreate(dataDir: string): CommandSigner {
    const file = path.join(dataDir, COMMAND_KEY_FILE);
    if (existsSync(file)) return new CommandSigner(createPrivateKey(readFileSync(file)));
    const { privateKey } = generateKeyPairSync('ed25519');
    writeSecretFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    return new CommandSigner(privateKey);
  }

  /** Signs arbitrary bytes with the command key. */
  signBytes(data: Uint8Array): Buffer {
    return sign(null, data, this.privateKey);
  }

  /** A complete command: random 16-byte nonce, every field covered by the signature. */
  command(
    fields: Omit<pos.v1.ICommand, 'nonce'> & { nonce?: Uint8Array },
    options: RawCommandOptions = {},
  ): SignedCommandParts {
    const command: pos.v1.ICommand = { ...fields, nonce: fields.nonce ?? randomBytes(16) };
    const bytes = encodeCommand(command);
    const signature = options.unsigned
      ? new Uint8Array()
      : sign(null, bytes, options.signWith ?? this.privateKey);
    let sent: Uint8Array = bytes;
    if (options.tamper) {
      const copy = Buffer.from(bytes);
      // The last byte is inside the body, so the altered command still decodes.
      const last = copy.length - 1;
      copy[last] = (copy[last] ?? 0) ^ 0x01;
      sent = copy;
    }
    return { signed: { command: sent, signature }, command, bytes: sent };
  }

  /** An activation grant and its signature by the key the grant carries. */
  grant(grant: Omit<pos.v1.IActivationGrant, 'commandPublicKey'>): {
    bytes: Uint8Array;
    signature: Buffer;
  } {
    const bytes = encodeActivationGrant({ ...grant, commandPublicKey: this.publicKeyRaw });
    return { bytes, signature: this.signBytes(bytes) };
  }

  /** An unlock grant for one challenge shown on one terminal, and its signature. */
  unlockGrant(grant: pos.v1.IUnlockGrant): { bytes: Uint8Array; signature: Buffer } {
    const bytes = encodeUnlockGrant(grant);
    return { bytes, signature: this.signBytes(bytes) };
  }
}
