// What the panel tells the editor while jobs run, docked at 320×560, in real Chromium against a real `reshoot serve`
// (oracle model): Render full is followed like Edit, the viewer stays on the job the user started, a result that
// cannot play says why (ProRes, or a file that is gone), the result is handed over as a tab or a download, the
// header's queue figure fits and follows a job's end at once, and a stopped engine is said the same way on the
// card, in the action bar and in the viewer, in the browser and in Premiere (polling), where the live preview shows
// too. Every state it stops at is pictured and run through axe at both panel sizes (support/panel-checks).
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import type { Job } from '../../engine/src/api/schemas';
import { makeTestClip } from '../../engine/src/media';
import type { ClipSelection, Selection } from '../../panel/src/host/host';
import { launchChromium } from '../support/browser';
import { panelChecks } from '../support/panel-checks';
import { openPremierePanel } from '../support/premiere-panel';
import { startServe, stopChildren, type Served } from '../support/children';

const ROOT = path.resolve(__dirname, '../..');
const WEB_UI = path.join(ROOT, 'dist/panel-web/index.html');
const { checkState } = panelChecks('panel-feedback');
const DOCKED = { width: 320, height: 560 };
const STOPPED = 'Engine stopped — will resume when it is back';
const PRORES = 'This browser cannot play ProRes; Download it, or open it in Premiere.';
const GONE = 'The result video could not be loaded. It may have been moved or deleted.';

// Generous: the machines that run this are often shared, and the engine is killed and started again once.
jest.setTimeout(300_000);

// page.evaluate callbacks run in Chromium; this file is compiled without the DOM library (see web-ui.test.ts).
interface El {
  textContent: string | null;
  scrollWidth: number;
  clientWidth: number;
  className: string;
  getAttribute(name: string): string | null;
}
declare const document: {
  querySelector<E = El>(selector: string): E | null;
  querySelectorAll<E = El>(selector: string): E[];
};
declare const window: { viewerJobs: string[]; livePreviews: string[] };
declare const MutationObserver: new (callback: () => void) => {
  observe(target: unknown, options: { attributes?: boolean; attributeFilter?: string[] }): void;
};
/** window.harness of fixtures/premiere-harness.mts, as far as this file drives it. */
interface Harness {
  setSelection(sel: Selection): void;
  revealed: string[];
}

let home: string;
let clip: string;
/** Long enough that an edit of it is still running when a check comes, however fast the machine: such edits end by
 * Cancel. */
let longClip: string;
const LONG_FRAMES = 480;
let engine: Served;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];
/** A finished edit whose result the viewer has not loaded yet. */
let unseen: string;
/** The Render full of the first test: an H.264 edit, in history. */
let rendered: string;

async function api<T>(route: string): Promise<T> {
  const res = await fetch(`${engine.origin}${route}`, { headers: { authorization: `Bearer ${engine.token}` } });
  return (await res.json()) as T;
}

const getJob = (id: string) => api<Job>(`/v1/jobs/${id}`);

/** The card at the top of the list, if any: asked without waiting, since a fresh panel has none. */
function topJob(p: Page): Promise<string | null> {
  return p.evaluate(() => document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id') ?? null);
}

/** The id of the job a click added to the top of the list. */
async function newJob(p: Page, after: string | null): Promise<string> {
  await p.waitForFunction((prev) => {
    const id = document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id');
    return !!id && id !== prev;
  }, after);
  return (await topJob(p))!;
}

/** Picks a clip in the browser panel by its path, as a user who types one does. */
async function choose(p: Page, file: string, frames: number): Promise<void> {
  await p.fill('#source-path', file);
  await p.click('#probe');
  await p.waitForFunction(
    (n) => new RegExp(`(^|\\D)${n} frames`).test(document.querySelector('#probe-info')?.textContent ?? ''),
    frames,
  );
}

async function click(p: Page, button: '#edit' | '#preview'): Promise<string> {
  const before = await topJob(p);
  await p.waitForSelector(`${button}:not([disabled])`);
  await p.click(button);
  return newJob(p, before);
}

const running = (p: Page, id: string) =>
  p.waitForFunction(
    (jid) => /[1-9]\d*%/.test(document.querySelector(`[data-job-id="${jid}"] .job-pct`)?.textContent ?? ''),
    id,
    { timeout: 60_000 },
  );

const done = (p: Page, id: string) =>
  p.waitForSelector(`#jobs [data-job-id="${id}"][data-state="succeeded"]`, { timeout: 120_000 });

function stopped(proc: ChildProcess): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => proc.once('exit', () => r()));
}

/** Cancels the job through the API, as another client would, and waits for its card to say it ended. */
async function cancelAndWait(p: Page, id: string): Promise<void> {
  if (!['canceled', 'succeeded', 'failed'].includes((await getJob(id)).state))
    await fetch(`${engine.origin}/v1/jobs/${id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${engine.token}` },
    });
  await p.waitForSelector(`#jobs [data-job-id="${id}"][data-state="canceled"]`, { timeout: 120_000 });
}

/** The clip as Premiere's selection gives it: the first `frames` frames of a test clip on track 1. */
function premiereClip(mediaPath: string, frames: number): ClipSelection {
  const seconds = frames / 24;
  return {
    kind: 'clip',
    name: path.basename(mediaPath),
    mediaPath,
    sourceIn: 0,
    sourceOut: seconds,
    sequenceStart: 0,
    sequenceEnd: seconds,
    sequenceStartTicks: '0',
    sequenceEndTicks: String((254016000000n * BigInt(frames)) / 24n),
    fps: 24,
    frameWidth: 64,
    frameHeight: 36,
    frames,
    trackIndex: 0,
    renderReason: null,
  };
}

/** The panel in the Premiere harness, docked, connected, with the clip selected, a prompt and the settings open. */
async function premiereWithClip(
  resultsFolder: string,
  selection = premiereClip(clip, 6),
): ReturnType<typeof openPremierePanel> {
  const panel = await openPremierePanel(browser, engine, {
    viewport: DOCKED,
    resultsFolder,
    onPageError: (m) => pageErrors.push(`premiere: ${m}`),
  });
  const premiere = panel.page;
  await premiere.waitForSelector('#engine-status[data-state="connected"]');
  await premiere.evaluate((s) => (window as unknown as { harness: Harness }).harness.setSelection(s), selection);
  await premiere.fill('#prompt', 'a green car on a gray road');
  await premiere.click('#advanced-toggle');
  return panel;
}

beforeAll(async () => {
  if (!fs.existsSync(WEB_UI))
    throw new Error(`${WEB_UI} is missing: run npm run build (npm test does) before the e2e tests`);
  home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-e2e-feedback-')));
  clip = path.join(home, 'street.mp4');
  longClip = path.join(home, 'long street.mp4');
  const clipOf = (file: string, frames: number) =>
    makeTestClip({ file, width: 64, height: 36, fps: { num: 24, den: 1 }, frames, content: 'moving-square' });
  const [clipMade, longMade, started, launched] = await Promise.allSettled([
    clipOf(clip, 12),
    clipOf(longClip, LONG_FRAMES),
    startServe({ home }),
    launchChromium(),
  ]);
  if (started.status === 'fulfilled') engine = started.value;
  if (launched.status === 'fulfilled') browser = launched.value.browser;
  for (const r of [clipMade, longMade, started, launched]) if (r.status === 'rejected') throw r.reason;
  context = await browser.newContext({ viewport: DOCKED, deviceScaleFactor: 1, acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(engine.printedUrl);
  await page.waitForSelector('#engine-status[data-state="connected"]');
  await choose(page, clip, 12);
  await page.fill('#prompt', 'a blue car on a gray road');
  await page.click('#advanced-toggle');
});

afterAll(async () => {
  try {
    await browser?.close();
  } finally {
    await stopChildren();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  }
});

it('follows Render full in the action bar and the viewer, as it does Edit', async () => {
  await page.fill('#steps', '3');
  const preview = await click(page, '#preview');
  await done(page, preview);
  await page.click(`[data-job-id="${preview}"] .job-render-full`);
  const full = await newJob(page, preview);
  // Set before the card is added: at 320×560 the bar is the one place the progress is in view.
  expect(await page.getAttribute('#current-job', 'data-job-id')).toBe(full);
  expect(await page.textContent('#current-job .badge')).toBe('Edit');
  expect(await page.getAttribute('#viewer', 'data-job-id')).toBe(full);
  expect(await page.getAttribute('#viewer', 'data-showing')).toBe('live');
  await done(page, full);
  await page.waitForSelector(`#current-job[data-job-id="${full}"][data-state="succeeded"]`);
  await page.waitForSelector(`#viewer[data-job-id="${full}"][data-showing="result"]`);
  rendered = full;
  await checkState(page, '33-render-full-done');
});

it('stays on the job started last while an earlier one finishes, and shows its previews and result', async () => {
  await page.fill('#steps', '40');
  const earlier = await click(page, '#edit');
  await page.fill('#steps', '20');
  const last = await click(page, '#preview');
  // Every job the viewer shows from here on, and the live previews it shows of each (they last a moment).
  await page.evaluate(() => {
    const viewer = document.querySelector('#viewer')!;
    const live = document.querySelector('#viewer-live')!;
    const seen: string[] = (window.viewerJobs = [viewer.getAttribute('data-job-id') ?? '']);
    window.livePreviews = [];
    new MutationObserver(() => {
      const id = viewer.getAttribute('data-job-id') ?? '';
      if (seen.at(-1) !== id) seen.push(id);
    }).observe(viewer, { attributes: true, attributeFilter: ['data-job-id'] });
    new MutationObserver(() => {
      if (live.getAttribute('src')?.startsWith('data:image/png'))
        window.livePreviews.push(viewer.getAttribute('data-job-id') ?? '');
    }).observe(live, { attributes: true, attributeFilter: ['src'] });
  });
  // The engine runs one job at a time: the earlier one ends while the last one waits behind it.
  expect((await getJob(earlier)).state).not.toBe('succeeded');
  await done(page, earlier);
  expect(await page.getAttribute('#viewer', 'data-job-id')).toBe(last);
  expect(await page.getAttribute('#viewer', 'data-showing')).toBe('live');
  // Its live previews still reach the viewer, then its result.
  await done(page, last);
  await page.waitForSelector(`#viewer[data-job-id="${last}"][data-showing="result"]`);
  expect(await page.evaluate(() => window.viewerJobs)).toEqual([last]);
  const previews = await page.evaluate(() => window.livePreviews);
  expect(previews.length).toBeGreaterThan(0);
  expect(new Set(previews)).toEqual(new Set([last]));
  unseen = earlier;
  await checkState(page, '34-viewer-stayed');
});

it('says a result was removed, clears that for the next edit, and says ProRes does not play here', async () => {
  // The file of a finished edit is removed before the user asks for it: the engine says it is gone, and so does the
  // viewer.
  fs.rmSync((await getJob(unseen)).result!.path);
  await page.click(`[data-job-id="${unseen}"] button:has-text("Compare")`);
  await page.waitForSelector(`#viewer[data-job-id="${unseen}"][data-showing="result"]`);
  await page.waitForSelector('.compare-message:not(.hidden)');
  expect(await page.textContent('.compare-message')).toBe(GONE);

  await page.click('#codec [data-value="prores"]');
  await page.fill('#steps', '3');
  const prores = await click(page, '#edit');
  // The message was about the other result.
  expect(await page.getAttribute('#viewer', 'data-job-id')).toBe(prores);
  expect(await page.isVisible('.compare-message')).toBe(false);
  await done(page, prores);
  const job = await getJob(prores);
  expect(job.result!.codec).toBe('prores');
  await page.waitForFunction(
    (t) => document.querySelector('.compare-message')?.textContent?.startsWith(t) ?? false,
    PRORES,
  );
  expect(await page.textContent('.compare-message')).not.toContain('moved or deleted');
  const href = (await page.getAttribute('.compare-message a', 'href'))!;
  expect(href).toContain(`/v1/jobs/${prores}/result?download=1`);
  const res = await fetch(href);
  expect(res.headers.get('content-disposition')).toMatch(/^attachment/);
  expect(Buffer.from(await res.arrayBuffer()).equals(fs.readFileSync(job.result!.path))).toBe(true);
  await checkState(page, '30-prores-result');
  await page.click('#codec [data-value="h264"]');
});

it('hands a result over in the browser as a tab or a download, from the viewer and from history', async () => {
  // H.264, which Chromium plays in a tab of its own.
  const entry = rendered;
  const job = await getJob(entry);
  expect(await page.textContent(`#history [data-job-id="${entry}"] .history-open`)).toBe('Open in a tab');
  const download = (await page.getAttribute(`#history [data-job-id="${entry}"] .history-download`, 'href'))!;
  expect(download).toContain(`/v1/jobs/${entry}/result?download=1`);
  const res = await fetch(download);
  expect(res.headers.get('content-disposition')).toMatch(/^attachment/);
  expect(Buffer.from(await res.arrayBuffer()).equals(fs.readFileSync(job.result!.path))).toBe(true);
  const [tab] = await Promise.all([
    context.waitForEvent('page'),
    page.click(`#history [data-job-id="${entry}"] .history-open`),
  ]);
  await tab.waitForURL(new RegExp(`/v1/jobs/${entry}/result\\?token=`));
  await tab.close();

  await page.click(`[data-job-id="${entry}"] button:has-text("Compare")`);
  await page.waitForSelector(`#viewer[data-job-id="${entry}"][data-showing="result"]`);
  expect(await page.textContent('#open-result')).toBe('Open in a tab');
  expect(await page.getAttribute('#open-result', 'href')).toContain(`/v1/jobs/${entry}/result?token=`);
  expect(await page.textContent('#download-result')).toBe('Download');
  expect(await page.getAttribute('#download-result', 'href')).toContain(`/v1/jobs/${entry}/result?download=1`);
});

it('fits the queue in the header at 320 px, and says the engine stopped on the card, the bar and the viewer', async () => {
  const resultsFolder = path.join(home, 'Project', 'Reshoot Renders');
  fs.mkdirSync(resultsFolder, { recursive: true });
  await choose(page, longClip, LONG_FRAMES);
  await page.fill('#steps', '40');
  const long = await click(page, '#edit');
  await page.fill('#steps', '3');
  const next = await click(page, '#preview');
  await running(page, long);
  await page.waitForFunction(
    () => document.querySelector('#engine-status .fact.queue')?.textContent === '1 running, 1 waiting',
  );
  const clipped = await page.evaluate(() =>
    [
      '.topbar',
      '#engine-status',
      '.status-text',
      '.status-title',
      '.status-facts',
      '.fact.queue',
      '.segmented .seg',
    ].flatMap((s) =>
      [...document.querySelectorAll(s)]
        .filter((e) => e.scrollWidth > e.clientWidth)
        .map((e) => `${s} "${e.textContent}": ${e.scrollWidth} > ${e.clientWidth}`),
    ),
  );
  expect(clipped).toEqual([]);
  await checkState(page, '31-header-queue');

  // The same engine seen from Premiere, where jobs are polled: an edit queued behind the two.
  const panel = await premiereWithClip(resultsFolder);
  const premiere = panel.page;
  try {
    await premiere.fill('#steps', '2');
    const placed = await click(premiere, '#edit');
    await premiere.waitForSelector(`#current-job[data-job-id="${placed}"][data-state="queued"]`);

    // Killed mid-job, as a crash would. Every view of a job says the same, in both panels.
    engine.proc.kill('SIGKILL');
    await stopped(engine.proc);
    const says = async (p: Page, selector: string, text: string) => {
      try {
        await p.waitForFunction(([s, t]) => document.querySelector(s)?.textContent === t, [selector, text] as const, {
          timeout: 30_000,
        });
      } catch (e) {
        throw new Error(`${selector} says "${await p.textContent(selector)}", not "${text}"`, { cause: e });
      }
    };
    await says(page, `[data-job-id="${long}"] .job-stage`, STOPPED);
    await says(page, `[data-job-id="${next}"] .job-stage`, STOPPED);
    await says(page, `#current-job[data-job-id="${next}"] .current-stage`, STOPPED);
    await says(page, '#viewer-badge', `Preview · ${STOPPED}`);
    await says(premiere, `[data-job-id="${placed}"] .job-stage`, STOPPED);
    await says(premiere, `#current-job[data-job-id="${placed}"] .current-stage`, STOPPED);
    await says(premiere, '#viewer-badge', `Edit · ${STOPPED}`);
    await checkState(page, '32-engine-stopped');
    await checkState(premiere, '32-engine-stopped-premiere');

    // Back: the bar and the viewer say what the job does again, and the jobs finish.
    engine = await startServe({ home, port: Number(new URL(engine.origin).port) });
    const back = (p: Page) =>
      p.waitForFunction(
        (t) =>
          !document.querySelector('#current-job')!.textContent!.includes(t) &&
          !document.querySelector('#viewer-badge')!.textContent!.includes(t),
        STOPPED,
        { timeout: 60_000 },
      );
    await back(page);
    await back(premiere);
    // It started again from the beginning; the two behind it finish once it is cancelled.
    await cancelAndWait(page, long);
    await done(page, next);
    // A new card makes room by dropping the ended cards added first: the two that just ended stay in view, the first
    // test's render goes. (Premiere's job may be on this list too: the page adopts what it finds on reconnecting.)
    const extra = await click(page, '#preview');
    await done(page, extra);
    const cards = await page.evaluate(() =>
      [...document.querySelectorAll('#jobs article.job')].map((e) => e.getAttribute('data-job-id')),
    );
    expect(cards[0]).toBe(extra);
    expect(cards).toEqual(expect.arrayContaining([next, long]));
    expect(cards).not.toContain(rendered);
    await done(premiere, placed);
    expect(await premiere.getAttribute('#current-job', 'data-engine-lost')).toBeNull();
    // In Premiere the file's folder opens: the panel can reach it.
    const result = (await getJob(placed)).result!.path;
    await premiere.waitForSelector(`#history [data-job-id="${placed}"] .history-open`);
    expect(await premiere.textContent(`#history [data-job-id="${placed}"] .history-open`)).toBe('Reveal file');
    expect(await premiere.$(`#history [data-job-id="${placed}"] .history-download`)).toBeNull();
    await premiere.click(`#history [data-job-id="${placed}"] .history-open`);
    expect(await premiere.evaluate(() => (window as unknown as { harness: Harness }).harness.revealed)).toEqual([
      result,
    ]);
  } finally {
    await panel.context.close();
  }
});

it('shows the live preview in Premiere too, where jobs are polled, on the card and in the viewer', async () => {
  const resultsFolder = path.join(home, 'Project', 'Reshoot Renders');
  fs.mkdirSync(resultsFolder, { recursive: true });
  const panel = await premiereWithClip(resultsFolder, premiereClip(longClip, LONG_FRAMES));
  const premiere = panel.page;
  try {
    await premiere.fill('#steps', '30');
    const id = await click(premiere, '#edit');
    // A picture of the edit as it goes, polled (GET /v1/jobs/:id/preview): the same one on the card and the viewer.
    const png = 'data:image/png;base64,iVBORw0KGgo';
    await premiere.waitForFunction(
      ([jid, magic]) =>
        document.querySelector(`[data-job-id="${jid}"] .job-thumb-img.live`)?.getAttribute('src')?.startsWith(magic) &&
        document.querySelector('#viewer-live')?.getAttribute('src')?.startsWith(magic),
      [id, png] as const,
      { timeout: 120_000 },
    );
    const [thumb, live] = await premiere.evaluate(() => [
      document.querySelector('.job-thumb-img.live')!.getAttribute('src'),
      document.querySelector('#viewer-live')!.getAttribute('src'),
    ]);
    expect((await getJob(id)).state).toBe('running');
    expect(live).toBe(thumb);
    await checkState(premiere, '35-premiere-live-preview');
    await cancelAndWait(premiere, id);
  } finally {
    await panel.context.close();
  }
});

it("counts a job's end in the header at once, even when a check was on its way as it ended", async () => {
  // The panel's own clock is stopped, so no periodic check can put the figure right: only the panel's answer to the
  // job's end can.
  // A window of its own, whose clock is stopped.
  const own = await browser.newContext({ viewport: DOCKED, deviceScaleFactor: 1 });
  const p = await own.newPage();
  p.on('pageerror', (e) => pageErrors.push(`own window: ${e.message}`));
  await p.clock.install();
  await p.goto(engine.printedUrl);
  await p.waitForSelector('#engine-status[data-state="connected"]');
  await choose(p, longClip, LONG_FRAMES);
  await p.fill('#prompt', 'a blue car on a gray road');
  if (!(await p.isVisible('#steps'))) await p.click('#advanced-toggle');
  // Still running when the held check is answered, on a fast machine too; it ends by Cancel.
  await p.fill('#steps', '200');
  const id = await click(p, '#edit');
  await running(p, id);
  await p.waitForFunction(() => document.querySelector('#engine-status .fact.queue')?.textContent === '1 running');
  await p.clock.pauseAt(Date.now() + 1000);

  // The next check is answered with the engine's word from before the job ended, and held until the card ends.
  let entered!: () => void;
  const held = new Promise<void>((r) => (entered = r));
  let stateWhenHeld = '';
  let healthAfter = 0;
  let holding = true;
  await p.route('**/v1/health*', async (route: Route) => {
    if (!holding) {
      healthAfter++;
      return route.continue();
    }
    holding = false;
    const stale = await route.fetch();
    stateWhenHeld = (await getJob(id)).state;
    entered();
    await cancelAndWait(p, id);
    await route.fulfill({ response: stale });
  });
  /** Resolves with the first check after the held one: the panel makes it once it has taken in the stale answer. */
  const checkedAgain = async () => {
    for (const until = Date.now() + 30_000; healthAfter === 0; await new Promise((r) => setTimeout(r, 100)))
      if (Date.now() > until) throw new Error('the panel did not check again after the stale answer');
  };
  // A check already on its way when the clock stopped schedules the next one only once answered: move the clock on
  // until a check comes. None can start while that one is held, so none can put the figure right.
  while (holding) {
    await p.clock.runFor(6000);
    await Promise.race([held, new Promise((r) => setTimeout(r, 500))]);
  }
  await held;
  expect(stateWhenHeld).toBe('running');
  await cancelAndWait(p, id);
  await checkedAgain();
  await p.waitForFunction(() => !document.querySelector('#engine-status .fact.queue'), undefined, {
    timeout: 30_000,
  });
  expect(await p.textContent('#engine-status')).not.toContain('running');
  await own.close();
  expect(pageErrors).toEqual([]);
});
