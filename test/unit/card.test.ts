import { afterEach, describe, expect, it } from 'vitest';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  TokenKeyFile,
  luhnValid,
  maskPan,
  protectCard,
  sensitiveFieldsIn,
  type CardInput,
} from '../../agent/policy/card.ts';
import { AgentError } from '../../base/errors.ts';
import { luhnCheckDigit } from '../../simulator/card-sim.ts';

/** Completes `body` with its Luhn check digit (the card simulator's, not the code under test). */
const withCheckDigit = (body: string): string => body + String(luhnCheckDigit(body));

/** A Luhn-valid PAN of `length` digits with distinctive, non-repeating middle digits. */
function panOfLength(length: number, prefix = '622848'): string {
  let body = prefix;
  let d = 3;
  while (body.length < length - 1) {
    body += String(d);
    d = (d * 7 + 1) % 10;
  }
  return withCheckDigit(body);
}

const KEY_A = Buffer.alloc(32, 0xa5);
const KEY_B = Buffer.alloc(32, 0x5a);
const PAN = '4111111111111111';

/** Everything an error carries that could reach a log, a screen or a frame. */
function everythingIn(e: AgentError): string {
  return [
    e.message,
    e.stack ?? '',
    JSON.stringify(e.context),
    JSON.stringify(e),
    String(e),
    e.toDisplay(),
    JSON.stringify(e.cause ?? null),
  ].join('\n');
}

function refusal(input: CardInput, key = KEY_A): AgentError {
  try {
    protectCard(input, key);
  } catch (e) {
    expect(e).toBeInstanceOf(AgentError);
    return e as AgentError;
  }
  throw new Error('the card was accepted');
}

describe('luhnValid', () => {
  it.each([
    '4111111111111111',
    '5555555555554444',
    '378282246310005',
    '6011111111111117',
    '3530111333300000',
    '6212345678901265',
  ])('accepts %s', (pan) => {
    expect(luhnValid(pan)).toBe(true);
  });

  it('the test helper makes valid numbers of every length 12..19', () => {
    for (let n = 12; n <= 19; n++) expect(luhnValid(panOfLength(n))).toBe(true);
  });

  it('catches every single-digit error', () => {
    for (const pan of ['4111111111111111', panOfLength(19), panOfLength(12)]) {
      for (let i = 0; i < pan.length; i++) {
        for (let d = 0; d <= 9; d++) {
          if (String(d) === pan[i]) continue;
          const wrong = pan.slice(0, i) + String(d) + pan.slice(i + 1);
          expect(luhnValid(wrong), wrong).toBe(false);
        }
      }
    }
  });

  it('catches adjacent transpositions other than 09/90', () => {
    const pan = panOfLength(16);
    for (let i = 0; i + 1 < pan.length; i++) {
      const a = pan[i]!;
      const b = pan[i + 1]!;
      if (a === b || a + b === '09' || a + b === '90') continue;
      const swapped = pan.slice(0, i) + b + a + pan.slice(i + 2);
      expect(luhnValid(swapped), swapped).toBe(false);
    }
  });
});

describe('maskPan and protectCard masking', () => {
  it.each([12, 13, 14, 15, 16, 17, 18, 19])('%i digits: first 6, last 4, the rest starred', (n) => {
    const pan = panOfLength(n);
    const masked = maskPan(pan);
    expect(masked).toHaveLength(n);
    expect(masked.slice(0, 6)).toBe(pan.slice(0, 6));
    expect(masked.slice(-4)).toBe(pan.slice(-4));
    expect(masked.slice(6, -4)).toBe('*'.repeat(n - 10));
    expect(protectCard({ pan }, KEY_A).maskedPan).toBe(masked);
  });

  it('masks 4111111111111111 as 411111******1111', () => {
    expect(protectCard({ pan: PAN }, KEY_A).maskedPan).toBe('411111******1111');
  });

  it('accepts spaces and dashes between digit groups and treats them as the same card', () => {
    const plain = protectCard({ pan: PAN }, KEY_A);
    expect(protectCard({ pan: '4111 1111 1111 1111' }, KEY_A)).toEqual(plain);
    expect(protectCard({ pan: '4111-1111-1111-1111' }, KEY_A)).toEqual(plain);
  });

  it('the protected card holds no full PAN anywhere', () => {
    for (let n = 12; n <= 19; n++) {
      const pan = panOfLength(n);
      const card = protectCard({ pan }, KEY_A);
      expect(Object.keys(card).sort()).toEqual(['maskedPan', 'panToken']);
      expect(JSON.stringify(card)).not.toContain(pan);
      // the hidden middle digits never appear in the masked form
      expect(card.maskedPan).not.toContain(pan.slice(6, -4));
    }
  });
});

describe('token', () => {
  it('is keyed: same PAN and key give the same token, another key another token', () => {
    const a1 = protectCard({ pan: PAN }, KEY_A).panToken;
    const a2 = protectCard({ pan: PAN }, Buffer.from(KEY_A)).panToken;
    const b = protectCard({ pan: PAN }, KEY_B).panToken;
    expect(a1).toBe(a2);
    expect(b).not.toBe(a1);
    expect(a1).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is HMAC-SHA-256 of the digits, not a plain hash anyone could brute-force', () => {
    const t = protectCard({ pan: PAN }, KEY_A).panToken;
    expect(t).toBe(createHmac('sha256', KEY_A).update(PAN).digest('hex'));
    expect(t).not.toBe(createHash('sha256').update(PAN).digest('hex'));
  });

  it('differs for different PANs with the same last four and BIN', () => {
    const p1 = withCheckDigit('411111000000111');
    const p2 = withCheckDigit('411111000000211');
    // same mask shape, distinct cards
    const t1 = protectCard({ pan: p1 }, KEY_A);
    const t2 = protectCard({ pan: p2 }, KEY_A);
    expect(t1.panToken).not.toBe(t2.panToken);
  });
});

describe('sensitive data is refused without echoing it', () => {
  const CVV = '739';
  const TRACK2 = `${PAN}=29121015432112345678`;
  const PIN_BLOCK = '0412AC89ABCDEF67';

  it.each<[string, Partial<CardInput>, string[]]>([
    ['cvv', { cvv: CVV }, ['cvv']],
    ['cvv as a number', { cvv: 739 as unknown as string }, ['cvv']],
    ['cvv2', { cvv2: CVV }, ['cvv2']],
    ['cvc', { cvc: CVV }, ['cvc']],
    ['track2', { track2: TRACK2 }, ['track2']],
    ['track1', { track1: `%B${PAN}^DOE/JOHN^2912101` }, ['track1']],
    ['pinBlock string', { pinBlock: PIN_BLOCK }, ['pinBlock']],
    ['pinBlock bytes', { pinBlock: Buffer.from(PIN_BLOCK, 'hex') }, ['pinBlock']],
    ['pin', { pin: '1234' }, ['pin']],
    [
      'all at once',
      { cvv: CVV, track2: TRACK2, pinBlock: PIN_BLOCK },
      ['cvv', 'track2', 'pinBlock'],
    ],
  ])('%s', (_what, extra, fields) => {
    const e = refusal({ pan: PAN, ...extra });
    expect(e.code).toBe('CARD_SENSITIVE_DATA');
    expect([...(e.context.fields as string[])].sort()).toEqual([...fields].sort());
    for (const f of fields) expect(e.message).toContain(f);
    const all = everythingIn(e);
    expect(all).not.toContain(PAN);
    expect(all).not.toContain(TRACK2);
    expect(all).not.toContain(PIN_BLOCK);
    expect(all).not.toContain('29121015432112345678');
    if ('cvv' in extra || 'cvv2' in extra || 'cvc' in extra) expect(all).not.toMatch(/739/);
  });

  it('empty sensitive fields are not refusals (apps send blank placeholders)', () => {
    expect(
      sensitiveFieldsIn({ pan: PAN, cvv: '', pinBlock: new Uint8Array(0), track2: null }),
    ).toEqual([]);
    expect(() => protectCard({ pan: PAN, cvv: '' }, KEY_A)).not.toThrow();
  });
});

describe('invalid PANs are refused without echoing them', () => {
  const luhnBad = '4111111111111112';
  it.each([
    ['letters', '4111abcd11111111'],
    ['a Luhn failure', luhnBad],
    ['too short (11 digits)', withCheckDigit('4111111111')],
    ['too long (20 digits)', withCheckDigit('4111111111111111111')],
    ['track2 with =', `${PAN}=29121015432112345678`],
    ['track2 with D separator', `${PAN}D29121015432112345678`],
    ['track2 with sentinels', `;${PAN}=29121015432112345678?`],
    ['track1', `%B${PAN}^DOE/JOHN^29121015432100000000?`],
    ['unicode digits', '４１１１１１１１１１１１１１１１'],
    ['empty', ''],
    ['only spaces', '    '],
  ])('%s', (_what, pan) => {
    const e = refusal({ pan });
    expect(e.code).toBe('CARD_INVALID_PAN');
    const all = everythingIn(e);
    if (pan.trim()) expect(all).not.toContain(pan);
    expect(all).not.toContain(PAN);
    expect(all).not.toContain(luhnBad);
    expect(all).not.toContain('29121015432112345678');
    expect(Object.keys(e.context)).toEqual([]);
  });

  it.each([
    ['a number', 4111111111111111],
    ['null', null],
    ['an object', { digits: PAN }],
    ['an array', [PAN]],
  ])('a PAN given as %s', (_what, pan) => {
    const e = refusal({ pan: pan as unknown as string });
    expect(e.code).toBe('CARD_INVALID_PAN');
    expect(everythingIn(e)).not.toContain(PAN);
  });
});

describe('TokenKeyFile', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const fresh = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'pos-card-'));
    dirs.push(d);
    return path.join(d, 'keys', 'token.key');
  };

  it('creates a 32-byte owner-only key once and loads the same key afterwards', () => {
    const file = fresh();
    const k1 = new TokenKeyFile(file).load(true);
    expect(k1).toHaveLength(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const k2 = new TokenKeyFile(file).load(false);
    expect(k2.equals(k1)).toBe(true);
  });

  it('refuses a missing key when it may not create one', () => {
    const file = fresh();
    expect(() => new TokenKeyFile(file).load(false)).toThrow(
      expect.objectContaining({ code: 'CARD_KEY_MISSING' }),
    );
    expect(existsSync(file)).toBe(false);
  });

  it('refuses a damaged key instead of tokenising under it', () => {
    const file = fresh();
    new TokenKeyFile(file).load(true);
    writeFileSync(file, randomBytes(31));
    expect(() => new TokenKeyFile(file).load(true)).toThrow(
      expect.objectContaining({ code: 'CARD_KEY_MISSING' }),
    );
  });

  it('destroy removes the key; it is not silently re-created when creation is forbidden', () => {
    const file = fresh();
    const keys = new TokenKeyFile(file);
    keys.load(true);
    keys.destroy();
    expect(existsSync(file)).toBe(false);
    expect(() => keys.load(false)).toThrow(expect.objectContaining({ code: 'CARD_KEY_MISSING' }));
  });
});
