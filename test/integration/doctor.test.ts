// `reshoot doctor` (and the ffmpeg line of `reshoot models check`): in-process, and as the real CLI in a child
// process. The CLI is bundled from the TypeScript sources with esbuild (dist/ exists only after `npm run build`),
// its packages left to node_modules.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import { doctorReport, doctorText, ffmpegLine, runDoctor } from '../../engine/src/cli/doctor';
import { CliError } from '../../engine/src/cli/args';
import { inspectFfmpeg, resetFfmpegSelection } from '../../engine/src/media/binaries';

const REPO = resolve(__dirname, '../..');
const BUNDLED_FFMPEG = (require('@ffmpeg-installer/ffmpeg') as { path: string }).path;
const BUNDLED_FFPROBE = (require('@ffprobe-installer/ffprobe') as { path: string }).path;
const posix = process.platform !== 'win32';
const d = posix ? describe : describe.skip;

let root: string;
let cli: string;
let current: string; // a folder with a "7.1.1" pair of wrappers around the bundled binaries
let old: string; // a folder with Debian 12's 5.1 pair

function wrappers(dir: string, lines: Record<'ffmpeg' | 'ffprobe', string>): string {
  mkdirSync(dir);
  for (const tool of ['ffmpeg', 'ffprobe'] as const) {
    const f = join(dir, tool);
    writeFileSync(
      f,
      `#!/bin/sh\nif [ "$1" = "-version" ]; then echo '${lines[tool]}'; exit 0; fi\nexec '${tool === 'ffmpeg' ? BUNDLED_FFMPEG : BUNDLED_FFPROBE}' "$@"\n`,
    );
    chmodSync(f, 0o755);
  }
  return dir;
}

/** What `reshoot doctor --json` prints (typed only; the tests check the values). */
type DoctorJson = ReturnType<typeof doctorReport>;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'doctor-'));
  current = wrappers(join(root, 'current'), {
    ffmpeg: 'ffmpeg version 7.1.1 Copyright (c) 2000-2025 the FFmpeg developers',
    ffprobe: 'ffprobe version 7.1.1 Copyright (c) 2007-2025 the FFmpeg developers',
  });
  old = wrappers(join(root, 'old'), {
    ffmpeg: 'ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg developers',
    ffprobe: 'ffprobe version 5.1.9-0+deb12u1 Copyright (c) 2007-2026 the FFmpeg developers',
  });
  cli = join(root, 'reshoot.js');
  // The memory probe's child process is a script of its own beside the CLI, as in dist/.
  buildSync({
    entryPoints: {
      reshoot: join(REPO, 'engine/src/cli/main.ts'),
      'memory-probe-child': join(REPO, 'engine/src/models/memory-probe-child.ts'),
    },
    bundle: true,
    platform: 'node',
    packages: 'external',
    outdir: root,
    logLevel: 'error',
  });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Runs the CLI with PATH and the two variables exactly as given (the rest of the environment kept). */
function reshoot(
  args: string[],
  env: { PATH: string; FFMPEG_PATH?: string; FFPROBE_PATH?: string; RESHOOT_HOME?: string },
) {
  const base = { ...process.env };
  delete base.FFMPEG_PATH;
  delete base.FFPROBE_PATH;
  const r = spawnSync(process.execPath, [cli, ...args], {
    env: { ...base, NODE_PATH: join(REPO, 'node_modules'), RESHOOT_HOME: join(root, 'home'), ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

d('reshoot doctor as a child process', () => {
  it('--json: one JSON object naming the pair on PATH, why, and no warnings', () => {
    const r = reshoot(['doctor', '--json'], { PATH: `${current}:${process.env.PATH ?? ''}` });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    const j: unknown = JSON.parse(r.stdout);
    expect(j).toEqual({
      ok: true,
      node: { version: process.versions.node, tested: true, platform: `${process.platform}-${process.arch}` },
      onnxRuntime: {
        ok: true,
        version: expect.stringMatching(/^1\.\d+\.\d+$/) as unknown,
        backends: expect.arrayContaining([{ name: 'cpu', bundled: true }]) as unknown,
      },
      gpu: {
        backends: expect.arrayContaining(['cpu']) as unknown,
        gpu: expect.any(Array) as unknown,
      },
      paths: {
        config: join(root, 'home', 'config'),
        token: join(root, 'home', 'config', 'token'),
        data: join(root, 'home', 'data'),
        models: join(root, 'home', 'data', 'models'),
      },
      ffmpeg: { ok: true, path: join(current, 'ffmpeg'), version: '7.1.1', source: 'path', raw: '7.1.1' },
      ffprobe: { ok: true, path: join(current, 'ffprobe'), version: '7.1.1', source: 'path', raw: '7.1.1' },
      why: expect.stringMatching(/^ffmpeg and ffprobe found on PATH: .* both current/) as unknown,
      warnings: [],
    });
  });

  it('--json with an old pair on PATH: the bundled pair, why, and what to install', () => {
    const r = reshoot(['doctor', '--json'], { PATH: old });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as DoctorJson;
    expect(j.ffmpeg).toMatchObject({ ok: true, path: BUNDLED_FFMPEG, source: 'bundled' });
    expect(j.ffprobe).toMatchObject({ ok: true, path: BUNDLED_FFPROBE, source: 'bundled' });
    expect(j.why).toMatch(
      /^The bundled ffmpeg and ffprobe are used: the ffmpeg on PATH is too old: .*5\.1\.9-0\+deb12u1.*older than 6\.$/,
    );
    expect(j.warnings.join('\n')).toMatch(/brew install ffmpeg/);
  });

  it('--json: each GPU provider this build lists is either opened or says why not', () => {
    const r = reshoot(['doctor', '--json'], { PATH: `${current}:${process.env.PATH ?? ''}` });
    const j = JSON.parse(r.stdout) as DoctorJson;
    const gpu = j.gpu as { backends: string[]; gpu: { name: string; usable: boolean; note: string }[] };
    // This machine has no GPU: every listed GPU backend must appear, none usable, each with its reason.
    const listed = gpu.backends.map((b) => b.split(' ')[0]).filter((n) => n !== 'cpu' && n !== 'tensorrt');
    expect(gpu.gpu.map((g) => g.name).sort()).toEqual(listed.sort());
    for (const g of gpu.gpu) {
      expect(g.usable).toBe(false);
      expect(g.note.length).toBeGreaterThan(10);
    }
    expect(r.stderr).toBe('');
  });

  it('text: node, ONNX Runtime, GPU, paths, then the ffmpeg pair, why and warnings', () => {
    const r = reshoot(['doctor'], { PATH: old, FFMPEG_PATH: join(current, 'ffmpeg') });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`node     ${process.versions.node} on ${process.platform}-${process.arch}\n`);
    expect(r.stdout).toMatch(/^onnx {5}ONNX Runtime 1\.\d+\.\d+; backends cpu, /m);
    expect(r.stdout).toMatch(/^gpu {6}webgpu: not usable \(.+\)$/m);
    expect(r.stdout).toContain(`token    ${join(root, 'home', 'config', 'token')}\n`);
    expect(r.stdout).toContain(`ffmpeg   ${join(current, 'ffmpeg')}\n         version 7.1.1; from FFMPEG_PATH\n`);
    expect(r.stdout).toContain(`ffprobe  ${join(current, 'ffprobe')}\n         version 7.1.1; beside FFMPEG_PATH\n`);
    expect(r.stdout).toMatch(/\nwhy {6}FFMPEG_PATH is set and used as given; ffprobe was found beside it/);
    expect(r.stdout).toMatch(/\nok {7}no known problems with this pair/);
  });

  it('a bad FFMPEG_PATH: exit 1, and the same sentence the engine gives', () => {
    const r = reshoot(['doctor', '--json'], { PATH: current, FFMPEG_PATH: '/nonexistent/ffmpeg' });
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as DoctorJson;
    expect(j.ok).toBe(false);
    expect(j.ffmpeg).toEqual({
      ok: false,
      error: expect.stringMatching(
        /^FFMPEG_PATH points to \/nonexistent\/ffmpeg, which does not exist\. Set FFMPEG_PATH/,
      ) as unknown,
      file: '/nonexistent/ffmpeg',
    });
    expect(j.ffprobe).toMatchObject({ ok: true, source: 'path' });
  });

  it('refuses unknown options with a usage error, and is in the usage', () => {
    const bad = reshoot(['doctor', '--bogus'], { PATH: current });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/reshoot: .*bogus/);
    const help = reshoot(['help'], { PATH: current });
    expect(help.stdout).toMatch(/reshoot doctor \[--json\] \[--no-gpu\]/);
  });

  it('reshoot models check names the ffmpeg in use in one line', () => {
    const r = reshoot(['models', 'check', 'oracle'], { PATH: `${current}:${process.env.PATH ?? ''}` });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('ffmpeg '));
    expect(lines).toEqual([
      `ffmpeg     ffmpeg 7.1.1 [path] ${join(current, 'ffmpeg')}; ffprobe 7.1.1 [path] ${join(current, 'ffprobe')}`,
    ]);
    expect(r.stdout).toMatch(/^memory {5}\d+ MiB plus \d+ MiB per UNet batch item at 128×128 latents/m);
  });
});

d('doctor in-process', () => {
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
    jest.restoreAllMocks();
  });

  it('runDoctor --json prints the selection of this process', async () => {
    delete process.env.FFMPEG_PATH;
    delete process.env.FFPROBE_PATH;
    process.env.PATH = `${current}:${saved.PATH ?? ''}`;
    resetFfmpegSelection();
    const out: string[] = [];
    jest.spyOn(console, 'log').mockImplementation((s: string) => void out.push(s));
    expect(await runDoctor(['--json', '--no-gpu'])).toBe(0);
    expect(out).toHaveLength(1);
    expect((JSON.parse(out[0]) as DoctorJson).ffprobe).toMatchObject({
      path: join(current, 'ffprobe'),
      source: 'path',
    });
    await expect(runDoctor(['--nope'])).rejects.toBeInstanceOf(CliError);
  });

  it('text and the models line say when a tool is not usable', () => {
    const s = inspectFfmpeg({ env: { PATH: current, FFPROBE_PATH: '/nonexistent/ffprobe' } });
    const report = doctorReport({ ffmpeg: s, onnxRuntime: { ok: true, version: '1.30.0', backends: [] } });
    expect(report.ok).toBe(false);
    expect(doctorText(report)).toMatch(/^ffprobe {2}NOT USABLE: FFPROBE_PATH points to \/nonexistent\/ffprobe/m);
    const noRuntime = doctorReport({
      ffmpeg: inspectFfmpeg({ env: { PATH: current } }),
      onnxRuntime: { ok: false, problem: 'ONNX Runtime 1.30.0 has no build for macOS on an Intel processor.' },
    });
    expect(noRuntime.ok).toBe(false);
    expect(doctorText(noRuntime)).toMatch(/^onnx {5}NOT USABLE: ONNX Runtime 1\.30\.0 has no build for macOS/m);
    expect(ffmpegLine(s)).toMatch(/^ffmpeg 7\.1\.1 \[path\] .*; ffprobe not usable \(FFPROBE_PATH points to/);
    const bundled = inspectFfmpeg({ env: { PATH: old } });
    expect(ffmpegLine(bundled)).toMatch(
      /^ffmpeg .* \[bundled\] .*; ffprobe .* \[bundled\] .*; \d+ warnings?, see `reshoot doctor`$/,
    );
  });
});
