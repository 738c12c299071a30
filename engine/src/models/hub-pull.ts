// Downloads a diffusers/optimum ONNX export from the Hugging Face Hub (or a mirror speaking the same HTTP API)
// into a model folder. Everything lands in a sibling `.partial` folder first, so a model folder is either the
// old complete pull or the new complete pull, never a mix, and an interrupted pull resumes where it stopped.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { renameIntoPlace } from '../config/atomic-rename';

export interface PullProgress {
  file: string;
  fileBytes: number;
  fileTotal: number;
  bytes: number;
  total: number;
}

export interface PullOptions {
  /** "owner/name". */
  repoId: string;
  /** Branch, tag or commit sha; default "main". */
  revision?: string;
  /** Final folder; files land here only when every one of them is complete and verified. */
  destDir: string;
  /** Default process.env.HF_ENDPOINT ?? "https://huggingface.co". */
  endpoint?: string;
  /** Default process.env.HF_TOKEN; sent as `Authorization: Bearer`. */
  token?: string;
  onProgress?(p: PullProgress): void;
  signal?: AbortSignal;
  /** Which repository files to fetch; default `isDiffusersOnnxFile`. */
  include?: (path: string) => boolean;
  /** How many times one file's transfer is resumed within this call after a dropped connection or 5xx; default 2. */
  retries?: number;
}

export interface PullResult {
  dir: string;
  commit: string;
  files: { path: string; size: number; sha256?: string }[];
  /** Bytes received over the network by this call. */
  downloadedBytes: number;
  /** Bytes that an earlier, interrupted pull had already stored and this call kept. */
  resumedBytes: number;
}

export type HubPullErrorCode =
  | 'invalid-repo-id'
  | 'invalid-revision'
  | 'access-denied'
  | 'repo-not-found'
  | 'revision-not-found'
  | 'file-not-found'
  | 'unreachable'
  | 'not-onnx-export'
  | 'checksum-mismatch'
  | 'interrupted'
  | 'disk-full'
  | 'bad-response'
  | 'http-error'
  | 'cancelled';

export class HubPullError extends Error {
  override readonly name = 'HubPullError';
  constructor(readonly code: HubPullErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

interface TreeEntry {
  type: 'file' | 'directory';
  path: string;
  size: number;
  oid: string;
  lfs?: { oid: string; size: number };
}

const SKIPPED_EXTENSIONS = /\.(safetensors|bin|ckpt|pt|pth|msgpack|h5|png|jpe?g|webp|gif)$/i;
// The engine never runs these sub-models, and safety_checker alone is ~1.2 GB.
const SKIPPED_FOLDERS = new Set(['safety_checker', 'feature_extractor']);

/** The files of the diffusers/optimum ONNX layout that the engine reads (reference/onnx-stable-diffusion.md §2). */
export function isDiffusersOnnxFile(p: string): boolean {
  if (SKIPPED_EXTENSIONS.test(p)) return false;
  const parts = p.split('/');
  if (parts.length === 1) return p === 'model_index.json';
  if (parts.length !== 2) return false;
  const [folder, name] = parts;
  if (SKIPPED_FOLDERS.has(folder)) return false;
  // tokenizer_2 / text_encoder_2 are SDXL's second text branch; they follow the same rules.
  if (folder === 'scheduler' || /^tokenizer(_\d+)?$/.test(folder)) return true;
  return name === 'model.onnx' || name === 'config.json' || name.endsWith('_data') || name.endsWith('.pb');
}

/** Hub naming rules; "--" is also refused because model folders are named owner--name. */
export function validateRepoId(repoId: string): void {
  const parts = repoId.split('/');
  const ok =
    parts.length === 2 &&
    parts.every((s) => s.length >= 1 && s.length <= 96 && /^[A-Za-z0-9_.-]+$/.test(s) && !/^[-.]|[-.]$/.test(s)) &&
    !repoId.includes('--') &&
    !repoId.includes('..');
  if (!ok) {
    throw new HubPullError(
      'invalid-repo-id',
      `invalid repository id "${repoId}": expected owner/name made of letters, digits, "-", "_" and "." (for example stabilityai/sd-turbo)`,
    );
  }
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const STATE_FILE = '.reshoot-pull.json';
const INCOMPLETE = '.incomplete';

interface PullState {
  repoId: string;
  commit: string;
  /** Tree oid per file: a stored file is only trusted while the listing still names the same blob. */
  oids: Record<string, string>;
}

interface Ctx {
  repoId: string;
  revision: string;
  endpoint: string;
  token?: string;
  signal?: AbortSignal;
  partialDir: string;
}

export async function pullModel(o: PullOptions): Promise<PullResult> {
  validateRepoId(o.repoId);
  const revision = o.revision ?? 'main';
  if (!revision || /[\x00-\x1f]/.test(revision)) {
    throw new HubPullError('invalid-revision', `invalid revision "${revision}": give a branch, tag or commit sha`);
  }
  const destDir = path.resolve(o.destDir);
  const ctx: Ctx = {
    repoId: o.repoId,
    revision,
    endpoint: (o.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: (o.token ?? process.env.HF_TOKEN) || undefined,
    signal: o.signal,
    partialDir: `${destDir}.partial`,
  };
  const include = o.include ?? isDiffusersOnnxFile;
  const retries = o.retries ?? 2;

  checkCancelled(ctx);
  const commit = await resolveCommit(ctx);
  const tree = await listTree(ctx, commit);
  if (!tree.some((e) => e.type === 'file' && e.path === 'unet/model.onnx')) {
    const onnx = tree.filter((e) => e.type === 'file' && e.path.endsWith('.onnx')).map((e) => e.path);
    throw new HubPullError(
      'not-onnx-export',
      `${ctx.repoId}@${revision} is not a diffusers ONNX export: it has no unet/model.onnx` +
        (onnx.length ? ` (its ONNX files: ${onnx.slice(0, 5).join(', ')}${onnx.length > 5 ? ', …' : ''})` : '') +
        `. Export it with \`optimum-cli export onnx --model ${ctx.repoId} --task text-to-image <folder>\` and use that folder, ` +
        'or pull a repository that ships the ONNX layout',
    );
  }
  const wanted = tree
    .filter((e) => e.type === 'file' && include(e.path))
    // Small plain files first: a wrong token or layout shows up before gigabytes move.
    .sort((a, b) => Number(!!a.lfs) - Number(!!b.lfs) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const e of wanted) checkRepoPath(e.path);
  if (wanted.length === 0) throw new HubPullError('not-onnx-export', `no files of ${ctx.repoId}@${revision} matched the include filter`);

  // Learn about gated/private access before anything is written to disk.
  const probe = await hubFetch(ctx, resolveUrl(ctx, commit, wanted[0].path), { method: 'HEAD', redirect: 'manual' });
  if (probe.status >= 400) await failFor(ctx, probe, { file: wanted[0].path });

  const { resumed: alreadyStored, complete } = await preparePartial(ctx, commit, wanted);
  const total = wanted.reduce((s, e) => s + e.size, 0);
  await checkFreeSpace(ctx, total - alreadyStored);

  let doneBytes = wanted.filter((e) => complete.has(e.path)).reduce((s, e) => s + e.size, 0);
  let downloadedBytes = 0;
  let resumedBytes = doneBytes;
  for (const entry of wanted) {
    if (complete.has(entry.path)) continue;
    const base = doneBytes;
    const report = (fileBytes: number) =>
      o.onProgress?.({ file: entry.path, fileBytes, fileTotal: entry.size, bytes: base + fileBytes, total });
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await downloadFile(ctx, commit, entry, report);
        downloadedBytes += r.downloaded;
        // Only what came from an earlier call counts as resumed, not what this call's own retries kept.
        if (attempt === 0) resumedBytes += r.resumed;
        break;
      } catch (e) {
        if (e instanceof TransferError) {
          downloadedBytes += e.downloaded;
          if (attempt === 0) resumedBytes += e.resumed;
          if (attempt < retries) {
            await sleep(500 * (attempt + 1), ctx);
            continue;
          }
          throw e.error;
        }
        throw e;
      }
    }
    doneBytes += entry.size;
  }

  checkCancelled(ctx);
  await pruneUnexpected(ctx.partialDir, new Set(wanted.map((e) => e.path)));
  await swapInto(ctx.partialDir, destDir);
  return {
    dir: destDir,
    commit,
    files: wanted.map((e) => ({ path: e.path, size: e.size, ...(e.lfs ? { sha256: e.lfs.oid } : {}) })),
    downloadedBytes,
    resumedBytes,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Hub API

function apiRepoUrl(ctx: Ctx): string {
  return `${ctx.endpoint}/api/models/${ctx.repoId}`;
}

function resolveUrl(ctx: Ctx, commit: string, file: string): string {
  return `${ctx.endpoint}/${ctx.repoId}/resolve/${commit}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

async function resolveCommit(ctx: Ctx): Promise<string> {
  // The revision is one path segment even when it holds slashes (refs/pr/1), as the Hub expects.
  const res = await hubFetch(ctx, `${apiRepoUrl(ctx)}/revision/${encodeURIComponent(ctx.revision)}`);
  if (res.status === 404 && !res.headers.get('x-error-code')) {
    // A bare 404 does not say whether the repository or the revision is missing; the repository page does.
    const repo = await hubFetch(ctx, apiRepoUrl(ctx));
    if (repo.ok) throw revisionNotFound(ctx);
    await failFor(ctx, repo, {});
  }
  if (!res.ok) await failFor(ctx, res, {});
  const body = (await readJson(ctx, res)) as { sha?: unknown };
  if (typeof body?.sha !== 'string' || !/^[0-9a-f]{40}$/.test(body.sha)) {
    throw new HubPullError('bad-response', `${ctx.endpoint} gave no commit sha for ${ctx.repoId}@${ctx.revision}; is HF_ENDPOINT a Hugging Face Hub?`);
  }
  return body.sha;
}

async function listTree(ctx: Ctx, commit: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  let url: string | undefined = `${apiRepoUrl(ctx)}/tree/${commit}?recursive=true`;
  const origin = new URL(ctx.endpoint).origin;
  for (let page = 0; url; page++) {
    if (page > 10_000) throw new HubPullError('bad-response', `${ctx.endpoint} keeps paginating the file list of ${ctx.repoId}`);
    // The bearer token goes with every request, so a page on another origin is asked for without it.
    const res = await hubFetch(ctx, url, {}, new URL(url).origin === origin);
    if (!res.ok) await failFor(ctx, res, {});
    const body = await readJson(ctx, res);
    if (!Array.isArray(body)) throw new HubPullError('bad-response', `${ctx.endpoint} returned a file list for ${ctx.repoId} that is not a JSON array`);
    for (const e of body as TreeEntry[]) {
      if (!e || typeof e.path !== 'string') continue;
      if (e.type === 'file' && !(Number.isSafeInteger(e.size) && e.size >= 0)) {
        throw new HubPullError('bad-response', `${ctx.endpoint} listed ${e.path} without a valid size`);
      }
      out.push(e);
    }
    url = nextLink(res.headers.get('link'), url);
  }
  return out;
}

function nextLink(header: string | null, base: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(',')) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m && /\brel\s*=\s*"?next"?/.test(m[2])) return new URL(m[1], base).toString();
  }
  return undefined;
}

async function hubFetch(
  ctx: Ctx,
  url: string,
  init: Omit<RequestInit, 'headers'> & { headers?: Record<string, string> } = {},
  withToken = true,
): Promise<Response> {
  checkCancelled(ctx);
  const headers: Record<string, string> = { 'user-agent': 'reshoot', ...init.headers };
  if (ctx.token && withToken) headers.authorization = `Bearer ${ctx.token}`;
  try {
    return await fetch(url, { ...init, headers, signal: ctx.signal });
  } catch (e) {
    checkCancelled(ctx);
    throw new HubPullError(
      'unreachable',
      `could not reach ${ctx.endpoint}: ${describeCause(e)}; check your connection or set HF_ENDPOINT`,
      { cause: e },
    );
  }
}

async function readJson(ctx: Ctx, res: Response): Promise<unknown> {
  try {
    return await res.json();
  } catch (e) {
    checkCancelled(ctx);
    throw new HubPullError('bad-response', `${ctx.endpoint} answered ${res.url} with something that is not JSON; is HF_ENDPOINT a Hugging Face Hub?`, { cause: e });
  }
}

function revisionNotFound(ctx: Ctx): HubPullError {
  return new HubPullError('revision-not-found', `no revision ${ctx.revision} in ${ctx.repoId}: give an existing branch, tag or commit sha with --revision`);
}

/** Turns an error status into the message that tells the user what to do; the Hub's X-Error-Code is more precise than the status. */
async function failFor(ctx: Ctx, res: Response, where: { file?: string }): Promise<never> {
  const code = res.headers.get('x-error-code');
  const status = res.status;
  await res.body?.cancel().catch(() => undefined);
  if (code === 'GatedRepo' || (!code && (status === 401 || status === 403))) {
    throw new HubPullError(
      'access-denied',
      `cannot download ${ctx.repoId} (HTTP ${status}): the repository is gated or private: accept its terms on huggingface.co and set HF_TOKEN` +
        (ctx.token ? ' (a token was sent; check that it belongs to an account with access)' : ''),
    );
  }
  if (code === 'RepoNotFound' || (status === 404 && !code && !where.file)) {
    // The Hub answers 401 RepoNotFound for unknown repositories when no token is sent, to hide private ones.
    throw new HubPullError(
      'repo-not-found',
      `no repository ${ctx.repoId} on ${ctx.endpoint}: check the id` + (ctx.token ? '' : ' (if it is private, set HF_TOKEN)'),
    );
  }
  if (code === 'RevisionNotFound') throw revisionNotFound(ctx);
  if (code === 'EntryNotFound' || (status === 404 && where.file)) {
    throw new HubPullError('file-not-found', `${ctx.repoId} lists ${where.file ?? 'a file'} but the Hub has no such file; run the pull again`);
  }
  throw new HubPullError(
    'http-error',
    `${ctx.endpoint} answered HTTP ${status} ${res.statusText}${where.file ? ` for ${where.file}` : ''}` +
      (status >= 500 || status === 429 ? '; try again later' : ''),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Files

/** A failed transfer that may be resumed, with what it moved before failing. */
class TransferError extends Error {
  constructor(readonly error: HubPullError, readonly downloaded: number, readonly resumed: number) {
    super(error.message);
  }
}

async function downloadFile(
  ctx: Ctx,
  commit: string,
  entry: TreeEntry,
  report: (fileBytes: number) => void,
): Promise<{ downloaded: number; resumed: number }> {
  const finalPath = path.join(ctx.partialDir, ...entry.path.split('/'));
  const incomplete = finalPath + INCOMPLETE;
  await fsp.mkdir(path.dirname(finalPath), { recursive: true });
  const expected = entry.size;
  let have = (await statSize(incomplete)) ?? 0;
  if (have > expected) {
    await fsp.truncate(incomplete, 0);
    have = 0;
  }
  let hash: Hash | undefined = entry.lfs ? createHash('sha256') : undefined;
  if (hash && have > 0) await hashPrefix(incomplete, have, hash);
  let resumed = have;
  let downloaded = 0;
  report(have);

  if (have < expected) {
    let res: Response;
    try {
      res = await hubFetch(ctx, resolveUrl(ctx, commit, entry.path), { headers: have > 0 ? { range: `bytes=${have}-` } : {} });
    } catch (e) {
      // Mid-pull, a refused connection is usually a blip (Wi-Fi, CDN node); worth a retry like a dropped one.
      if (e instanceof HubPullError && e.code === 'unreachable') throw new TransferError(e, 0, resumed);
      throw e;
    }
    if (res.status === 206) {
      const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
      if (Number(start) !== have) {
        await res.body?.cancel().catch(() => undefined);
        throw new HubPullError('bad-response', `${ctx.endpoint} answered a resume of ${entry.path} at byte ${have} with the wrong range (${res.headers.get('content-range')})`);
      }
    } else if (res.ok) {
      // The server ignored the range: start the file over.
      have = 0;
      resumed = 0;
      if (hash) hash = createHash('sha256');
    } else if (res.status >= 500 || res.status === 429) {
      await res.body?.cancel().catch(() => undefined);
      throw new TransferError(
        new HubPullError('http-error', `${ctx.endpoint} answered HTTP ${res.status} for ${entry.path}; run the pull again later to resume`),
        0,
        resumed,
      );
    } else {
      await failFor(ctx, res, { file: entry.path });
    }

    const fh = await fsp.open(incomplete, have > 0 ? 'a' : 'w');
    try {
      if (res.body) {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          if (have + chunk.byteLength > expected) {
            throw new HubPullError('bad-response', `${ctx.endpoint} sent more than the ${expected} bytes it lists for ${entry.path}; run the pull again`);
          }
          hash?.update(chunk);
          await fh.write(chunk);
          have += chunk.byteLength;
          downloaded += chunk.byteLength;
          report(have);
        }
      }
    } catch (e) {
      checkCancelled(ctx);
      if (e instanceof HubPullError) throw e;
      throw new TransferError(
        new HubPullError(
          'interrupted',
          `download of ${entry.path} stopped after ${have} of ${expected} bytes (${describeCause(e)}); run the pull again to resume`,
          { cause: e },
        ),
        downloaded,
        resumed,
      );
    } finally {
      await fh.close();
    }
  }

  if (have !== expected) {
    throw new TransferError(
      new HubPullError('interrupted', `download of ${entry.path} ended after ${have} of ${expected} bytes; run the pull again to resume`),
      downloaded,
      resumed,
    );
  }
  if (hash && entry.lfs) {
    const got = hash.digest('hex');
    if (got !== entry.lfs.oid) {
      // The stored prefix may be what is damaged, so resuming from it would fail again.
      await fsp.rm(incomplete, { force: true });
      throw new HubPullError(
        'checksum-mismatch',
        `checksum mismatch for ${entry.path}: expected sha256 ${entry.lfs.oid}, got ${got}; the damaged download was deleted, run the pull again`,
      );
    }
  }
  await renameIntoPlace(incomplete, finalPath);
  return { downloaded, resumed };
}

async function hashPrefix(file: string, length: number, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(file, { start: 0, end: length - 1 })) hash.update(chunk as Buffer);
}

/**
 * Drops stored files that the current listing does not vouch for (another commit, another repository, or no
 * record at all), then records the listing so a later call can resume. Returns the bytes kept.
 */
async function preparePartial(ctx: Ctx, commit: string, wanted: TreeEntry[]): Promise<{ resumed: number; complete: Set<string> }> {
  const statePath = path.join(ctx.partialDir, STATE_FILE);
  let state: PullState | undefined;
  try {
    state = JSON.parse(await fsp.readFile(statePath, 'utf8')) as PullState;
  } catch {
    state = undefined;
  }
  if (!state || state.repoId !== ctx.repoId || typeof state.oids !== 'object' || state.oids === null) {
    await fsp.rm(ctx.partialDir, { recursive: true, force: true });
    state = undefined;
  }
  await fsp.mkdir(ctx.partialDir, { recursive: true });

  const complete = new Set<string>();
  let resumed = 0;
  for (const e of wanted) {
    const finalPath = path.join(ctx.partialDir, ...e.path.split('/'));
    if (state?.oids[e.path] !== e.oid) {
      await fsp.rm(finalPath, { force: true });
      await fsp.rm(finalPath + INCOMPLETE, { force: true });
      continue;
    }
    // A file only gets its final name after verification, so its presence with the listed size means done.
    if ((await statSize(finalPath)) === e.size) {
      complete.add(e.path);
      resumed += e.size;
    } else {
      await fsp.rm(finalPath, { force: true });
      resumed += Math.min((await statSize(finalPath + INCOMPLETE)) ?? 0, e.size);
    }
  }
  const next: PullState = { repoId: ctx.repoId, commit, oids: Object.fromEntries(wanted.map((e) => [e.path, e.oid])) };
  await fsp.writeFile(statePath + '.tmp', JSON.stringify(next, null, 1));
  await renameIntoPlace(statePath + '.tmp', statePath);
  return { resumed, complete };
}

/** Removes leftovers (the state file, files of an older listing) so the model folder holds exactly the pulled files. */
async function pruneUnexpected(root: string, keep: Set<string>, rel = ''): Promise<boolean> {
  let empty = true;
  for (const d of await fsp.readdir(path.join(root, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${d.name}` : d.name;
    const abs = path.join(root, child);
    if (d.isDirectory()) {
      if (await pruneUnexpected(root, keep, child)) await fsp.rmdir(abs);
      else empty = false;
    } else if (keep.has(child)) {
      empty = false;
    } else {
      await fsp.rm(abs, { force: true });
    }
  }
  return empty;
}

/** Replaces destDir with the completed folder; an older pull is moved aside first and restored if the swap fails. */
async function swapInto(partialDir: string, destDir: string): Promise<void> {
  if ((await statKind(destDir)) === undefined) {
    await renameIntoPlace(partialDir, destDir);
    return;
  }
  const aside = `${destDir}.old-${process.pid}-${Date.now()}`;
  await renameIntoPlace(destDir, aside);
  try {
    await renameIntoPlace(partialDir, destDir);
  } catch (e) {
    await renameIntoPlace(aside, destDir).catch(() => undefined);
    throw e;
  }
  // The new model is in place: an old file still held open (Windows) leaves the aside folder behind, not a failed pull.
  await fsp.rm(aside, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }).catch(() => undefined);
}

async function checkFreeSpace(ctx: Ctx, needed: number): Promise<void> {
  let stats: { bavail: number; bsize: number };
  try {
    stats = await fsp.statfs(ctx.partialDir);
  } catch {
    return; // Not every platform or file system reports it; the write itself will fail then.
  }
  const free = stats.bavail * stats.bsize;
  if (free < needed) {
    throw new HubPullError(
      'disk-full',
      `${ctx.repoId} needs ${formatBytes(needed)} more in ${path.dirname(ctx.partialDir)} but only ${formatBytes(free)} is free; free some space or set RESHOOT_MODELS to another disk`,
    );
  }
}

/** Server-listed paths become local paths, so one that climbs out of the folder is refused. */
function checkRepoPath(p: string): void {
  const parts = p.split('/');
  if (p.includes('\\') || p.includes('\0') || parts.some((s) => s === '' || s === '.' || s === '..') || p.endsWith(INCOMPLETE) || p === STATE_FILE) {
    throw new HubPullError('bad-response', `the repository lists a file with an unsafe path: ${JSON.stringify(p)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

function cancelledError(ctx: Ctx): HubPullError {
  return new HubPullError(
    'cancelled',
    `pull of ${ctx.repoId} cancelled; what was downloaded is kept in ${ctx.partialDir} and the next pull resumes it`,
    { cause: ctx.signal?.reason },
  );
}

function checkCancelled(ctx: Ctx): void {
  if (ctx.signal?.aborted) throw cancelledError(ctx);
}

function sleep(ms: number, ctx: Ctx): Promise<void> {
  return new Promise((resolve, reject) => {
    // Fires only once the signal has aborted.
    const onAbort = () => {
      clearTimeout(t);
      reject(cancelledError(ctx));
    };
    const t = setTimeout(() => {
      ctx.signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function statSize(p: string): Promise<number | undefined> {
  try {
    const s = await fsp.stat(p);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

async function statKind(p: string): Promise<'file' | 'dir' | undefined> {
  try {
    return (await fsp.stat(p)).isDirectory() ? 'dir' : 'file';
  } catch {
    return undefined;
  }
}

/** fetch reports "fetch failed" / "terminated"; the reason worth showing sits in the cause chain. */
function describeCause(e: unknown): string {
  const seen: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur && depth < 5; depth++) {
    const err = cur as { message?: string; code?: string; errors?: unknown[]; cause?: unknown };
    if (err.message) seen.push(err.message);
    else if (err.code) seen.push(err.code);
    cur = err.cause ?? (Array.isArray(err.errors) ? err.errors[0] : undefined);
  }
  const meaningful = seen.filter((m) => m !== 'fetch failed' && m !== 'terminated');
  return meaningful.at(-1) ?? seen.at(-1) ?? String(e);
}

function formatBytes(n: number): string {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
