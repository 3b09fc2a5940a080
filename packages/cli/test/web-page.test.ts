import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nbdkitAt, type Server } from '@backy/test-env/nbd';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, freePort, missingTools, tempDir, until } from './helpers.js';

// The daemon's web page in a real headless browser (Debian's chromium, driven by playwright-core; no
// browser is downloaded), against the real `backy scheduler` on loopback.

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = fileURLToPath(new URL('../../../test-artifacts/web-page.png', import.meta.url));
const SCREENSHOT_REVISIONS = SCREENSHOT.replace(/\.png$/, '-revisions.png');
const READ = 'monitoring-0123456789';
const OPERATOR = 'operator-0123456789';

const missing = missingTools('chromium', 'nbdkit');
if (missing != null) {
  // .ci/run installs both (tools/test-env/test-tools.txt): there, a missing one is a failure.
  if (process.env.CI === 'true')
    throw new Error(`the web page test must not be skipped under CI=true: ${missing}`);
  console.warn(`[web page] skipped: ${missing}`);
}

let dir: { path: string; cleanup: () => Promise<void> };
let daemon: ChildProcess | undefined;
let source: Server;
let socket: string;
let browser: Browser;
let url: string;
/** A missing source whose name is markup: the page must show it as text. */
let brokenImage: string;

beforeAll(async () => {
  if (missing != null) return;
  dir = await tempDir();
  brokenImage = join(dir.path, '<img src=x onerror=alert(1)>.img');
  // vm's first backup, as the daemon starts, is of a small disk read at full speed; for "Run now" the
  // disk has grown and is read slowly (below).
  socket = join(dir.path, 'nbd.sock');
  source = await nbdkitAt(socket, 'pattern', 'size=1M');
  const apiPort = await freePort();
  url = `http://127.0.0.1:${apiPort}`;
  const conf = join(dir.path, 'backy.conf');
  await writeFile(
    conf,
    stringify({
      api: {
        listen: `127.0.0.1:${apiPort}`,
        tokens: [
          { name: 'nagios', role: 'read', value: READ },
          { name: 'ops', role: 'operator', value: OPERATOR },
        ],
      },
      global: {
        'base-dir': join(dir.path, 'base'),
        'worker-limit': 2,
        'telnet-addrs': '127.0.0.1',
        'telnet-port': await freePort(),
      },
      schedules: { s: { daily: { interval: '1d', keep: 3 } } },
      jobs: {
        broken: { schedule: 's', source: { type: 'file', filename: brokenImage } },
        vm: { schedule: 's', source: { type: 'nbd', url: source.url() } },
      },
    }),
  );
  daemon = spawn(process.execPath, [BIN, 'scheduler', '-c', conf, '-l', join(dir.path, 'daemon.log')], {
    stdio: 'ignore',
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // As root (CI), chromium runs only without its sandbox.
    args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), '--disable-gpu'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (daemon != null && daemon.exitCode == null) {
    // Its end first: a daemon still writing its status would race the removal of its directory.
    const exited = new Promise((done) => daemon!.once('exit', done));
    daemon.kill('SIGTERM');
    const timer = setTimeout(() => daemon!.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await source?.stop();
  await dir?.cleanup();
}, 30_000);

/** A fresh tab (its own sessionStorage) on the page, signed in with `token`; collects console errors. */
async function signedIn(token: string): Promise<{ page: Page; errors: string[]; statusCalls: () => number }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  // Failed requests by URL (the console's "Failed to load resource" does not say which).
  const since = Date.now();
  let calls = 0;
  /** Calls of /v1/status beyond one each 2 s since sign-in (its polls): more means two chains of polls. */
  const statusCalls = () => calls - (Date.now() - since) / 2000;
  page.on('response', (r) => {
    if (new URL(r.url()).pathname === '/v1/status') calls++;
    if (r.status() >= 400) errors.push(`${r.status()} ${new URL(r.url()).pathname}`);
  });
  page.on('requestfailed', (r) => errors.push(`failed: ${r.url()}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource'))
      errors.push(`console: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    errors.push(`a dialog opened: ${d.message()}`);
    void d.dismiss();
  });
  await until(
    'the daemon’s web page',
    () =>
      fetch(`${url}/`).then(
        (r) => r.ok,
        () => false,
      ),
    60_000,
    200,
  );
  await page.goto(`${url}/`);
  expect(page.url()).toBe(`${url}/ui/`);
  await page.fill('#token', token);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#dashboard:not([hidden])');
  expect(await page.isVisible('#sign-in')).toBe(false);
  return { page, errors, statusCalls };
}

const row = (page: Page, job: string) => page.locator(`#jobs tr[data-job="${job}"]`);
/** The text of the first element `selector` finds in `scope` now, or null: no waiting. */
const textNow = async (scope: Locator, selector: string) =>
  (await scope.locator(selector).allTextContents())[0] ?? null;

describe.skipIf(missing != null)('the web page, in headless chromium against the real daemon', () => {
  it('shows a failing job with its reason; "Run now" starts a run whose progress and revision show', async () => {
    const { page, errors, statusCalls } = await signedIn(OPERATOR);
    expect(await page.textContent('#who')).toBe('ops (operator)');

    // The failing job, marked, with its reason as text (the markup in its name is not markup here).
    const broken = row(page, 'broken');
    await broken.locator('.reason').waitFor({ timeout: 30_000 });
    expect(await broken.locator('.reason').textContent()).toBe(`source file ${brokenImage}: no such file`);
    expect(await broken.getAttribute('class')).toContain('failing');
    expect(await broken.locator('.outcome .badge').textContent()).toBe('failed');
    expect(await page.locator('#jobs img').count()).toBe(0);

    // vm's first backup runs as the daemon starts; once it is done, run it again from the page.
    const vm = row(page, 'vm');
    await until(
      'vm’s first revision',
      async () => (await textNow(vm, '.outcome .badge')) === 'ok',
      60_000,
      200,
    );
    const firstRevision = await vm.locator('.newest').textContent();
    // Slow enough that the backup's progress shows for a few of the page's 2 s polls: 24 chunks, 8 reads
    // in flight, each waiting 2 s (80 ms per read once let 24 MiB through between two polls).
    await source.stop();
    source = await nbdkitAt(socket, '--filter=delay', 'pattern', 'size=96M', 'rdelay=2');
    await vm.locator('button.run').click();
    await until('"vm: started"', async () =>
      /^vm: (started|queued)$/.test((await page.textContent('#notice')) ?? ''),
    );

    // Its progress: a bar with bytes done of the image's 96 MiB.
    await vm.locator('.progress progress').waitFor({ timeout: 15_000 });
    const progress = await until(
      'progress with bytes done',
      async () => {
        const text = (await textNow(vm, '.progress-text')) ?? '';
        return /^backup: \d+\.\d MiB of 96\.0 MiB/.test(text) && !text.startsWith('backup: 0.0 MiB')
          ? text
          : null;
      },
      15_000,
      100,
    );
    expect(progress).toMatch(/^backup: \d+\.\d MiB of 96\.0 MiB( · [\d.]+ [KMG]?i?B\/s)?( · .+ left)?$/);
    expect(Number(await vm.locator('.progress progress').getAttribute('max'))).toBe(96 * 1024 * 1024);
    expect(await vm.locator('button.run').isDisabled()).toBe(true);
    await mkdir(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`[web page] screenshot (a run in progress): ${SCREENSHOT}`);

    // Then the new revision: a newer newest revision, and the job idle and ok again.
    await until(
      'vm’s second revision',
      async () => {
        const newest = await textNow(vm, '.newest');
        return (newest !== firstRevision && (await textNow(vm, '.status')) === 'waiting') || null;
      },
      30_000,
      200,
    );
    expect(await vm.locator('.outcome .badge').textContent()).toBe('ok');
    expect(await vm.locator('button.run').isDisabled()).toBe(false);

    // Its revisions, as GET /v1/backups/vm gives them (newest first); 'not available' without it.
    await vm.locator('button.link').click();
    await page.waitForSelector('#revisions:not([hidden])');
    const answer = await fetch(`${url}/v1/backups/vm`, { headers: { authorization: `Bearer ${READ}` } });
    // Before the revisions API, the page says so; the 404 is the only request that failed.
    const expectedErrors = answer.status === 404 ? ['404 /v1/backups/vm'] : [];
    if (answer.status === 404) {
      await until(
        '"not available"',
        async () => (await page.textContent('#revisions-state')) === 'Revisions not available.',
      );
      expect(await page.isVisible('#revisions table')).toBe(false);
    } else {
      const { revisions } = (await answer.json()) as { revisions: { uuid: string; tags: string[] }[] };
      expect(revisions).toHaveLength(2);
      await until(
        'the revisions listed',
        async () => (await page.locator('#revisions tbody tr').count()) === 2 || null,
      );
      expect(
        await Promise.all(
          (await page.locator('#revisions tbody tr').all()).map((r) => r.getAttribute('data-uuid')),
        ),
      ).toEqual(revisions.map((r) => r.uuid).reverse());
      expect(await page.locator('#revisions tbody tr .tags').first().textContent()).toBe(
        revisions.at(-1)!.tags.join(', '),
      );
    }
    await page.screenshot({ path: SCREENSHOT_REVISIONS, fullPage: true });
    console.log(`[web page] screenshot (its revisions): ${SCREENSHOT_REVISIONS}`);
    expect(errors).toEqual(expectedErrors);
    // Each click polls at once (two here), and the timer's chain of polls goes on alone.
    expect(statusCalls()).toBeLessThanOrEqual(2 + 2);
  }, 150_000);

  it('shows no "Run now" to a read-only token', async () => {
    const { page, errors } = await signedIn(READ);
    expect(await page.textContent('#who')).toBe('nagios (read)');
    await row(page, 'vm').waitFor();
    await row(page, 'broken').locator('.reason').waitFor();
    expect(await page.locator('#jobs button.run').count()).toBe(0);
    expect(errors).toEqual([]);
  }, 30_000);

  it('refuses a wrong token and asks again', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${url}/ui/`);
    await page.fill('#token', 'wrong-token-0123456789');
    await page.click('#sign-in button[type=submit]');
    await until(
      'the refusal',
      async () => (await page.textContent('#sign-in-error')) === 'The daemon refused this token.',
    );
    expect(await page.isHidden('#dashboard')).toBe(true);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
  });
});
