// Rewritten graphs, made once and kept on disk. A rewrite reads the model's graph without its weights
// (graph-file.ts), finds the attention sites, applies the passes in order and encodes the result: a graph whose
// large weights are references into the original file, so it is a few MB however big the model, and a session
// opens it with `dir` (the original's folder) as its external-data folder.
//
// Cache entries are `<key>.onnx` (the graph) and `<key>.json` (what the rewrite found: ports, sites, the identity of
// the files the graph points into, the graph's hash). The key covers the source's identity (graph-file.ts
// graphIdentity: size, mtime, head and tail), its file name (the graph references it by name), the passes and their
// options, the site options, FORMAT and the rewriting code itself (rewriterIdentity: an engine whose passes changed,
// after an upgrade or in development, never takes a graph an older one wrote); a hit returns the stored graph
// without reading the source's graph. The
// cache is an optimisation only: an entry that cannot be read or does not match is rewritten, a folder that cannot
// be written leaves the result uncached, and neither fails the load.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeQuietly, renameIntoPlaceSync } from '../config/atomic-rename';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../config/private-dir';
import { findAttentionSites, type AttentionSites } from './attention-sites';
import { encodeGraph, externalLocations, graphIdentity, readGraphFile } from './graph-file';
import type { GraphPass, Ports } from './pass';
import { VERSION } from '../version';

export interface PassRequest {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each request carries its own pass's options type
  pass: GraphPass<any>;
  options?: unknown;
}

export interface RewriteOptions {
  /** Folder for cached graphs; null = always rewrite. */
  cacheDir: string | null;
  /** Passed to findAttentionSites: latent size and text length when the graph leaves them dynamic. */
  latent?: { height: number; width: number };
  textLength?: number;
}

export type RewriteResult =
  | {
      ok: true;
      /** The rewritten graph; its large weights are external references into the source file. */
      bytes: Uint8Array;
      /** The source file's folder: the session's external-data folder. */
      dir: string;
      /** Every pass's ports, in pass order. */
      ports: Ports;
      /** Attention sites of the source graph (before the passes). */
      sites: AttentionSites;
      cached: boolean;
    }
  | { ok: false; reason: string; pass: string };

/** Bump when the stored graph or JSON changes meaning: entries of another format are rewritten. */
export const GRAPH_CACHE_FORMAT = 1;
/** Entries kept per cache folder (a UNet's variants plus the VAE's, for a few models); oldest used go first. */
export const GRAPH_CACHE_ENTRIES = 32;
/** A temporary file this old is left over from a crashed write, not one in progress. */
const STALE_TEMP_MS = 60 * 60 * 1000;
const ENTRY = /^([0-9a-f]{64})\.(onnx|json)$/;
const TEMP = /^[0-9a-f]{64}\.(onnx|json)\.\d+\.[0-9a-f]+\.tmp$/;

interface Entry {
  format: number;
  key: string;
  source: string;
  passes: string[];
  /** graphIdentity of the source and of `external` when the graph was rewritten. */
  identity: string;
  /** External-data locations the source graph itself referenced (besides the source file). */
  external: string[];
  sha256: string;
  ports: Ports;
  sites: AttentionSites;
}

/**
 * The graph of `file` with `passes` applied in order (none: the graph alone, its weights left in the file), from the
 * cache when it holds it. Rejects when the file cannot be read or is damaged; a pass that does not apply is a result
 * ({ ok: false }), not an error. The work is synchronous (bounded reads, a few hundred ms for a 1.7 GB UNet); the
 * Promise keeps the signature free to move it off the thread.
 */
export async function rewriteGraph(
  file: string,
  passes: readonly PassRequest[],
  opts: RewriteOptions,
): Promise<RewriteResult> {
  const source = path.resolve(file);
  const dir = path.dirname(source);
  const key = opts.cacheDir === null ? undefined : cacheKey(source, passes, opts);
  if (opts.cacheDir !== null && key) {
    const hit = readEntry(opts.cacheDir, key, source, passes);
    if (hit) return { ok: true, bytes: hit.bytes, dir, ports: hit.entry.ports, sites: hit.entry.sites, cached: true };
  }
  const graph = readGraphFile(source);
  const sites = findAttentionSites(graph.model, { latent: opts.latent, textLength: opts.textLength });
  let model = graph.model;
  const ports: Ports = { inputs: [], outputs: [] };
  for (const { pass, options } of passes) {
    const result = pass.apply(model, sites.sites, options ?? {});
    if (!result.ok) return { ok: false, reason: result.reason, pass: pass.name };
    model = result.model;
    ports.inputs.push(...result.ports.inputs);
    ports.outputs.push(...result.ports.outputs);
  }
  const bytes = encodeGraph(model);
  if (opts.cacheDir !== null && key) {
    const external = externalLocations(graph.model).filter((l) => l !== path.basename(source));
    const entry: Entry = {
      format: GRAPH_CACHE_FORMAT,
      key,
      source,
      passes: passes.map((p) => p.pass.name),
      identity: graph.identity,
      external,
      sha256: sha256(bytes),
      ports,
      sites,
    };
    writeEntry(opts.cacheDir, key, bytes, entry);
  }
  return { ok: true, bytes, dir, ports, sites, cached: false };
}

/** The modules of `dirs` (file names and contents, .js or .ts), hashed; a folder that cannot be read counts as empty. */
export function codeHash(dirs: readonly string[]): string {
  const h = createHash('sha256');
  for (const dir of dirs) {
    let files: string[] = [];
    try {
      files = fs.readdirSync(dir).filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts'));
    } catch {
      // A bundled engine has no folder to read: the version below still changes with every release.
    }
    for (const f of files.sort()) h.update(`${f}\0`).update(fs.readFileSync(path.join(dir, f)));
  }
  return h.digest('hex');
}

let rewriter: string | undefined;

/** This folder's and the passes' code with the package version, read once per process. */
export function rewriterIdentity(): string {
  rewriter ??= `${VERSION}:${codeHash([__dirname, path.join(__dirname, 'passes')])}`;
  return rewriter;
}

/**
 * Undefined when there is no key to be had: the source is unreadable (readGraphFile then says why) or the options do
 * not serialise (a BigInt, say), and the rewrite runs uncached.
 */
function cacheKey(source: string, passes: readonly PassRequest[], opts: RewriteOptions): string | undefined {
  try {
    const parts = {
      format: GRAPH_CACHE_FORMAT,
      rewriter: rewriterIdentity(),
      identity: graphIdentity(source),
      name: path.basename(source),
      passes: passes.map((p) => [p.pass.name, p.options ?? null]),
      latent: opts.latent ?? null,
      textLength: opts.textLength ?? null,
    };
    return sha256(stableJson(parts));
  } catch {
    return undefined;
  }
}

function readEntry(
  cacheDir: string,
  key: string,
  source: string,
  passes: readonly PassRequest[],
): { bytes: Uint8Array; entry: Entry } | undefined {
  try {
    const entry = JSON.parse(fs.readFileSync(path.join(cacheDir, `${key}.json`), 'utf8'), revive) as Entry;
    if (entry.format !== GRAPH_CACHE_FORMAT || entry.key !== key) return undefined;
    if (
      !sameStrings(
        entry.passes,
        passes.map((p) => p.pass.name),
      )
    )
      return undefined;
    if (!Array.isArray(entry.external) || !entry.ports || !entry.sites) return undefined;
    // The key covers the source file; the external files its graph references are checked here.
    if (graphIdentity(source, entry.external) !== entry.identity) return undefined;
    const bytes = new Uint8Array(fs.readFileSync(path.join(cacheDir, `${key}.onnx`)));
    if (sha256(bytes) !== entry.sha256) return undefined;
    touch(cacheDir, key);
    return { bytes, entry };
  } catch {
    return undefined;
  }
}

function writeEntry(cacheDir: string, key: string, bytes: Uint8Array, entry: Entry): void {
  try {
    // The cache sits in the engine's data folder, which is private to the user (config/private-dir.ts).
    fs.mkdirSync(cacheDir, { recursive: true, mode: PRIVATE_DIR_MODE });
    // The graph first, the JSON (which holds its hash) last: a reader never takes a half-written pair for an entry.
    writeAtomic(path.join(cacheDir, `${key}.onnx`), bytes);
    writeAtomic(path.join(cacheDir, `${key}.json`), JSON.stringify(entry, replace));
    prune(cacheDir);
  } catch {
    // Uncached is slower, not wrong.
  }
}

function writeAtomic(target: string, data: Uint8Array | string): void {
  const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(temp, data, { mode: PRIVATE_FILE_MODE });
    renameIntoPlaceSync(temp, target);
  } catch (err) {
    removeQuietly(temp);
    throw err;
  }
}

/** Last use decides what pruning keeps. */
function touch(cacheDir: string, key: string): void {
  const now = new Date();
  for (const ext of ['onnx', 'json']) {
    try {
      fs.utimesSync(path.join(cacheDir, `${key}.${ext}`), now, now);
    } catch {
      // A read-only cache still serves hits.
    }
  }
}

/** Keeps the GRAPH_CACHE_ENTRIES most recently used entries; touches nothing but this cache's own file names. */
function prune(cacheDir: string): void {
  const entries = new Map<string, { files: string[]; used: number }>();
  const now = Date.now();
  for (const name of fs.readdirSync(cacheDir)) {
    const full = path.join(cacheDir, name);
    const match = ENTRY.exec(name);
    if (!match && !TEMP.test(name)) continue;
    let mtime: number;
    try {
      mtime = fs.statSync(full).mtimeMs;
    } catch {
      continue;
    }
    if (!match) {
      if (now - mtime > STALE_TEMP_MS) fs.rmSync(full, { force: true });
      continue;
    }
    const entry = entries.get(match[1]) ?? { files: [], used: 0 };
    entry.files.push(full);
    entry.used = Math.max(entry.used, mtime);
    entries.set(match[1], entry);
  }
  const byUse = [...entries.values()].sort((a, b) => b.used - a.used);
  for (const old of byUse.slice(GRAPH_CACHE_ENTRIES)) for (const f of old.files) fs.rmSync(f, { force: true });
}

// Port values may be ±Infinity (a mask's "off"), NaN or −0, which JSON would turn into null or 0.
function replace(_key: string, value: unknown): unknown {
  if (typeof value !== 'number' || (Number.isFinite(value) && !Object.is(value, -0))) return value;
  return { $number: String(Object.is(value, -0) ? '-0' : value) };
}

function revive(_key: string, value: unknown): unknown {
  const special = value && typeof value === 'object' && (value as { $number?: unknown }).$number;
  return typeof special === 'string' ? Number(special) : value;
}

function sameStrings(a: unknown, b: string[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i]);
}

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** JSON with object keys sorted, so equal options give equal keys whatever order they were written in. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => stableJson(v ?? null)).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
