/**
 * The back office's small pure pieces: the escaping template tag, money as yuan from integer
 * fen, the card-number detector on typed text, and the scrypt password format.
 */
import { describe, expect, it } from 'vitest';
import { html, yuan } from '../../simulator/backoffice/html.ts';
import { holdsCardNumber } from '../../simulator/backoffice/card-text.ts';
import { DECOY_HASH, hashPassword, verifyPassword } from '../../simulator/backoffice/passwords.ts';

describe('html tag', () => {
  it('escapes every interpolated value, once, and keeps its own markup', () => {
    const evil = `<script>alert("x")</script>&'\``;
    const inner = html`<b>${evil}</b>`;
    expect(inner.text).toBe(
      '<b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;&#96;</b>',
    );
    // Already-made markup is not escaped again; arrays join; null, undefined and false vanish.
    expect(
      html`<p>${inner}${[html`<i>${'a<'}</i>`, 'b>']}${null}${undefined}${false}${0}</p>`.text,
    ).toBe(`<p>${inner.text}<i>a&lt;</i>b&gt;0</p>`);
    expect(html`<a href="${'" onmouseover="x'}"></a>`.text).toBe(
      '<a href="&quot; onmouseover=&quot;x"></a>',
    );
  });
});

describe('yuan', () => {
  it('formats integer fen without floats', () => {
    expect(yuan(0)).toBe('¥0.00');
    expect(yuan(5)).toBe('¥0.05');
    expect(yuan(15021)).toBe('¥150.21');
    expect(yuan(-300)).toBe('-¥3.00');
    expect(yuan(400_200)).toBe('¥4,002.00');
    expect(yuan(Number.MAX_SAFE_INTEGER)).toBe('¥90,071,992,547,409.91');
    expect(yuan(null)).toBe('-');
  });
});

describe('holdsCardNumber', () => {
  it('finds a run of 13 or more digits, with spaces or dashes, anywhere in the text', () => {
    for (const t of [
      '4111111111111111',
      'card 4111 1111 1111 1111 stolen',
      'see 4111-1111-1111-1111.',
      'x4111111111111111x',
      '378282246310005', // 15 digits
      '6011000990139424',
      'order 99 4111111111111111 99',
      '4111111111111112', // a mistyped one too
    ])
      expect(holdsCardNumber(t), t).toBe(true);
  });
  it('leaves ordinary numbers alone', () => {
    for (const t of [
      'closing the shop',
      'call 13800138000 first', // 11 digits
      'order 2026-12-01 ref 123456',
      '1234 5678 9012', // 12 digits
    ])
      expect(holdsCardNumber(t), t).toBe(false);
  });
});

describe('passwords', () => {
  it('hash with scrypt and a fresh salt; verify only the right password', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse', a)).toBe(true);
    expect(await verifyPassword('correct horsf', a)).toBe(false);
    expect(await verifyPassword('correct horse', DECOY_HASH)).toBe(false);
  });
  it('never matches a malformed or weakened hash', async () => {
    const h = await hashPassword('pw');
    const parts = h.split('$');
    expect(await verifyPassword('pw', parts.slice(0, 5).join('$'))).toBe(false);
    expect(await verifyPassword('pw', ['argon2', ...parts.slice(1)].join('$'))).toBe(false);
    // A cost below the floor is refused even if the hash were computed with it.
    expect(await verifyPassword('pw', ['scrypt', 1024, 8, 1, parts[4], parts[5]].join('$'))).toBe(
      false,
    );
  });
});
