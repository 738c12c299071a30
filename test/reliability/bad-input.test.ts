// Suite 1: every kind of bad request and bad file an editor (or a confused script) can send, against a real
// `reshoot serve`. Each case must get the right status and a detail that says what to do; the engine must stay up,
// and a normal job submitted after every few cases must still succeed.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Problem } from '../../engine/src/api/schemas';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { Engine, jobId, serveFails, type Reply } from './support/engine';
import { makeFixtures, smallJob, type Fixtures } from './support/fixtures';

jest.setTimeout(120_000);

let root: string;
let fx: Fixtures;
let model: string;
let out: string;
let engine: Engine;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-bad-'));
  model = path.join(root, 'oracle');
  generateOracle(model);
  out = path.join(root, 'out');
  fs.mkdirSync(out);
  [fx, engine] = await Promise.all([
    makeFixtures(path.join(root, 'media')),
    Engine.start({ home: path.join(root, 'home'), args: ['--model', model], cwd: root }),
  ]);
});

afterAll(async () => {
  await engine?.stop();
  if (readOnlyMount) execFileSync('umount', [readOnlyMount]);
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

// A detail "says what to do" when it carries an instruction, not only a diagnosis.
const ACTIONABLE =
  /\b(must|is required|shorten|choose|give|use|set|check|send|re-?export|re-?copy|create|free|install|select|transcode|wait|cancel|submit|draw|render|delete|pass|remove|fix|reconnect|export|list|say|allow|widen|write|unset|reinstall|read|start)\b/i;

interface Case {
  name: string;
  send(): Promise<Reply>;
  status: number;
  field?: string;
  /** What the detail must mention besides an instruction (the file, the limit, the right value). */
  says?: RegExp;
}

const post = (body: Record<string, unknown>) => engine.api('POST', '/v1/jobs', body);
const postRaw = (body: string | Buffer, contentType = 'application/json') =>
  engine.call('POST', '/v1/jobs', { body, headers: { 'content-type': contentType } });
const job = (over: Record<string, unknown> = {}) => smallJob(fx.clip, out, over);
const src = (p: string, range: { in?: number; out?: number } = {}) => ({
  source: { path: p, in: range.in ?? 0, out: range.out ?? 0.125 },
});
const withSource = (source: Record<string, unknown>) =>
  job({ source: { path: fx.clip, in: 0, out: 0.125, ...source } });

function cases(): Case[] {
  const notWritable = path.join(fx.text, 'renders'); // a "folder" that is a regular file
  const existing = path.join(out, 'already-there.mp4');
  fs.writeFileSync(existing, 'an earlier render');
  const aDir = path.join(out, 'a-folder.mp4');
  fs.mkdirSync(aDir, { recursive: true });
  return [
    // Transport and JSON
    { name: 'malformed JSON', send: () => postRaw('{"source": {"path": '), status: 400, says: /not valid JSON/ },
    { name: 'JSON array instead of an object', send: () => postRaw('[1, 2, 3]'), status: 400 },
    { name: 'JSON null', send: () => postRaw('null'), status: 400 },
    {
      name: 'empty JSON body',
      send: () => engine.call('POST', '/v1/jobs', { headers: { 'content-type': 'application/json' } }),
      status: 400,
    },
    {
      name: 'NaN literal (not JSON)',
      send: () => postRaw(JSON.stringify(job()).replace('"in":0', '"in":NaN')),
      status: 400,
      says: /JSON/,
    },
    {
      name: 'text/plain body',
      send: () => postRaw(JSON.stringify(job()), 'text/plain'),
      status: 415,
      says: /application\/json/,
    },
    { name: 'form body', send: () => postRaw('prompt=x', 'application/x-www-form-urlencoded'), status: 415 },
    {
      name: 'Latin-1 charset',
      send: () => postRaw(Buffer.from(JSON.stringify(job()), 'latin1'), 'application/json; charset=iso-8859-1'),
      status: 415,
      says: /UTF-8/,
    },
    {
      name: '1 MB prompt',
      send: () => post(job({ prompt: 'a red car '.repeat(100_000) })),
      status: 413,
      says: /64 kB/,
    },
    // Types and fields
    { name: 'no source', send: () => post({ prompt: 'a blue car' }), status: 400, field: 'source' },
    {
      name: 'source.path is a number',
      send: () => post(job({ source: { path: 42, in: 0, out: 1 } })),
      status: 400,
      field: 'source.path',
    },
    { name: 'source.in is a string', send: () => post(withSource({ in: '0' })), status: 400, field: 'source.in' },
    { name: 'source.in is "NaN"', send: () => post(withSource({ in: 'NaN' })), status: 400, field: 'source.in' },
    { name: 'steps 2.5', send: () => post(job({ steps: 2.5 })), status: 400, field: 'steps', says: /whole number/ },
    { name: 'steps 0', send: () => post(job({ steps: 0 })), status: 400, field: 'steps' },
    { name: 'steps 1e9', send: () => post(job({ steps: 1e9 })), status: 400, field: 'steps' },
    { name: 'guidance as text', send: () => post(job({ guidance: 'high' })), status: 400, field: 'guidance' },
    { name: 'unknown method', send: () => post(job({ method: 'magic' })), status: 400, field: 'method' },
    { name: 'unknown mask type', send: () => post(job({ mask: { type: 'lasso' } })), status: 400, field: 'mask.type' },
    {
      name: 'misspelt top-level field',
      send: () => post({ ...job(), promt: 'typo' }),
      status: 400,
      says: /unknown field "promt"/,
    },
    {
      name: 'unknown nested field',
      send: () => post(withSource({ duration: 3 })),
      status: 400,
      says: /unknown field "duration"/,
    },
    {
      name: 'unknown output codec',
      send: () => post(job({ output: { path: path.join(out, 'x.mp4'), codec: 'vp9' } })),
      status: 400,
      field: 'output.codec',
    },
    {
      name: 'output path and folder both',
      send: () => post(job({ output: { path: path.join(out, 'x.mp4'), folder: out } })),
      status: 400,
      says: /not both/,
    },
    { name: 'negative seed', send: () => post(job({ seed: -1 })), status: 400, field: 'seed' },
    { name: 'seed beyond 32 bits', send: () => post(job({ seed: 2 ** 40 })), status: 400, field: 'seed' },
    { name: 'blank prompt', send: () => post(job({ prompt: '   ' })), status: 400, field: 'prompt', says: /say what/ },
    {
      name: 'prompt of 2001 characters',
      send: () => post(job({ prompt: 'x'.repeat(2001) })),
      status: 400,
      field: 'prompt',
      says: /2000/,
    },
    // Ranges
    { name: 'negative in point', send: () => post(withSource({ in: -1 })), status: 400, field: 'source.in' },
    {
      name: 'reversed range',
      send: () => post(withSource({ in: 0.4, out: 0.2 })),
      status: 400,
      field: 'source.out',
      says: /later than/,
    },
    {
      name: 'zero-length range',
      send: () => post(withSource({ in: 0.2, out: 0.2 })),
      status: 400,
      field: 'source.out',
    },
    {
      name: 'out point 1e999 (Infinity)',
      send: () => postRaw(JSON.stringify(job()).replace('"out":0.125', '"out":1e999')),
      status: 400,
      field: 'source.out',
    },
    {
      name: 'range past the end',
      send: () => post(withSource({ in: 10, out: 11 })),
      status: 422,
      field: 'source.in',
      says: /choose an In before 00:00:00:12/,
    },
    {
      name: 'out point past the end',
      send: () => post(withSource({ in: 0, out: 5 })),
      status: 422,
      field: 'source.out',
      says: /^Out is past the end of .*\(00:00:00:12, 12 frames\)/,
    },
    { name: 'out point 1e308', send: () => post(withSource({ in: 0, out: 1e308 })), status: 422, says: /00:00:00:12/ },
    {
      name: 'range between two frames',
      send: () => post(withSource({ in: 0.01, out: 0.02 })),
      status: 422,
      says: /Widen the range/,
    },
    // Unicode: odd but legal prompts are accepted (and must run); odd paths are refused with a reason.
    {
      name: 'RTL and emoji prompt',
      send: () => post(job({ prompt: 'סכוניות 🚗 a blue car \u202Eon a gray road 👩‍👩‍👧' })),
      status: 202,
    },
    {
      name: 'NUL characters in the prompt',
      send: () => postRaw(JSON.stringify(job()).replace('a blue car', 'a blue\\u0000 car\\u0000')),
      status: 202,
    },
    {
      name: 'lone surrogates in the prompt',
      send: () => postRaw(JSON.stringify(job()).replace('a blue car', 'a blue \\ud800 car \\udfff')),
      status: 202,
    },
    {
      name: 'NUL character in source.path',
      send: () => postRaw(JSON.stringify(job()).replace('clip.mp4', 'clip.mp4\\u0000.txt')),
      status: 400,
      field: 'source.path',
      says: /NUL/,
    },
    {
      name: 'lone surrogate in source.path',
      send: () => postRaw(JSON.stringify(job()).replace('clip.mp4', 'clip\\ud800.mp4')),
      status: 422,
      field: 'source.path',
      says: /does not exist/,
    },
    {
      name: 'NUL character in output.folder',
      send: () => postRaw(JSON.stringify(job({ output: { folder: out } })).replace('"folder":"', '"folder":"\\u0000')),
      status: 400,
      field: 'output.folder',
    },
    // Media files
    {
      name: 'missing file',
      send: () => post(job(src(path.join(fx.dir, 'gone.mp4')))),
      status: 422,
      field: 'source.path',
      says: /gone\.mp4 does not exist.*relink/,
    },
    { name: 'a folder', send: () => post(job(src(fx.folder))), status: 422, field: 'source.path', says: /folder/ },
    {
      name: 'a text file named .mp4',
      send: () => post(job(src(fx.text))),
      status: 422,
      field: 'source.path',
      says: /notes\.mp4.*re-export/,
    },
    {
      name: 'truncated MP4',
      send: () => post(job(src(fx.truncated))),
      status: 422,
      field: 'source.path',
      says: /truncated\.mp4.*(moov|re-export)/,
    },
    {
      name: 'audio-only file',
      send: () => post(job(src(fx.audioOnly))),
      status: 422,
      field: 'source.path',
      says: /no video stream.*select a video clip/,
    },
    {
      name: 'still image',
      send: () => post(job(src(fx.still))),
      status: 422,
      field: 'source.path',
      says: /still image/,
    },
    { name: '0-byte file', send: () => post(job(src(fx.empty))), status: 422, field: 'source.path', says: /0 bytes/ },
    {
      name: 'codec this ffmpeg cannot decode',
      send: () => post(job(src(fx.unknownCodec))),
      status: 422,
      field: 'source.path',
      says: /Transcode.*FFMPEG_PATH/,
    },
    {
      name: 'relative source path',
      send: () => post(job(src('media/clip.mp4'))),
      status: 422,
      field: 'source.path',
      says: /absolute path/,
    },
    // Masks
    {
      name: 'mask file missing',
      send: () => post(job({ mask: { type: 'file', path: path.join(fx.dir, 'no-matte.png') } })),
      status: 422,
      field: 'mask.path',
    },
    {
      name: 'mask of the wrong aspect',
      send: () => post(job({ mask: { type: 'file', path: fx.matteSquare } })),
      status: 422,
      field: 'mask.path',
      says: /64x64.*Export the matte at the clip's frame size/,
    },
    {
      name: 'mask that is not an image',
      send: () => post(job({ mask: { type: 'file', path: fx.matteText } })),
      status: 422,
      field: 'mask.path',
      says: /not an image.*Export it as PNG/,
    },
    {
      name: 'mask box outside the frame',
      send: () => post(job({ mask: { type: 'box', x: 0.8, y: 0.1, w: 0.5, h: 0.5 } })),
      status: 400,
      says: /inside the frame/,
    },
    {
      name: 'mask box too small to cover a pixel',
      send: () => post(job({ mask: { type: 'box', x: 0.5, y: 0.5, w: 0.0001, h: 0.0001 } })),
      status: 422,
      field: 'mask',
      says: /covers no pixel.*draw a larger box/,
    },
    {
      name: 'auto mask with SDEdit',
      send: () => post(job({ method: 'sdedit', mask: { type: 'auto' } })),
      status: 422,
      field: 'mask.type',
      says: /use method "inversion"/,
    },
    // Outputs
    {
      name: 'output file exists',
      send: () => post(job({ output: { path: existing } })),
      status: 409,
      field: 'output.path',
      says: /overwrite/,
    },
    {
      name: 'output is a folder (overwrite set)',
      send: () => post(job({ output: { path: aDir, overwrite: true } })),
      status: 422,
      field: 'output.path',
      says: /not a regular file|folder/,
    },
    {
      name: 'output is /dev/null (overwrite set)',
      send: () => post(job({ output: { path: '/dev/null', overwrite: true } })),
      status: 422,
      field: 'output.path',
    },
    {
      name: 'output folder is a regular file',
      send: () => post(job({ output: { path: path.join(notWritable, 'x.mp4') } })),
      status: 422,
      field: 'output.path',
      says: /not a folder|choose/i,
    },
    {
      name: 'output.folder under a regular file',
      send: () => post(job({ output: { folder: notWritable } })),
      status: 422,
      field: 'output.folder',
    },
    {
      name: 'output in a folder that cannot be written',
      send: () => post(job({ output: { path: unwritableTarget() } })),
      status: 422,
      field: 'output.path',
      says: /write/,
    },
    {
      name: 'output into /etc via ../',
      send: () => post(job({ output: { path: `${out}/../../../../../../../../etc/reshoot-evil.mp4` } })),
      status: 422,
      field: 'output.path',
      says: /system folder/,
    },
    {
      name: 'output.folder under /usr',
      send: () => post(job({ output: { folder: '/usr/lib/reshoot-renders' } })),
      status: 422,
      field: 'output.folder',
      says: /system folder/,
    },
    {
      name: 'relative output path',
      send: () => post(job({ output: { path: 'renders/x.mp4' } })),
      status: 422,
      field: 'output.path',
      says: /absolute path/,
    },
    {
      name: 'output that is not a video file name',
      send: () => post(job({ output: { path: path.join(out, 'profile.sh'), overwrite: true } })),
      status: 422,
      field: 'output.path',
      says: /\.mp4/,
    },
    {
      name: 'output folder whose parent is missing',
      send: () => post(job({ output: { folder: path.join(out, 'no', 'such', 'tree') } })),
      status: 422,
      field: 'output.folder',
      says: /create/i,
    },
    {
      name: 'output file in a missing folder',
      send: () => post(job({ output: { path: path.join(out, 'nope', 'x.mp4') } })),
      status: 422,
      field: 'output.path',
      says: /create it/i,
    },
    // Other routes
    {
      name: 'unknown job',
      send: () => engine.api('GET', '/v1/jobs/0123456789ab'),
      status: 404,
      says: /GET \/v1\/jobs/,
    },
    { name: 'cancel an unknown job', send: () => engine.api('POST', '/v1/jobs/nope/cancel'), status: 404 },
    { name: 'result of an unknown job', send: () => engine.api('GET', '/v1/jobs/nope/result'), status: 404 },
    { name: 'probe without a path', send: () => engine.api('GET', '/v1/media/probe'), status: 400, field: 'path' },
    {
      name: 'probe of a text file',
      send: () => engine.api('GET', `/v1/media/probe?path=${encodeURIComponent(fx.text)}`),
      status: 422,
      field: 'path',
    },
    {
      name: 'still at a negative time',
      send: () => engine.api('GET', `/v1/media/still?path=${encodeURIComponent(fx.clip)}&t=-1`),
      status: 400,
      field: 't',
    },
    {
      name: 'still past the end',
      send: () => engine.api('GET', `/v1/media/still?path=${encodeURIComponent(fx.clip)}&t=3`),
      status: 422,
      says: /0\.5\) s/,
    },
    {
      name: 'still with maxWidth "wide"',
      send: () => engine.api('GET', `/v1/media/still?path=${encodeURIComponent(fx.clip)}&maxWidth=wide`),
      status: 400,
      field: 'maxWidth',
    },
    {
      name: 'path given twice',
      send: () => engine.api('GET', `/v1/media/probe?path=${encodeURIComponent(fx.clip)}&path=x`),
      status: 400,
      field: 'path',
    },
  ];
}

let readOnlyMount: string | undefined;
let unwritableHow = '';

/**
 * A folder this process cannot create files in. chmod 500 stops a normal user, but nothing stops root (CI containers,
 * this machine), so root gets a read-only tmpfs; where mounting is not allowed either, a folder under /proc.
 */
function unwritableTarget(): string {
  const d = path.join(out, 'read-only');
  fs.mkdirSync(d, { recursive: true });
  if (process.getuid?.() !== 0) {
    fs.chmodSync(d, 0o500);
    unwritableHow = 'chmod 500 folder';
    return path.join(d, 'x.mp4');
  }
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', d], { stdio: 'ignore' });
    readOnlyMount = d;
    unwritableHow = 'read-only tmpfs (running as root)';
    return path.join(d, 'x.mp4');
  } catch {
    unwritableHow = '/proc/self (running as root, mount not allowed)';
    return '/proc/self/reshoot-x.mp4';
  }
}

it('answers every bad input with the right status and an instruction, and keeps working', async () => {
  const all = cases();
  const checkEvery = 8;
  const failures: string[] = [];
  const accepted: string[] = [];
  let right = 0;
  let normalJobs = 0;

  const normalJobSucceeds = async (after: string) => {
    const r = await post(job());
    if (r.status !== 202) return failures.push(`normal job after "${after}": ${r.status} ${r.text}`);
    const done = await engine.settle(jobId(r));
    if (done.state !== 'succeeded')
      failures.push(`normal job after "${after}" ${done.state}: ${JSON.stringify(done.error)}`);
    normalJobs++;
  };

  for (const [i, c] of all.entries()) {
    let r: Reply;
    try {
      r = await c.send();
    } catch (err) {
      failures.push(`${c.name}: request failed: ${(err as Error).message}`);
      continue;
    }
    const problems: string[] = [];
    if (r.status !== c.status) problems.push(`status ${r.status}, expected ${c.status}`);
    if (r.status >= 400) {
      const p = Problem.safeParse(r.json);
      if (!p.success) problems.push(`not a problem document: ${r.text.slice(0, 200)}`);
      else {
        if (!ACTIONABLE.test(p.data.detail)) problems.push(`detail says nothing to do: "${p.data.detail}"`);
        if (c.field && p.data.field !== c.field) problems.push(`field ${p.data.field}, expected ${c.field}`);
        if (c.says && !c.says.test(p.data.detail)) problems.push(`detail "${p.data.detail}" does not match ${c.says}`);
      }
    } else if (r.status === 202) accepted.push(jobId(r));
    if (!engine.alive) throw new Error(`the engine died on "${c.name}": ${engine.logText().slice(-2000)}`);
    if (problems.length) failures.push(`${c.name}: ${problems.join('; ')}`);
    else right++;
    if ((i + 1) % checkEvery === 0) await normalJobSucceeds(c.name);
  }
  // Odd but legal prompts must not only be accepted but edit like any other.
  for (const id of accepted) {
    const done = await engine.settle(id);
    if (done.state !== 'succeeded') failures.push(`accepted job ${id} ${done.state}: ${JSON.stringify(done.error)}`);
  }
  await normalJobSucceeds('the last case');
  const health = await engine.api('GET', '/v1/health');
  console.log(
    `bad-input corpus: ${all.length} cases, ${right} answered right (status, field, instruction), ${accepted.length} odd-but-legal accepted and edited, ` +
      `${normalJobs} normal jobs succeeded in between, engine up after each (health ${health.status}); unwritable folder: ${unwritableHow}`,
  );
  expect(failures).toEqual([]);
  expect(all.length).toBeGreaterThanOrEqual(40);
  expect(health.status).toBe(200);
  engine.expectNoTokenLeak();
});

describe('engine start-up with a broken model folder exits non-zero and names the part at fault', () => {
  const broken = (name: string, damage: (dir: string) => void) => {
    const dir = path.join(root, `model-${name}`);
    fs.cpSync(model, dir, { recursive: true });
    damage(dir);
    return dir;
  };
  const variants: [string, (d: string) => void, RegExp][] = [
    ['a missing UNet', (d) => fs.rmSync(path.join(d, 'unet'), { recursive: true }), /missing unet\/model\.onnx/],
    [
      'a corrupt ONNX file',
      (d) => fs.writeFileSync(path.join(d, 'vae_decoder', 'model.onnx'), 'not an onnx model at all'),
      /vae_decoder\/model\.onnx: ONNX Runtime could not load this model/,
    ],
    [
      'a UNet with the wrong input names',
      (d) => fs.copyFileSync(path.join(d, 'vae_decoder', 'model.onnx'), path.join(d, 'unet', 'model.onnx')),
      /unet\/model\.onnx: missing input sample, timestep, encoder_hidden_states/,
    ],
    [
      'no such folder',
      (d) => fs.rmSync(d, { recursive: true }),
      /model folder does not exist; pass a folder exported with optimum-cli/,
    ],
  ];
  it.each(variants)('%s', async (_name, damage, says) => {
    const dir = broken(_name.replace(/\W+/g, '-'), damage);
    const r = await serveFails({ home: path.join(root, 'home-broken'), args: ['--model', dir] });
    console.log(`broken model (${_name}): exit ${r.code} in ${r.ms} ms: ${r.stderr.trim().split('\n').pop()}`);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toMatch(says);
    expect(r.stdout).not.toMatch(/token=/);
  });
});

it('says what to do when ffmpeg cannot be found: in health, and on submission', async () => {
  const missing = await Engine.start({
    home: path.join(root, 'home-noffmpeg'),
    args: ['--model', model],
    env: { FFMPEG_PATH: '/nonexistent/ffmpeg', FFPROBE_PATH: '/nonexistent/ffprobe' },
  });
  try {
    const health = await missing.api('GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.json?.ffmpeg).toMatchObject({ ok: false });
    expect(health.json?.ffmpeg?.detail).toMatch(
      /FFPROBE_PATH points to \/nonexistent\/ffprobe.*Set FFPROBE_PATH to the full path/,
    );
    const r = await missing.api('POST', '/v1/jobs', job());
    expect(r.status).toBe(503);
    const p = Problem.parse(r.json);
    expect(p.detail).toMatch(/\/nonexistent\/ff(mpeg|probe).*set FF(MPEG|PROBE)_PATH/i);
    const probe = await missing.api('GET', `/v1/media/probe?path=${encodeURIComponent(fx.clip)}`);
    expect(probe.status).toBe(503);
    console.log(
      `ffmpeg not found: health says "${health.json?.ffmpeg?.detail?.slice(0, 80) ?? ''}…", submission ${r.status}, probe ${probe.status}`,
    );
    expect(missing.alive).toBe(true);
    missing.expectNoTokenLeak();
  } finally {
    await missing.stop();
  }
});
