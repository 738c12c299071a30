// The job flow of the web UI in real Chromium against a real `reshoot serve` (oracle model): a range problem said
// once in the editor's words, a preview whose seed and settings the full render keeps, progress that never goes back
// across the chunks of a longer clip, the result's audio and format, the result file handed over (path, Copy,
// Download), queued jobs numbered, a job the engine dropped when it was killed explained on its card, and a card
// that stays ended when Cancel's reply crosses the job's end. It runs docked, 320×560: after every click the action
// and the new job's progress are on screen, and each state is pictured and checked with axe-core there and at
// 1280×800 (test-output/e2e/panel-jobs/).
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page, Request as PageRequest } from 'playwright-core';
import type { Job } from '../../engine/src/api/schemas';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { launchChromium } from '../support/browser';
import { startServe, stopChildren, type Served } from '../support/children';
import { DOCKED, clickInView, expectInView as inView, panelChecks } from '../support/panel-checks';

const ROOT = path.resolve(__dirname, '../..');
const WEB_UI = path.join(ROOT, 'dist/panel-web/index.html');
const checks = panelChecks('panel-jobs');
const PROMPT = 'a blue car on a gray road';
const FRAMES = 40;

// Generous: the machines that run this are often shared, and a job here runs the real pipeline three chunks long.
jest.setTimeout(300_000);

// page.evaluate callbacks run in Chromium; this file is compiled without the DOM library (see web-ui.test.ts).
interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
}
declare const document: {
  querySelector<E = PageElement>(selector: string): E | null;
  body: { innerText: string };
};
declare const window: { seen: Record<string, string[]> };
declare const MutationObserver: new (callback: () => void) => {
  observe(target: unknown, options: { subtree?: boolean; childList?: boolean; characterData?: boolean }): void;
};

let home: string;
let clip: string;
let engine: Served;
let browser: Browser;
let page: Page;
const sent: Record<string, unknown>[] = [];

async function api<T>(route: string): Promise<T> {
  const res = await fetch(`${engine.origin}${route}`, { headers: { authorization: `Bearer ${engine.token}` } });
  return (await res.json()) as T;
}

const getJob = (id: string) => api<Job>(`/v1/jobs/${id}`);
const checkState = (name: string) => checks.checkState(page, name);
const expectInView = (selector: string) => inView(page, selector);
/** Every click of this suite: the action stays in view after it. */
const click = (selector: string) => clickInView(page, selector);

/** Every job the engine reports over its event stream until the job ends: what the panel itself listens to. */
async function recordEvents(id: string): Promise<Job[]> {
  const res = await fetch(`${engine.origin}/v1/jobs/${id}/events`, {
    headers: { authorization: `Bearer ${engine.token}` },
  });
  const seen: Job[] = [];
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('');
      if (!data) continue;
      const d = JSON.parse(data) as { job?: Job };
      if (d.job) seen.push(d.job);
      if (d.job && ['succeeded', 'failed', 'canceled'].includes(d.job.state)) return seen;
    }
  }
  return seen;
}

async function newestJobId(after?: string): Promise<string> {
  await page.waitForFunction((prev) => {
    const id = document.querySelector('#jobs article.job:first-child')?.getAttribute('data-job-id');
    return !!id && id !== prev;
  }, after ?? null);
  return (await page.getAttribute('#jobs article.job:first-child', 'data-job-id'))!;
}

/** Records what a card shows (its percent and stage line) on every change, for checks over the whole run. */
async function watchCard(id: string): Promise<void> {
  await page.evaluate((jid) => {
    window.seen ??= {};
    const seen: string[] = (window.seen[jid] = []);
    const card = document.querySelector(`[data-job-id="${jid}"]`)!;
    const note = () => {
      const pct = document.querySelector(`[data-job-id="${jid}"] .job-pct`)?.textContent ?? '';
      const stage = document.querySelector(`[data-job-id="${jid}"] .job-stage`)?.textContent ?? '';
      const line = `${pct}|${stage}`;
      if (seen.at(-1) !== line) seen.push(line);
    };
    note();
    new MutationObserver(note).observe(card, { subtree: true, childList: true, characterData: true });
  }, id);
}

function stopped(proc: ChildProcess): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => proc.once('exit', () => r()));
}

beforeAll(async () => {
  if (!fs.existsSync(WEB_UI))
    throw new Error(`${WEB_UI} is missing: run npm run build (npm test does) before the e2e tests`);
  home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'reshoot-e2e-jobs-')));
  clip = path.join(home, 'street.mp4');
  // The engine's file picker shows this folder only (the engine child inherits the variable).
  process.env.RESHOOT_BROWSE_ROOTS = home;
  fs.writeFileSync(path.join(home, 'notes.txt'), 'not a video');
  const [clipMade, started, launched] = await Promise.allSettled([
    makeTestClip({
      file: clip,
      width: 64,
      height: 36,
      fps: { num: 24, den: 1 },
      frames: FRAMES,
      content: 'moving-square',
      audio: true,
    }),
    startServe({ home }),
    launchChromium(),
  ]);
  if (started.status === 'fulfilled') engine = started.value;
  if (launched.status === 'fulfilled') browser = launched.value.browser;
  for (const r of [clipMade, started, launched]) if (r.status === 'rejected') throw r.reason;
  const context = await browser.newContext({ viewport: DOCKED, deviceScaleFactor: 1, acceptDownloads: true });
  page = await context.newPage();
  page.on('request', (r: PageRequest) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/jobs')
      sent.push(r.postDataJSON() as Record<string, unknown>);
  });
  await page.goto(engine.printedUrl);
  await page.waitForSelector('#engine-status[data-state="connected"]');
});

afterAll(async () => {
  try {
    await browser?.close();
  } finally {
    await stopChildren();
    if (home) fs.rmSync(home, { recursive: true, force: true });
    if (checks.seen.length) process.stdout.write(`axe-core:\n  ${checks.seen.join('\n  ')}\n`);
  }
});

it("says a range problem once, in the editor's words, and the footer names it", async () => {
  await page.fill('#source-path', clip);
  await click('#probe');
  await page.waitForFunction(() => /40 frames/.test(document.querySelector('#probe-info')?.textContent ?? ''));
  await page.fill('#prompt', PROMPT);
  await page.fill('#source-out', '5');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#source-out[aria-invalid="true"]');
  const text = await page.evaluate(() => document.body.innerText);
  expect(text).toContain('Out is past the end of the clip (00:00:01:16, 40 frames)');
  expect(text.match(/past the end/g)).toHaveLength(1);
  expect(text).not.toMatch(/source\.out|Invalid/);
  const hint = (await page.textContent('#action-hint'))!;
  expect(hint).not.toContain('Choose a video file');
  expect(hint).toContain('Check In and Out');
  await expectInView('#edit');
  await checkState('01-range-refused');
  await page.fill('#source-out', '');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#edit:not([disabled])');
});

it('renders in full exactly what was previewed: same seed and settings, audio kept, progress never back', async () => {
  // The clip has sound: audio is on without the user asking, and H.264 is the format.
  expect(await page.getAttribute('#audio [data-value="on"]', 'aria-checked')).toBe('true');
  expect(await page.getAttribute('#codec [data-value="h264"]', 'aria-checked')).toBe('true');
  await click('#advanced-toggle');
  await page.fill('#steps', '4');
  expect(await page.inputValue('#seed')).toBe('');

  await click('#preview');
  const previewId = await newestJobId();
  await expectInView('#preview');
  await expectInView(`#current-job[data-job-id="${previewId}"]`);
  await page.waitForSelector(`[data-job-id="${previewId}"][data-state="succeeded"]`, { timeout: 60_000 });
  const preview = await getJob(previewId);
  // The seed the engine drew for the preview stays in the form, so Edit would repeat it too.
  expect(await page.inputValue('#seed')).toBe(String(preview.seed));

  await checkState('02-preview-done');
  await click(`[data-job-id="${previewId}"] .job-render-full`);
  const fullId = await newestJobId(previewId);
  // Recorded from now to the job's end, while the page is checked as the click left it.
  const recorded = recordEvents(fullId);
  recorded.catch(() => undefined);
  await watchCard(fullId);
  await expectInView('#edit');
  await expectInView(`[data-job-id="${fullId}"] .job-pct`);
  await checkState('03-render-full-started');
  const events = await recorded;
  await page.waitForSelector(`[data-job-id="${fullId}"][data-state="succeeded"]`, { timeout: 180_000 });
  const full = await getJob(fullId);
  expect(full.seed).toBe(preview.seed);
  const { preview: previewPart, output: previewOutput, ...previewSettings } = preview.request;
  const { preview: fullPreviewPart, output, ...fullSettings } = full.request;
  expect(previewPart).toBeDefined();
  expect(previewOutput).toBeUndefined();
  expect(fullPreviewPart).toBeUndefined();
  expect(fullSettings).toEqual({ ...previewSettings, seed: preview.seed });
  expect(output).toMatchObject({ codec: 'h264', audio: true });

  // The engine's own events: one fraction that never decreases while three chunks start their steps over.
  const fractions = events.map((j) => j.progress.fraction);
  for (let i = 1; i < fractions.length; i++) expect(fractions[i]).toBeGreaterThanOrEqual(fractions[i - 1]);
  const ranges = new Set(events.flatMap((j) => (j.progress.frameRange ? [JSON.stringify(j.progress.frameRange)] : [])));
  expect([...ranges]).toEqual([
    JSON.stringify({ first: 1, last: 16 }),
    JSON.stringify({ first: 13, last: 32 }),
    JSON.stringify({ first: 29, last: 40 }),
  ]);
  // And what the card showed: its percent never went down, and it named the frames being worked on.
  const seen = await page.evaluate((id) => window.seen[id], fullId);
  const percents = seen.flatMap((l) => {
    const m = /^(\d+)%/.exec(l);
    return m ? [Number(m[1])] : [];
  });
  expect(percents.length).toBeGreaterThan(3);
  for (let i = 1; i < percents.length; i++) expect(percents[i]).toBeGreaterThanOrEqual(percents[i - 1]);
  expect(seen.some((l) => l.includes('frames 13–32 of 40'))).toBe(true);

  // The result has the clip's sound and every frame.
  const info = await probeMedia(full.result!.path);
  expect(info.video.frameCount).toBe(FRAMES);
  expect(info.audio.length).toBe(1);

  // Where the file is: the path to copy, and a download of the job's own file.
  expect(await page.inputValue(`[data-job-id="${fullId}"] .job-path`)).toBe(full.result!.path);
  const href = (await page.getAttribute(`[data-job-id="${fullId}"] .job-download`, 'href'))!;
  expect(href).toContain(`/v1/jobs/${fullId}/result?download=1`);
  const res = await fetch(href);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-disposition')).toMatch(
    new RegExp(`^attachment; filename="?${path.basename(full.result!.path).replace(/\./g, '\\.')}"?$`),
  );
  expect(Buffer.from(await res.arrayBuffer()).equals(fs.readFileSync(full.result!.path))).toBe(true);
  await checkState('04-render-full-done');
});

it('leaves the audio out when asked, and writes ProRes when chosen', async () => {
  await page.fill('#source-out', '0.25');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#edit:not([disabled])');
  await click('#audio [data-value="off"]');
  await click('#codec [data-value="prores"]');
  const before = (await page.getAttribute('#jobs article.job:first-child', 'data-job-id'))!;
  await click('#edit');
  const id = await newestJobId(before);
  await expectInView('#edit');
  await expectInView(`#current-job[data-job-id="${id}"]`);
  await page.waitForSelector(`[data-job-id="${id}"][data-state="succeeded"]`, { timeout: 60_000 });
  const job = await getJob(id);
  expect(sent.at(-1)?.output).toEqual({ codec: 'prores', audio: false });
  expect(job.result!.path).toMatch(/\.mov$/);
  const info = await probeMedia(job.result!.path);
  expect(info.video.codec).toBe('prores');
  expect(info.audio).toHaveLength(0);
  await click('#audio [data-value="on"]');
  await click('#codec [data-value="h264"]');
});

it('numbers queued jobs, and a job the engine dropped says so and that it started over', async () => {
  await page.fill('#source-out', '');
  await page.press('#source-out', 'Tab');
  await page.waitForSelector('#edit:not([disabled])');
  await page.fill('#steps', '4');
  const before = (await page.getAttribute('#jobs article.job:first-child', 'data-job-id'))!;
  await click('#edit');
  const long = await newestJobId(before);
  await page.fill('#steps', '2');
  await click('#edit');
  const next = await newestJobId(long);
  await expectInView('#edit');
  await expectInView(`#current-job[data-job-id="${next}"]`);
  await page.waitForFunction(
    (id) =>
      /Waiting in the queue · next/.test(document.querySelector(`[data-job-id="${id}"] .job-stage`)?.textContent ?? ''),
    next,
  );
  await page.waitForFunction(
    (id) => /\d+%/.test(document.querySelector(`[data-job-id="${id}"] .job-pct`)?.textContent ?? ''),
    long,
  );
  await checkState('05-queued');

  // Killed mid-job, as a crash would: the cards say the engine stopped, not that the jobs wait in a queue.
  engine.proc.kill('SIGKILL');
  await stopped(engine.proc);
  for (const id of [long, next])
    await page.waitForFunction(
      (jid) =>
        /Engine stopped — will resume/.test(
          document.querySelector(`[data-job-id="${jid}"] .job-stage`)?.textContent ?? '',
        ),
      id,
      { timeout: 20_000 },
    );
  expect(await page.isVisible(`[data-job-id="${long}"] .job-cancel`)).toBe(false);
  await checkState('06-engine-stopped');

  engine = await startServe({ home, port: Number(new URL(engine.origin).port) });
  await page.waitForSelector(`[data-job-id="${long}"][data-state="succeeded"]`, { timeout: 180_000 });
  expect((await getJob(long)).restarts).toBe(1);
  expect(await page.textContent(`[data-job-id="${long}"] .job-restarts`)).toContain('restarted from the beginning');
  await checkState('07-restarted');
  await page.waitForSelector(`[data-job-id="${next}"][data-state="succeeded"]`, { timeout: 60_000 });
  expect(await page.isVisible(`[data-job-id="${next}"] .job-restarts`)).toBe(false);
});

it('keeps a canceled card canceled when the answer to Cancel arrives after the job ended', async () => {
  await page.fill('#steps', '200');
  const before = (await page.getAttribute('#jobs article.job:first-child', 'data-job-id'))!;
  await click('#edit');
  const id = await newestJobId(before);
  await expectInView('#edit');
  await expectInView(`#current-job[data-job-id="${id}"]`);
  const card = `[data-job-id="${id}"]`;
  await page.waitForFunction((sel) => /\d+%/.test(document.querySelector(`${sel} .job-pct`)?.textContent ?? ''), card);

  // A busy browser can deliver Cancel's reply (the job as it was when asked: running) after the event stream's
  // `done`; here the reply is held until the card has shown the end.
  await page.route(`**/v1/jobs/${id}/cancel*`, async (route) => {
    const reply = await route.fetch();
    await page.waitForSelector(`${card}[data-state="canceled"]`, { timeout: 60_000 });
    await route.fulfill({ response: reply });
  });
  const answered = page.waitForEvent('requestfinished', (r) => r.url().includes(`/v1/jobs/${id}/cancel`));
  await click(`${card} .job-cancel`);
  const reply = (await (await (await answered).response())!.json()) as Job;
  expect(reply.state).toBe('running');
  // The page applies the reply a few tasks after the browser has it.
  await page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
  expect(await page.getAttribute(card, 'data-state')).toBe('canceled');
  expect(await page.textContent(`${card} .job-stage`)).toBe('Canceled');
  expect(await page.isVisible(`${card} .job-cancel`)).toBe(false);
  expect((await getJob(id)).state).toBe('canceled');
  await expectInView('#edit');
  await checkState('08-canceled');
  await page.unroute(`**/v1/jobs/${id}/cancel*`);
});

it('keeps the clip and the form across a reload, and offers the clips chosen before', async () => {
  const other = path.join(home, 'silent.mp4');
  await makeTestClip({
    file: other,
    width: 64,
    height: 36,
    fps: { num: 24, den: 1 },
    frames: 6,
    content: 'moving-square',
  });
  await page.fill('#source-path', other);
  await click('#probe');
  await page.waitForFunction(() => /6 frames/.test(document.querySelector('#probe-info')?.textContent ?? ''));
  // No sound in this one: audio goes off by itself, and the form says why.
  await page.waitForSelector('#audio [data-value="off"][aria-checked="true"]');
  await page.fill('#prompt', 'a green car on a gray road');
  await page.fill('#steps', '5');
  await click('#codec [data-value="prores"]');

  await page.reload();
  await page.waitForSelector('#engine-status[data-state="connected"]');
  expect(await page.inputValue('#source-path')).toBe(other);
  expect(await page.inputValue('#prompt')).toBe('a green car on a gray road');
  expect(await page.inputValue('#steps')).toBe('5');
  expect(await page.getAttribute('#codec [data-value="prores"]', 'aria-checked')).toBe('true');
  // The clip is read again without a Probe.
  await page.waitForFunction(() => /6 frames/.test(document.querySelector('#probe-info')?.textContent ?? ''));
  await page.waitForSelector('#edit:not([disabled])');
  await expectInView('#edit');
  await checkState('09-reloaded');

  // The clip from before is one click away.
  await click(`#recent-clips [data-path="${clip}"]`);
  await page.waitForFunction(() => /40 frames/.test(document.querySelector('#probe-info')?.textContent ?? ''));
  await expectInView('#edit');
  expect(await page.inputValue('#source-path')).toBe(clip);
  await page.waitForSelector('#audio [data-value="on"][aria-checked="true"]');
  expect(await page.getAttribute(`#recent-clips [data-path="${other}"]`, 'title')).toBe(other);
});

it("picks a clip from the user's folders through the engine, without typing a path", async () => {
  await page.fill('#source-path', '');
  await click('#browse');
  // No clip named: the picker starts at the folders it may show.
  await click(`#file-browser .file-entry.folder[data-path="${home}"]`);
  await page.waitForSelector(`#file-browser .file-entry.video[data-path="${clip}"]`);
  const names = (selector: string) =>
    page.$$eval(selector, (els: PageElement[]) => els.map((e) => e.textContent ?? ''));
  expect(await names('#file-browser .file-entry.video')).toEqual(['silent.mp4', 'street.mp4']);
  expect((await names('#file-browser .file-entry')).some((n) => n.includes('notes'))).toBe(false);
  await checkState('10-file-browser');
  await click(`#file-browser .file-entry.video[data-path="${clip}"]`);
  await page.waitForFunction(() => /40 frames/.test(document.querySelector('#probe-info')?.textContent ?? ''));
  expect(await page.inputValue('#source-path')).toBe(clip);
  expect(await page.isVisible('#file-browser')).toBe(false);
  await expectInView('#edit');
  await checkState('11-clip-picked');
});
