/**
 * The seed through `npm start`, as a person does it: the demo prints the back office's address
 * and demo accounts; in Chromium the merchant finds the demo terminal in POS management and
 * requests deactivation, the reviewer approves it, the merchant's page follows until the
 * terminal is deactivated, and the technician console on the demo's stdin shows it too.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const data = mkdtempSync(path.join(tmpdir(), 'pa-bo-demo-'));
let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});
afterAll(async () => {
  await browser?.close();
  rmSync(data, { recursive: true, force: true });
});

async function login(url: string, username: string, password: string): Promise<Page> {
  const page = await (await browser.newContext({ baseURL: url })).newPage();
  await page.goto('/login');
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await Promise.all([
    page.waitForURL((u) => u.pathname !== '/login'),
    page.click('button[type=submit]'),
  ]);
  return page;
}

describe('npm start with the back office', () => {
  it('walks the seed: browser request, reviewer approval, deactivated on the page and the console', async () => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin', 'pos-agent.mjs'), 'demo', '--data', data],
      {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, POS_BACKOFFICE_PORT: '0' },
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const waitOut = async (re: RegExp, from = 0, timeoutMs = 30_000): Promise<RegExpExecArray> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(out.slice(from));
        if (m) return m;
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(`no ${re} in:\n${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    try {
      const m = await waitOut(
        /back office: (http:\/\/127\.0\.0\.1:\d+) {2}\(merchant: (\S+) \/ (\S+); reviewer: (\S+) \/ (\S+)\)/,
      );
      const [, url, mu, mp, ru, rp] = m;
      await waitOut(/then type help\./);

      const merchant = await login(url!, mu!, mp!);
      expect(await merchant.locator('tr[data-terminal="T0001"]').textContent()).toContain('active');
      await merchant.click('a[href="/pos/T0001"]');
      await merchant.fill('#deactivate textarea[name=reason]', 'closing the shop');
      await Promise.all([
        merchant.waitForURL(/done=requested/),
        merchant.click('#deactivate button[type=submit]'),
      ]);
      await expect
        .poll(() => merchant.locator('#live [data-field=state]').textContent(), { timeout: 20_000 })
        .toBe('deactivation-pending');

      const reviewer = await login(url!, ru!, rp!);
      const row = reviewer.locator('table.queue tr', { hasText: 'T0001' });
      expect(await row.textContent()).toContain('closing the shop');
      await row.locator('input[name=note]').fill('approved: all settled');
      await Promise.all([
        reviewer.waitForURL(/done=decided/),
        row.locator('button[value=approve]').click(),
      ]);

      await expect
        .poll(() => merchant.locator('#live [data-field=state]').textContent(), { timeout: 30_000 })
        .toBe('deactivated');

      // The technician console, on the demo's own stdin, says the same.
      const mark = out.length;
      child.stdin.write('tech\n');
      await waitOut(/PIN: /, mark);
      child.stdin.write('1234\n');
      await waitOut(/logged in as tech/, mark);
      const before = out.length;
      child.stdin.write('status\n');
      await waitOut(/T0001 deactivated> /, before);
      expect(out.slice(before)).toMatch(/^state: +deactivated$/m);
      child.stdin.write('quit\n');
      expect(await new Promise((r) => child.once('exit', r))).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 90_000);
});
