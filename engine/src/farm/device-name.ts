// The name of the device a render node computes on ("NVIDIA RTX A6000", "AMD EPYC 7B13"), for `reshoot workers`:
// the provider alone ("cuda") does not tell an operator which of a farm's machines holds the slow card. ONNX Runtime
// does not report it, so it comes from the tools the drivers install; a node that cannot tell says nothing.
import { execFile } from 'node:child_process';
import * as os from 'node:os';

/** A name is for display only: a missing or hung tool must not hold up a node's start. */
const TOOL_TIMEOUT_MS = 5_000;

function firstLine(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: TOOL_TIMEOUT_MS, windowsHide: true }, (err, stdout) => {
      const line = err
        ? undefined
        : String(stdout)
            .split(/\r?\n/)
            .map((l) => l.trim())
            .find(Boolean);
      resolve(line);
    });
  });
}

function cpuName(): string | undefined {
  const cpus = os.cpus();
  return cpus.length ? `${cpus[0].model.trim()} (${cpus.length} threads)` : undefined;
}

/** What the node's provider runs on; undefined when the driver's tool is missing or says nothing. */
export async function deviceName(provider: string, env = process.env): Promise<string | undefined> {
  switch (provider) {
    case 'cuda': {
      // CUDA_VISIBLE_DEVICES picks the card ONNX Runtime's device 0 is; nvidia-smi takes the same ids.
      const visible = env.CUDA_VISIBLE_DEVICES?.split(',')[0]?.trim();
      const select = visible ? ['--id', visible] : [];
      return firstLine('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader', ...select], env);
    }
    case 'dml':
      return process.platform === 'win32'
        ? firstLine(
            'powershell.exe',
            ['-NoProfile', '-Command', '(Get-CimInstance Win32_VideoController | Select-Object -First 1).Name'],
            env,
          )
        : undefined;
    // On a Mac the chip is the GPU and the Neural Engine too ("Apple M2 Pro").
    case 'coreml':
    case 'cpu':
      return cpuName();
    default:
      return undefined;
  }
}
