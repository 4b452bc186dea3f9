/**
 * The seed's flow in a real browser against a real agent: the merchant logs in, opens POS
 * management, picks the terminal, sees what must settle first, requests deactivation with a
 * reason and follows the review live; the reviewer approves with a note; the terminal settles
 * its last batch and becomes deactivated, and charges no fee after. Then a rejection, and a
 * risk flag after which the terminal refuses a sale until an offline unlock code clears it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { PAN, codeOf, sell } from '../fixtures/lifecycle-rig.ts';
import {
  BackOfficeWorld,
  MERCHANT,
  REVIEWER,
  eventually,
  field,
  fieldBecomes,
} from '../fixtures/backoffice-rig.ts';

let w: BackOfficeWorld;
let merchant: Page;
let reviewer: Page;

beforeAll(async () => {
  w = await BackOfficeWorld.start('pa-bo-seed-');
  merchant = (await w.loginAs(MERCHANT)).page;
  reviewer = (await w.loginAs(REVIEWER)).page;
}, 60_000);
afterAll(async () => {
  await w?.close();
});

const txnCount = (r: {
  agent: { core: { store: { db: { prepare(s: string): { get(): unknown } } } } };
}) =>
  (
    r.agent.core.store.db.prepare("SELECT COUNT(*) AS n FROM journal WHERE kind = 'txn'").get() as {
      n: number;
    }
  ).n;

/** Opens a terminal from POS management by searching for it, as a merchant would. */
async function openFromPosList(page: Page, terminalId: string): Promise<void> {
  await page.goto('/pos');
  await page.fill('input[name=q]', terminalId);
  await Promise.all([page.waitForURL(/\/pos\?/), page.click('form.search button')]);
  await Promise.all([
    page.waitForURL(`**/pos/${terminalId}`),
    page.click(`a[href="/pos/${terminalId}"]`),
  ]);
}

async function requestDeactivation(page: Page, terminalId: string, reason: string): Promise<void> {
  await openFromPosList(page, terminalId);
  await page.fill('#deactivate textarea[name=reason]', reason);
  await Promise.all([
    page.waitForURL(/done=requested/),
    page.click('#deactivate button[type=submit]'),
  ]);
}

async function decide(
  page: Page,
  terminalId: string,
  decision: 'approve' | 'reject',
  note: string,
): Promise<void> {
  await page.goto('/review');
  const row = page.locator('table.queue tr', { hasText: terminalId });
  await row.locator('input[name=note]').fill(note);
  await Promise.all([
    page.waitForURL(/done=decided/),
    row.locator(`button[value=${decision}]`).click(),
  ]);
}

describe('back office in Chromium against a real agent', () => {
  it('the seed: request in the browser, approve as reviewer, last batch settled, deactivated, no fee after', async () => {
    const r = await w.activeTerminal('TSEED01');
    sell(r.agent, 5, 2_000);
    expect((await r.agent.settleNow('day one')).settled).toHaveLength(1);
    sell(r.agent, 3, 5_000);
    const open = r.agent.status().openBatch;
    // The heartbeat brings the open batch to the acquirer.
    await eventually(
      () => w.bo.store.terminalReport('TSEED01')?.openCount === 3,
      'the open batch reported',
    );

    await merchant.goto('/pos');
    const line = merchant.locator('tr[data-terminal="TSEED01"]');
    await expect.poll(() => line.textContent()).toContain('active');
    expect(await line.textContent()).toContain('Lakala A8');
    await w.shot(merchant, 'pos-management');

    await openFromPosList(merchant, 'TSEED01');
    const settleFirst = (await merchant.locator('#deactivate').innerText()).replace(/\s+/g, ' ');
    expect(settleFirst).toContain('open batch holds 3 transactions');
    expect(settleFirst).toContain(`¥${Math.trunc(open.netAmount / 100)}.`);
    await w.shot(merchant, 'terminal-page');

    await requestDeactivation(merchant, 'TSEED01', 'closing the shop');
    await fieldBecomes(merchant, 'state', 'deactivation-pending');
    expect(await field(merchant, 'stage')).toContain('Under review');
    expect(r.agent.core.terminal.status().state).toBe('deactivation-pending');
    expect(await codeOf(() => sell(r.agent, 1, 9_000))).toBe('LIFECYCLE_NOT_ACTIVE');
    await w.shot(merchant, 'review-pending');

    await reviewer.goto('/review');
    const queued =
      (await reviewer.locator('table.queue tr', { hasText: 'TSEED01' }).textContent()) ?? '';
    expect(queued).toContain('closing the shop');
    expect(queued).toContain('merchant:noodle');
    expect(queued).toContain('3 txns');
    await w.shot(reviewer, 'review-queue');
    await decide(reviewer, 'TSEED01', 'approve', 'checked: nothing outstanding');

    // The merchant's page follows by itself (polling), through settlement to deactivated.
    await fieldBecomes(merchant, 'state', 'deactivated');
    await fieldBecomes(merchant, 'settledBatches', '2');
    expect(await field(merchant, 'stage')).toContain('every transaction was settled first');
    expect(await field(merchant, 'reviewNote')).toBe('checked: nothing outstanding');
    await w.shot(merchant, 'deactivated');

    // Every transaction the terminal journaled is in a settled batch, counted by the acquirer.
    const settled = w.sim.ledger.settledBatches('TSEED01');
    expect(settled).toHaveLength(2);
    expect(settled[1]!.settledTotals.transactionCount).toBe(3);
    expect(settled.reduce((a, s) => a + s.settledTotals.transactionCount, 0)).toBe(txnCount(r));
    // No new fee: a sale is refused and the journal does not grow.
    const before = txnCount(r);
    expect(await codeOf(() => sell(r.agent, 1, 9_000))).toBe('LIFECYCLE_DEACTIVATED');
    expect(txnCount(r)).toBe(before);

    await merchant.reload();
    expect(await merchant.locator('table.batches tbody tr').count()).toBe(2);
    expect(await merchant.locator('#deactivate').count()).toBe(0);

    await reviewer.goto('/audit');
    const audit = (await reviewer.locator('table.audit').textContent()) ?? '';
    expect(audit).toMatch(/noodle\s*merchant\s*request-deactivation\s*TSEED01/);
    expect(audit).toMatch(/reviewer\s*reviewer\s*approve-deactivation\s*TSEED01/);
    expect(audit).toContain('127.0.0.1');
    await w.shot(reviewer, 'audit');
  }, 90_000);

  it('activation codes: the merchant gets one for a new terminal, which activates with it', async () => {
    await merchant.goto('/activation-codes');
    await merchant.selectOption('select[name=brand]', 'PAX');
    await merchant.fill('input[name=model]', 'A920');
    await Promise.all([
      merchant.waitForURL(/done=created/),
      merchant.click('form[action="/activation-codes"] button'),
    ]);
    const row = merchant.locator('table.codes tbody tr', { hasText: 'PAX A920' });
    const terminalId = ((await row.locator('td').first().textContent()) ?? '').trim();
    const code = ((await row.locator('.code').textContent()) ?? '').trim();
    expect(terminalId).toMatch(/^T\d{7}$/);
    expect(code).toMatch(/^[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    await w.shot(merchant, 'activation-codes');
    // The technician types the code on the new terminal.
    const r = await w.agentFor(terminalId);
    await r.agent.activate(code, 'console:tech1');
    expect(r.agent.core.terminal.status().state).toBe('active');
    expect(r.agent.status().merchant).toContain('Noodle House');
    await merchant.goto('/activation-codes');
    expect(await merchant.locator('table.codes tbody tr', { hasText: terminalId }).count()).toBe(0);
    await merchant.goto(`/pos?q=${terminalId}`);
    const line = (await merchant.locator(`tr[data-terminal="${terminalId}"]`).textContent()) ?? '';
    expect(line).toContain('PAX A920');
    expect(line).toContain('active');
  }, 60_000);

  it('shows no card number on any page', async () => {
    const pages = ['/pos', '/pos/TSEED01', '/pos/TSEED01/status.json', '/audit'];
    const reviewerPages = ['/review', '/terminals', '/terminals/TSEED01', '/audit'];
    const seen: string[] = [];
    for (const url of pages) seen.push((await merchant.goto(url)) ? await merchant.content() : '');
    for (const url of reviewerPages)
      seen.push((await reviewer.goto(url)) ? await reviewer.content() : '');
    for (const body of seen) {
      expect(body).not.toContain(PAN);
      // No run of 13 to 19 digits (a card number in any form) anywhere on a page.
      expect(body).not.toMatch(/(?<![\d-])\d{13,19}(?![\d-])/);
    }
  });

  it('a request typed on the console by a technician is reviewed in the browser too', async () => {
    const r = await w.activeTerminal('TSEED03');
    sell(r.agent, 2, 6_000);
    await r.agent.requestDeactivation('closing the shop', 'console:tech');
    await reviewer.goto('/review');
    const row = reviewer.locator('table.queue tr', { hasText: 'TSEED03' });
    await expect.poll(() => row.count(), { timeout: 15_000 }).toBe(1);
    expect(await row.textContent()).toContain('console:tech');
    await decide(reviewer, 'TSEED03', 'approve', 'approved for the technician');
    await eventually(() => r.agent.core.terminal.status().state === 'deactivated', 'deactivated');
    await merchant.goto('/pos/TSEED03');
    await fieldBecomes(merchant, 'state', 'deactivated');
    expect(
      w.sim.ledger.settledBatches('TSEED03').map((b) => b.settledTotals.transactionCount),
    ).toEqual([2]);
  }, 60_000);

  it("a rejection brings the terminal back to active with the reviewer's note", async () => {
    const r = await w.activeTerminal('TSEED02');
    sell(r.agent, 2, 3_000);
    await requestDeactivation(merchant, 'TSEED02', 'moving to another acquirer');
    await fieldBecomes(merchant, 'state', 'deactivation-pending');
    await decide(reviewer, 'TSEED02', 'reject', 'contract runs until March');
    await fieldBecomes(merchant, 'state', 'active');
    expect(await field(merchant, 'stage')).toBe(
      'Rejected by the acquirer: contract runs until March',
    );
    expect(r.agent.core.terminal.status().state).toBe('active');
    expect(await codeOf(() => sell(r.agent, 1, 7_000))).toBe('ok');
    // Nothing was settled or deactivated on the way.
    expect(w.sim.ledger.settledBatches('TSEED02')).toHaveLength(0);
    await merchant.reload();
    expect(await merchant.locator('#deactivate').count()).toBe(1);
  }, 60_000);

  it('a risk flag locks the terminal (a sale is refused) until an offline unlock code or a clear', async () => {
    const r = await w.activeTerminal('TRISK01');
    // The page redraws when the locks it shows change: act on it only once it shows the terminal's.
    const inSync = () =>
      (w.bo.store.terminalReport('TRISK01')?.locks ?? []).join() ===
      r.agent.core.terminal.status().locks.join();
    const act = async (action: string, note: string) => {
      await eventually(inSync, 'the back office to hear the locks');
      await reviewer.goto('/terminals/TRISK01');
      const form = reviewer.locator(`form[action="/terminals/TRISK01/${action}"]`);
      await form.locator('input[name=note]').fill(note);
      await Promise.all([reviewer.waitForURL(/done=/), form.locator('button').click()]);
    };
    await act('risk-flag', 'card testing pattern reported by the issuer');
    await eventually(() => r.agent.core.terminal.status().locks.includes('risk'), 'the risk lock');
    expect(await codeOf(() => sell(r.agent, 1, 4_000))).toBe('LIFECYCLE_LOCKED');
    await fieldBecomes(reviewer, 'locks', 'risk');
    await w.shot(reviewer, 'risk-flagged');

    // Offline: the technician reads the challenge from the console; the reviewer makes the code.
    const { challenge } = r.agent.unlockCodes.challenge('risk');
    await reviewer.fill('input[name=challenge]', challenge);
    await reviewer.click('form[action="/terminals/TRISK01/unlock-code"] button');
    const code = (await reviewer.locator('#unlock-code').textContent()) ?? '';
    await w.shot(reviewer, 'unlock-code');
    r.agent.unlockCodes.redeem(challenge, code, 'console:tech1');
    expect(r.agent.core.terminal.status().locks).toEqual([]);
    expect(await codeOf(() => sell(r.agent, 1, 4_100))).toBe('ok');

    // Flag again, then clear it from the back office (a signed unlock of the risk source).
    await act('risk-flag', 'second alert');
    await eventually(
      () => r.agent.core.terminal.status().locks.includes('risk'),
      'the risk lock again',
    );
    await act('risk-clear', 'issuer withdrew the alert');
    await eventually(
      () => r.agent.core.terminal.status().locks.length === 0,
      'the risk lock cleared',
    );
    // Lock and unlock (the remote source).
    await act('lock', 'shop under inspection');
    await eventually(
      () => r.agent.core.terminal.status().locks.includes('remote'),
      'the remote lock',
    );
    expect(await codeOf(() => sell(r.agent, 1, 4_200))).toBe('LIFECYCLE_LOCKED');
    await act('unlock', 'inspection done');
    await eventually(
      () => r.agent.core.terminal.status().locks.length === 0,
      'the remote lock cleared',
    );
    expect(await codeOf(() => sell(r.agent, 1, 4_300))).toBe('ok');

    await reviewer.goto('/audit');
    const audit = (await reviewer.locator('table.audit').textContent()) ?? '';
    for (const a of ['risk-flag', 'unlock-code', 'risk-clear', 'lock', 'unlock'])
      expect(audit).toContain(a);
  }, 60_000);
});
