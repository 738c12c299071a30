// Which ffmpeg/ffprobe the engine picks (engine/src/media/binaries.ts), with real executables: the bundled binaries,
// and small wrapper scripts that answer `-version` with the first line of another build and otherwise exec the
// bundled binary, standing in for a system pair on PATH or a build named by FFMPEG_PATH / FFPROBE_PATH.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ffmpegPath,
  ffmpegSelection,
  ffprobePath,
  inspectFfmpeg,
  parseFfmpegVersion,
  resetFfmpegSelection,
  sameBuild,
  type FfmpegInspection,
  type ToolChoice,
} from '../../engine/src/media/binaries';
import { makeTestClip, probeMedia, rational } from '../../engine/src/media';

const BUNDLED_FFMPEG = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
const BUNDLED_FFPROBE = (require('@ffprobe-installer/ffprobe') as { path: string }).path;

const V = {
  brew: 'ffmpeg version 7.1.1 Copyright (c) 2000-2025 the FFmpeg developers',
  brewProbe: 'ffprobe version 7.1.1 Copyright (c) 2007-2025 the FFmpeg developers',
  btbnRelease: 'ffmpeg version n7.1 Copyright (c) 2000-2024 the FFmpeg developers',
  debian12: 'ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers',
  debian12Probe: 'ffprobe version 5.1.9-0+deb12u1 Copyright (c) 2007-2026 the FFmpeg developers',
  ubuntu2404: 'ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers',
  probe61: 'ffprobe version 6.1.1-3ubuntu5 Copyright (c) 2007-2023 the FFmpeg developers',
  old2018:
    'ffmpeg version N-47683-g0e8eb07980-static https://johnvansickle.com/ffmpeg/  Copyright (c) 2000-2018 the FFmpeg developers',
  git2023Probe:
    'ffprobe version N-66595-gc2b38619c0-static https://johnvansickle.com/ffmpeg/  Copyright (c) 2007-2023 the FFmpeg developers',
  gitNew: 'ffmpeg version N-118448-g43be8d0728-20250209 Copyright (c) 2000-2025 the FFmpeg developers',
  gitNewProbe: 'ffprobe version N-118448-g43be8d0728-20250209 Copyright (c) 2007-2025 the FFmpeg developers',
  gyanGit:
    'ffmpeg version 2024-07-24-git-896c22ef00-full_build-www.gyan.dev Copyright (c) 2000-2024 the FFmpeg developers',
  gyanRelease: 'ffmpeg version 7.1.1-full_build-www.gyan.dev Copyright (c) 2000-2025 the FFmpeg developers',
};

const posix = process.platform !== 'win32';
const d = posix ? describe : describe.skip;

let root: string;
let n = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'ffsel-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A fresh folder holding wrapper scripts: name → first line of `-version`. Every call is logged. */
function folder(tools: Partial<Record<'ffmpeg' | 'ffprobe', string>>): { dir: string; log: string } {
  const dir = join(root, `d${n++}`);
  mkdirSync(dir);
  const log = join(dir, 'calls.log');
  for (const [tool, line] of Object.entries(tools)) {
    const target = tool === 'ffmpeg' ? BUNDLED_FFMPEG : BUNDLED_FFPROBE;
    const f = join(dir, tool);
    writeFileSync(
      f,
      `#!/bin/sh\necho "${tool} $*" >> '${log}'\n` +
        `if [ "$1" = "-version" ]; then echo '${line}'; echo 'built with a wrapper'; exit 0; fi\n` +
        `exec '${target}' "$@"\n`,
    );
    chmodSync(f, 0o755);
  }
  return { dir, log };
}

function calls(log: string): string[] {
  return existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
}

function ok(c: FfmpegInspection['ffmpeg']): ToolChoice {
  if ('error' in c) throw new Error(`expected a usable tool, got: ${c.error.message}`);
  return c;
}

describe('parseFfmpegVersion', () => {
  it.each([
    [V.brew, 'release', 7, 1, true],
    [V.btbnRelease, 'release', 7, 1, true],
    [V.debian12, 'release', 5, 1, false],
    [V.ubuntu2404, 'release', 6, 1, true],
    [V.gyanRelease, 'release', 7, 1, true],
  ] as const)('%s', (line, kind, major, minor, current) => {
    const v = parseFfmpegVersion(`${line}\nbuilt with gcc 12\n`);
    expect(v).toMatchObject({ kind, major, minor, current });
  });

  it('reads patch levels and the raw word', () => {
    expect(parseFfmpegVersion(V.brew)).toMatchObject({ raw: '7.1.1', patch: 1, label: '7.1.1' });
    expect(parseFfmpegVersion(V.btbnRelease)).toMatchObject({ raw: 'n7.1', patch: undefined });
    expect(parseFfmpegVersion(V.debian12)).toMatchObject({
      raw: '5.1.9-0+deb12u1',
      major: 5,
      minor: 1,
      patch: 9,
      year: 2026,
    });
  });

  it('dates git builds by the copyright year (N-numbers are not releases)', () => {
    expect(parseFfmpegVersion(V.old2018)).toMatchObject({
      kind: 'git',
      year: 2018,
      current: false,
      raw: 'N-47683-g0e8eb07980-static',
      label: 'git N-47683, 2018',
    });
    expect(parseFfmpegVersion(V.git2023Probe)).toMatchObject({ kind: 'git', year: 2023, current: true });
    expect(parseFfmpegVersion(V.gitNew)).toMatchObject({ kind: 'git', year: 2025, current: true });
    expect(parseFfmpegVersion(V.gyanGit)).toMatchObject({ kind: 'git', year: 2024, current: true });
    expect(parseFfmpegVersion('ffmpeg version N-12345-gdeadbeef')).toMatchObject({
      kind: 'git',
      year: undefined,
      current: false,
    });
    expect(parseFfmpegVersion('not ffmpeg at all')).toMatchObject({ kind: 'unknown', current: false });
  });

  it('parses what the real binaries print', () => {
    const ff = parseFfmpegVersion(execFileSync(BUNDLED_FFMPEG, ['-version'], { encoding: 'utf8' }));
    const fp = parseFfmpegVersion(execFileSync(BUNDLED_FFPROBE, ['-version'], { encoding: 'utf8' }));
    expect(ff.kind).not.toBe('unknown');
    expect(fp.kind).not.toBe('unknown');
    if (process.platform === 'linux' && process.arch === 'x64') {
      expect(ff).toMatchObject({ kind: 'git', raw: 'N-47683-g0e8eb07980-static', year: 2018, current: false });
      expect(fp).toMatchObject({ kind: 'git', raw: 'N-66595-gc2b38619c0-static', year: 2023, current: true });
      expect(sameBuild(ff, fp)).toBe(false);
    }
    for (const sys of ['/usr/bin/ffmpeg', '/usr/bin/ffprobe']) {
      if (!existsSync(sys)) continue;
      const v = parseFfmpegVersion(execFileSync(sys, ['-version'], { encoding: 'utf8' }));
      expect(v.kind).toBe('release');
      expect(v.current).toBe(v.major! >= 6);
    }
  });

  it('same build: major.minor for releases, the exact word for git builds', () => {
    const p = parseFfmpegVersion;
    expect(sameBuild(p(V.brew), p('ffprobe version 7.1.2 Copyright (c) 2007-2025'))).toBe(true);
    expect(sameBuild(p(V.brew), p(V.probe61))).toBe(false);
    expect(sameBuild(p(V.gitNew), p(V.gitNewProbe))).toBe(true);
    expect(sameBuild(p(V.old2018), p(V.git2023Probe))).toBe(false);
    expect(sameBuild(p(V.brew), p(V.gitNew))).toBe(false);
  });
});

d('selection order (inspectFfmpeg with a given environment)', () => {
  it('a current pair on PATH is used, and says so', () => {
    const { dir } = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    const s = inspectFfmpeg({ env: { PATH: dir } });
    expect(ok(s.ffmpeg)).toMatchObject({ path: join(dir, 'ffmpeg'), source: 'path', version: '7.1.1' });
    expect(ok(s.ffprobe)).toMatchObject({ path: join(dir, 'ffprobe'), source: 'path', version: '7.1.1' });
    expect(s.why).toMatch(
      /^ffmpeg and ffprobe found on PATH: .*ffmpeg \(7\.1\.1\) and .*ffprobe \(7\.1\.1\), both current .* same release\.$/,
    );
    expect(s.warnings).toEqual([]);
  });

  it('a current git pair from one build is used', () => {
    const { dir } = folder({ ffmpeg: V.gitNew, ffprobe: V.gitNewProbe });
    const s = inspectFfmpeg({ env: { PATH: dir } });
    expect(ok(s.ffmpeg).source).toBe('path');
    expect(s.why).toMatch(/same git build/);
  });

  it('the first folder on PATH wins, as in a shell', () => {
    const first = folder({ ffmpeg: V.ubuntu2404, ffprobe: V.probe61 });
    const second = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    const s = inspectFfmpeg({ env: { PATH: `${first.dir}:${second.dir}` } });
    expect(ok(s.ffmpeg).path).toBe(join(first.dir, 'ffmpeg'));
    expect(ok(s.ffprobe).version).toBe('6.1.1-3ubuntu5');
  });

  it.each([
    [
      'too old (Debian 12)',
      { ffmpeg: V.debian12, ffprobe: V.debian12Probe },
      /too old: .*ffmpeg is 5\.1\.9-0\+deb12u1 and .*ffprobe is 5\.1\.9-0\+deb12u1, older than 6/,
    ],
    [
      'an old git build',
      { ffmpeg: V.old2018, ffprobe: V.git2023Probe },
      /too old: .*ffmpeg is N-47683-g0e8eb07980-static, older than 6 \(git builds count from 2023\)/,
    ],
    [
      'not one release',
      { ffmpeg: V.brew, ffprobe: V.probe61 },
      /not from the same build: .*ffmpeg is 7\.1\.1, .*ffprobe is 6\.1\.1-3ubuntu5/,
    ],
    ['ffprobe missing', { ffmpeg: V.brew }, /ffmpeg is on PATH \(.*\) but ffprobe is not/],
    ['ffmpeg missing', { ffprobe: V.brewProbe }, /ffprobe is on PATH \(.*\) but ffmpeg is not/],
    ['nothing', {}, /no ffmpeg or ffprobe on PATH/],
  ] as const)('falls back to the bundled pair when the one on PATH is %s', (_name, tools, why) => {
    const { dir } = folder(tools);
    const s = inspectFfmpeg({ env: { PATH: dir } });
    expect(ok(s.ffmpeg)).toMatchObject({ path: BUNDLED_FFMPEG, source: 'bundled' });
    expect(ok(s.ffprobe)).toMatchObject({ path: BUNDLED_FFPROBE, source: 'bundled' });
    expect(s.why).toMatch(/^The bundled ffmpeg and ffprobe are used: /);
    expect(s.why).toMatch(why);
    expect(s.warnings.join('\n')).toMatch(
      /brew install ffmpeg.*winget install ffmpeg.*apt install ffmpeg.*FFMPEG_PATH and FFPROBE_PATH/,
    );
  });

  it('the bundled pair carries the verified defects of these builds', () => {
    const s = inspectFfmpeg({ env: { PATH: '' } });
    const all = s.warnings.join('\n');
    if (ok(s.ffprobe).parsed?.raw.startsWith('N-66595-'))
      expect(all).toMatch(/bundled ffprobe .* crashes \(segmentation fault\) on every MPEG-TS \/ M2TS file/);
    if (ok(s.ffmpeg).parsed?.raw.startsWith('N-47683-')) {
      expect(all).toMatch(/bundled ffmpeg is an old build \(N-47683-g0e8eb07980-static, from 2018, about 4\.1\)/);
      expect(all).toMatch(/not from the same build/);
    }
  });

  it('on macOS the Homebrew folders are searched after PATH', () => {
    const s = inspectFfmpeg({ env: { PATH: '' }, platform: 'darwin' });
    expect(s.why).toMatch(/no ffmpeg or ffprobe on PATH or in the Homebrew folders/);
  });

  it('FFMPEG_PATH and FFPROBE_PATH are used as given, however old, with a warning', () => {
    const { dir } = folder({ ffmpeg: V.debian12, ffprobe: V.debian12Probe });
    const cur = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    const s = inspectFfmpeg({
      env: { PATH: cur.dir, FFMPEG_PATH: join(dir, 'ffmpeg'), FFPROBE_PATH: join(dir, 'ffprobe') },
    });
    expect(ok(s.ffmpeg)).toMatchObject({ path: join(dir, 'ffmpeg'), source: 'env', version: '5.1.9-0+deb12u1' });
    expect(ok(s.ffprobe)).toMatchObject({ path: join(dir, 'ffprobe'), source: 'env' });
    expect(s.why).toBe('FFMPEG_PATH and FFPROBE_PATH are set; both are used as given.');
    expect(s.warnings.join('\n')).toMatch(/ffmpeg \(FFMPEG_PATH\) is ffmpeg 5\.1\.9-0\+deb12u1, older than 6/);
  });

  it('with only FFMPEG_PATH, ffprobe is taken from beside it first', () => {
    const given = folder({
      ffmpeg: V.gyanRelease,
      ffprobe: 'ffprobe version 7.1.1-full_build-www.gyan.dev Copyright (c) 2007-2025',
    });
    const onPath = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    const s = inspectFfmpeg({ env: { PATH: onPath.dir, FFMPEG_PATH: join(given.dir, 'ffmpeg') } });
    expect(ok(s.ffmpeg).source).toBe('env');
    expect(ok(s.ffprobe)).toMatchObject({ path: join(given.dir, 'ffprobe'), source: 'beside-env' });
    expect(s.why).toMatch(/FFMPEG_PATH is set and used as given; ffprobe was found beside it/);
    expect(s.warnings).toEqual([]);
  });

  it('with only FFPROBE_PATH, ffmpeg is taken from beside it first', () => {
    const given = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    const s = inspectFfmpeg({ env: { PATH: '', FFPROBE_PATH: join(given.dir, 'ffprobe') } });
    expect(ok(s.ffmpeg)).toMatchObject({ path: join(given.dir, 'ffmpeg'), source: 'beside-env' });
    expect(ok(s.ffprobe).source).toBe('env');
  });

  it('with only FFMPEG_PATH and nothing beside it, the rest of the order picks ffprobe', () => {
    const given = folder({ ffmpeg: V.brew });
    const onPath = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    let s = inspectFfmpeg({ env: { PATH: onPath.dir, FFMPEG_PATH: join(given.dir, 'ffmpeg') } });
    expect(ok(s.ffprobe)).toMatchObject({ path: join(onPath.dir, 'ffprobe'), source: 'path' });
    expect(s.why).toMatch(
      /there is no ffprobe beside it in .*so ffprobe is chosen as below\. ffprobe is taken from the pair found on PATH/,
    );
    const old = folder({ ffmpeg: V.debian12, ffprobe: V.debian12Probe });
    s = inspectFfmpeg({ env: { PATH: old.dir, FFMPEG_PATH: join(given.dir, 'ffmpeg') } });
    expect(ok(s.ffprobe)).toMatchObject({ path: BUNDLED_FFPROBE, source: 'bundled' });
    expect(s.why).toMatch(/The bundled ffprobe is used: the ffmpeg on PATH is too old/);
    expect(s.warnings.join('\n')).toMatch(/ffmpeg \(7\.1\.1, .*\) and ffprobe \(.*\) are not from the same build/);
  });

  it('a bad FFMPEG_PATH keeps its error (ffmpeg-missing, naming the variable); ffprobe is chosen without it', () => {
    const nowhere = join(root, 'no-ffmpeg-here');
    const s = inspectFfmpeg({ env: { PATH: '', FFMPEG_PATH: nowhere } });
    if (!('error' in s.ffmpeg)) throw new Error('expected an error');
    expect(s.ffmpeg.error.code).toBe('ffmpeg-missing');
    expect(s.ffmpeg.error.message).toBe(
      `FFMPEG_PATH points to ${nowhere}, which does not exist. Set FFMPEG_PATH to the full path of an ffmpeg executable, or unset it to use the ffmpeg bundled with Reshoot.`,
    );
    expect(ok(s.ffprobe).source).toBe('bundled');
    const notExec = join(root, 'not-exec');
    writeFileSync(notExec, '#!/bin/sh\n', { mode: 0o644 });
    const t = inspectFfmpeg({ env: { PATH: '', FFPROBE_PATH: notExec } });
    expect('error' in t.ffprobe && t.ffprobe.error.message).toMatch(
      /^FFPROBE_PATH points to .*not-exec, which is not executable\./,
    );
  });
});

d('the selection of this process: cached, and chosen again when the environment changes', () => {
  const saved = {
    PATH: process.env.PATH,
    FFMPEG_PATH: process.env.FFMPEG_PATH,
    FFPROBE_PATH: process.env.FFPROBE_PATH,
  };
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    resetFfmpegSelection();
  });

  it('runs -version once per tool, however often the paths are asked for', () => {
    const { dir, log } = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    delete process.env.FFMPEG_PATH;
    delete process.env.FFPROBE_PATH;
    process.env.PATH = `${dir}:${saved.PATH ?? ''}`;
    resetFfmpegSelection();
    for (let i = 0; i < 5; i++) {
      expect(ffmpegPath()).toBe(join(dir, 'ffmpeg'));
      expect(ffprobePath()).toBe(join(dir, 'ffprobe'));
    }
    expect(ffmpegSelection().why).toMatch(/found on PATH/);
    expect(calls(log).sort()).toEqual(['ffmpeg -version', 'ffprobe -version']);
    resetFfmpegSelection();
    ffmpegPath();
    expect(calls(log)).toHaveLength(4);
    process.env.PATH = saved.PATH ?? '';
    expect(ffmpegPath()).not.toBe(join(dir, 'ffmpeg'));
  });

  it('the engine then runs the chosen binaries (a clip made and probed through the wrappers)', async () => {
    const { dir, log } = folder({ ffmpeg: V.brew, ffprobe: V.brewProbe });
    delete process.env.FFMPEG_PATH;
    delete process.env.FFPROBE_PATH;
    process.env.PATH = `${dir}:${saved.PATH ?? ''}`;
    resetFfmpegSelection();
    const clip = join(dir, 'clip.mp4');
    await makeTestClip({ file: clip, width: 64, height: 48, fps: rational(25, 1), frames: 5 });
    const info = await probeMedia(clip);
    expect(info.video.frameCount).toBe(5);
    const c = calls(log);
    expect(c.filter((l) => l.startsWith('ffmpeg ') && l !== 'ffmpeg -version').length).toBeGreaterThan(0);
    expect(c.filter((l) => l.startsWith('ffprobe ') && l !== 'ffprobe -version').length).toBeGreaterThan(0);
  });

  it('a bad FFMPEG_PATH is reported on every call until it is fixed', () => {
    process.env.FFMPEG_PATH = join(root, 'nowhere');
    expect(() => ffmpegPath()).toThrow(/FFMPEG_PATH points to .*nowhere, which does not exist/);
    expect(() => ffmpegSelection()).toThrow(/FFMPEG_PATH points to/);
    expect(ffprobePath()).toBeTruthy();
    delete process.env.FFMPEG_PATH;
    expect(ffmpegPath()).toBeTruthy();
  });
});

d('the bundled binaries: runnable by every user', () => {
  // The installer packages are replaced by a copy whose binary has the mode under test; the shared node_modules
  // binaries are never touched. `chmodFails` stands for a binary owned by another user (this test may run as root,
  // who may chmod anything).
  function withBundledProbe(mode: number, chmodFails = false): { s: FfmpegInspection; file: string } {
    const dir = join(root, `mode${n++}`);
    mkdirSync(dir);
    const file = join(dir, 'ffprobe');
    writeFileSync(file, `#!/bin/sh\nexec '${BUNDLED_FFPROBE}' "$@"\n`);
    chmodSync(file, mode);
    let result: FfmpegInspection | undefined;
    jest.isolateModules(() => {
      jest.doMock('@ffprobe-installer/ffprobe', () => ({ path: file }));
      if (chmodFails) {
        jest.doMock('node:fs', () => ({
          ...jest.requireActual<typeof import('node:fs')>('node:fs'),
          chmodSync: () => {
            throw Object.assign(new Error('EPERM: operation not permitted'), { code: 'EPERM' });
          },
        }));
      }
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- isolateModules needs a synchronous require
      const b = require('../../engine/src/media/binaries') as typeof import('../../engine/src/media/binaries');
      result = b.inspectFfmpeg({ env: { PATH: '' } });
    });
    jest.dontMock('@ffprobe-installer/ffprobe');
    jest.dontMock('node:fs');
    return { s: result!, file };
  }

  it('0644 (npm skipped the install scripts): made runnable on first use, and used', () => {
    const { s, file } = withBundledProbe(0o644);
    expect(ok(s.ffprobe).path).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o755);
    expect(s.warnings.join('\n')).not.toMatch(/other users of this machine/);
  });

  it('0744: widened to 0755 on first use, no warning', () => {
    const { s, file } = withBundledProbe(0o744);
    expect(ok(s.ffprobe).path).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o755);
    expect(s.warnings.join('\n')).not.toMatch(/other users of this machine/);
  });

  it('0744 owned by someone else: works for its owner, with a warning that names the chmod', () => {
    const { s } = withBundledProbe(0o744, true);
    const fp = ok(s.ffprobe);
    expect(s.warnings).toContain(
      `The bundled ffprobe (${fp.path}) has mode 0744: other users of this machine cannot run it. Run \`chmod a+rx ${fp.path}\` (npm ci's postinstall step does this when it may).`,
    );
  });

  it('0644 owned by someone else: says exactly that, and the chmod', () => {
    const { s } = withBundledProbe(0o644, true);
    if (!('error' in s.ffprobe)) throw new Error('expected an error');
    expect(s.ffprobe.error.code).toBe('ffmpeg-missing');
    expect(s.ffprobe.error.message).toMatch(
      /^The bundled ffprobe at .*ffprobe is not executable by this user( \(uid \d+\))?: its mode is 0644\. Run `chmod a\+rx .*ffprobe`/,
    );
  });
});
