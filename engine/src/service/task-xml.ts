// The Windows scheduled task, as Task Scheduler XML (the schema of learn.microsoft.com/windows/win32/taskschd/
// task-scheduler-schema), registered with `schtasks /Create /TN Reshoot /XML FILE /F`.
//
// Why a task and not the HKCU\...\Run key or the Startup folder: all three run at logon without elevation, but only a
// task restarts the engine after a crash (RestartOnFailure), can be stopped and started by name (schtasks /End, /Run)
// and does not stop after three days (ExecutionTimeLimit PT0S; the default is 72 hours).
//
// Without elevation: a LogonTrigger with no UserId means "any user logs on", which only an administrator may register;
// scoped to this user's SID (LogonTrigger/UserId, Principal/UserId with LogonType InteractiveToken and RunLevel
// LeastPrivilege) a standard user may register it for themselves (learn.microsoft.com .../taskschd/logontrigger-userid;
// reports of "Access is denied" for unscoped triggers: github.com/hanamorix/companion-emergence/issues/260).
//
// Without a window: node.exe is a console program, and Task Scheduler gives an interactive task's console program a
// visible console window (Windows Terminal on Windows 11) that closes the engine when closed. The action runs
// `conhost.exe --headless node.exe ...` instead: conhost is a GUI-subsystem program and --headless gives the child a
// console with no window at all (Windows 10 1809 and later; the approach of github.com/ChromeDevTools/
// chrome-devtools-mcp/pull/2155). conhost splits its command line with CommandLineToArgvW and quotes each argument
// again for the child (microsoft/terminal ConsoleArguments::_GetClientCommandline), so arguments are quoted here by
// the same rules (learn.microsoft.com/cpp/cpp/main-function-command-line-args, "Parsing C++ command-line arguments").
import * as path from 'node:path';
import { xmlEscape, xmlUnescape } from './launchd';
import { MARKER, type ServiceSpec } from './types';

export const TASK_NAME = 'Reshoot';

/** One argument quoted for CommandLineToArgvW and the C runtime: backslashes doubled only before a quote. */
export function quoteWindowsArg(arg: string): string {
  if (arg !== '' && !/[\s"]/.test(arg)) return arg;
  let out = '"';
  let backslashes = 0;
  for (const c of arg) {
    if (c === '\\') {
      backslashes++;
      continue;
    }
    out += c === '"' ? '\\'.repeat(backslashes * 2 + 1) + c : '\\'.repeat(backslashes) + c;
    backslashes = 0;
  }
  return `${out}${'\\'.repeat(backslashes * 2)}"`;
}

/** The inverse: a command line split as CommandLineToArgvW splits the arguments after the program name. */
export function splitWindowsArgs(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && (line[i] === ' ' || line[i] === '\t')) i++;
    if (i >= line.length) break;
    let word = '';
    let quoted = false;
    while (i < line.length && (quoted || (line[i] !== ' ' && line[i] !== '\t'))) {
      if (line[i] === '\\') {
        let n = 0;
        while (line[i] === '\\') {
          n++;
          i++;
        }
        if (line[i] === '"') {
          word += '\\'.repeat(Math.floor(n / 2));
          if (n % 2) {
            word += '"';
            i++;
          }
        } else {
          word += '\\'.repeat(n);
        }
      } else if (line[i] === '"') {
        if (quoted && line[i + 1] === '"') {
          word += '"';
          i += 2;
        } else {
          quoted = !quoted;
          i++;
        }
      } else {
        word += line[i++];
      }
    }
    words.push(word);
  }
  return words;
}

/**
 * What the task runs after `conhost.exe --headless`: node, the CLI, and `service run`, which sends the engine's output
 * to the log file (a task has no redirection) and sets the recorded environment (a task XML cannot).
 */
export function taskCommand(spec: ServiceSpec): string[] {
  const env = Object.entries(spec.env).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
  return [spec.node, spec.cli, 'service', 'run', '--log', spec.logFile, ...env, '--', ...spec.serveArgs];
}

/** Refuses what cannot survive the trip through Task Scheduler and conhost unchanged. */
function checkArg(arg: string): void {
  // Windows paths cannot hold a quote; older conhost builds join arguments again without escaping one.
  if (arg.includes('"')) throw new Error(`${arg} has a double quote in it, which the task's command line cannot carry`);
  // Task Scheduler expands %NAME% in an action's command and arguments, and has no way to escape a percent sign.
  if (/%[^%\s]+%/.test(arg))
    throw new Error(`${arg} contains %…% (an environment variable reference), which Task Scheduler would expand`);
  if (/[\u0000-\u001f]/.test(arg)) throw new Error(`${JSON.stringify(arg)} has a control character in it`);
}

export function conhostPath(env: NodeJS.ProcessEnv): string {
  const root = env.SystemRoot ?? env.SYSTEMROOT ?? env.windir ?? 'C:\\Windows';
  return path.win32.join(root, 'System32', 'conhost.exe');
}

/** The task definition. `userId` is the current user's SID (or DOMAIN\name). */
export function taskXml(spec: ServiceSpec, userId: string, conhost: string): string {
  const args = taskCommand(spec);
  args.forEach(checkArg);
  const argLine = ['--headless', ...args].map(quoteWindowsArg).join(' ');
  const user = xmlEscape(userId);
  return [
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
    '  <RegistrationInfo>',
    `    <Description>${xmlEscape(`${MARKER} (reshoot ${spec.version}): starts the Reshoot engine at logon. \`reshoot service uninstall\` removes it.`)}</Description>`,
    '  </RegistrationInfo>',
    '  <Triggers>',
    '    <LogonTrigger>',
    '      <Enabled>true</Enabled>',
    `      <UserId>${user}</UserId>`,
    '    </LogonTrigger>',
    '  </Triggers>',
    '  <Principals>',
    '    <Principal id="Author">',
    `      <UserId>${user}</UserId>`,
    '      <LogonType>InteractiveToken</LogonType>',
    '      <RunLevel>LeastPrivilege</RunLevel>',
    '    </Principal>',
    '  </Principals>',
    '  <Settings>',
    '    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>',
    '    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>',
    '    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>',
    '    <AllowHardTerminate>true</AllowHardTerminate>',
    '    <StartWhenAvailable>false</StartWhenAvailable>',
    '    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>',
    '    <IdleSettings>',
    '      <StopOnIdleEnd>false</StopOnIdleEnd>',
    '      <RestartOnIdle>false</RestartOnIdle>',
    '    </IdleSettings>',
    '    <AllowStartOnDemand>true</AllowStartOnDemand>',
    '    <Enabled>true</Enabled>',
    '    <Hidden>false</Hidden>',
    '    <RunOnlyIfIdle>false</RunOnlyIfIdle>',
    '    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>',
    // 5 is a normal-priority process; the default, 7, is below normal.
    '    <Priority>5</Priority>',
    '    <RestartOnFailure>',
    '      <Interval>PT1M</Interval>',
    '      <Count>3</Count>',
    '    </RestartOnFailure>',
    '  </Settings>',
    '  <Actions Context="Author">',
    '    <Exec>',
    `      <Command>${xmlEscape(conhost)}</Command>`,
    `      <Arguments>${xmlEscape(argLine)}</Arguments>`,
    '    </Exec>',
    '  </Actions>',
    '</Task>',
    '',
  ].join('\r\n');
}

/** The command a task XML runs (conhost and its --headless dropped), or undefined. */
export function taskXmlCommand(xml: string): string[] | undefined {
  const m = /<Arguments>([\s\S]*?)<\/Arguments>/.exec(xml);
  if (!m) return undefined;
  const words = splitWindowsArgs(xmlUnescape(m[1]));
  return words[0] === '--headless' ? words.slice(1) : words;
}
