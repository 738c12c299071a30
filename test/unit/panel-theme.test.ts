// The panel follows Premiere's theme through document.theme (getCurrent, onUpdated), as Adobe's CSS recipe does,
// and the browser build takes ?theme=.
import { applyTheme, followHostTheme, themeFromQuery, themeOf, type HostTheme } from '../../panel/src/ui/theme';

function body() {
  const classes = new Set<string>(['host-premiere']);
  return {
    classes,
    classList: {
      add: (n: string) => void classes.add(n),
      remove: (...ns: string[]) => ns.forEach((n) => classes.delete(n)),
    },
  };
}

function host(initial: string) {
  const listeners: Array<(t: string) => void> = [];
  const theme: HostTheme = {
    getCurrent: () => initial,
    onUpdated: {
      addListener: (l) => void listeners.push(l),
      removeListener: (l) => void listeners.splice(listeners.indexOf(l), 1),
    },
  };
  return { theme, listeners, change: (t: string) => listeners.forEach((l) => l(t)) };
}

test('takes the current Premiere theme, follows each change, and stops when unsubscribed', () => {
  const b = body();
  const h = host('light');
  const off = followHostTheme(b, h.theme);
  expect([...b.classes].sort()).toEqual(['host-premiere', 'theme-light']);
  h.change('darkest');
  expect([...b.classes].sort()).toEqual(['host-premiere', 'theme-darkest']);
  h.change('dark');
  expect([...b.classes].sort()).toEqual(['host-premiere', 'theme-dark']);
  off();
  expect(h.listeners).toEqual([]);
});

test('without document.theme (older hosts) the panel stays dark', () => {
  const b = body();
  followHostTheme(b, undefined);
  expect(b.classes.has('theme-dark')).toBe(true);
});

test('theme names: the four UXP names as they are, anything else by its nearest', () => {
  expect(['lightest', 'light', 'dark', 'darkest'].map(themeOf)).toEqual(['lightest', 'light', 'dark', 'darkest']);
  expect(themeOf('Medium')).toBe('dark');
  expect(themeOf('kLightTheme')).toBe('light');
  expect(themeOf(undefined)).toBe('dark');
  expect(themeFromQuery('?token=x&theme=light')).toBe('light');
  expect(themeFromQuery('?token=x')).toBe('dark');
  const b = body();
  applyTheme(b, 'light');
  applyTheme(b, 'darkest');
  expect([...b.classes].sort()).toEqual(['host-premiere', 'theme-darkest']);
});
