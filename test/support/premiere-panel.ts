// The shared panel UI mounted as main-uxp.ts mounts it (host.kind 'premiere'), with the scripted host of
// test/e2e/fixtures/premiere-harness.mts in place of the Premiere adapter, in Chromium. Its page is served at the
// engine's origin by request interception, so the engine sees it as its own page and nothing in the engine changes
// for the tests. Used by the e2e suites that drive the panel as Premiere shows it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { build } from 'esbuild';
import type { Browser, BrowserContext, Page } from 'playwright-core';

const ROOT = path.resolve(__dirname, '../..');
const HARNESS = path.join(ROOT, 'test/e2e/fixtures/premiere-harness.mts');
const WEB_CSS = path.join(ROOT, 'dist/panel-web/index.css');

export interface PremierePanel {
  context: BrowserContext;
  page: Page;
  /** Every path the page requested, in order. */
  requests: string[];
}

/** Opens the harness page; the caller closes `context`. */
export async function openPremierePanel(
  browser: Browser,
  engine: { origin: string; token: string },
  o: { viewport: { width: number; height: number }; resultsFolder: string; onPageError?: (message: string) => void },
): Promise<PremierePanel> {
  const bundle = await build({
    entryPoints: [HARNESS],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'chrome110',
    absWorkingDir: ROOT,
    logLevel: 'silent',
  });
  const files: Record<string, { body: string | Buffer; contentType: string }> = {
    'index.html': {
      body: '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reshoot</title><link rel="stylesheet" href="index.css"></head><body><div id="app"></div><script src="harness.js"></script></body></html>',
      contentType: 'text/html',
    },
    'harness.js': { body: bundle.outputFiles[0].text, contentType: 'text/javascript' },
    'index.css': { body: fs.readFileSync(WEB_CSS), contentType: 'text/css' },
  };
  const context = await browser.newContext({ viewport: o.viewport, deviceScaleFactor: 1 });
  await context.addInitScript(
    (cfg) => {
      (globalThis as unknown as { harnessConfig: unknown }).harnessConfig = cfg;
    },
    { token: engine.token, resultsFolder: o.resultsFolder },
  );
  await context.route(`${engine.origin}/premiere-harness/*`, (route) => {
    const file = files[new URL(route.request().url()).pathname.split('/').pop()!];
    return file
      ? route.fulfill({ status: 200, body: file.body, contentType: file.contentType })
      : route.fulfill({ status: 404 });
  });
  const page = await context.newPage();
  const requests: string[] = [];
  page.on('request', (r) => requests.push(new URL(r.url()).pathname));
  if (o.onPageError) page.on('pageerror', (e) => o.onPageError!(e.message));
  await page.goto(`${engine.origin}/premiere-harness/index.html`);
  return { context, page, requests };
}
