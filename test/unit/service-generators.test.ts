// The text `reshoot service install` writes, per platform, checked against its format: the systemd unit's sections
// and quoting (systemd.service(5), systemd.syntax(7)), the LaunchAgent plist as well-formed XML with launchd's keys,
// and the Windows task XML and its command line (CommandLineToArgvW rules). Paths with spaces, %, $, quotes,
// backslashes, newlines and non-ASCII must come back exactly as they went in.
import { launchAgentPlist, plistArray, plistString, xmlEscape } from '../../engine/src/service/launchd';
import { parseExecStart, quoteEnvAssignment, systemdUnit, unitValue } from '../../engine/src/service/systemd';
import {
  quoteWindowsArg,
  splitWindowsArgs,
  taskCommand,
  taskXml,
  taskXmlCommand,
} from '../../engine/src/service/task-xml';
import { MARKER, type ServiceSpec } from '../../engine/src/service/types';

const HARD = ['/opt/my apps/nöde 100%/node', '/home/zoë/re$HOME shoot/"q"/a\\b/main.js'];

function spec(over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    node: '/usr/bin/node',
    cli: '/opt/reshoot/dist/engine/src/cli/main.js',
    serveArgs: ['--port', '7865'],
    env: {},
    logFile: '/home/u/.local/share/reshoot/logs/engine.log',
    version: '9.9.9',
    ...over,
  };
}

/** A small well-formedness check: balanced tags, known entities only, no raw < or & in text. */
function assertWellFormedXml(xml: string): void {
  const body = xml
    .replace(/^<\?xml[^?]*\?>/, '')
    .replace(/<!DOCTYPE[^>]*>/, '')
    .replace(/<!--([\s\S]*?)-->/g, (_m, c: string) => {
      expect(c).not.toContain('--');
      return '';
    });
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w:.-]+="[^"<&]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body))) {
    if (m[6]) throw new Error(`stray < at ${m.index}: ${body.slice(m.index, m.index + 40)}`);
    if (m[5] !== undefined) {
      expect(m[5].replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, '')).not.toMatch(/[&<>]/);
      continue;
    }
    if (m[1]) expect(stack.pop()).toBe(m[2]);
    else if (!m[4]) stack.push(m[2]);
  }
  expect(stack).toEqual([]);
}

describe('systemd unit', () => {
  it('has the three sections, key=value lines and the marker first', () => {
    const unit = systemdUnit(spec());
    const lines = unit.split('\n');
    expect(lines[0]).toBe(`# ${MARKER} (reshoot 9.9.9).`);
    const sections = lines.filter((l) => l.startsWith('['));
    expect(sections).toEqual(['[Unit]', '[Service]', '[Install]']);
    for (const l of lines) {
      if (l === '' || l.startsWith('#') || l.startsWith('[')) continue;
      expect(l).toMatch(/^[A-Za-z]+=\S/);
    }
    expect(unitValue(unit, 'WantedBy')).toBe('default.target');
    expect(unitValue(unit, 'Restart')).toBe('on-failure');
    expect(unitValue(unit, 'StandardOutput')).toBe(`append:${spec().logFile}`);
    expect(unitValue(unit, 'StandardError')).toBe(`append:${spec().logFile}`);
  });

  it('quotes ExecStart so spaces, %, $, quotes, backslashes, newlines and non-ASCII survive', () => {
    const s = spec({ node: HARD[0], cli: HARD[1], serveArgs: ['--model', '/m/a b\nc\t%d', '--provider', 'cuda,cpu'] });
    const exec = unitValue(systemdUnit(s), 'ExecStart')!;
    expect(exec).not.toContain('\n');
    // every % is doubled (a specifier otherwise); $ doubled in arguments (expanded otherwise) but not in the path
    expect(exec).toContain('"/opt/my apps/nöde 100%%/node"');
    expect(exec).toContain('re$$HOME');
    expect(exec).toContain('\\"q\\"');
    expect(exec).toContain('a\\\\b');
    expect(parseExecStart(exec)).toEqual([s.node, s.cli, 'serve', ...s.serveArgs]);
  });

  it('writes Environment= quoted, % doubled and $ left alone (Environment= expands no variables)', () => {
    expect(quoteEnvAssignment('RESHOOT_HOME', '/a b/$x%y"z')).toBe('"RESHOOT_HOME=/a b/$x%%y\\"z"');
    const unit = systemdUnit(spec({ env: { RESHOOT_HOME: '/h o/me' } }));
    expect(unit).toContain('Environment="RESHOOT_HOME=/h o/me"');
    expect(() => quoteEnvAssignment('BAD NAME', 'x')).toThrow(/not a valid environment variable name/);
  });

  it('escapes % in the log path and refuses one that append: cannot hold', () => {
    expect(unitValue(systemdUnit(spec({ logFile: '/l/100% sure.log' })), 'StandardOutput')).toBe(
      'append:/l/100%% sure.log',
    );
    expect(() => systemdUnit(spec({ logFile: '/l/a\nb.log' }))).toThrow(/control character/);
  });
});

describe('LaunchAgent plist', () => {
  it('is well-formed XML with the keys launchd needs, paths XML-escaped', () => {
    const s = spec({
      node: HARD[0],
      cli: '/Users/zoë/R&D <tools>/main.js',
      env: { RESHOOT_HOME: "/Users/zoë/it's" },
      logFile: '/Users/zoë/Library/Application Support/reshoot/logs/engine.log',
    });
    const xml = launchAgentPlist(s);
    assertWellFormedXml(xml);
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')).toBe(true);
    expect(xml).toContain(MARKER);
    expect(xml).toContain('R&amp;D &lt;tools&gt;');
    expect(xml).toMatch(/<key>Label<\/key>\s*<string>com\.reshoot\.engine<\/string>/);
    expect(xml).toMatch(/<key>RunAtLoad<\/key>\s*<true\/>/);
    expect(xml).toMatch(/<key>KeepAlive<\/key>\s*<dict>\s*<key>SuccessfulExit<\/key>\s*<false\/>\s*<\/dict>/);
    expect(plistArray(xml, 'ProgramArguments')).toEqual([s.node, s.cli, 'serve', '--port', '7865']);
    expect(plistString(xml, 'StandardOutPath')).toBe(s.logFile);
    expect(plistString(xml, 'StandardErrorPath')).toBe(s.logFile);
    expect(plistString(xml, 'RESHOOT_HOME')).toBe("/Users/zoë/it's");
  });

  it('refuses a control character XML 1.0 cannot hold', () => {
    expect(() => xmlEscape('a\u0001b')).toThrow(/control character/);
  });
});

describe('Windows task', () => {
  const win = spec({
    node: 'C:\\Program Files\\nodejs\\node.exe',
    cli: 'C:\\Users\\Zoë Ünal\\AppData\\Roaming\\npm\\node_modules\\reshoot\\dist\\engine\\src\\cli\\main.js',
    serveArgs: ['--port', '7865', '--model', 'D:\\models\\sd 1.5\\'],
    env: { RESHOOT_HOME: 'D:\\Reshoot Home' },
    logFile: 'C:\\Users\\Zoë Ünal\\AppData\\Local\\reshoot\\logs\\engine.log',
  });

  it('quotes arguments by the CommandLineToArgvW rules', () => {
    const cases = ['plain', 'two words', '', 'C:\\dir with space\\', 'a\\\\b', 'tab\there', 'ü ñ'];
    for (const c of cases) expect(splitWindowsArgs(quoteWindowsArg(c))).toEqual([c]);
    expect(quoteWindowsArg('C:\\Program Files\\x\\')).toBe('"C:\\Program Files\\x\\\\"');
    expect(quoteWindowsArg('C:\\plain\\path')).toBe('C:\\plain\\path');
    expect(splitWindowsArgs(cases.map(quoteWindowsArg).join(' '))).toEqual(cases);
  });

  it('is well-formed task XML: scoped logon trigger, no elevation, no time limit, conhost --headless', () => {
    const xml = taskXml(win, 'S-1-5-21-1-2-3-1001', 'C:\\Windows\\System32\\conhost.exe');
    assertWellFormedXml(xml);
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-16"?>\r\n<Task version="1.2"')).toBe(true);
    expect(xml).toContain('xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task"');
    expect(xml).toContain(MARKER.replace(/`/g, '`'));
    expect(xml).toMatch(/<LogonTrigger>\s*<Enabled>true<\/Enabled>\s*<UserId>S-1-5-21-1-2-3-1001<\/UserId>/);
    expect(xml).toMatch(/<LogonType>InteractiveToken<\/LogonType>\s*<RunLevel>LeastPrivilege<\/RunLevel>/);
    expect(xml).toContain('<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>');
    expect(xml).toContain('<DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>');
    expect(xml).toContain('<Command>C:\\Windows\\System32\\conhost.exe</Command>');
    expect(xml).toMatch(/<Arguments>--headless "C:\\Program Files\\nodejs\\node.exe" /);
    // the order of the Task element's children as in Microsoft's examples
    const order = ['<RegistrationInfo>', '<Triggers>', '<Principals>', '<Settings>', '<Actions'].map((t) =>
      xml.indexOf(t),
    );
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it('records node, the CLI and `service run` with the log, environment and serve options, round-tripping', () => {
    const xml = taskXml(win, 'DOM\\zoë', 'C:\\Windows\\System32\\conhost.exe');
    expect(taskXmlCommand(xml)).toEqual(taskCommand(win));
    expect(taskCommand(win)).toEqual([
      win.node,
      win.cli,
      'service',
      'run',
      '--log',
      win.logFile,
      '--env',
      'RESHOOT_HOME=D:\\Reshoot Home',
      '--',
      '--port',
      '7865',
      '--model',
      'D:\\models\\sd 1.5\\',
    ]);
  });

  it('refuses what Task Scheduler or conhost would change: %VAR%, quotes, control characters', () => {
    const c = 'C:\\Windows\\System32\\conhost.exe';
    expect(() => taskXml(spec({ cli: 'C:\\%USERNAME%\\main.js' }), 'u', c)).toThrow(/Task Scheduler would expand/);
    expect(() => taskXml(spec({ serveArgs: ['--model', 'a"b'] }), 'u', c)).toThrow(/double quote/);
    expect(() => taskXml(spec({ cli: 'C:\\a\nb' }), 'u', c)).toThrow(/control character/);
    expect(() => taskXml(spec({ cli: 'C:\\100% sure\\main.js' }), 'u', c)).not.toThrow();
  });
});
