// An fp16 model (the Olive/DirectML export layout: float16 weights, inputs and outputs) edits a clip end to end
// through the real CLI, on whichever Node runs the tests. CI runs this file on Node 20, 22 and 24: on Node 24, with its
// native Float16Array, onnxruntime-node 1.30 fails every fp16 run unless models/float16-guard.ts has removed it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { generateTinySd } from '../../engine/src/models/generate/tiny-sd';
import * as ort from '../../engine/src/models/ort';
import { reshootEdit } from '../support/cli';

let root: string;
let model: string;
let clip: string;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'fp16-edit-'));
  model = path.join(root, 'tiny-sd-olive-fp16');
  generateTinySd(model, 'olive-fp16');
  clip = path.join(root, 'clip.mp4');
  await makeTestClip({
    file: clip,
    width: 64,
    height: 48,
    fps: { num: 8, den: 1 },
    frames: 4,
    content: 'moving-square',
  });
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe(`an fp16 model on Node ${process.versions.node}`, () => {
  it('loading ONNX Runtime through models/ort leaves no Float16Array for onnxruntime-common to pick', () => {
    expect((globalThis as { Float16Array?: unknown }).Float16Array).toBeUndefined();
    const t = new ort.Tensor('float16', new Uint16Array([0x3c00, 0xc000]), [2]);
    expect(t.data).toBeInstanceOf(Uint16Array);
  });

  it('reshoot edit writes the edited clip: 4 frames at the source size', async () => {
    const out = path.join(root, 'edited.mp4');
    const r = reshootEdit({
      clip,
      model,
      home: path.join(root, 'home'),
      args: ['--steps', '3', '--seed', '7', '-o', out, '--json'],
    });
    expect(r.stderr).not.toMatch(/not enough space|reshoot: /);
    expect(r.status).toBe(0);
    const media = await probeMedia(out);
    expect(media.video.frameCount).toBe(4);
    expect([media.video.displayWidth, media.video.displayHeight]).toEqual([64, 48]);
    const done = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      event: string;
      result: { path: string; frames: number };
    };
    expect(done).toMatchObject({ event: 'done', result: { path: out, frames: 4 } });
  });
});
