// The macOS LaunchAgent, as a property list (launchd.plist(5)). An XML plist is plain XML 1.0: paths are escaped as
// XML text (& < >; quotes need no escaping outside attributes); control characters other than tab and newline cannot
// appear in XML 1.0 at all.
import { MARKER, type ServiceSpec } from './types';

export const LABEL = 'com.reshoot.engine';

export function xmlEscape(s: string): string {
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/.test(s))
    throw new Error(`${JSON.stringify(s)} has a control character that XML cannot hold`);
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function xmlUnescape(s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp|#x[0-9a-fA-F]+|#\d+);/g, (_m, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' } as Record<string, string>)[e];
  });
}

export function launchAgentPlist(spec: ServiceSpec): string {
  const str = (s: string) => `<string>${xmlEscape(s)}</string>`;
  const args = [spec.node, spec.cli, 'serve', ...spec.serveArgs].map((a) => `\t\t${str(a)}`);
  const env = Object.entries(spec.env).flatMap(([k, v]) => [`\t\t<key>${xmlEscape(k)}</key>`, `\t\t${str(v)}`]);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    `<!-- ${MARKER} (reshoot ${xmlEscape(spec.version)}). \`reshoot service uninstall\` unloads and removes it. -->`,
    '<plist version="1.0">',
    '<dict>',
    '\t<key>Label</key>',
    `\t${str(LABEL)}`,
    '\t<key>ProgramArguments</key>',
    '\t<array>',
    ...args,
    '\t</array>',
    ...(env.length ? ['\t<key>EnvironmentVariables</key>', '\t<dict>', ...env, '\t</dict>'] : []),
    '\t<key>RunAtLoad</key>',
    '\t<true/>',
    // Restarted only when it did not exit cleanly (a crash, a failed start); `reshoot serve` exits 0 on SIGTERM.
    '\t<key>KeepAlive</key>',
    '\t<dict>',
    '\t\t<key>SuccessfulExit</key>',
    '\t\t<false/>',
    '\t</dict>',
    // launchd's default: at most one start per 10 s, so a failing start does not spin.
    '\t<key>ThrottleInterval</key>',
    '\t<integer>10</integer>',
    // The engine renders for the user at the desk: no background throttling of CPU and I/O.
    '\t<key>ProcessType</key>',
    '\t<string>Interactive</string>',
    '\t<key>StandardOutPath</key>',
    `\t${str(spec.logFile)}`,
    '\t<key>StandardErrorPath</key>',
    `\t${str(spec.logFile)}`,
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}

/** The <string> values of the array under `key` in a plist we wrote (not a general plist reader). */
export function plistArray(xml: string, key: string): string[] | undefined {
  const m = new RegExp(`<key>${key}</key>\\s*<array>([\\s\\S]*?)</array>`).exec(xml);
  if (!m) return undefined;
  return [...m[1].matchAll(/<string>([\s\S]*?)<\/string>/g)].map((s) => xmlUnescape(s[1]));
}

/** The <string> value under `key`. */
export function plistString(xml: string, key: string): string | undefined {
  const m = new RegExp(`<key>${key}</key>\\s*<string>([\\s\\S]*?)</string>`).exec(xml);
  return m ? xmlUnescape(m[1]) : undefined;
}
