// Premiere Pro entry of the panel bundle (dist/panel-uxp/index.js): registers the panel with UXP and mounts the
// shared UI on the Premiere host adapter. The browser build has its own entry (main-browser.ts).

import type { Host } from './host/host';
import type { PremiereHostOptions } from './host/premiere';

type UxpModule = typeof import('uxp');
type UiModule = typeof import('./ui/app');
type PremiereHostModule = typeof import('./host/premiere');
type EngineClientModule = typeof import('./engine-client');
type ThemeModule = typeof import('./ui/theme');
type DomModule = typeof import('./ui/dom');
type HostTheme = import('./ui/theme').HostTheme;

let mounted = false;

/**
 * Premiere calls create() and then show(), and may call show() again whenever the panel comes back into view
 * (hide/destroy are not reliable there yet), so whichever hook comes first mounts and every later call is a no-op.
 * Each hook has 300 ms and must not wait on anything: the UI starts its own async work (engine status, selection)
 * after mounting.
 */
function mountOnce(rootNode: HTMLElement | undefined): void {
  if (mounted) return;
  mounted = true;
  const container = mountPoint(rootNode);
  try {
    // Required here rather than imported at the top so that entrypoints.setup() below runs before any UI or host
    // module code: if one of those throws while loading, the panel is still registered and shows the error
    // instead of failing to appear at all. esbuild bundles these requires; only the host modules stay external.
    // zod-jitless goes first, before any zod schema is built: UXP forbids code generation from strings, which zod's
    // compiled parsers need (the manifest does not ask for allowCodeGenerationFromStrings).
    require('./ui/zod-jitless');
    const { PremiereHost } = require('./host/premiere') as PremiereHostModule;
    const { mountApp } = require('./ui/app') as UiModule;
    const { EngineClient } = require('./engine-client') as EngineClientModule;
    const host: Host = new PremiereHost({
      ppro: require('premierepro') as PremiereHostOptions['ppro'],
      uxp: require('uxp') as PremiereHostOptions['uxp'],
      fs: require('fs') as PremiereHostOptions['fs'],
      os: require('os') as PremiereHostOptions['os'],
      // Premiere reports only a clip's interpreted frame rate; the file's own comes from the engine's probe. Without
      // a running engine it is unknown, and the panel re-reads the selection once the engine answers.
      mediaFrameRate: async (path) => {
        const token = await host.readToken();
        if (!token) return null;
        const video = (await new EngineClient({ baseUrl: host.engineUrl(), token }).probe(path)).video;
        return video.fps.den > 0 ? video.fps.num / video.fps.den : null;
      },
    });
    (require('./ui/dom') as DomModule).useSpectrumWidgets(true);
    const { followHostTheme } = require('./ui/theme') as ThemeModule;
    followHostTheme(document.body, (document as unknown as { theme?: HostTheme }).theme);
    mountApp(container, host);
  } catch (err) {
    console.error('Reshoot: the panel could not start', err);
    showStartupError(container, err);
  }
}

/** The element the UI renders into: index.html's #app when it has one, otherwise a fresh one in the panel root. */
function mountPoint(rootNode: HTMLElement | undefined): HTMLElement {
  const existing = document.getElementById('app');
  if (existing) return existing;
  const container = document.createElement('div');
  container.id = 'app';
  // The root node is the panel's document body in manifest v5; fall back to the body if a host passes nothing.
  (rootNode && typeof rootNode.appendChild === 'function' ? rootNode : document.body).appendChild(container);
  return container;
}

function showStartupError(container: HTMLElement, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  const box = document.createElement('div');
  box.setAttribute('role', 'alert');
  box.style.padding = '12px';
  const title = document.createElement('p');
  title.textContent = 'Reshoot could not start.';
  const detail = document.createElement('p');
  detail.textContent = message;
  const hint = document.createElement('p');
  hint.textContent = 'Reload the plugin (UXP Developer Tool) or reinstall it; the UXP log has the details.';
  // Only the DOM calls UXP is known to implement (no append/replaceChildren).
  box.appendChild(title);
  box.appendChild(detail);
  box.appendChild(hint);
  while (container.firstChild) container.removeChild(container.firstChild);
  container.appendChild(box);
}

// Registered at module load, synchronously: a late entrypoints.setup() can throw (UXP known issues). The key is
// the panel entrypoint id in manifest.json (test/unit/manifest.test.ts checks that they match).
(require('uxp') as UxpModule).entrypoints.setup({
  panels: {
    reshootPanel: {
      create(rootNode: HTMLElement) {
        mountOnce(rootNode);
      },
      show(rootNode: HTMLElement) {
        mountOnce(rootNode);
      },
    },
  },
});
