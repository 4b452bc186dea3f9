import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { AgentError } from '../../base/errors.ts';
import { destroySecretFile, isEmptyFile, writeSecretFile } from '../../base/secret-file.ts';

/**
 * Card data enters the agent here and nowhere else. What leaves is a `ProtectedCard`:
 * the masked PAN (first 6, last 4) and a keyed token (HMAC-SHA-256 under a terminal key
 * kept outside the journal). A ProtectedCard cannot be built from a full PAN except by
 * `protectCard`, and it holds no PAN, so nothing downstream can store one.
 */

/** What the payment app may hand over. The sensitive fields exist only to be refused. */
export interface CardInput {
  pan: string;
  cvv?: string;
  track2?: string;
  pinBlock?: Uint8Array | string;
  [other: string]: unknown;
}

const SENSITIVE_FIELDS = [
  'cvv',
  'cvv2',
  'cvc',
  'track1',
  'track2',
  'track',
  'pinBlock',
  'pin',
  'pin_block',
];

declare const protectedBrand: unique symbol;

export interface ProtectedCard {
  readonly maskedPan: string;
  readonly panToken: string;
  readonly [protectedBrand]: true;
}

/** Luhn check digit validation. */
export function luhnValid(pan: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = pan.length - 1; i >= 0; i--) {
    let d = pan.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

export function maskPan(pan: string): string {
  return pan.slice(0, 6) + '*'.repeat(pan.length - 10) + pan.slice(-4);
}

/** Field names that carry sensitive data with a value; never the values themselves. */
export function sensitiveFieldsIn(input: Record<string, unknown>): string[] {
  return SENSITIVE_FIELDS.filter((f) => {
    const v = input[f];
    return (
      v !== undefined &&
      v !== null &&
      !(typeof v === 'string' && v === '') &&
      !(v instanceof Uint8Array && v.length === 0)
    );
  });
}

/** Masks and tokenises a card; refuses CVV, track and PIN data outright. */
export function protectCard(input: CardInput, tokenKey: Buffer): ProtectedCard {
  const sensitive = sensitiveFieldsIn(input);
  if (sensitive.length) {
    throw new AgentError(
      'CARD_SENSITIVE_DATA',
      `the agent never takes ${sensitive.join(', ')}; send only the card number`,
      { fields: sensitive },
    );
  }
  const pan = typeof input.pan === 'string' ? input.pan.replace(/[\s-]/g, '') : '';
  if (!/^\d{12,19}$/.test(pan) || !luhnValid(pan)) {
    // The context never echoes the input: it may be a PAN with a typo, or track data.
    throw new AgentError(
      'CARD_INVALID_PAN',
      'the card number is not 12 to 19 digits with a valid check digit',
    );
  }
  return {
    maskedPan: maskPan(pan),
    panToken: createHmac('sha256', tokenKey).update(pan).digest('hex'),
  } as ProtectedCard;
}

/**
 * The token key lives in its own file beside (not inside) the journal, so a copied
 * journal cannot be brute-forced back to PANs without the device's key.
 */
export class TokenKeyFile {
  constructor(readonly file: string) {}

  /**
   * Loads the key, creating it on first use; refuses after the key was destroyed. An empty
   * file is what an older in-place writer left when killed between create and write: no token
   * was ever made under it, so it is replaced rather than refused.
   */
  load(createIfMissing: boolean): Buffer {
    if (createIfMissing && isEmptyFile(this.file)) rmSync(this.file, { force: true });
    if (existsSync(this.file)) return this.read();
    if (!createIfMissing) throw new AgentError('CARD_KEY_MISSING', `no token key at ${this.file}`);
    const key = randomBytes(32);
    try {
      writeSecretFile(this.file, key, { exclusive: true });
    } catch (e) {
      // Another start made it first: use that one, never a second key.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return this.read();
      throw e;
    }
    return key;
  }

  private read(): Buffer {
    const key = readFileSync(this.file);
    if (key.length !== 32)
      throw new AgentError('CARD_KEY_MISSING', `the token key at ${this.file} is damaged`);
    return key;
  }

  /** Overwrites then removes the key: after deactivation no new token can be made. */
  destroy(): void {
    destroySecretFile(this.file);
  }
}
