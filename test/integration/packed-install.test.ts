// The engine as an installable tool: `npm pack` of the built tree, installed into a fresh prefix the way an editor
// would (`npm install -g --ignore-scripts reshoot-<version>.tgz`), then run from a folder outside the repository. No
// install script runs, so this also shows that nothing depends on them (the bundled ffprobe arrives without its
// execute bit and the engine sets it on first use). Then the platform's ONNX Runtime build is removed from that
// install, which is exactly what an Intel Mac has: `reshoot` must say so in one sentence and exit 3.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '../..');
const WIN = process.platform === 'win32';
const VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

let root: string;
let prefix: string;
let installed: string;
let tarball: string;

function npm(args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(WIN ? 'npm.cmd' : 'npm', args, { cwd, encoding: 'utf8', shell: WIN, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The installed `reshoot` command, run from a folder that is not the repository, with its own home. */
function reshoot(args: string[], cwd: string): SpawnSyncReturns<string> {
  const bin = WIN ? path.join(prefix, 'reshoot.cmd') : path.join(prefix, 'bin', 'reshoot');
  const env: NodeJS.ProcessEnv = { ...process.env, RESHOOT_HOME: path.join(root, 'home') };
  delete env.FFMPEG_PATH;
  delete env.FFPROBE_PATH;
  delete env.NODE_PATH;
  return spawnSync(bin, args, { cwd, env, encoding: 'utf8', shell: WIN, timeout: 300_000 });
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'packed-install-'));
  prefix = path.join(root, 'prefix');
  const packed = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', root], REPO);
  const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(root, info.filename);
  fs.writeFileSync(path.join(root, 'files.json'), JSON.stringify(info.files.map((f) => f.path)));
  npm(
    ['install', '-g', '--prefix', prefix, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball],
    root,
  );
  installed = WIN ? path.join(prefix, 'node_modules', 'reshoot') : path.join(prefix, 'lib', 'node_modules', 'reshoot');
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('holds the built engine, the web UI and the postinstall script, and nothing of the tests or sources', () => {
    expect(path.basename(tarball)).toBe(`reshoot-${VERSION}.tgz`);
    const files = JSON.parse(fs.readFileSync(path.join(root, 'files.json'), 'utf8')) as string[];
    expect(files).toContain('dist/engine/src/cli/main.js');
    expect(files).toContain('dist/engine/src/worker/edit-worker.js');
    expect(files).toContain('dist/panel-web/index.html');
    expect(files).toContain('scripts/ffmpeg-permissions.cjs');
    expect(files).toContain('package.json');
    const unexpected = files.filter(
      (f) =>
        !/^dist\/engine\/src\/.+\.js$/.test(f) &&
        !/^dist\/panel-web\/[^/]+\.(html|js|css)$/.test(f) &&
        !['package.json', 'README.md', 'scripts/ffmpeg-permissions.cjs'].includes(f),
    );
    expect(unexpected).toEqual([]);
  });

  it('installs only runtime dependencies', () => {
    const modules = fs.readdirSync(path.join(installed, 'node_modules'));
    for (const dev of ['jest', 'typescript', 'playwright-core', '@sparticuz', 'esbuild', 'eslint']) {
      expect(modules).not.toContain(dev);
    }
    for (const runtime of ['onnxruntime-node', 'express', 'zod', '@ffmpeg-installer', '@ffprobe-installer']) {
      expect(modules).toContain(runtime);
    }
  });
});

describe('the installed reshoot, from a folder outside the repository', () => {
  it('--version and help', () => {
    const v = reshoot(['--version'], root);
    expect(v.stdout.trim()).toBe(VERSION);
    expect(reshoot(['help'], root).stdout).toMatch(/reshoot serve/);
  });

  it('reshoot demo edits the generated clip with the embedded model and measures it', () => {
    const cwd = path.join(root, 'work folder');
    fs.mkdirSync(cwd);
    const r = reshoot(['demo', '--frames', '4'], cwd);
    expect(r.stderr).not.toMatch(/Error|not executable/);
    expect(r.status).toBe(0);
    const out = path.join(cwd, 'reshoot-demo');
    for (const f of ['before-after.png', 'source.mp4', 'edited.mp4']) {
      expect(fs.statSync(path.join(out, f)).size).toBeGreaterThan(1000);
    }
    const figures = JSON.parse(fs.readFileSync(path.join(out, 'figures.json'), 'utf8')) as Record<string, unknown>;
    expect(JSON.stringify(figures)).toMatch(/colour/i);
    if (!WIN) {
      // npm ran no install script, so the engine made the bundled ffprobe runnable itself.
      const ffprobe = path.join(
        installed,
        'node_modules',
        '@ffprobe-installer',
        `${process.platform}-${process.arch}`,
        'ffprobe',
      );
      expect(fs.statSync(ffprobe).mode & 0o555).toBe(0o555);
    }
  });

  it('without an ONNX Runtime build for this platform: one sentence, exit 3; doctor and help still work', () => {
    const bin = path.join(installed, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
    fs.rmSync(path.join(bin, process.platform), { recursive: true });
    const r = reshoot(['demo', '--frames', '4'], root);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^reshoot: ONNX Runtime 1\\.\\d+\\.\\d+ has no build for .*\\(${process.platform}-${process.arch}\\) \\(it ships .*\\), so the engine cannot run on this machine: run \`reshoot serve\` on`,
      ),
    );
    expect(lines[0]).not.toContain(`${process.platform}-${process.arch},`);

    const doctor = reshoot(['doctor', '--json'], root);
    expect(doctor.status).toBe(1);
    const report = JSON.parse(doctor.stdout) as {
      onnxRuntime: { ok: boolean; problem: string };
      ffprobe: { ok: boolean };
    };
    expect(report.onnxRuntime.ok).toBe(false);
    expect(report.onnxRuntime.problem).toBe(lines[0].replace(/^reshoot: /, ''));
    expect(report.ffprobe.ok).toBe(true);
    expect(reshoot(['help'], root).status).toBe(0);
  });
});
