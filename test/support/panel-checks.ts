// What the panel's e2e suites check of every state they visit (issue 15): a screenshot at the size the suite is at
// and at both sizes the panel is used at (docked in Premiere, 320×560, and a browser tab, 1280×800), axe-core with no
// serious or critical violation at each, and, at the docked size, the action and the new job's progress in view
// after a click. Shared so that the three suites cannot drift apart in what "checked" means.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';

export const DOCKED = { width: 320, height: 560 };
export const WIDE = { width: 1280, height: 800 };

const ROOT = path.resolve(__dirname, '../..');
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

type Size = { width: number; height: number };
interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; failureSummary?: string }[];
}
/** The page's global once axe-core is evaluated in it (this code is compiled without the DOM library). */
type AxeGlobal = {
  axe?: { run(options: unknown): Promise<{ violations: AxeViolation[]; incomplete: AxeViolation[] }> };
};

const same = (a: Size, b: Size) => a.width === b.width && a.height === b.height;

/** The element's box, which must lie wholly inside the viewport: the user sees it without scrolling. */
export async function expectInView(page: Page, selector: string): Promise<void> {
  const vp = page.viewportSize()!;
  const box = await page.locator(selector).boundingBox();
  expect({ selector, visible: box !== null }).toEqual({ selector, visible: true });
  expect({ selector, top: box!.y >= 0, bottom: box!.y + box!.height <= vp.height + 0.5 }).toEqual({
    selector,
    top: true,
    bottom: true,
  });
}

/**
 * expectInView at 320×560, whatever size the suite is at: a suite that runs wide still shows that, docked, the same
 * click leaves the action and its job on screen. The size it was at comes back afterwards.
 */
export async function expectInViewDocked(page: Page, ...selectors: string[]): Promise<void> {
  const was = page.viewportSize()!;
  if (!same(was, DOCKED)) await page.setViewportSize(DOCKED);
  try {
    for (const selector of selectors) await expectInView(page, selector);
  } finally {
    if (!same(was, DOCKED)) await page.setViewportSize(was);
  }
}

/** A click, after which the primary action must still be on screen at 320×560, wherever the click was. */
export async function clickInView(page: Page, selector: string): Promise<void> {
  await page.click(selector);
  await expectInViewDocked(page, '#edit');
}

/** The checks of one suite, its screenshots in test-output/e2e/<suite>/. */
export function panelChecks(suite: string) {
  const dir = path.join(ROOT, 'test-output/e2e', suite);
  fs.mkdirSync(dir, { recursive: true });
  /** One line per axe run, for the CI log. */
  const seen: string[] = [];

  async function shot(page: Page, name: string): Promise<void> {
    const { width, height } = page.viewportSize()!;
    await page.screenshot({ path: path.join(dir, `${name}.${width}x${height}.png`) });
  }

  /** axe-core, run in the page as it is now; serious and critical violations fail the test, each named in full. */
  async function expectAccessible(page: Page, state: string): Promise<void> {
    // Evaluated rather than added as a <script>: the page's Content-Security-Policy rightly refuses inline scripts.
    if (!(await page.evaluate(() => typeof (globalThis as AxeGlobal).axe === 'object'))) await page.evaluate(AXE);
    const { violations, incomplete } = await page.evaluate(() =>
      (globalThis as AxeGlobal).axe!.run({ resultTypes: ['violations'] }),
    );
    const bad = violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map(
        (v) =>
          `${v.id} (${v.impact}): ${v.help}\n` +
          v.nodes
            .map((n) => `    ${n.target.join(' ')}: ${(n.failureSummary ?? '').replace(/\s*\n\s*/g, ' ')}`)
            .join('\n'),
      );
    const { width, height } = page.viewportSize()!;
    // What axe could not decide (text over a video frame, a list still empty) is for a person to look at: named in
    // the log, not failed.
    const review = incomplete.map((v) => `${v.id} ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('; ');
    seen.push(
      `${state} at ${width}×${height}: ${violations.length} violations, ${bad.length} serious or critical` +
        (review ? `; to review: ${review}` : ''),
    );
    expect({ state, size: `${width}×${height}`, bad }).toEqual({ state, size: `${width}×${height}`, bad: [] });
  }

  /**
   * The state on screen, pictured and run through axe at the size the suite is at, then at 320×560 and 1280×800;
   * the suite's own size comes back afterwards.
   */
  async function checkState(page: Page, name: string): Promise<void> {
    const was = page.viewportSize()!;
    const sizes = [was, ...[DOCKED, WIDE].filter((s) => !same(s, was))];
    try {
      for (const size of sizes) {
        if (!same(size, page.viewportSize()!)) await page.setViewportSize(size);
        await shot(page, name);
        await expectAccessible(page, name);
      }
    } finally {
      if (!same(was, page.viewportSize()!)) await page.setViewportSize(was);
    }
  }

  return { checkState, seen };
}
