import { describe, expect, it } from 'vitest';
import {
  SCRYPT_FLOOR,
  defaultScryptParams,
  hashPin,
  parsePinHash,
  validateTechnicians,
  verifyPin,
} from '../../agent/console/auth.ts';

/** The floor on scrypt parameters of technician PIN hashes (agent/console/auth.ts). */

const SALT = Buffer.alloc(16, 7).toString('base64');
const HASH = Buffer.alloc(32, 9).toString('base64');
const encoded = (N: number, r: number, p = 1): string => `scrypt$${N}$${r}$${p}$${SALT}$${HASH}`;

describe('scrypt floor', () => {
  it('refuses toy parameters with CONFIG_WEAK_PIN_HASH, naming them', () => {
    for (const [N, r] of [
      [2, 1],
      [2, 8],
      [16, 8],
      [512, 8],
      [1024, 1],
      [1024, 7],
      [4096, 1],
    ] as const) {
      let err: unknown;
      try {
        parsePinHash(encoded(N, r));
      } catch (e) {
        err = e;
      }
      expect(err, `N=${N} r=${r}`).toMatchObject({
        code: 'CONFIG_WEAK_PIN_HASH',
        context: { N, r, p: 1 },
      });
      expect((err as Error).message).toContain(`N=${N} r=${r}`);
    }
  });

  it('accepts the floor itself and the production default', () => {
    expect(SCRYPT_FLOOR).toEqual({ minN: 1024, minMemoryBytes: 1 << 20 });
    expect(parsePinHash(encoded(1024, 8)).params).toEqual({ N: 1024, r: 8, p: 1 });
    expect(parsePinHash(encoded(8192, 1)).params).toEqual({ N: 8192, r: 1, p: 1 });
    const { N, r, p } = defaultScryptParams;
    expect(parsePinHash(encoded(N, r, p)).params).toEqual(defaultScryptParams);
  });

  it('hashPin will not make a weak hash, and a weak configured hash fails validation', async () => {
    await expect(hashPin('1234', { N: 2, r: 1, p: 1 })).rejects.toMatchObject({
      code: 'CONFIG_WEAK_PIN_HASH',
    });
    expect(() => validateTechnicians([{ id: 'tech1', pinHash: encoded(2, 1) }])).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining('too weak'),
      }),
    );
  });

  it('a weak hash is refused at verification even when its PIN is right', async () => {
    // Made by hand with N=2, as a hand-edited config could hold.
    const { scryptSync } = await import('node:crypto');
    const salt = Buffer.alloc(16, 1);
    const hash = scryptSync('2468', salt, 32, { N: 2, r: 1, p: 1 }).toString('base64');
    const weak = `scrypt$2$1$1$${salt.toString('base64')}$${hash}`;
    await expect(verifyPin('2468', weak)).rejects.toMatchObject({ code: 'CONFIG_WEAK_PIN_HASH' });
  });
});
