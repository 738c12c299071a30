// Suite 5: property-based fuzzing of the API with fast-check. Job requests are generated from the zod contract itself
// (through its JSON Schema, so a new field is fuzzed without touching this file), biased towards real files so many
// reach the media checks, then mutated: fields dropped, types swapped, fields added, numbers made huge, values nested
// thousands deep, bodies cut short. The property: never a 5xx, never a crash, always a problem document or a job.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import { z } from 'zod';
import { Job, JobRequest, Problem } from '../../engine/src/api/schemas';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { Engine, type Reply } from './support/engine';
import { makeFixtures, type Fixtures } from './support/fixtures';

const RUNS = Number(process.env.RESHOOT_FUZZ_RUNS ?? 300);
const SEED = process.env.RESHOOT_FUZZ_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.RESHOOT_FUZZ_SEED);
jest.setTimeout(150_000);

let root: string;
let fx: Fixtures;
let out: string;
let engine: Engine;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'rel-fuzz-'));
  const model = path.join(root, 'oracle');
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
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema | false;
  prefixItems?: JsonSchema[];
  minItems?: number;
  maxItems?: number;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
}

/** Values that mean something to the engine, mixed in at these (dotted) places so requests get past the first check. */
function hints(): Record<string, fc.Arbitrary<unknown>> {
  const name = fc.stringMatching(/^[a-z0-9]{1,12}$/);
  return {
    'source.path': fc.constantFrom(
      fx.clip,
      fx.clip,
      fx.clip,
      fx.text,
      fx.folder,
      fx.still,
      fx.empty,
      fx.truncated,
      fx.audioOnly,
      fx.unknownCodec,
      path.join(fx.dir, 'gone.mp4'),
      'relative.mp4',
    ),
    'source.in': fc.double({ min: 0, max: 0.6, noNaN: true }),
    'source.out': fc.double({ min: 0, max: 0.7, noNaN: true }),
    prompt: fc.constantFrom('a blue car on a gray road', 'a green car', '🚗 סכוניות', 'x'),
    sourcePrompt: fc.constantFrom('a red car on a gray road', ''),
    steps: fc.integer({ min: 1, max: 3 }),
    batchSize: fc.integer({ min: 1, max: 4 }),
    'mask.path': fc.constantFrom(
      fx.matte,
      fx.matteSquare,
      fx.matteText,
      fx.clip,
      path.join(fx.dir, 'matte_%04d.png'),
      path.join(fx.dir, 'none.png'),
    ),
    'output.path': fc.oneof(
      name.map((n) => path.join(out, `${n}.mp4`)),
      name.map((n) => path.join(out, `${n}.mov`)),
      fc.constantFrom(
        '/etc/reshoot.mp4',
        `${out}/../../../etc/x.mp4`,
        '/dev/null',
        out,
        path.join(fx.text, 'x.mp4'),
        'rel.mp4',
        path.join(out, 'x.txt'),
      ),
    ),
    'output.folder': fc.oneof(
      name.map((n) => path.join(out, n)),
      fc.constantFrom(out, '/usr/lib', fx.text, path.join(out, 'a', 'b'), 'relative'),
    ),
  };
}

/** Whole objects whose parts must agree (out after in, a box inside the frame, path or folder), where field hints cannot help. */
function objectHints(h: Record<string, fc.Arbitrary<unknown>>): Record<string, fc.Arbitrary<unknown>> {
  const unit = fc.double({ min: 0, max: 0.5, noNaN: true });
  return {
    source: fc
      .record({
        path: h['source.path'],
        in: fc.double({ min: 0, max: 0.4, noNaN: true }),
        d: fc.double({ min: 0.01, max: 0.3, noNaN: true }),
      })
      .map(({ path: p, in: i, d }) => ({ path: p, in: i, out: i + d })),
    mask: fc.oneof(
      fc.constant({ type: 'none' }),
      fc.record(
        { type: fc.constant('auto'), threshold: fc.double({ min: 0, max: 1, noNaN: true }) },
        { requiredKeys: ['type'] },
      ),
      fc.record({
        type: fc.constant('box'),
        x: unit,
        y: unit,
        w: unit.map((v) => v + 0.01),
        h: unit.map((v) => v + 0.01),
      }),
      fc.record({ type: fc.constant('file'), path: h['mask.path'] }),
    ),
    output: fc.oneof(
      fc.record(
        { path: h['output.path'], codec: fc.constantFrom('h264', 'prores'), overwrite: fc.boolean() },
        { requiredKeys: ['path'] },
      ),
      fc.record({ folder: h['output.folder'], audio: fc.boolean() }, { requiredKeys: ['folder'] }),
    ),
  };
}

/** An arbitrary for a JSON Schema as zod's toJSONSchema writes it (the subset the contract uses). */
function fromSchema(s: JsonSchema, at: string, hint: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const base = ((): fc.Arbitrary<unknown> => {
    const alternatives = s.oneOf ?? s.anyOf;
    if (alternatives) return fc.oneof(...alternatives.map((a) => fromSchema(a, at, hint)));
    if (s.const !== undefined) return fc.constant(s.const);
    if (s.enum) return fc.constantFrom(...s.enum);
    switch (s.type) {
      case 'string':
        return fc.string({
          minLength: s.minLength ?? 0,
          maxLength: Math.min(s.maxLength ?? 64, 64),
          unit: fc.oneof(fc.constant('a'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })),
        });
      case 'integer':
        return fc.integer({ min: Math.ceil(s.minimum ?? -(2 ** 31)), max: Math.floor(s.maximum ?? 2 ** 31) });
      case 'number':
        return fc.double({
          min: s.minimum ?? s.exclusiveMinimum ?? -1e6,
          max: s.maximum ?? s.exclusiveMaximum ?? 1e6,
          minExcluded: s.exclusiveMinimum !== undefined,
          maxExcluded: s.exclusiveMaximum !== undefined,
          noNaN: true,
        });
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      case 'array':
        if (s.prefixItems) return fc.tuple(...s.prefixItems.map((p, i) => fromSchema(p, `${at}.${i}`, hint)));
        return fc.array(s.items ? fromSchema(s.items, `${at}[]`, hint) : fc.jsonValue(), {
          minLength: s.minItems ?? 0,
          maxLength: Math.min(s.maxItems ?? 4, 4),
        });
      case 'object': {
        const props = s.properties ?? {};
        const model: Record<string, fc.Arbitrary<unknown>> = {};
        for (const [k, v] of Object.entries(props)) model[k] = fromSchema(v, at ? `${at}.${k}` : k, hint);
        return fc.record(model, { requiredKeys: s.required ?? [] });
      }
      default:
        return fc.jsonValue();
    }
  })();
  const h = hint[at];
  return h ? fc.oneof({ arbitrary: h, weight: 3 }, { arbitrary: base, weight: 1 }) : base;
}

type Mutation =
  | { kind: 'drop'; pick: number }
  | { kind: 'retype'; pick: number; value: unknown }
  | { kind: 'extra'; pick: number; key: string; value: unknown }
  | { kind: 'huge'; pick: number; value: number | string }
  | { kind: 'deep'; pick: number; depth: number; shape: 'array' | 'object' }
  | { kind: 'long'; pick: number; length: number }
  | { kind: 'whole'; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('retype' as const), pick: fc.nat(), value: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({
    kind: fc.constant('extra' as const),
    pick: fc.nat(),
    key: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', '', 'promt', 'toString'), fc.string()),
    value: fc.jsonValue({ maxDepth: 2 }),
  }),
  // Strings here become raw JSON number literals, which JSON.stringify cannot produce: 1e999 parses as Infinity.
  fc.record({
    kind: fc.constant('huge' as const),
    pick: fc.nat(),
    value: fc.constantFrom<number | string>(
      1e308,
      -1e308,
      Number.MAX_SAFE_INTEGER + 2,
      2 ** 64,
      -0,
      5e-324,
      '1e999',
      '-1e999',
      '1' + '0'.repeat(400),
    ),
  }),
  fc.record({
    kind: fc.constant('deep' as const),
    pick: fc.nat(),
    depth: fc.integer({ min: 64, max: 12_000 }),
    shape: fc.constantFrom('array' as const, 'object' as const),
  }),
  fc.record({ kind: fc.constant('long' as const), pick: fc.nat(), length: fc.constantFrom(2001, 4097, 70_000) }),
  fc.record({ kind: fc.constant('whole' as const), value: fc.jsonValue({ maxDepth: 2 }) }),
);

/** Dotted places in a value where a mutation can land: every object member, and the value itself. */
function places(v: unknown, at: string[] = []): string[][] {
  const here = [at];
  if (v && typeof v === 'object' && !Array.isArray(v))
    for (const [k, c] of Object.entries(v)) here.push(...places(c, [...at, k]));
  return here;
}

function setAt(root: unknown, at: string[], f: (parent: Record<string, unknown>, key: string) => void): unknown {
  if (at.length === 0) {
    const box = { v: root };
    f(box, 'v');
    return box.v;
  }
  let parent = root as Record<string, unknown>;
  for (const k of at.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
  f(parent, at[at.length - 1]);
  return root;
}

/** The request as a body, with each mutation applied; markers are swapped for raw JSON that JSON.stringify cannot write. */
function body(request: unknown, mutations: Mutation[], cut: number | null): string {
  let v: unknown = structuredClone(request);
  const raw = new Map<string, string>();
  mutations.forEach((m, i) => {
    if (m.kind === 'whole') {
      v = m.value;
      return;
    }
    const all = places(v);
    const at = all[m.pick % all.length];
    const marker = `@@raw${i}@@`;
    v = setAt(v, m.kind === 'extra' ? at.slice(0, -1) : at, (parent, key) => {
      switch (m.kind) {
        case 'drop':
          delete parent[key];
          break;
        case 'retype':
          parent[key] = m.value;
          break;
        case 'extra': {
          const target = parent[key];
          if (target && typeof target === 'object' && !Array.isArray(target))
            Object.defineProperty(target, m.key, {
              value: m.value,
              enumerable: true,
              configurable: true,
              writable: true,
            });
          break;
        }
        case 'huge':
          parent[key] = marker;
          raw.set(marker, String(m.value));
          break;
        case 'deep':
          parent[key] = marker;
          raw.set(
            marker,
            m.shape === 'array'
              ? `${'['.repeat(m.depth)}1${']'.repeat(m.depth)}`
              : `${'{"a":'.repeat(m.depth)}1${'}'.repeat(m.depth)}`,
          );
          break;
        case 'long':
          parent[key] = 'ẞ'.repeat(m.length);
          break;
      }
    });
  });
  let text = JSON.stringify(v) ?? 'null';
  for (const [marker, value] of raw) text = text.split(JSON.stringify(marker)).join(value);
  return cut === null ? text : text.slice(0, cut % (text.length + 1));
}

const ALLOWED = new Set([202, 400, 404, 409, 413, 415, 422, 429]);

it(`job submissions generated from the contract and mutated (${RUNS} runs): never a 5xx, never a crash`, async () => {
  const schema = z.toJSONSchema(JobRequest, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const fieldHints = hints();
  const requestArb = fromSchema(schema, '', { ...fieldHints, ...objectHints(fieldHints) });
  const counts = new Map<number, number>();
  const accepted: string[] = [];
  let valid = 0;
  let mutated = 0;
  const problems: string[] = [];
  // About a third go as generated; one body in ten is cut short.
  const mutations = fc.oneof(
    { arbitrary: fc.constant<Mutation[]>([]), weight: 1 },
    { arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }), weight: 2 },
  );
  const cuts = fc.oneof({ arbitrary: fc.constant(null), weight: 9 }, { arbitrary: fc.nat(), weight: 1 });
  const property = fc.asyncProperty(requestArb, mutations, cuts, async (request, mutations, cut) => {
    const text = body(request, mutations, cut);
    if (mutations.length || cut !== null) mutated++;
    else valid++;
    let r: Reply;
    try {
      r = await engine.call('POST', '/v1/jobs', { body: text, headers: { 'content-type': 'application/json' } });
    } catch (err) {
      throw new Error(`no answer (${(err as Error).message}); engine alive: ${engine.alive}`, { cause: err });
    }
    counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
    if (!engine.alive) throw new Error(`the engine died: ${engine.logText().slice(-3000)}`);
    if (!ALLOWED.has(r.status))
      throw new Error(`status ${r.status} for ${text.slice(0, 500)}: ${r.text.slice(0, 500)}`);
    if (r.status === 202) {
      const job = Job.safeParse(r.json);
      if (!job.success) throw new Error(`202 without a valid job: ${r.text.slice(0, 300)}`);
      accepted.push(job.data.id);
    } else if (!Problem.safeParse(r.json).success) {
      throw new Error(`${r.status} without a problem document: ${r.text.slice(0, 300)}`);
    }
    // A valid request must not be refused for the request's form: only for its media, its output or the queue.
    if (
      mutations.length === 0 &&
      cut === null &&
      JobRequest.safeParse(request).success &&
      r.status === 400 &&
      r.json?.title === 'Invalid request'
    ) {
      problems.push(`a request the contract accepts was refused as invalid: ${r.json.detail ?? r.text}`);
    }
  });
  await fc.assert(property, { numRuns: RUNS, seed: SEED, endOnFailure: true });

  expect(engine.alive).toBe(true);
  expect((await engine.api('GET', '/v1/health')).status).toBe(200);
  const listed = (await engine.jobs()).map((j) => j.id);
  expect([...listed].sort()).toEqual([...accepted].sort());
  await Promise.all(accepted.map((id) => engine.api('POST', `/v1/jobs/${id}/cancel`)));
  const summary = [...counts]
    .sort(([a], [b]) => a - b)
    .map(([s, n]) => `${n}×${s}`)
    .join(', ');
  console.log(
    `API fuzz (seed ${SEED}): ${RUNS} job submissions (${valid} as generated from the contract, ${mutated} mutated) → ${summary}; no 5xx, engine up, ${accepted.length} accepted jobs all listed`,
  );
  expect(problems).toEqual([]);
});

it(`query strings and path parameters (${Math.ceil(RUNS / 2)} runs): never a 5xx`, async () => {
  const counts = new Map<number, number>();
  const value = fc.oneof(
    fc.constantFrom(
      fx.clip,
      fx.text,
      fx.folder,
      fx.still,
      '',
      '0',
      '-0',
      '1e999',
      'NaN',
      '0x10',
      ' 1',
      '1e-400',
      '9'.repeat(400),
      '%00',
      '..',
      '/etc/passwd',
      '/dev/zero',
      '/proc/self/environ',
    ),
    fc.string({ unit: 'binary', maxLength: 40 }),
  );
  const query = fc.array(
    fc.tuple(fc.constantFrom('path', 't', 'maxWidth', 'token', 'x', 'path[]', '__proto__'), value),
    { maxLength: 4 },
  );
  const target = fc.oneof(
    query.map(
      (q) => `/v1/media/probe?${q.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`,
    ),
    query.map(
      (q) => `/v1/media/still?${q.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`,
    ),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }).map((id) => `/v1/jobs/${encodeURIComponent(id)}`),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }).map((id) => `/v1/jobs/${encodeURIComponent(id)}/events`),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }).map((id) => `/v1/jobs/${encodeURIComponent(id)}/result`),
  );
  await fc.assert(
    fc.asyncProperty(target, async (url) => {
      const r = await engine.call('GET', url, { timeoutMs: 15_000 });
      counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
      if (!engine.alive) throw new Error(`the engine died on GET ${url}`);
      if (r.status >= 500) throw new Error(`GET ${url}: ${r.status} ${r.text.slice(0, 300)}`);
    }),
    { numRuns: Math.ceil(RUNS / 2), seed: SEED, endOnFailure: true },
  );
  const summary = [...counts]
    .sort(([a], [b]) => a - b)
    .map(([s, n]) => `${n}×${s}`)
    .join(', ');
  console.log(`API fuzz (seed ${SEED}): ${Math.ceil(RUNS / 2)} probe/still/job URLs → ${summary}; no 5xx`);
  engine.expectNoTokenLeak();
});
