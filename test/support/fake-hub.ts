// A local stand-in for the Hugging Face Hub's file API, close enough to the real one that the pull code cannot
// tell them apart: revision and tree endpoints, resolve URLs that redirect LFS files to a content-addressed CDN,
// Range requests, ETags, and the X-Error-Code answers (including 401 RepoNotFound for anonymous callers, which the
// Hub uses to hide private repositories). Fault hooks cut or corrupt transfers.
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRepo {
  /** Branch or tag → commit sha (40 hex). */
  revisions: Record<string, string>;
  /** Files of every commit not listed in `commits`. */
  files: Record<string, Buffer>;
  /** Per-commit file sets, for repositories whose history matters to a test. */
  commits?: Record<string, Record<string, Buffer>>;
  /** Listing is public; downloads need a token from `acceptedTokens`. */
  gated?: boolean;
  acceptedTokens?: string[];
}

export interface FakeHubOptions {
  /** Tree entries per page (the Hub paginates with a Link header); default 1000. */
  pageSize?: number;
  /** Files at least this large are stored in LFS (the Hub's rule is about 10 MB; tests use small files). Default 1024. */
  lfsThreshold?: number;
}

export interface FakeHubRequest {
  method: string;
  path: string;
  range?: string;
  authorization?: string;
}

export interface FakeHub {
  url: string;
  requests: FakeHubRequest[];
  /** The next transfer of `path` (resolve or CDN) sends `n` body bytes and then drops the connection. */
  failAfterBytes(path: string, n: number): void;
  /** From now on `path` is served with one byte flipped, while the listing keeps the true checksum. */
  corrupt(path: string): void;
  close(): Promise<void>;
}

interface Blob {
  data: Buffer;
  sha256: string;
  gitOid: string;
  lfs: boolean;
  lfsPointerSize?: number;
}

const SHA = /^[0-9a-f]{40}$/;

function gitBlobOid(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export async function startFakeHub(repos: Record<string, FakeRepo>, opts: FakeHubOptions = {}): Promise<FakeHub> {
  const pageSize = opts.pageSize ?? 1000;
  const lfsThreshold = opts.lfsThreshold ?? 1024;
  const requests: FakeHubRequest[] = [];
  const cuts = new Map<string, number>();
  const corrupted = new Set<string>();
  const cdn = new Map<string, Buffer>(); // sha256 → bytes
  const blobCache = new Map<Buffer, Blob>();

  const blob = (data: Buffer): Blob => {
    let b = blobCache.get(data);
    if (!b) {
      const sha256 = createHash('sha256').update(data).digest('hex');
      const lfs = data.length >= lfsThreshold;
      // For LFS files the git object is the pointer file, so the tree oid is the pointer's blob oid.
      const pointer = Buffer.from(
        `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${data.length}\n`,
      );
      b = {
        data,
        sha256,
        lfs,
        gitOid: gitBlobOid(lfs ? pointer : data),
        lfsPointerSize: lfs ? pointer.length : undefined,
      };
      blobCache.set(data, b);
      if (lfs) cdn.set(sha256, data);
    }
    return b;
  };
  for (const repo of Object.values(repos)) {
    for (const d of Object.values(repo.files)) blob(d);
    for (const files of Object.values(repo.commits ?? {})) for (const d of Object.values(files)) blob(d);
  }

  const commitOf = (repo: FakeRepo, rev: string): string | undefined => {
    if (repo.revisions[rev]) return repo.revisions[rev];
    const known = new Set([...Object.values(repo.revisions), ...Object.keys(repo.commits ?? {})]);
    return SHA.test(rev) && known.has(rev) ? rev : undefined;
  };
  const filesAt = (repo: FakeRepo, commit: string) => repo.commits?.[commit] ?? repo.files;

  let base = '';
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const fail = (status: number, code: string | undefined, message: string) => {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'x-error-message': message };
      if (code) headers['x-error-code'] = code;
      res.writeHead(status, headers).end(JSON.stringify({ error: message }));
    };
    const json = (body: unknown, headers: Record<string, string> = {}) =>
      res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    const findRepo = (id: string): FakeRepo | undefined => {
      const repo = repos[id];
      if (!repo)
        fail(token ? 404 : 401, 'RepoNotFound', token ? 'Repository not found' : 'Invalid username or password.');
      return repo;
    };

    let segs: string[];
    try {
      segs = url.pathname.split('/').slice(1).map(decodeURIComponent);
    } catch {
      return fail(400, undefined, 'Bad path');
    }

    // GET /api/models/{owner}/{name}[/revision/{rev} | /tree/{rev}[/{path}]]
    if (segs[0] === 'api' && segs[1] === 'models' && segs.length >= 4) {
      const id = `${segs[2]}/${segs[3]}`;
      const repo = findRepo(id);
      if (!repo) return;
      const [kind, rev, ...rest] = segs.slice(4);
      const info = (commit: string) => ({
        _id: id,
        id,
        modelId: id,
        sha: commit,
        private: false,
        gated: repo.gated ? 'manual' : false,
        siblings: Object.keys(filesAt(repo, commit))
          .sort()
          .map((rfilename) => ({ rfilename })),
      });
      if (kind === undefined) return json(info(repo.revisions.main ?? Object.values(repo.revisions)[0]));
      const commit = rev === undefined ? undefined : commitOf(repo, rev);
      if (!commit) return fail(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      if (kind === 'revision' && rest.length === 0) return json(info(commit));
      if (kind === 'tree') {
        const prefix = rest.filter(Boolean).join('/');
        const recursive = url.searchParams.get('recursive') === 'true';
        const entries = treeEntries(filesAt(repo, commit), prefix, recursive, blob);
        const cursor = Number(url.searchParams.get('cursor') ?? '0');
        const page = entries.slice(cursor, cursor + pageSize);
        const headers: Record<string, string> = {};
        if (cursor + pageSize < entries.length) {
          const next = new URL(url.pathname, base);
          next.search = url.search;
          next.searchParams.set('cursor', String(cursor + pageSize));
          headers.link = `<${next.href}>; rel="next"`;
        }
        return json(page, headers);
      }
      return fail(404, undefined, 'Not found');
    }

    // GET|HEAD /{owner}/{name}/resolve/{rev}/{path}
    if (segs[2] === 'resolve' && segs.length >= 5) {
      const id = `${segs[0]}/${segs[1]}`;
      const repo = findRepo(id);
      if (!repo) return;
      const commit = commitOf(repo, segs[3]);
      if (!commit) return fail(404, 'RevisionNotFound', `Invalid rev id: ${segs[3]}`);
      if (repo.gated && !(token && repo.acceptedTokens?.includes(token))) {
        return fail(
          token ? 403 : 401,
          'GatedRepo',
          `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
        );
      }
      const file = segs.slice(4).join('/');
      const data = filesAt(repo, commit)[file];
      if (!data) return fail(404, 'EntryNotFound', `${file} does not exist on "${segs[3]}"`);
      const b = blob(data);
      const common = { 'x-repo-commit': commit };
      if (b.lfs) {
        return res
          .writeHead(302, {
            ...common,
            location: `${base}/cdn/${b.sha256}?filename=${encodeURIComponent(file)}`,
            'x-linked-etag': `"${b.sha256}"`,
            'x-linked-size': String(data.length),
            etag: `"${b.gitOid}"`,
          })
          .end();
      }
      return sendBytes(req, res, file, data, `"${b.gitOid}"`, common);
    }

    // GET|HEAD /cdn/{sha256}
    if (segs[0] === 'cdn' && segs.length === 2) {
      const data = cdn.get(segs[1]);
      if (!data) return fail(404, undefined, 'NoSuchKey');
      return sendBytes(req, res, url.searchParams.get('filename') ?? segs[1], data, `"${segs[1]}"`, {});
    }
    fail(404, undefined, 'Not found');
  });

  const sendBytes = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    file: string,
    data: Buffer,
    etag: string,
    extra: Record<string, string>,
  ) => {
    let body = corrupted.has(file) ? flipOneByte(data) : data;
    const headers: Record<string, string> = {
      ...extra,
      etag,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
      if (start >= data.length || end < start) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${data.length}` }).end();
        return;
      }
      body = body.subarray(start, end + 1);
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${data.length}`;
    }
    headers['content-length'] = String(body.length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return void res.end();
    const cut = cuts.get(file);
    if (cut !== undefined && cut < body.length) {
      cuts.delete(file);
      // The headers promised the whole body; dropping the socket mid-way is what a failing network looks like.
      res.write(body.subarray(0, cut), () => res.destroy());
      return;
    }
    res.end(body);
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    failAfterBytes: (p, n) => void cuts.set(p, n),
    corrupt: (p) => void corrupted.add(p),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

function flipOneByte(data: Buffer): Buffer {
  const copy = Buffer.from(data);
  if (copy.length) copy[copy.length >> 1] ^= 0xff;
  return copy;
}

type TreeEntry = {
  type: 'file' | 'directory';
  oid: string;
  size: number;
  path: string;
  lfs?: { oid: string; size: number; pointerSize: number };
};

function treeEntries(
  files: Record<string, Buffer>,
  prefix: string,
  recursive: boolean,
  blob: (d: Buffer) => Blob,
): TreeEntry[] {
  const under = prefix ? `${prefix}/` : '';
  const dirs = new Set<string>();
  const out: TreeEntry[] = [];
  for (const [p, data] of Object.entries(files)) {
    if (!p.startsWith(under)) continue;
    const rest = p.slice(under.length).split('/');
    // Every ancestor folder below the prefix is an entry of its own, as in `git ls-tree -r -t`.
    for (let i = 1; i < rest.length && (recursive || i === 1); i++) dirs.add(under + rest.slice(0, i).join('/'));
    if (!recursive && rest.length > 1) continue;
    const b = blob(data);
    out.push({
      type: 'file',
      oid: b.gitOid,
      size: data.length,
      path: p,
      ...(b.lfs ? { lfs: { oid: b.sha256, size: data.length, pointerSize: b.lfsPointerSize! } } : {}),
    });
  }
  for (const d of dirs)
    out.push({ type: 'directory', oid: createHash('sha1').update(`tree ${d}`).digest('hex'), size: 0, path: d });
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
