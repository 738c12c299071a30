// The built `reshoot` command, run as a child process the way a user runs it, with a home folder of its own.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

export const CLI = path.resolve(__dirname, '../../dist/engine/src/cli/main.js');

/** `reshoot edit CLIP` from "a red square" to "a blue square" on `model`, with more arguments as given. */
export function reshootEdit(o: { clip: string; model: string; home: string; args: string[] }) {
  return spawnSync(
    process.execPath,
    [
      CLI,
      'edit',
      o.clip,
      '--prompt',
      'a blue square',
      '--source-prompt',
      'a red square',
      '--model',
      o.model,
      ...o.args,
    ],
    { encoding: 'utf8', env: { ...process.env, RESHOOT_HOME: o.home }, timeout: 300_000 },
  );
}

export interface ServeProcess {
  proc: ChildProcess;
  url: string;
  token: string;
  stderr: string[];
}

/** `reshoot serve --port 0 ARGS` with this home; resolves once it prints its URL and token. */
export function startServe(args: string[], home: string): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], {
      env: { ...process.env, RESHOOT_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stderr: string[] = [];
    proc.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+)\/\?token=([A-Za-z0-9_-]+)/.exec(out);
      if (m) resolve({ proc, url: m[1], token: m[2], stderr });
    });
    proc.on('exit', (code) => reject(new Error(`engine exited with ${code}: ${stderr.join('')}`)));
  });
}
