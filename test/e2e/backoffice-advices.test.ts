/**
 * The acquirer's side of store-and-forward in the back office, in real Chromium: a terminal's
 * offline sales arrive as advices, one is declined by the acquirer's amount rule, and the
 * reviewer finds it under "Offline advices" with its reason; the merchant sees its own
 * terminal's advices, another merchant sees none of them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BackOfficeWorld,
  MERCHANT,
  OTHER_MERCHANT,
  REVIEWER,
  eventually,
} from '../fixtures/backoffice-rig.ts';

let w: BackOfficeWorld;

beforeAll(async () => {
  w = await BackOfficeWorld.start('pa-bo-advice-');
});
afterAll(async () => {
  await w?.close();
});

describe('offline advices in the back office', () => {
  it('shows each advice with its answer, declines with their reason, only to who may see them', async () => {
    const { agent } = await w.activeTerminal('TBOADV1');
    w.sim.behave({ advice: { declineOver: 30_000 } });
    const offline = (amount: number) =>
      agent.core.payments.record({
        type: 'sale',
        amount,
        card: { pan: '4111111111111111' },
        status: 'pending-offline',
      });
    const ok = offline(12_345);
    const big = offline(45_600);
    await eventually(() => agent.core.store.advices.stats().pending === 0, 'answers');

    const rev = await w.loginAs(REVIEWER);
    await rev.page.click('nav >> text=Offline advices');
    await rev.page.waitForURL(/\/advices/);
    const rows = rev.page.locator('table.advices tbody tr');
    await expect.poll(() => rows.count()).toBe(2);
    const declined = rev.page.locator('tr[data-outcome="declined"]');
    await expect.poll(() => declined.textContent()).toMatch(/TBOADV1/);
    expect(await declined.textContent()).toMatch(/456\.00/);
    expect(await declined.textContent()).toMatch(/AMOUNT_LIMIT/);
    expect(await declined.getAttribute('data-advice')).toMatch(new RegExp(`^${big.seq}:`));
    const accepted = rev.page.locator('tr[data-outcome="accepted"]');
    expect(await accepted.getAttribute('data-advice')).toMatch(new RegExp(`^${ok.seq}:`));
    expect(await accepted.textContent()).toMatch(/ADV-[0-9A-F]{12}/);
    expect(await declined.textContent()).toMatch(/411111\*+1111/);
    await rev.page.click('text=Declined');
    await expect.poll(() => rows.count()).toBe(1);
    await w.shot(rev.page, 'backoffice-advices');

    const own = await w.loginAs(MERCHANT);
    await own.page.goto('/advices');
    await expect.poll(() => own.page.locator('table.advices tbody tr').count()).toBe(2);
    const other = await w.loginAs(OTHER_MERCHANT);
    await other.page.goto('/advices');
    expect(await other.page.locator('table.advices tbody tr').count()).toBe(0);
    expect(await other.page.textContent('main')).toMatch(/0 advices received/);
    for (const c of [rev.ctx, own.ctx, other.ctx]) await c.close();
  }, 60_000);
});
