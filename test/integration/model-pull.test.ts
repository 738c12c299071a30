// `reshoot models pull` against a local server that speaks the Hub's file API (real HTTP, real redirects,
// real dropped connections), with a repository shaped like an optimum Stable Diffusion export.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { HubPullError, pullModel, type PullOptions, type PullProgress } from '../../engine/src/models/hub-pull';
import { startFakeHub, type FakeHub, type FakeRepo } from '../support/fake-hub';

const SHA_MAIN = 'a'.repeat(40);
const SHA_OLD = '0123456789abcdef0123456789abcdef01234567';

function text(s: string): Buffer {
  return Buffer.from(s);
}

/** An optimum export in miniature: ≥ 1 KB files are LFS on the fake hub, like the big weights on the real one. */
function sdExport(): Record<string, Buffer> {
  return {
    'model_index.json': text(
      JSON.stringify({ _class_name: 'ORTStableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'] }),
    ),
    'README.md': text('# tiny export\n'),
    '.gitattributes': text('*.onnx filter=lfs diff=lfs merge=lfs -text\n'),
    'scheduler/scheduler_config.json': text(
      JSON.stringify({ _class_name: 'PNDMScheduler', num_train_timesteps: 1000 }),
    ),
    'tokenizer/vocab.json': text(JSON.stringify({ '<|startoftext|>': 49406, '<|endoftext|>': 49407 })),
    'tokenizer/merges.txt': text('#version: 0.2\nt h\n'),
    'tokenizer/special_tokens_map.json': text('{}'),
    'tokenizer/tokenizer_config.json': text(JSON.stringify({ model_max_length: 77 })),
    'text_encoder/config.json': text(JSON.stringify({ hidden_size: 32 })),
    'text_encoder/model.onnx': randomBytes(3000),
    'text_encoder/model.safetensors': randomBytes(5000),
    'unet/config.json': text(JSON.stringify({ in_channels: 4 })),
    'unet/model.onnx': randomBytes(2048),
    'unet/model.onnx_data': randomBytes(300_000),
    'unet/diffusion_pytorch_model.safetensors': randomBytes(8000),
    'vae_encoder/config.json': text(JSON.stringify({ scaling_factor: 0.18215 })),
    'vae_encoder/model.onnx': randomBytes(1500),
    'vae_decoder/config.json': text(JSON.stringify({ scaling_factor: 0.18215 })),
    'vae_decoder/model.onnx': randomBytes(1600),
    'safety_checker/model.onnx': randomBytes(4000),
    'safety_checker/config.json': text('{}'),
    'feature_extractor/preprocessor_config.json': text('{}'),
    'sample.png': randomBytes(1200),
  };
}

const SKIPPED = [
  'README.md',
  '.gitattributes',
  'text_encoder/model.safetensors',
  'unet/diffusion_pytorch_model.safetensors',
  'safety_checker/model.onnx',
  'safety_checker/config.json',
  'feature_extractor/preprocessor_config.json',
  'sample.png',
];

function wantedOf(files: Record<string, Buffer>): string[] {
  return Object.keys(files)
    .filter((p) => !SKIPPED.includes(p))
    .sort();
}

function sizeOf(files: Record<string, Buffer>, paths: string[]): number {
  return paths.reduce((s, p) => s + files[p].length, 0);
}

let tmp: string;
let hub: FakeHub | undefined;

beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'reshoot-pull-'));
});

afterEach(async () => {
  await hub?.close();
  hub = undefined;
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function start(repos: Record<string, FakeRepo>, pageSize?: number): Promise<FakeHub> {
  hub = await startFakeHub(repos, { pageSize });
  return hub;
}

/** Pins endpoint and token so an HF_ENDPOINT / HF_TOKEN in the developer's shell cannot change the outcome. */
function pull(o: Partial<PullOptions> & { repoId: string }) {
  return pullModel({
    destDir: path.join(tmp, 'models', o.repoId.replace('/', '--')),
    endpoint: hub!.url,
    token: '',
    ...o,
  });
}

async function pullError(p: Promise<unknown>): Promise<HubPullError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HubPullError);
  return e as HubPullError;
}

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    () => true,
    () => false,
  );
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...(await listFiles(dir, child)));
    else out.push(child);
  }
  return out.sort();
}

async function expectFolderHolds(dir: string, files: Record<string, Buffer>): Promise<void> {
  const wanted = wantedOf(files);
  expect(await listFiles(dir)).toEqual(wanted);
  for (const p of wanted) expect((await fsp.readFile(path.join(dir, p))).equals(files[p])).toBe(true);
}

const resolvesOf = (h: FakeHub) => h.requests.filter((r) => r.method === 'GET' && r.path.includes('/resolve/'));

describe('pullModel', () => {
  test('pulls the ONNX layout of one commit into the model folder and skips what the engine does not use', async () => {
    const files = sdExport();
    const h = await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files } }, 4);
    const events: PullProgress[] = [];
    const dest = path.join(tmp, 'models', 'acme--tiny-sd-onnx');

    const r = await pull({ repoId: 'acme/tiny-sd-onnx', onProgress: (p) => events.push({ ...p }) });

    expect(r.dir).toBe(dest);
    expect(r.commit).toBe(SHA_MAIN);
    await expectFolderHolds(dest, files);
    for (const p of SKIPPED) expect(await exists(path.join(dest, p))).toBe(false);
    expect(await exists(`${dest}.partial`)).toBe(false);
    expect((await fsp.readdir(path.dirname(dest))).sort()).toEqual(['acme--tiny-sd-onnx']);

    const total = sizeOf(files, wantedOf(files));
    expect(r.downloadedBytes).toBe(total);
    expect(r.resumedBytes).toBe(0);
    expect(r.files.map((f) => f.path).sort()).toEqual(wantedOf(files));
    const data = r.files.find((f) => f.path === 'unet/model.onnx_data')!;
    expect(data.size).toBe(300_000);
    expect(data.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(r.files.find((f) => f.path === 'model_index.json')!.sha256).toBeUndefined();

    // Progress only grows and ends at the total.
    for (let i = 1; i < events.length; i++) expect(events[i].bytes).toBeGreaterThanOrEqual(events[i - 1].bytes);
    expect(events.at(-1)!.bytes).toBe(total);
    expect(events.every((e) => e.total === total && e.fileBytes <= e.fileTotal)).toBe(true);

    // One commit for everything, the tree read across several pages, LFS bytes from the CDN after a redirect.
    expect(h.requests.some((q) => q.path.endsWith(`/revision/main`))).toBe(true);
    expect(h.requests.filter((q) => q.path.includes('/tree/')).length).toBeGreaterThan(2);
    expect(h.requests.some((q) => q.path.includes('/tree/') && q.path.includes('cursor='))).toBe(true);
    for (const q of resolvesOf(h)) expect(q.path).toContain(`/acme/tiny-sd-onnx/resolve/${SHA_MAIN}/`);
    expect(
      resolvesOf(h)
        .map((q) => decodeURIComponent(q.path.split(`/resolve/${SHA_MAIN}/`)[1]))
        .sort(),
    ).toEqual(wantedOf(files));
    expect(h.requests.some((q) => q.path.startsWith('/cdn/') && q.path.includes('model.onnx_data'))).toBe(true);
  });

  test('a dropped connection leaves a .partial folder, and the next pull resumes it with a Range request', async () => {
    const files = sdExport();
    const h = await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files } });
    const dest = path.join(tmp, 'models', 'acme--tiny-sd-onnx');
    h.failAfterBytes('unet/model.onnx_data', 120_000);

    const e = await pullError(pull({ repoId: 'acme/tiny-sd-onnx', retries: 0 }));
    expect(e.code).toBe('interrupted');
    expect(e.message).toContain('unet/model.onnx_data');
    expect(e.message).toMatch(/run the pull again to resume/);
    expect(await exists(dest)).toBe(false);
    expect((await fsp.stat(path.join(`${dest}.partial`, 'unet', 'model.onnx_data.incomplete'))).size).toBe(120_000);

    h.requests.length = 0;
    const r = await pull({ repoId: 'acme/tiny-sd-onnx', retries: 0 });

    const total = sizeOf(files, wantedOf(files));
    await expectFolderHolds(dest, files);
    expect(await exists(`${dest}.partial`)).toBe(false);
    expect(r.downloadedBytes).toBeLessThan(total);
    expect(r.downloadedBytes + r.resumedBytes).toBe(total);
    expect(r.resumedBytes).toBeGreaterThanOrEqual(120_000);
    const resumed = h.requests.filter((q) => q.path.includes('model.onnx_data') && q.range);
    expect(resumed.map((q) => q.range)).toContain('bytes=120000-');
    // Files completed by the first run are not fetched again.
    expect(resolvesOf(h).some((q) => q.path.endsWith('/unet/model.onnx'))).toBe(false);
  });

  test('within one call a dropped transfer is retried from where it stopped', async () => {
    const files = sdExport();
    const h = await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files } });
    h.failAfterBytes('unet/model.onnx_data', 70_000);

    const r = await pull({ repoId: 'acme/tiny-sd-onnx' });

    await expectFolderHolds(r.dir, files);
    expect(r.downloadedBytes).toBe(sizeOf(files, wantedOf(files)));
    expect(h.requests.some((q) => q.path.includes('model.onnx_data') && q.range === 'bytes=70000-')).toBe(true);
  });

  test('cancelling keeps the partial download for the next pull', async () => {
    const files = sdExport();
    const h = await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files } });
    const dest = path.join(tmp, 'models', 'acme--tiny-sd-onnx');
    // The cut makes the point where the abort lands (byte 100000) deterministic.
    h.failAfterBytes('unet/model.onnx_data', 100_000);
    const ac = new AbortController();

    const e = await pullError(
      pull({
        repoId: 'acme/tiny-sd-onnx',
        signal: ac.signal,
        onProgress: (p) => {
          if (p.file === 'unet/model.onnx_data' && p.fileBytes >= 100_000) ac.abort();
        },
      }),
    );
    expect(e.code).toBe('cancelled');
    expect(e.message).toContain('.partial');
    expect(await exists(dest)).toBe(false);
    expect(await exists(`${dest}.partial`)).toBe(true);

    h.requests.length = 0;
    const r = await pull({ repoId: 'acme/tiny-sd-onnx' });
    await expectFolderHolds(dest, files);
    expect(r.resumedBytes).toBeGreaterThanOrEqual(100_000);
    expect(h.requests.some((q) => q.path.includes('model.onnx_data') && q.range === 'bytes=100000-')).toBe(true);
  });

  test('bytes that do not match the listed sha256 fail the pull, naming the file, and nothing is installed', async () => {
    const files = sdExport();
    const h = await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files } });
    const dest = path.join(tmp, 'models', 'acme--tiny-sd-onnx');
    h.corrupt('unet/model.onnx_data');

    const e = await pullError(pull({ repoId: 'acme/tiny-sd-onnx' }));

    expect(e.code).toBe('checksum-mismatch');
    expect(e.message).toContain('unet/model.onnx_data');
    expect(await exists(dest)).toBe(false);
    expect(await exists(path.join(`${dest}.partial`, 'unet', 'model.onnx_data.incomplete'))).toBe(false);
  });

  test('a newer pull replaces an older model folder only once it is complete', async () => {
    const oldFiles = sdExport();
    const newFiles = { ...sdExport(), 'unet/extra_weights.pb': randomBytes(2000) };
    const h = await start({
      'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files: newFiles, commits: { [SHA_OLD]: oldFiles } },
    });
    const dest = path.join(tmp, 'models', 'acme--tiny-sd-onnx');
    await pull({ repoId: 'acme/tiny-sd-onnx', revision: SHA_OLD });
    await expectFolderHolds(dest, oldFiles);

    h.corrupt('unet/extra_weights.pb');
    const e = await pullError(pull({ repoId: 'acme/tiny-sd-onnx' }));
    expect(e.message).toContain('unet/extra_weights.pb');
    await expectFolderHolds(dest, oldFiles);

    hub = undefined;
    await h.close();
    await start({
      'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files: newFiles, commits: { [SHA_OLD]: oldFiles } },
    });
    await pull({ repoId: 'acme/tiny-sd-onnx' });
    await expectFolderHolds(dest, newFiles);
    expect((await fsp.readdir(path.dirname(dest))).sort()).toEqual(['acme--tiny-sd-onnx']);
  });

  test('a partial download of another commit is not resumed into this one', async () => {
    const oldFiles = sdExport();
    const newFiles = { ...oldFiles, 'unet/model.onnx_data': randomBytes(300_000) };
    const h = await start({
      'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files: newFiles, commits: { [SHA_OLD]: oldFiles } },
    });
    h.failAfterBytes('unet/model.onnx_data', 150_000);
    await pullError(pull({ repoId: 'acme/tiny-sd-onnx', revision: SHA_OLD, retries: 0 }));

    h.requests.length = 0;
    const r = await pull({ repoId: 'acme/tiny-sd-onnx' });

    await expectFolderHolds(r.dir, newFiles);
    expect(h.requests.some((q) => q.range)).toBe(false);
    // Unchanged files finished by the first run are kept.
    expect(resolvesOf(h).some((q) => q.path.endsWith('/unet/model.onnx'))).toBe(false);
  });

  test('a revision pinned to a commit sha fetches every file from that commit', async () => {
    const oldFiles = sdExport();
    const h = await start({
      'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files: sdExport(), commits: { [SHA_OLD]: oldFiles } },
    });

    const r = await pull({ repoId: 'acme/tiny-sd-onnx', revision: SHA_OLD });

    expect(r.commit).toBe(SHA_OLD);
    await expectFolderHolds(r.dir, oldFiles);
    expect(h.requests.some((q) => q.path === `/api/models/acme/tiny-sd-onnx/revision/${SHA_OLD}`)).toBe(true);
    expect(h.requests.some((q) => q.path.startsWith(`/api/models/acme/tiny-sd-onnx/tree/${SHA_OLD}`))).toBe(true);
    expect(resolvesOf(h).length).toBe(wantedOf(oldFiles).length);
    for (const q of resolvesOf(h)) expect(q.path).toContain(`/resolve/${SHA_OLD}/`);
    expect(h.requests.some((q) => q.path.includes(SHA_MAIN))).toBe(false);
  });

  test('a gated repository asks for its terms and HF_TOKEN, and works with an accepted token', async () => {
    const files = sdExport();
    const h = await start({
      'gate/keeper': { revisions: { main: SHA_MAIN }, files, gated: true, acceptedTokens: ['hf_good'] },
    });
    const dest = path.join(tmp, 'models', 'gate--keeper');

    const anonymous = await pullError(pull({ repoId: 'gate/keeper' }));
    expect(anonymous.code).toBe('access-denied');
    expect(anonymous.message).toContain('401');
    expect(anonymous.message).toContain(
      'the repository is gated or private: accept its terms on huggingface.co and set HF_TOKEN',
    );
    expect(await exists(dest)).toBe(false);
    expect(await exists(`${dest}.partial`)).toBe(false);

    const wrong = await pullError(pull({ repoId: 'gate/keeper', token: 'hf_bad' }));
    expect(wrong.code).toBe('access-denied');
    expect(wrong.message).toContain('403');

    h.requests.length = 0;
    const r = await pull({ repoId: 'gate/keeper', token: 'hf_good' });
    await expectFolderHolds(r.dir, files);
    expect(h.requests.every((q) => q.authorization === 'Bearer hf_good')).toBe(true);
  });

  test('an unknown repository or revision says which one is missing', async () => {
    await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files: sdExport() } });

    // Anonymous callers get the Hub's 401 RepoNotFound; it must still read as "no repository".
    const anonymous = await pullError(pull({ repoId: 'nobody/nothing' }));
    expect(anonymous.code).toBe('repo-not-found');
    expect(anonymous.message).toContain('no repository nobody/nothing');
    const withToken = await pullError(pull({ repoId: 'nobody/nothing', token: 'hf_any' }));
    expect(withToken.code).toBe('repo-not-found');

    const rev = await pullError(pull({ repoId: 'acme/tiny-sd-onnx', revision: 'v9' }));
    expect(rev.code).toBe('revision-not-found');
    expect(rev.message).toContain('no revision v9');
    expect(await fsp.readdir(tmp)).toEqual([]);
  });

  test('a bare 404 from a mirror without error codes is told apart by asking for the repository', async () => {
    // Some mirrors answer 404 without X-Error-Code; a proxy in front of the fake hub strips it.
    const h = await start({ 'acme/tiny-sd-onnx': { revisions: { main: SHA_MAIN }, files: sdExport() } });
    const proxy = http.createServer((req, res) => {
      const up = http.request(`${h.url}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
        const headers = { ...r.headers };
        delete headers['x-error-code'];
        res.writeHead(r.statusCode ?? 502, headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const rev = await pullError(pull({ repoId: 'acme/tiny-sd-onnx', revision: 'v9', endpoint, token: 'hf_any' }));
      expect(rev.message).toContain('no revision v9');
      const repo = await pullError(pull({ repoId: 'nobody/nothing', endpoint, token: 'hf_any' }));
      expect(repo.message).toContain('no repository nobody/nothing');
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  test('an unreachable endpoint names it and suggests HF_ENDPOINT', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));

    const e = await pullError(
      pullModel({ repoId: 'acme/tiny-sd-onnx', destDir: path.join(tmp, 'm'), endpoint, token: '' }),
    );
    expect(e.code).toBe('unreachable');
    expect(e.message).toContain(`could not reach ${endpoint}`);
    expect(e.message).toContain('ECONNREFUSED');
    expect(e.message).toContain('check your connection or set HF_ENDPOINT');
  });

  test('a repository without the ONNX layout is refused with the export command', async () => {
    const h = await start({
      'runwayml/sd-pytorch': {
        revisions: { main: SHA_MAIN },
        files: {
          'model_index.json': text('{"_class_name":"StableDiffusionPipeline"}'),
          'unet/config.json': text('{}'),
          'unet/diffusion_pytorch_model.safetensors': randomBytes(4000),
        },
      },
    });

    const e = await pullError(pull({ repoId: 'runwayml/sd-pytorch' }));
    expect(e.code).toBe('not-onnx-export');
    expect(e.message).toContain('not a diffusers ONNX export');
    expect(e.message).toContain('optimum-cli export onnx --model runwayml/sd-pytorch');
    expect(resolvesOf(h)).toEqual([]);
    expect(await fsp.readdir(tmp)).toEqual([]);
  });

  test.each(['no-slash', 'a/b/c', '../etc', 'owner/', '/name', 'own er/name', 'a--b/c', 'a/b..c', '-a/b', ''])(
    'repository id %j is refused before any request',
    async (repoId) => {
      const h = await start({});
      const e = await pullError(pullModel({ repoId, destDir: path.join(tmp, 'm'), endpoint: h.url, token: '' }));
      expect(e.code).toBe('invalid-repo-id');
      expect(e.message).toContain('expected owner/name');
      expect(h.requests).toEqual([]);
    },
  );
});
