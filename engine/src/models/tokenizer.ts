// Byte-level BPE tokenizer with the semantics of Hugging Face's CLIPTokenizer, so that a prompt gives the exact ids
// the exported text encoder was trained with. No dependency: the only candidate package (transformers.js) weighs
// ~470 MB and drops EOS on truncation, which breaks CLIP's pooling on the EOS position.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clipCleanText } from './text-clean';

export const CLIP_BOS = '<|startoftext|>';
export const CLIP_EOS = '<|endoftext|>';
export const END_OF_WORD = '</w>';
const DEFAULT_MAX_LENGTH = 77;
// transformers writes int(1e30) when a checkpoint states no limit; anything that large cannot be a real context.
const ABSURD_MAX_LENGTH = 1_000_000;
const CACHE_LIMIT = 20_000;

/** CLIP's pre-tokenizer pattern without the two special tokens (what tokenizer.json's Split step holds). */
export const CLIP_PRETOKENIZE_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`;
const SPLIT_RE = new RegExp(String.raw`<\|startoftext\|>|<\|endoftext\|>|` + CLIP_PRETOKENIZE_PATTERN, 'giu');

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest are shifted to U+0100.. so that no
// token ever contains whitespace or control characters. The order of this table is the order of CLIP's first
// 256 vocabulary entries.
const BYTE_TO_CHAR: string[] = new Array<string>(256);
const CHAR_TO_BYTE = new Map<string, number>();
const ALPHABET_IN_VOCAB_ORDER: string[] = [];
{
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const codes = bytes.slice();
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      codes.push(256 + shifted++);
    }
  }
  bytes.forEach((b, i) => {
    const ch = String.fromCharCode(codes[i]);
    BYTE_TO_CHAR[b] = ch;
    CHAR_TO_BYTE.set(ch, b);
    ALPHABET_IN_VOCAB_ORDER.push(ch);
  });
}

/** The 256 byte-level characters in CLIP vocabulary order ('!' first). */
export function byteLevelAlphabet(): string[] {
  return ALPHABET_IN_VOCAB_ORDER.slice();
}

/** UTF-8 bytes of `text`, each written as its byte-level character. */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) out += BYTE_TO_CHAR[b];
  return out;
}

function mergeKey(left: string, right: string): string {
  // Byte-level symbols never contain a space (byte 0x20 is remapped), so a space cannot make two keys collide.
  return `${left} ${right}`;
}

/**
 * BPE on one pre-tokenized word already in byte-level characters: `</w>` is glued to the last character, then the
 * lowest-ranked adjacent pair is merged (every non-overlapping occurrence, left to right) until none is ranked.
 */
export function bpeSymbols(word: string, ranks: ReadonlyMap<string, number>): string[] {
  const chars = Array.from(word);
  if (chars.length === 0) return [];
  let symbols = chars.slice(0, -1);
  symbols.push(chars[chars.length - 1] + END_OF_WORD);
  while (symbols.length > 1) {
    let best = Infinity;
    let first = '';
    let second = '';
    for (let i = 0; i < symbols.length - 1; i++) {
      const r = ranks.get(mergeKey(symbols[i], symbols[i + 1]));
      if (r !== undefined && r < best) {
        best = r;
        first = symbols[i];
        second = symbols[i + 1];
      }
    }
    if (best === Infinity) break;
    const next: string[] = [];
    for (let i = 0; i < symbols.length; ) {
      if (i < symbols.length - 1 && symbols[i] === first && symbols[i + 1] === second) {
        next.push(first + second);
        i += 2;
      } else {
        next.push(symbols[i]);
        i += 1;
      }
    }
    symbols = next;
  }
  return symbols;
}

/** A prompt's words as CLIP splits them after its clean-up (lower case, ftfy, whitespace), before BPE. */
export function clipWords(text: string): string[] {
  return [...clipCleanText(text).matchAll(SPLIT_RE)].map((m) => m[0]);
}

export interface ClipTokenizerOptions {
  bos?: string;
  eos?: string;
  pad?: string;
  /** Defaults to the eos token, as in HF's CLIPTokenizer. */
  unk?: string;
  maxLength?: number;
}

export interface ClipEncoding {
  /** BOS, at most maxLength-2 content ids, EOS, then padding; always maxLength long. */
  ids: number[];
  /** 1 for BOS..EOS, 0 for padding. */
  attentionMask: number[];
  truncated: boolean;
  /** Content tokens cut to fit maxLength. */
  droppedTokens: number;
  /** Content symbols missing from the vocabulary, encoded as the unk (= eos) id; counted over the whole prompt. */
  unknownTokens: number;
}

interface SpecialSpec {
  token: string;
  /** Where the token name came from, for error messages (a file path, or 'options'). */
  source: string;
  field: string;
}

interface TokenizerParts {
  vocab: Map<string, number>;
  vocabSource: string;
  merges: Array<[string, string]>;
  bos: SpecialSpec;
  eos: SpecialSpec;
  pad: SpecialSpec;
  unk: SpecialSpec;
  maxLength: number;
  maxLengthSource: string;
  /** Added tokens flagged special in tokenizer.json: skipped by decode. */
  extraSpecials: string[];
}

interface WordIds {
  ids: number[];
  unknown: number;
}

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly maxLength: number;
  /** Largest id + 1: the number of rows the text encoder's embedding must have. */
  readonly vocabSize: number;
  private readonly vocab: Map<string, number>;
  private readonly tokensById: Array<string | undefined>;
  private readonly ranks = new Map<string, number>();
  private readonly specialIds = new Set<number>();
  private readonly cache = new Map<string, WordIds>();

  private constructor(p: TokenizerParts) {
    this.vocab = p.vocab;
    this.tokensById = [];
    for (const [token, id] of p.vocab) {
      if (!Number.isInteger(id) || id < 0) {
        throw new Error(`${p.vocabSource}: token ${JSON.stringify(token)} has id ${id}; expected a non-negative integer`);
      }
      const other = this.tokensById[id];
      if (other !== undefined && other !== token) {
        throw new Error(
          `${p.vocabSource}: id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}; expected unique ids`,
        );
      }
      this.tokensById[id] = token;
    }
    this.vocabSize = this.tokensById.length;
    const lookup = (s: SpecialSpec): number => {
      const id = p.vocab.get(s.token);
      if (id === undefined) {
        throw new Error(
          `${s.source}: ${s.field} ${JSON.stringify(s.token)} is not in the vocabulary (${p.vocabSource}); expected a token the vocabulary holds`,
        );
      }
      return id;
    };
    this.bosId = lookup(p.bos);
    this.eosId = lookup(p.eos);
    this.padId = lookup(p.pad);
    this.unkId = lookup(p.unk);
    if (!Number.isInteger(p.maxLength) || p.maxLength < 2) {
      throw new Error(`${p.maxLengthSource}: model_max_length ${p.maxLength}; expected an integer >= 2 (room for BOS and EOS)`);
    }
    this.maxLength = p.maxLength;
    // Real CLIP merges.txt lists ~262k merges but only the first 48894 are used (their results are exactly the
    // vocabulary); keeping only merges whose result is a known token reproduces that cut for any vocabulary size.
    for (const [a, b] of p.merges) {
      const key = mergeKey(a, b);
      if (!this.ranks.has(key) && p.vocab.has(a + b)) this.ranks.set(key, this.ranks.size);
    }
    this.specialIds.add(this.bosId).add(this.eosId).add(this.unkId);
    for (const t of p.extraSpecials) {
      const id = p.vocab.get(t);
      if (id !== undefined) this.specialIds.add(id);
    }
    // A dedicated pad token ("<pad>") is never content; a byte-level one ("!" in SD2) can be, so decode keeps it
    // inside the text and only drops the trailing run after EOS.
    if (!isByteLevelToken(p.pad.token)) this.specialIds.add(this.padId);
  }

  static fromVocab(vocab: Record<string, number>, merges: string[], opts: ClipTokenizerOptions = {}): ClipTokenizer {
    const eos = opts.eos ?? CLIP_EOS;
    const spec = (token: string, field: string): SpecialSpec => ({ token, source: 'options', field });
    return new ClipTokenizer({
      vocab: new Map(Object.entries(vocab)),
      vocabSource: 'vocab',
      merges: merges.map((m, i) => parseMergeLine(m, `merges[${i}]`)).filter((m): m is [string, string] => m !== null),
      bos: spec(opts.bos ?? CLIP_BOS, 'bos_token'),
      eos: spec(eos, 'eos_token'),
      pad: spec(opts.pad ?? eos, 'pad_token'),
      unk: spec(opts.unk ?? eos, 'unk_token'),
      maxLength: opts.maxLength ?? DEFAULT_MAX_LENGTH,
      maxLengthSource: 'options',
      extraSpecials: [],
    });
  }

  /** Loads a model's tokenizer/ folder: vocab.json + merges.txt, or tokenizer.json (HF fast format). */
  static fromFolder(dir: string): ClipTokenizer {
    if (!isDir(dir)) {
      throw new Error(`${dir}: missing; expected a tokenizer folder with vocab.json + merges.txt or tokenizer.json`);
    }
    const file = (name: string) => path.join(dir, name);
    const vocabFile = file('vocab.json');
    const mergesFile = file('merges.txt');
    const fastFile = file('tokenizer.json');
    const hasVocab = fs.existsSync(vocabFile);
    const hasMerges = fs.existsSync(mergesFile);

    let vocab: Map<string, number>;
    let vocabSource: string;
    let merges: Array<[string, string]>;
    let extraSpecials: string[] = [];
    let modelUnk: string | undefined;
    if (hasVocab && hasMerges) {
      vocab = parseVocab(readJson(vocabFile), vocabFile, 'the file');
      vocabSource = vocabFile;
      merges = parseMergesText(readText(mergesFile), mergesFile);
    } else if (fs.existsSync(fastFile)) {
      const fast = parseFastTokenizer(readJson(fastFile), fastFile);
      ({ vocab, merges, extraSpecials, unk: modelUnk } = fast);
      vocabSource = fastFile;
    } else if (hasVocab) {
      throw new Error(`${mergesFile}: missing; vocab.json needs merges.txt next to it (or use tokenizer.json)`);
    } else {
      throw new Error(`${vocabFile}: missing; a CLIP tokenizer folder needs vocab.json + merges.txt or tokenizer.json`);
    }

    const mapFile = file('special_tokens_map.json');
    const configFile = file('tokenizer_config.json');
    const specialMap = fs.existsSync(mapFile) ? asObject(readJson(mapFile), mapFile) : undefined;
    const config = fs.existsSync(configFile) ? asObject(readJson(configFile), configFile) : undefined;
    const resolve = (field: string, fallback: string, fallbackSource: string): SpecialSpec => {
      const fromMap = specialMap && tokenField(specialMap, field, mapFile);
      if (fromMap !== undefined) return { token: fromMap, source: mapFile, field };
      const fromConfig = config && tokenField(config, field, configFile);
      if (fromConfig !== undefined) return { token: fromConfig, source: configFile, field };
      return { token: fallback, source: fallbackSource, field };
    };
    const bos = resolve('bos_token', CLIP_BOS, vocabSource);
    const eos = resolve('eos_token', CLIP_EOS, vocabSource);
    const pad = resolve('pad_token', eos.token, eos.source);
    const unk = resolve('unk_token', modelUnk ?? eos.token, modelUnk !== undefined ? fastFile : eos.source);

    let maxLength = DEFAULT_MAX_LENGTH;
    const stated = config?.model_max_length;
    if (stated !== undefined && stated !== null) {
      if (typeof stated !== 'number' || Number.isNaN(stated)) {
        throw new Error(`${configFile}: model_max_length is ${JSON.stringify(stated)}; expected a number`);
      }
      maxLength = stated > ABSURD_MAX_LENGTH ? DEFAULT_MAX_LENGTH : stated;
    }
    return new ClipTokenizer({
      vocab,
      vocabSource,
      merges,
      bos,
      eos,
      pad,
      unk,
      maxLength,
      maxLengthSource: configFile,
      extraSpecials,
    });
  }

  /** Content ids of a prompt, without BOS/EOS and without truncation. */
  tokenize(text: string): number[] {
    return this.contentIds(text).ids;
  }

  /** The prompt's words as CLIP splits them after its clean-up, each with its content ids, in order. */
  words(text: string): { word: string; ids: number[] }[] {
    return clipWords(text).map((word) => ({ word, ids: this.wordIds(word).ids }));
  }

  encode(text: string): ClipEncoding {
    const content = this.contentIds(text);
    const room = this.maxLength - 2;
    const kept = content.ids.length > room ? content.ids.slice(0, room) : content.ids;
    // EOS stays even when truncating: CLIP pools the hidden state at the EOS position.
    const ids = [this.bosId, ...kept, this.eosId];
    const attentionMask = ids.map(() => 1);
    while (ids.length < this.maxLength) {
      ids.push(this.padId);
      attentionMask.push(0);
    }
    const droppedTokens = content.ids.length - kept.length;
    return { ids, attentionMask, truncated: droppedTokens > 0, droppedTokens, unknownTokens: content.unknown };
  }

  /** Text of a list of ids, for messages (e.g. showing what survived truncation). */
  decode(ids: number[]): string {
    let end = ids.length;
    if (this.padId !== this.eosId) {
      const lastEos = ids.lastIndexOf(this.eosId);
      if (lastEos >= 0) while (end > lastEos + 1 && ids[end - 1] === this.padId) end--;
    }
    const bytes: number[] = [];
    for (let i = 0; i < end; i++) {
      const id = ids[i];
      const token = Number.isInteger(id) ? this.tokensById[id] : undefined;
      if (token === undefined) {
        throw new RangeError(`decode: id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      }
      if (this.specialIds.has(id)) continue;
      const endsWord = token.endsWith(END_OF_WORD);
      const body = endsWord ? token.slice(0, -END_OF_WORD.length) : token;
      for (const ch of body) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
        else for (const raw of Buffer.from(ch, 'utf8')) bytes.push(raw);
      }
      if (endsWord) bytes.push(0x20);
    }
    return Buffer.from(bytes).toString('utf8').trim();
  }

  private contentIds(text: string): WordIds {
    // The clean-up CLIP's own tokenizer applies (ftfy, HTML unescape, Python whitespace, lower case), so curly quotes,
    // full-width letters, ligatures and pasted mojibake give the ids the text encoder was trained on.
    const clean = clipCleanText(text);
    const ids: number[] = [];
    let unknown = 0;
    for (const m of clean.matchAll(SPLIT_RE)) {
      const w = this.wordIds(m[0]);
      for (const id of w.ids) ids.push(id);
      unknown += w.unknown;
    }
    return { ids, unknown };
  }

  private wordIds(piece: string): WordIds {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    let result: WordIds;
    const special = piece === CLIP_BOS || piece === CLIP_EOS ? this.vocab.get(piece) : undefined;
    if (special !== undefined) {
      result = { ids: [special], unknown: 0 };
    } else {
      let unknown = 0;
      const ids = bpeSymbols(toByteLevel(piece), this.ranks).map((s) => {
        const id = this.vocab.get(s);
        if (id !== undefined) return id;
        unknown++;
        return this.unkId;
      });
      result = { ids, unknown };
    }
    // A server tokenizes prompts for as long as it runs; a bounded cache keeps memory flat.
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(piece, result);
    return result;
  }
}

/** Flattens a batch of equal-length id rows into the text encoder's input_ids data. */
export function idsTensorData(ids: number[][], dtype: 'int32'): Int32Array;
export function idsTensorData(ids: number[][], dtype: 'int64'): BigInt64Array;
export function idsTensorData(ids: number[][], dtype: 'int32' | 'int64'): Int32Array | BigInt64Array;
export function idsTensorData(ids: number[][], dtype: 'int32' | 'int64'): Int32Array | BigInt64Array {
  const width = ids.length > 0 ? ids[0].length : 0;
  const out = dtype === 'int32' ? new Int32Array(ids.length * width) : new BigInt64Array(ids.length * width);
  ids.forEach((row, r) => {
    if (row.length !== width) {
      throw new Error(`idsTensorData: row ${r} has ${row.length} ids, row 0 has ${width}; expected equal lengths`);
    }
    row.forEach((v, c) => {
      if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
        throw new RangeError(`idsTensorData: row ${r} column ${c} is ${v}; expected a token id`);
      }
      if (out instanceof Int32Array) out[r * width + c] = v;
      else out[r * width + c] = BigInt(v);
    });
  });
  return out;
}

function isByteLevelToken(token: string): boolean {
  const body = token.endsWith(END_OF_WORD) ? token.slice(0, -END_OF_WORD.length) : token;
  if (body.length === 0) return false;
  for (const ch of body) if (!CHAR_TO_BYTE.has(ch)) return false;
  return true;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot be read (${(e as Error).message}); expected a readable text file`, { cause: e });
  }
}

function readJson(file: string): unknown {
  const text = readText(file);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: invalid JSON (${(e as Error).message}); expected a JSON document`, { cause: e });
  }
}

function asObject(v: unknown, file: string, what = 'the file'): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new Error(`${file}: ${what} is ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}; expected a JSON object`);
  }
  return v as Record<string, unknown>;
}

function parseVocab(v: unknown, file: string, what: string): Map<string, number> {
  const obj = asObject(v, file, what);
  const map = new Map<string, number>();
  for (const [token, id] of Object.entries(obj)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(`${file}: ${what} maps ${JSON.stringify(token)} to ${JSON.stringify(id)}; expected token -> non-negative integer id`);
    }
    map.set(token, id);
  }
  return map;
}

function parseMergeLine(line: string, where: string): [string, string] | null {
  if (line.trim() === '') return null;
  const parts = line.split(' ');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
    throw new Error(`${where}: merge ${JSON.stringify(line)}; expected two symbols separated by one space`);
  }
  return [parts[0], parts[1]];
}

function parseMergesText(text: string, file: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (i === 0 && line.startsWith('#version')) return;
    const m = parseMergeLine(line, `${file}:${i + 1}`);
    if (m) out.push(m);
  });
  return out;
}

function tokenField(obj: Record<string, unknown>, field: string, file: string): string | undefined {
  const v = obj[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && !Array.isArray(v) && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  throw new Error(`${file}: ${field} is ${JSON.stringify(v)}; expected a string or an object with a string "content"`);
}

interface FastTokenizer {
  vocab: Map<string, number>;
  merges: Array<[string, string]>;
  extraSpecials: string[];
  unk: string | undefined;
}

function parseFastTokenizer(v: unknown, file: string): FastTokenizer {
  const root = asObject(v, file);
  const model = asObject(root.model, file, 'model');
  if (model.type !== undefined && model.type !== 'BPE') {
    throw new Error(`${file}: model.type is ${JSON.stringify(model.type)}; expected "BPE" (a CLIP tokenizer)`);
  }
  if (model.end_of_word_suffix !== undefined && model.end_of_word_suffix !== null && model.end_of_word_suffix !== END_OF_WORD) {
    throw new Error(`${file}: model.end_of_word_suffix is ${JSON.stringify(model.end_of_word_suffix)}; expected "${END_OF_WORD}" (CLIP)`);
  }
  const vocab = parseVocab(model.vocab, file, 'model.vocab');
  if (!Array.isArray(model.merges)) {
    throw new Error(`${file}: model.merges is ${JSON.stringify(model.merges)}; expected an array of "a b" strings or [a, b] pairs`);
  }
  const merges: Array<[string, string]> = [];
  model.merges.forEach((m: unknown, i: number) => {
    const where = `${file}: model.merges[${i}]`;
    if (typeof m === 'string') {
      const pair = parseMergeLine(m, where);
      if (pair) merges.push(pair);
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      merges.push([m[0], m[1]]);
    } else {
      throw new Error(`${where} is ${JSON.stringify(m)}; expected "a b" or [a, b]`);
    }
  });
  const extraSpecials: string[] = [];
  const added = root.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${file}: added_tokens is ${JSON.stringify(added)}; expected an array`);
  added.forEach((a: unknown, i: number) => {
    const t = asObject(a, file, `added_tokens[${i}]`);
    if (typeof t.content !== 'string' || typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0) {
      throw new Error(`${file}: added_tokens[${i}] is ${JSON.stringify(a)}; expected { id: integer, content: string }`);
    }
    const existing = vocab.get(t.content);
    if (existing !== undefined && existing !== t.id) {
      throw new Error(
        `${file}: added_tokens[${i}] gives ${JSON.stringify(t.content)} id ${t.id} but model.vocab says ${existing}; expected the same id`,
      );
    }
    vocab.set(t.content, t.id);
    if (t.special === true) extraSpecials.push(t.content);
  });
  const unk = typeof model.unk_token === 'string' ? model.unk_token : undefined;
  return { vocab, merges, extraSpecials, unk };
}
