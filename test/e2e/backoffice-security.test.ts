/**
 * The back office as an attacker and a busy merchant meet it, in real Chromium: one merchant
 * never sees or acts on another's terminal (direct URLs, forged posts with a valid token of its
 * own), a merchant cannot reach the reviewer's pages or actions, forms without the session's
 * CSRF token are refused (also from another site), logins are throttled, pages escape what
 * people and terminals wrote, and POS management stays quick with 1,000 terminals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { BackOfficeWorld, MERCHANT, OTHER_MERCHANT, REVIEWER } from '../fixtures/backoffice-rig.ts';

let w: BackOfficeWorld;
let tea: Page;
let noodle: Page;
const FLEET = 1_000;

/** 1,000 terminals for the Noodle House, each with a model, a report and one settled batch. */
function seedFleet(): void {
  const { ledger } = w.sim;
  const now = w.sim.now();
  ledger.atomically(() => {
    for (let i = 1; i <= FLEET; i++) {
      const id = `N${String(i).padStart(6, '0')}`;
      ledger.registerTerminal({
        terminalId: id,
        activationCode: `C${i}`,
        merchantId: MERCHANT.merchantId,
        merchantName: MERCHANT.name,
        merchantCategory: i % 3 ? 'catering' : 'default',
      });
      w.bo.store.setModel(id, i % 2 ? 'Lakala' : 'PAX', i % 2 ? 'A8' : `S${i % 7}0`);
      w.bo.store.report({
        terminalId: id,
        lastContact: now,
        lifecycleState: 'active',
        locks: i % 50 ? [] : ['risk'],
        openCount: i % 9,
        openAmount: (i % 9) * 1_000,
        openFee: (i % 9) * 300,
        queuedBatches: 0,
        reportedAt: now,
      });
      const totals = {
        byType: [{ type: 'sale', count: 2, amount: 5_000, fee: 600 }],
        transactionCount: 2,
        netAmount: 5_000,
        netFee: 600,
        netSettlement: 4_400,
        currency: 'CNY',
      };
      ledger.settle({
        terminalId: id,
        batchId: `B${i}`,
        digest: 'ab'.repeat(32),
        settlementId: `STL-${i}`,
        terminalTotals: totals,
        settledTotals: totals,
        settledAt: now,
        via: 'submit',
      });
    }
  });
}

beforeAll(async () => {
  w = await BackOfficeWorld.start('pa-bo-sec-');
  seedFleet();
  w.sim.registerTerminal({
    terminalId: 'TEA0001',
    activationCode: 'TEA-CODE',
    merchantId: OTHER_MERCHANT.merchantId,
    merchantName: '<img src=x onerror="window.pwned=1">Tea',
    merchantCategory: 'default',
  });
  tea = (await w.loginAs(OTHER_MERCHANT)).page;
  noodle = (await w.loginAs(MERCHANT)).page;
}, 60_000);
afterAll(async () => {
  await w?.close();
});

/** A same-origin form post from inside the page (cookies included), with or without a token. */
async function post(
  page: Page,
  url: string,
  fields: Record<string, string>,
): Promise<{ status: number; text: string }> {
  return page.evaluate(
    async ([u, f]) => {
      const r = await fetch(u, {
        method: 'POST',
        body: new URLSearchParams(f),
        redirect: 'manual',
      });
      return { status: r.status, text: await r.text() };
    },
    [url, fields] as const,
  );
}
const tokenOf = async (page: Page): Promise<string> =>
  (await page.locator('input[name=_csrf]').first().getAttribute('value')) ?? '';
const reviews = (id: string) => w.sim.ledger.reviews(id).length;
const commands = (id: string) => w.sim.ledger.commands(id).length;

describe('back office security in Chromium', () => {
  it('keeps each merchant to its own terminals: lists, direct URLs and forged posts', async () => {
    await tea.goto('/pos');
    expect(await tea.locator('table.terminals tbody tr').count()).toBe(1);
    expect(await tea.locator('body').textContent()).not.toContain('N000001');
    for (const url of ['/pos/N000001', '/pos/N000001/status.json']) {
      const res = await tea.goto(url);
      expect(res?.status(), url).toBe(404);
      expect(await tea.content()).not.toContain(MERCHANT.name);
    }
    // A search names nothing of the other merchant.
    await tea.goto('/pos?q=N0000');
    expect(await tea.locator('table.terminals tbody tr').count()).toBe(0);
    // A forged post with tea's own valid token against noodle's terminal.
    await tea.goto('/pos/TEA0001');
    const forged = await post(tea, '/pos/N000001/deactivate', {
      reason: 'taking it over',
      _csrf: await tokenOf(tea),
    });
    expect(forged.status).toBe(404);
    expect(reviews('N000001')).toBe(0);
    expect(commands('N000001')).toBe(0);
    // The reviewer's pages and actions are not a merchant's.
    expect((await tea.goto('/review'))?.status()).toBe(403);
    expect((await tea.goto('/terminals/TEA0001'))?.status()).toBe(403);
    await tea.goto('/pos/TEA0001');
    const lockOwn = await post(tea, '/terminals/TEA0001/unlock', {
      note: 'let me sell',
      _csrf: await tokenOf(tea),
    });
    expect(lockOwn.status).toBe(403);
    expect(commands('TEA0001')).toBe(0);
    // And a reviewer is not a merchant.
    const rev = await w.loginAs(REVIEWER);
    expect((await rev.page.goto('/pos'))?.status()).toBe(403);
    await rev.page.goto('/terminals?q=Lakala');
    expect(await rev.page.locator('table.terminals tbody tr').count()).toBe(25);
    await w.shot(rev.page, 'reviewer-terminals');
    await rev.ctx.close();
    // Logged out, nothing but the login page.
    const anon = await w.browser.newContext({ baseURL: w.bo.url });
    const p = await anon.newPage();
    await p.goto('/pos/N000001');
    expect(new URL(p.url()).pathname).toBe('/login');
    await anon.close();
    await noodle.goto('/audit');
    expect(await noodle.locator('table.audit').textContent()).not.toContain('tea');
  }, 60_000);

  it('escapes what people and terminals wrote', async () => {
    await tea.goto('/pos/TEA0001');
    expect(await tea.locator('dl.facts').first().textContent()).toContain(
      '<img src=x onerror="window.pwned=1">Tea',
    );
    expect(
      await tea.evaluate(() => (window as unknown as { pwned?: number }).pwned),
    ).toBeUndefined();
    expect(await tea.locator('main img').count()).toBe(0);
  });

  it("refuses forms without the session's CSRF token, also when posted from another site", async () => {
    await noodle.goto('/pos/N000002');
    const before = reviews('N000002');
    const none = await post(noodle, '/pos/N000002/deactivate', { reason: 'no token' });
    expect(none.status).toBe(403);
    const wrong = await post(noodle, '/pos/N000002/deactivate', {
      reason: 'bad token',
      _csrf: 'x'.repeat(60),
    });
    expect(wrong.status).toBe(403);
    // A token minted for tea's session does not work in noodle's.
    await tea.goto('/pos/TEA0001');
    const teaToken = await tokenOf(tea);
    const tossed = await post(noodle, '/pos/N000002/deactivate', {
      reason: 'tossed',
      _csrf: teaToken,
    });
    expect(tossed.status).toBe(403);
    // Another site's auto-submitting form: SameSite=Strict keeps the session cookie home.
    const evil = await noodle.context().newPage();
    await evil.goto('about:blank');
    await evil.setContent(
      `<form method="post" action="${w.bo.url}/pos/N000002/deactivate"><input name="reason" value="forged from elsewhere"></form>`,
    );
    const [res] = await Promise.all([
      evil.waitForNavigation(),
      evil.evaluate(() => document.forms[0]!.submit()),
    ]);
    expect(res?.status()).toBeGreaterThanOrEqual(400);
    await evil.close();
    expect(reviews('N000002')).toBe(before);
    const rev = await w.loginAs(REVIEWER);
    await rev.page.goto('/audit');
    expect(await rev.page.locator('table.audit').textContent()).toMatch(
      /noodle\s*merchant\s*csrf-refused/,
    );
    await rev.ctx.close();
  }, 30_000);

  it('refuses a card number typed into a reason, so no page can show one', async () => {
    await noodle.goto('/pos/N000003');
    const token = await tokenOf(noodle);
    for (const reason of [
      'stolen card 4111 1111 1111 1111 used here',
      'see 4111-1111-1111-1111',
      'x4111111111111111x',
    ]) {
      const res = await post(noodle, '/pos/N000003/deactivate', { reason, _csrf: token });
      expect(res.status, reason).toBe(400);
      expect(res.text).not.toContain('4111');
    }
    expect(reviews('N000003')).toBe(0);
    // An ordinary number (a phone, an order) is fine: the request goes through (a redirect).
    const ok = await post(noodle, '/pos/N000003/deactivate', {
      reason: 'call 13800138000 first',
      _csrf: token,
    });
    expect(ok.status).toBe(0); // the opaque answer of a redirect not followed
    expect(w.sim.ledger.reviews('N000003').map((r) => r.reason)).toEqual([
      'call 13800138000 first',
    ]);
  });

  it('throttles logins: after 5 failures even the right password waits', async () => {
    await w.bo.addUser({
      username: 'victim',
      password: 'right-pass-1',
      role: 'merchant',
      merchantId: 'M-V',
      displayName: 'Victim',
    });
    const ctx = await w.browser.newContext({ baseURL: w.bo.url });
    const page = await ctx.newPage();
    const attempt = async (password: string) => {
      await page.goto('/login');
      await page.fill('input[name=username]', 'victim');
      await page.fill('input[name=password]', password);
      const [res] = await Promise.all([
        page.waitForNavigation(),
        page.click('button[type=submit]'),
      ]);
      return res!;
    };
    for (let i = 0; i < 5; i++) expect((await attempt(`guess-${i}`)).status()).toBe(401);
    const blocked = await attempt('right-pass-1');
    expect(blocked.status()).toBe(429);
    expect(await page.locator('.flash').textContent()).toMatch(/Too many failed attempts/);
    await w.shot(page, 'login-throttled');
    expect(await ctx.cookies()).not.toContainEqual(expect.objectContaining({ name: 'bo_session' }));
    await ctx.close();
    // Someone else still logs in.
    const other = await w.loginAs(REVIEWER);
    expect(new URL(other.page.url()).pathname).toBe('/review');
    await other.page.goto('/audit');
    expect(await other.page.locator('table.audit').textContent()).toMatch(
      /victim\s*none\s*login\s*\S*\s*throttled/,
    );
    await other.ctx.close();
  }, 60_000);

  it('cookies are HttpOnly and SameSite=Strict, pages carry a strict CSP', async () => {
    const cookies = await noodle.context().cookies();
    const session = cookies.find((c) => c.name === 'bo_session')!;
    expect(session.httpOnly).toBe(true);
    expect(session.sameSite).toBe('Strict');
    const res = await noodle.goto('/pos');
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(await noodle.evaluate(() => document.cookie)).toBe('');
  });

  it('POS management stays usable with 1,000 terminals: paging and search', async () => {
    const t0 = performance.now();
    await noodle.goto('/pos');
    const firstPageMs = performance.now() - t0;
    expect(await noodle.locator('.pager').textContent()).toContain(
      `${FLEET} terminals · page 1 of 40`,
    );
    expect(await noodle.locator('table.terminals tbody tr').count()).toBe(25);
    await Promise.all([noodle.waitForURL(/page=40/), noodle.click('.pager a:text("Last")')]);
    expect(
      await noodle.locator('table.terminals tbody tr').first().getAttribute('data-terminal'),
    ).toBe('N000976');
    await Promise.all([noodle.waitForURL(/page=39/), noodle.click('a[rel=prev]')]);
    expect(
      await noodle.locator('table.terminals tbody tr').first().getAttribute('data-terminal'),
    ).toBe('N000951');
    const t1 = performance.now();
    await noodle.fill('input[name=q]', 'N000777');
    await Promise.all([noodle.waitForURL(/q=N000777/), noodle.click('form.search button')]);
    const searchMs = performance.now() - t1;
    expect(await noodle.locator('table.terminals tbody tr').count()).toBe(1);
    await noodle.goto('/pos?q=S30');
    expect(await noodle.locator('.pager').textContent()).toMatch(/^\s*7\d terminals/);
    // Fees this period by category cover the whole fleet: 1,000 settled batches of ¥6.00 each.
    const fees = (await noodle.locator('table.fees').textContent()) ?? '';
    expect(fees).toContain('¥4,002.00'); // catering: 667 terminals
    expect(fees).toContain('¥1,998.00'); // default: 333 terminals
    await w.shot(noodle, 'pos-management-1000');
    console.log(
      `1,000 terminals: first page ${firstPageMs.toFixed(0)} ms, search ${searchMs.toFixed(0)} ms`,
    );
    expect(firstPageMs).toBeLessThan(3_000);
    expect(searchMs).toBeLessThan(3_000);
  }, 30_000);
});
