// The built `reshoot` command, run as a child process the way a user runs it, with a home folder of its own.
import { spawnSync } from 'node:child_process';
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
