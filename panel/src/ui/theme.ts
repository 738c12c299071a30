// The panel's colours follow the host's theme. Premiere does not support the --uxp-host-* CSS variables yet (Adobe's
// CSS recipe), so the theme is read with document.theme.getCurrent() and followed through document.theme.onUpdated,
// and a class on <body> switches the CSS variables in styles.css. The browser build has no host theme; a `theme`
// query parameter picks one (to show the same CSS), otherwise it stays dark.

export const THEMES = ['lightest', 'light', 'dark', 'darkest'] as const;
export type Theme = (typeof THEMES)[number];

/** `document.theme` in UXP, as Adobe's recipe uses it. */
export interface HostTheme {
  getCurrent(): string;
  onUpdated: {
    addListener(listener: (theme: string) => void): void;
    removeListener?(listener: (theme: string) => void): void;
  };
}

interface ClassTarget {
  classList: { add(name: string): void; remove(...names: string[]): void };
}

/** Premiere names light, dark and darkest; anything unknown (a future "medium") falls back by its name. */
export function themeOf(name: unknown): Theme {
  const n = typeof name === 'string' ? name.toLowerCase() : '';
  if ((THEMES as readonly string[]).includes(n)) return n as Theme;
  return n.includes('light') ? 'light' : n.includes('darkest') ? 'darkest' : 'dark';
}

export function applyTheme(body: ClassTarget, theme: Theme): void {
  body.classList.remove(...THEMES.map((t) => `theme-${t}`));
  body.classList.add(`theme-${theme}`);
}

/** Applies the host's theme now and on every change; returns the unsubscribe function. */
export function followHostTheme(body: ClassTarget, host: HostTheme | undefined): () => void {
  if (!host || typeof host.getCurrent !== 'function') {
    applyTheme(body, 'dark');
    return () => {};
  }
  const listener = (theme: string): void => applyTheme(body, themeOf(theme));
  listener(host.getCurrent());
  host.onUpdated?.addListener(listener);
  return () => host.onUpdated?.removeListener?.(listener);
}

/** The browser build: `?theme=light` (or lightest, dark, darkest) shows that theme's colours. */
export function themeFromQuery(search: string): Theme {
  return themeOf(new URLSearchParams(search).get('theme') ?? 'dark');
}
