// `reshoot edit`'s own sentences: what a mistyped command line gets back, run in-process through runEdit.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CliError, joinNegativeValues, parse } from '../../engine/src/cli/args';
import {
  cliWording,
  crossFrameArg,
  maskArg,
  reweightArg,
  runEdit,
  structureArg,
  tokenFlowArg,
  wordSwapArg,
} from '../../engine/src/cli/edit';
import { makeTestClip, probeMedia } from '../../engine/src/media';
import { ffmpegPath } from '../../engine/src/media/binaries';
import { generateOracle } from '../../engine/src/models/generate/oracle';

let root: string;
let silent: string;
let oracle: string;
const savedHome = process.env.RESHOOT_HOME;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-edit-'));
  process.env.RESHOOT_HOME = path.join(root, 'home');
  oracle = path.join(root, 'oracle');
  generateOracle(oracle);
  // 12 frames at 24 fps: 0.5 s, no audio stream.
  silent = path.join(root, 'silent.mp4');
  await makeTestClip({
    file: silent,
    width: 64,
    height: 36,
    fps: { num: 24, den: 1 },
    frames: 12,
    content: 'moving-square',
  });
});

afterAll(() => {
  if (savedHome === undefined) delete process.env.RESHOOT_HOME;
  else process.env.RESHOOT_HOME = savedHome;
  fs.rmSync(root, { recursive: true, force: true });
});

async function failure(args: string[]): Promise<CliError> {
  const err = await runEdit(args).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CliError);
  return err as CliError;
}

describe('argument parsing', () => {
  it('takes a negative number after an option as its value', () => {
    const opts = { in: { type: 'string' }, output: { type: 'string', short: 'o' }, json: { type: 'boolean' } } as const;
    expect(joinNegativeValues(['--in', '-1', '-o', '-2.5', '--json'], opts)).toEqual([
      '--in=-1',
      '--output=-2.5',
      '--json',
    ]);
    expect(joinNegativeValues(['--json', '-1'], opts)).toEqual(['--json', '-1']);
    expect(joinNegativeValues(['--', '--in', '-1'], opts)).toEqual(['--', '--in', '-1']);
    expect(parse(['--in', '-.5'], opts).values.in).toBe('-.5');
  });
});

describe('reshoot edit says what is wrong in its own words', () => {
  it('--in -1: --in takes seconds ≥ 0', async () => {
    const err = await failure([silent, '--prompt', 'a blue car', '--in', '-1']);
    expect(err.message).toMatch(/^--in takes seconds from the start of the clip, a number ≥ 0/);
    expect(err.message).toMatch(/got "-1"/);
    expect(err.message).not.toMatch(/ambiguous|--in=-XYZ/);
    expect(err.exitCode).toBe(2);
    expect((await failure([silent, '--prompt', 'a blue car', '--out', '-0.5'])).message).toMatch(
      /^--out takes seconds .*≥ 0.*got "-0.5"/,
    );
  });

  it("--in past the end without --out names the clip's length", async () => {
    const err = await failure([silent, '--prompt', 'a blue car', '--in', '5']);
    expect(err.message).toMatch(/--in 5 is at or past the end of the clip/);
    expect(err.message).toMatch(/0\.5 s \(12 frames\) long/);
    expect(err.message).not.toMatch(/--out must be later/);
  });

  it('--out before --in says both count from the start and that --out may be left out', async () => {
    const err = await failure([silent, '--prompt', 'a blue car', '--in', '0.4', '--out', '0.2']);
    expect(err.message).toMatch(/--out 0\.2 must be later than --in 0\.4; both count from the start of the clip/);
    expect(err.message).toMatch(/Leave out --out to edit to the end of the clip/);
    // The same in timecode, quoted as typed.
    const tc = await failure([silent, '--prompt', 'a blue car', '--in', '00:00:00:06', '--out', '00:00:00:03']);
    expect(tc.message).toMatch(/^--out 00:00:00:03 must be later than --in 00:00:00:06/);
  });

  it("timecode that names no frame at the clip's rate, or that is not timecode, is refused with an example", async () => {
    const err = await failure([silent, '--prompt', 'a blue car', '--in', '00:00:00:30']);
    expect(err.message).toMatch(
      /^--in 00:00:00:30 names no frame at the clip's 24 fps: frames run 00 to 23\. E\.g\. 1\.5 s is 00:00:01:12/,
    );
    expect(err.exitCode).toBe(2);
    const shape = await failure([silent, '--prompt', 'a blue car', '--out', '1:2']);
    expect(shape.message).toMatch(
      /^--out takes seconds .*or timecode in the clip's rate, e\.g\. --out 00:00:01:12; got "1:2"/,
    );
  });

  it('an empty prompt says it is empty and what to type', async () => {
    for (const p of ['', '   ']) {
      const err = await failure([silent, '--prompt', p]);
      expect(err.message).toMatch(/^--prompt is empty: type what the edited range should show/);
      expect(err.message).toMatch(/--prompt "a blue car on a gray road"/);
    }
    expect((await failure([silent])).message).toMatch(/^--prompt is required: say what the edited range should show/);
  });

  it("the engine's API field names become options", () => {
    expect(cliWording('/x/a.mp4 already exists; choose another name or set output.overwrite')).toBe(
      '/x/a.mp4 already exists; choose another name with -o, or pass --overwrite to replace it',
    );
    expect(
      cliWording(
        '/x/a.mp4 is the source clip this job reads; writing the result there would destroy it, so it is refused even with overwrite. Choose another output path, e.g. /x/a.reshoot.mp4.',
      ),
    ).toMatch(/refused even with --overwrite\. Choose another output with -o, e\.g\./);
    expect(cliWording('source.out must be later than source.in')).toBe('--out must be later than --in');
  });

  it('an existing output: the hint names --overwrite, not output.overwrite', async () => {
    const out = path.join(root, 'exists.mp4');
    fs.writeFileSync(out, 'an earlier render');
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const err = await failure([silent, '--prompt', 'a blue car', '--model', oracle, '-o', out]).finally(() =>
      quiet.mockRestore(),
    );
    expect(err.message).toMatch(/already exists; choose another name with -o, or pass --overwrite/);
    expect(err.message).not.toMatch(/output\.overwrite/);
    expect(fs.readFileSync(out, 'utf8')).toBe('an earlier render');
  });

  it('--cross-frame and --reweight: parsed, and refused on a model without the attention they act on', async () => {
    expect(crossFrameArg('first')).toEqual({ anchors: 'first' });
    expect(crossFrameArg('first+previous,decoder,replace')).toEqual({
      anchors: 'first+previous',
      mode: 'replace',
      layers: 'decoder',
    });
    expect(() => crossFrameArg('replace')).toThrow(
      /starts with the anchor frames, "first", "first\+previous" or "all"/,
    );
    expect(crossFrameArg('all,decoder')).toEqual({ anchors: 'all', layers: 'decoder' });
    expect(() => crossFrameArg('first,sideways')).toThrow(/"replace" or "extend".*got "sideways"/);
    const out = path.join(root, 'cross-frame.mp4');
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const err = await failure([
      silent,
      '--prompt',
      'a blue car',
      '--model',
      oracle,
      '--cross-frame',
      'first',
      '-o',
      out,
    ]).finally(() => quiet.mockRestore());
    expect(err.message).toMatch(
      /needs self-attention in the UNet, and this model has none.*; turn --cross-frame off or use/,
    );
    expect(reweightArg('blue=2, car=0.5')).toEqual([
      { word: 'blue', scale: 2 },
      { word: 'car', scale: 0.5 },
    ]);
    expect(() => reweightArg('blue')).toThrow(/WORD=SCALE pairs.*got "blue"/);
    expect(() => reweightArg('blue=x')).toThrow(/got "blue=x"/);
    const quiet2 = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const rw = await failure([silent, '--prompt', 'a blue car', '--model', oracle, '--reweight', 'blue=2', '-o', out]);
    quiet2.mockRestore();
    expect(rw.message).toMatch(/this model has none.*; leave out --reweight or use a Stable Diffusion model/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('--structure and --word-swap: presets and numbers; the refusals name the options', async () => {
    expect(structureArg('balanced')).toBe(0.8);
    expect(structureArg('Keep structure')).toBe(1);
    expect(structureArg('0.3')).toBe(0.3);
    expect(() => structureArg('tight')).toThrow(
      /a preset \("off", "reimagine", "loose", "balanced", "keep structure"\)/,
    );
    expect(wordSwapArg('0.6')).toEqual({ steps: 0.6 });
    expect(maskArg('auto:attention')).toEqual({ type: 'auto', from: 'attention' });
    expect(maskArg('auto:both')).toEqual({ type: 'auto', from: 'both' });
    expect(() => wordSwapArg('')).toThrow(/--word-swap takes the fraction of the steps/);
    expect(tokenFlowArg(' 4 ')).toEqual({ keyframeEvery: 4 });
    expect(() => tokenFlowArg('on')).toThrow(/--token-flow takes how many frames share one keyframe/);
    const out = path.join(root, 'structure.mp4');
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const lock = await failure([
        silent,
        '--prompt',
        'a blue car',
        '--model',
        oracle,
        '--structure',
        'loose',
        '-o',
        out,
      ]);
      expect(lock.message).toMatch(/this model has none.*; leave out --structure or use a Stable Diffusion model/);
      const swap = await failure([
        silent,
        '--prompt',
        'a blue car',
        '--model',
        oracle,
        '--word-swap',
        '0.8',
        '-o',
        out,
      ]);
      expect(swap.message).toMatch(/this model has no cross-attention.*; leave out --word-swap or use/);
      const attentionMask = await failure([
        silent,
        '--prompt',
        'a blue car',
        '--source-prompt',
        'a red car',
        '--model',
        oracle,
        '--mask',
        'auto:attention',
        '-o',
        out,
      ]);
      expect(attentionMask.message).toMatch(/this model has none.*; use --mask auto or a Stable Diffusion model/);
      const tooStrong = await failure([silent, '--prompt', 'a blue car', '--structure', '2', '-o', out]);
      expect(tooStrong.message).toMatch(/--structure is a strength from 0 \(off\) to 1/);
      const tokenFlow = await failure([
        silent,
        '--prompt',
        'a blue car',
        '--model',
        oracle,
        '--token-flow',
        '8',
        '-o',
        out,
      ]);
      expect(tokenFlow.message).toMatch(/no self-attention.*; leave out --token-flow or use a Stable Diffusion model/);
      const sparse = await failure([silent, '--prompt', 'a blue car', '--token-flow', '100', '-o', out]);
      expect(sparse.message).toMatch(/--token-flow above 64 leaves too few keyframes/);
    } finally {
      quiet.mockRestore();
    }
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('reshoot edit runs', () => {
  it('--in without --out edits to the end of the clip; --audio on a silent clip warns', async () => {
    const out = path.join(root, 'tail.mp4');
    const warnings: string[] = [];
    const spy = jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void warnings.push(a.join(' ')));
    const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      const code = await runEdit([
        silent,
        '--prompt',
        'a blue car on a gray road',
        '--source-prompt',
        'a red car on a gray road',
        '--in',
        '0.25',
        '--audio',
        '--steps',
        '2',
        '--guidance',
        '1',
        '--model',
        oracle,
        '-o',
        out,
      ]);
      expect(code).toBe(0);
    } finally {
      spy.mockRestore();
      log.mockRestore();
    }
    expect(warnings.filter((w) => w.startsWith('warning:'))).toEqual([
      `warning: ${silent} has no audio stream, so --audio has nothing to carry; the result will be silent`,
    ]);
    const info = await probeMedia(out);
    expect(info.video.frameCount).toBe(6); // frames 6..11
    expect(info.audio).toEqual([]);
  });

  it('a clip with an alpha channel is edited, and the warning says the result is opaque', async () => {
    const alpha = path.join(root, 'lower-third.mov');
    execFileSync(ffmpegPath(), [
      ...['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=s=64x36:r=24:d=0.25,format=yuva444p10le'],
      ...['-c:v', 'prores_ks', '-profile:v', '4444', alpha],
    ]);
    const out = path.join(root, 'lower-third.edit.mov');
    const warnings: string[] = [];
    const spy = jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void warnings.push(a.join(' ')));
    const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      const args = [
        '--prompt',
        'a blue car',
        '--steps',
        '1',
        '--guidance',
        '1',
        '--model',
        oracle,
        '--codec',
        'prores',
      ];
      expect(await runEdit([alpha, ...args, '-o', out])).toBe(0);
    } finally {
      spy.mockRestore();
      log.mockRestore();
    }
    expect(warnings.filter((w) => w.startsWith('warning:'))).toEqual([
      expect.stringMatching(
        /^warning: lower-third\.mov has an alpha channel \(yuva444p\d+le\) and the result has none: its transparent areas come back black/,
      ),
    ]);
    expect((await probeMedia(out)).video.frameCount).toBe(6);
  });

  it('--in and --out in timecode pick the same frames as seconds', async () => {
    const out = path.join(root, 'middle.mp4');
    const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const args = ['--prompt', 'a blue car', '--steps', '1', '--guidance', '1', '--model', oracle, '--json'];
      expect(await runEdit([silent, ...args, '--in', '00:00:00:03', '--out', '00:00:00:09', '-o', out])).toBe(0);
    } finally {
      log.mockRestore();
      quiet.mockRestore();
    }
    const info = await probeMedia(out);
    expect(info.video.frameCount).toBe(6); // frames 3..8: 0.125 s to 0.375 s
  });
});
