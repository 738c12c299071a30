// A render node names its device from the driver's own tool; a missing or failing tool leaves the name out.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deviceName } from '../../engine/src/farm/device-name';

let bin: string;

/** An nvidia-smi stand-in, alone on PATH, that answers the query the way the real one does, with its arguments. */
function fakeNvidiaSmi(script: string): void {
  const file = path.join(bin, 'nvidia-smi');
  fs.writeFileSync(file, `#!/bin/sh\n${script}\n`);
  fs.chmodSync(file, 0o755);
}

beforeEach(() => {
  bin = fs.mkdtempSync(path.join(os.tmpdir(), 'device-name-'));
});

afterEach(() => fs.rmSync(bin, { recursive: true, force: true }));

it('asks nvidia-smi for the name of the card CUDA_VISIBLE_DEVICES makes device 0', async () => {
  fakeNvidiaSmi('printf "\\n  NVIDIA RTX A6000 [%s]\\nNVIDIA RTX A4000\\n" "$*"');
  expect(await deviceName('cuda', { PATH: bin })).toBe('NVIDIA RTX A6000 [--query-gpu=name --format=csv,noheader]');
  expect(await deviceName('cuda', { PATH: bin, CUDA_VISIBLE_DEVICES: '2,3' })).toBe(
    'NVIDIA RTX A6000 [--query-gpu=name --format=csv,noheader --id 2]',
  );
});

it('says nothing when the driver tool is missing or fails', async () => {
  expect(await deviceName('cuda', { PATH: bin })).toBeUndefined();
  fakeNvidiaSmi('echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver"; exit 9');
  expect(await deviceName('cuda', { PATH: bin })).toBeUndefined();
});

it('names the processor for the CPU provider, and nothing for a provider it cannot ask', async () => {
  const cpus = os.cpus();
  expect(await deviceName('cpu')).toBe(`${cpus[0].model.trim()} (${cpus.length} threads)`);
  expect(await deviceName('webgpu')).toBeUndefined();
});
