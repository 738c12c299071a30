// Renames into place (engine/src/config/atomic-rename.ts) with an injected file system: on Windows a rename that
// another process blocks for a moment (EPERM, EBUSY, EACCES) is tried again with growing pauses, a bounded number of
// times, then fails with a message that says what holds the file; every other error, and every error on POSIX, is
// passed on at once and unchanged. Also the Windows long-path refusal (media/output-target.ts checkFfmpegPaths).
import * as fs from 'node:fs';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  isTransientRenameError,
  RENAME_RETRY_DELAYS_MS,
  removeQuietly,
  renameIntoPlace,
  renameIntoPlaceSync,
  RenameRetryError,
  type RenameFs,
} from '../../engine/src/config/atomic-rename';
import { parseFfmpegVersion, type ToolChoice } from '../../engine/src/media/binaries';
import { MediaError } from '../../engine/src/media/errors';
import { checkFfmpegPaths, opensLongWindowsPaths, WINDOWS_MAX_PATH } from '../../engine/src/media/output-target';

function errno(code: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: operation failed, rename 'a' -> 'b'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = 'rename';
  return e;
}

/** A file system whose rename fails with `codes` in turn, then succeeds; it records each call. */
function flaky(codes: string[]): RenameFs & { calls: number } {
  const queue = [...codes];
  const f = {
    calls: 0,
    renameSync() {
      f.calls++;
      const code = queue.shift();
      if (code) throw errno(code);
    },
    async rename() {
      f.renameSync();
    },
  };
  return f;
}

describe('renameIntoPlaceSync / renameIntoPlace', () => {
  const forms = [
    [
      'sync',
      // An async function turns the sync form's throw into a rejection, like the async form's.
      async (from: string, to: string, o: Parameters<typeof renameIntoPlaceSync>[2]) => {
        renameIntoPlaceSync(from, to, o);
      },
    ],
    ['async', (from: string, to: string, o: Parameters<typeof renameIntoPlace>[2]) => renameIntoPlace(from, to, o)],
  ] as const;

  describe.each(forms)('%s', (_name, rename) => {
    it('tries again on Windows after transient EPERM, EBUSY and EACCES, pausing longer each time', async () => {
      const f = flaky(['EPERM', 'EBUSY', 'EACCES', 'EPERM']);
      const waits: number[] = [];
      await rename('a', 'b', {
        platform: 'win32',
        fs: f,
        sleepSync: (ms) => waits.push(ms),
        sleep: async (ms) => void waits.push(ms),
      });
      expect(f.calls).toBe(5);
      expect(waits).toEqual(RENAME_RETRY_DELAYS_MS.slice(0, 4));
      for (let i = 1; i < waits.length; i++) expect(waits[i]).toBeGreaterThan(waits[i - 1]);
    });

    it('gives up after a bounded number of tries with an error that says what holds the file', async () => {
      const f = flaky(Array.from({ length: 100 }, () => 'EBUSY'));
      const waits: number[] = [];
      const err = await rename('C:\\work\\.clip.partial-1.mp4', 'C:\\work\\clip.mp4', {
        platform: 'win32',
        fs: f,
        sleepSync: (ms) => waits.push(ms),
        sleep: async (ms) => void waits.push(ms),
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RenameRetryError);
      const r = err as RenameRetryError;
      expect(f.calls).toBe(RENAME_RETRY_DELAYS_MS.length + 1);
      expect(r.tries).toBe(f.calls);
      expect(r.code).toBe('EBUSY');
      expect((r.cause as NodeJS.ErrnoException).code).toBe('EBUSY');
      expect(r.message).toContain('C:\\work\\clip.mp4');
      expect(r.message).toMatch(/another program keeps one of the two files open/);
      expect(r.message).toMatch(/antivirus/);
      expect(r.message).toMatch(/try again/);
      // The total wait is bounded: a few seconds, not graceful-fs's minute.
      const total = waits.reduce((a, b) => a + b, 0);
      expect(total).toBeLessThan(5000);
      expect(r.message).toContain(`${(total / 1000).toFixed(1)} s`);
    });

    it('fails at once on Windows for errors that do not pass (ENOENT, EXDEV, ENOSPC)', async () => {
      for (const code of ['ENOENT', 'EXDEV', 'ENOSPC', 'EISDIR']) {
        const f = flaky([code]);
        const sleep = jest.fn();
        const err = await rename('a', 'b', { platform: 'win32', fs: f, sleepSync: sleep, sleep }).catch(
          (e: unknown) => e,
        );
        expect(f.calls).toBe(1);
        expect(sleep).not.toHaveBeenCalled();
        expect((err as NodeJS.ErrnoException).code).toBe(code);
        expect(err).not.toBeInstanceOf(RenameRetryError);
      }
    });

    it.each(['linux', 'darwin'] as const)(
      'on %s passes EACCES, EPERM and EBUSY on at once, as fs.rename would',
      async (platform) => {
        for (const code of ['EACCES', 'EPERM', 'EBUSY']) {
          const f = flaky([code]);
          const sleep = jest.fn();
          const err = await rename('a', 'b', { platform, fs: f, sleepSync: sleep, sleep }).catch((e: unknown) => e);
          expect(f.calls).toBe(1);
          expect(sleep).not.toHaveBeenCalled();
          // The very error the file system threw, not a wrapper.
          expect(err).toBeInstanceOf(Error);
          expect((err as NodeJS.ErrnoException).code).toBe(code);
          expect((err as Error).message).toBe(`${code}: operation failed, rename 'a' -> 'b'`);
        }
      },
    );

    it('honours a shorter schedule', async () => {
      const f = flaky(Array.from({ length: 10 }, () => 'EPERM'));
      const err = await rename('a', 'b', {
        platform: 'win32',
        fs: f,
        delaysMs: [1, 2],
        sleepSync: () => undefined,
        sleep: async () => undefined,
      }).catch((e: unknown) => e);
      expect(f.calls).toBe(3);
      expect(err).toBeInstanceOf(RenameRetryError);
    });
  });

  it('renames real files with the default file system (and replaces the target, as fs.rename does)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'reshoot-rename-'));
    try {
      writeFileSync(path.join(dir, 'a'), 'one');
      writeFileSync(path.join(dir, 'b'), 'old');
      renameIntoPlaceSync(path.join(dir, 'a'), path.join(dir, 'b'));
      expect(readFileSync(path.join(dir, 'b'), 'utf8')).toBe('one');
      writeFileSync(path.join(dir, 'c'), 'two');
      await renameIntoPlace(path.join(dir, 'c'), path.join(dir, 'b'));
      expect(readFileSync(path.join(dir, 'b'), 'utf8')).toBe('two');
      expect(fs.existsSync(path.join(dir, 'c'))).toBe(false);
      // A missing source fails at once, with Node's own error.
      expect(() => renameIntoPlaceSync(path.join(dir, 'missing'), path.join(dir, 'b'))).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the sync form really waits between tries (blocking sleep)', () => {
    const f = flaky(['EBUSY', 'EBUSY']);
    const t0 = Date.now();
    renameIntoPlaceSync('a', 'b', { platform: 'win32', fs: f, delaysMs: [30, 30] });
    expect(f.calls).toBe(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
  });
});

describe('isTransientRenameError', () => {
  it('is Windows only, and only for the codes a held file gives', () => {
    expect(isTransientRenameError(errno('EPERM'), 'win32')).toBe(true);
    expect(isTransientRenameError(errno('EBUSY'), 'win32')).toBe(true);
    expect(isTransientRenameError(errno('EACCES'), 'win32')).toBe(true);
    expect(isTransientRenameError(errno('ENOENT'), 'win32')).toBe(false);
    expect(isTransientRenameError(new Error('no code'), 'win32')).toBe(false);
    expect(isTransientRenameError(undefined, 'win32')).toBe(false);
    for (const p of ['linux', 'darwin', 'freebsd'] as const)
      for (const code of ['EPERM', 'EBUSY', 'EACCES']) expect(isTransientRenameError(errno(code), p)).toBe(false);
  });
});

describe('removeQuietly', () => {
  it('removes files and folders and reports, never throws, when it cannot', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'reshoot-rm-'));
    try {
      writeFileSync(path.join(dir, 'f'), 'x');
      expect(removeQuietly(path.join(dir, 'f'))).toBe(true);
      expect(fs.existsSync(path.join(dir, 'f'))).toBe(false);
      expect(removeQuietly(path.join(dir, 'missing'))).toBe(true);
      fs.mkdirSync(path.join(dir, 'd'));
      writeFileSync(path.join(dir, 'd', 'g'), 'x');
      // A folder without recursive: refused by rmSync, reported as false.
      expect(removeQuietly(path.join(dir, 'd'))).toBe(false);
      expect(removeQuietly(path.join(dir, 'd'), { recursive: true })).toBe(true);
      expect(fs.existsSync(path.join(dir, 'd'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

function tool(name: 'ffmpeg' | 'ffprobe', versionLine: string, source: ToolChoice['source'] = 'env'): ToolChoice {
  const parsed = parseFfmpegVersion(versionLine);
  return { path: `C:\\ffmpeg\\bin\\${name}.exe`, version: parsed.label, source, parsed };
}

// The Windows binaries the installer packages ship (their -version first lines): @ffmpeg-installer/win32-x64 4.1.0
// is a Zeranoe build of 2018-12-17 (f22fcd4), @ffprobe-installer/win32-x64 5.1.0 a gyan.dev build of 2023-02-13.
const ZERANOE_2018 = 'ffmpeg version N-92722-gf22fcd4483 Copyright (c) 2000-2018 the FFmpeg developers';
const GYAN_2023 =
  'ffprobe version 2023-02-13-git-2296078397-essentials_build-www.gyan.dev Copyright (c) 2007-2023 the FFmpeg developers';
const RELEASE = (v: string, name = 'ffmpeg') => `${name} version ${v} Copyright (c) 2000-2024 the FFmpeg developers`;

describe('opensLongWindowsPaths', () => {
  it('is true from FFmpeg 5.1 on and for git builds from 2023 on', () => {
    const yes = ['5.1', '5.1.2', 'n5.1.6', '6.0', '7.1.1', 'n7.1'];
    const no = ['4.1', '4.4.1', '5.0', '5.0.1', 'n5.0.3'];
    for (const v of yes) expect(opensLongWindowsPaths(parseFfmpegVersion(RELEASE(v)))).toBe(true);
    for (const v of no) expect(opensLongWindowsPaths(parseFfmpegVersion(RELEASE(v)))).toBe(false);
    expect(opensLongWindowsPaths(parseFfmpegVersion(ZERANOE_2018))).toBe(false);
    expect(opensLongWindowsPaths(parseFfmpegVersion(GYAN_2023))).toBe(true);
    expect(opensLongWindowsPaths(parseFfmpegVersion('ffmpeg version custom-build'))).toBe(false);
    expect(opensLongWindowsPaths(undefined)).toBe(false);
  });
});

describe('checkFfmpegPaths (Windows MAX_PATH)', () => {
  const root = 'C:\\Users\\editor\\Videos\\Projekt Ünïcødé 編集 ✂';
  /** An absolute Windows path of exactly `n` UTF-16 units ending in `name`. */
  const longPath = (n: number, name: string) => {
    const head = `${root}\\`;
    const pad = n - head.length - name.length - 1;
    return `${head}${'x'.repeat(pad)}\\${name}`;
  };
  const bundled = () => ({
    ffmpeg: tool('ffmpeg', ZERANOE_2018, 'bundled'),
    ffprobe: tool('ffprobe', GYAN_2023, 'bundled'),
  });
  const modern = () => ({
    ffmpeg: tool('ffmpeg', RELEASE('7.1')),
    ffprobe: tool('ffprobe', RELEASE('7.1', 'ffprobe')),
  });

  it('refuses a long source for the bundled Windows ffmpeg, naming the path, the tool and what to do', () => {
    const source = longPath(WINDOWS_MAX_PATH + 20, 'clip.mp4');
    const err = (() => {
      try {
        checkFfmpegPaths({ source }, { platform: 'win32', tools: bundled });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(MediaError);
    const m = err as MediaError;
    expect(m.code).toBe('path-too-long');
    expect(m.file).toBe(source);
    expect(m.message).toContain(source);
    expect(m.message).toContain('the bundled ffmpeg');
    expect(m.message).toContain(`${source.length} characters`);
    expect(m.message).toMatch(/Shorten the path/);
    expect(m.message).toMatch(/FFmpeg 5\.1 or later/);
    expect(m.message).toMatch(/FFMPEG_PATH and FFPROBE_PATH/);
  });

  it('counts the output with the temporary name ffmpeg writes beside it', () => {
    // The output itself fits, its hidden temp sibling does not.
    const output = longPath(WINDOWS_MAX_PATH - 5, 'edit.mp4');
    expect(() => checkFfmpegPaths({ source: 'C:\\clip.mp4', output }, { platform: 'win32', tools: bundled })).toThrow(
      /the result \(with its temporary name\)/,
    );
    // A short one passes.
    checkFfmpegPaths({ source: 'C:\\clip.mp4', output: `${root}\\edit.mp4` }, { platform: 'win32', tools: bundled });
  });

  it('checks a matte sequence pattern with its frame number filled in', () => {
    const mask = longPath(WINDOWS_MAX_PATH + 1, 'matte_%06d.png');
    let err: unknown;
    try {
      checkFfmpegPaths({ source: 'C:\\clip.mp4', mask }, { platform: 'win32', tools: bundled });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'path-too-long', file: mask });
  });

  it('lets paths just under MAX_PATH through, and anything through with FFmpeg ≥ 5.1 or an extended path', () => {
    const tools = jest.fn(bundled);
    checkFfmpegPaths({ source: longPath(WINDOWS_MAX_PATH - 1, 'clip.mp4') }, { platform: 'win32', tools });
    // Short paths never ask which ffmpeg is in use (that costs a -version run).
    expect(tools).not.toHaveBeenCalled();
    const source = longPath(400, 'clip.mp4');
    const output = longPath(400, 'out.mp4');
    checkFfmpegPaths({ source, output }, { platform: 'win32', tools: modern });
    // ffprobe (gyan 2023) copes, ffmpeg (2018) does not: the source is opened by both, so it is refused.
    expect(() => checkFfmpegPaths({ source }, { platform: 'win32', tools: bundled })).toThrow(/ffmpeg/);
    checkFfmpegPaths({ source: `\\\\?\\${source}` }, { platform: 'win32', tools: bundled });
  });

  it('names ffprobe when only ffprobe is too old', () => {
    const source = longPath(300, 'clip.mp4');
    expect(() =>
      checkFfmpegPaths(
        { source },
        {
          platform: 'win32',
          tools: () => ({
            ffmpeg: tool('ffmpeg', RELEASE('7.1')),
            ffprobe: tool('ffprobe', RELEASE('4.4', 'ffprobe')),
          }),
        },
      ),
    ).toThrow(/too long for ffprobe/);
  });

  it('does nothing on Linux and macOS, whatever the length', () => {
    const source = `/home/editor/${'x'.repeat(200)}/${'y'.repeat(200)}/clip.mp4`;
    for (const platform of ['linux', 'darwin'] as const)
      checkFfmpegPaths({ source, output: `${source}.out.mp4` }, { platform, tools: bundled });
  });

  it('leaves a missing ffmpeg to be reported as that', () => {
    checkFfmpegPaths(
      { source: longPath(300, 'clip.mp4') },
      {
        platform: 'win32',
        tools: () => {
          throw new MediaError('ffmpeg-missing', 'no ffmpeg');
        },
      },
    );
  });
});
