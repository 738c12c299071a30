// A model file's graph without its weights. A single-file fp16 SD 1.5 UNet is ~1.7 GB with every weight inside
// model.onnx; decoding it whole would put all of that into JavaScript memory just to rewrite a few nodes. Instead the
// protobuf is walked straight from the file descriptor through a small window: every large initializer's raw_data is
// skipped and the tensor re-emitted as an external-data reference to the same bytes in the same file (location =
// the file's name, offset and length where the bytes already are); everything else is copied byte for byte and the
// small result is decoded with onnx-proto. A session opened from the (rewritten) graph with the file's folder as its
// external-data folder then reads those weights from model.onnx itself.
//
// What ONNX Runtime 1.30 (CPU, Linux) accepts, checked by test/unit/graph-file.test.ts and
// test/integration/large-unet.test.ts:
// - a location naming a .onnx file, the very file the graph came from: accepted, nothing checks the file's kind;
// - unaligned offsets (a raw_data field starts wherever its protobuf header ends): accepted, outputs bit-identical.
//   ORT tries to mmap external data and falls back to reading it into a buffer when mapping fails; on POSIX the
//   mapping rounds the offset down to a page itself. Windows' MapViewOfFile needs offsets on a 64 KiB
//   allocation granularity, so there ORT takes the read-into-buffer path: same values, the weights just live in ORT's
//   heap instead of the page cache (as they do today when ORT parses the whole file);
// - refused: absolute locations ("Absolute path not allowed") and locations leaving the folder ("escapes model
//   directory"), and any external reference at all in a graph loaded from bytes without
//   `session.model_external_initializers_file_folder_path` (resolved against the working directory instead).
//   Hence the plain basename and the caller's `dir`.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';

export interface GraphFile {
  model: onnx.ModelProto;
  /** Absolute path of the file read. */
  file: string;
  /** The file's folder: where a session must resolve the graph's external data (see graphIdentity for the files). */
  dir: string;
  /** graphIdentity of the file and of the external-data files its graph already referenced. */
  identity: string;
  /** Initializers whose bytes were left in the file (now external references to it). */
  referenced: number;
}

export interface ReadGraphOptions {
  /**
   * Initializers whose raw_data is at least this many bytes stay in the file (default 64 KiB). Below it they are
   * decoded: the passes read small constants' values (shapes, axes, scales; GraphIndex reads up to 4096 elements,
   * 32 KiB of int64), and an external reference costs ORT a file read per tensor.
   */
  inlineBelow?: number;
}

export class GraphFileError extends Error {
  override readonly name = 'GraphFileError';
}

const DEFAULT_INLINE_BELOW = 64 * 1024;
/** Largest read into the window: bounded however large the file. */
const WINDOW_MAX = 4 * 1024 * 1024;
/**
 * First read after a jump. The walk jumps over every large raw_data to read the next tensor's few header bytes; a
 * full window per jump would read GBs for a UNet with a thousand weights. Sequential reads double up to WINDOW_MAX.
 */
const WINDOW_MIN = 64 * 1024;
const IDENTITY_SPAN = 1024 * 1024;

// Field numbers of onnx.proto3 that the walk looks into; everything else is copied whole.
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** Reads the graph of `file`, leaving initializers of `inlineBelow` bytes or more in the file. */
export function readGraphFile(file: string, options: ReadGraphOptions = {}): GraphFile {
  const abs = path.resolve(file);
  const inlineBelow = Math.max(1, options.inlineBelow ?? DEFAULT_INLINE_BELOW);
  const fd = fs.openSync(abs, 'r');
  let walked: Walked;
  let modelIdentity: string;
  try {
    const size = fs.fstatSync(fd).size;
    // Fingerprinted through the same descriptor, so the identity describes the bytes that were walked.
    modelIdentity = fingerprint(fd, abs);
    walked = new GraphWalk(new FileWindow(fd, size, abs), inlineBelow, path.basename(abs)).model();
  } finally {
    fs.closeSync(fd);
  }
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(walked.bytes);
  } catch (err) {
    // protobufjs reports offsets in the walked buffer ("... at offset N", "index out of range: N + ..."); the file's
    // offset is what can be looked at.
    const message = (err as Error).message;
    const at = /(?:at offset|out of range:) (\d+)/.exec(message);
    const offset = at ? walked.fileOffset(Number(at[1])) : undefined;
    const detail = `a node or declaration inside the graph does not decode (${message.replace(/ at offset \d+/, '')})`;
    if (offset !== undefined) throw damaged(abs, offset, detail);
    throw new GraphFileError(`${abs}: damaged ONNX file: ${detail}; re-export the model or download it again`);
  }
  if (!model.graph) {
    throw new GraphFileError(`${abs}: no graph in this file; pass an ONNX model (the exported unet/model.onnx)`);
  }
  const external = externalLocations(model).filter((l) => l !== path.basename(abs));
  const identity = combineIdentities([modelIdentity, ...external.map((l) => locationIdentity(abs, l))]);
  return { model, file: abs, dir: path.dirname(abs), identity, referenced: walked.referenced };
}

export function encodeGraph(model: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Identity of a model file's content, and of the external-data files its graph references (`external`: locations
 * as written in the graph, relative to the file's folder), for cache keys.
 *
 * Trade-off: size + mtime + SHA-256 of the first and last MiB, not a hash of everything. Hashing a 1.7 GB UNet would
 * cost seconds at every load; re-exports, re-downloads and file replacements change the mtime (and in practice size,
 * header and tail too), so they are caught. An edit inside the file that keeps its size and has its mtime restored
 * is not: nothing that produces models does that.
 */
export function graphIdentity(file: string, external: readonly string[] = []): string {
  const abs = path.resolve(file);
  const fd = fs.openSync(abs, 'r');
  let own: string;
  try {
    own = fingerprint(fd, abs);
  } finally {
    fs.closeSync(fd);
  }
  const others = [...new Set(external)].filter((l) => l !== path.basename(abs));
  return combineIdentities([own, ...others.map((l) => locationIdentity(abs, l))]);
}

/** External-data locations the graph's initializers and top-level Constant nodes reference, first seen first. */
export function externalLocations(model: onnx.IModelProto): string[] {
  const tensors: onnx.ITensorProto[] = [...(model.graph?.initializer ?? [])];
  for (const node of model.graph?.node ?? []) for (const a of node.attribute ?? []) if (a.t) tensors.push(a.t);
  const found = new Set<string>();
  for (const t of tensors) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = (t.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (location) found.add(location);
  }
  return [...found];
}

function combineIdentities(parts: string[]): string {
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}

/** An external file that is missing still yields an identity: ORT reports the missing file when it loads the graph. */
function locationIdentity(modelFile: string, location: string): string {
  const abs = path.resolve(path.dirname(modelFile), location);
  let fd: number;
  try {
    fd = fs.openSync(abs, 'r');
  } catch {
    return `${location}:unreadable`;
  }
  try {
    return `${location}:${fingerprint(fd, abs)}`;
  } finally {
    fs.closeSync(fd);
  }
}

function fingerprint(fd: number, file: string): string {
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) throw new GraphFileError(`${file}: not a file; pass the model's .onnx file`);
  const hash = createHash('sha256');
  const spans: [number, number][] =
    stat.size <= 2 * IDENTITY_SPAN
      ? [[0, stat.size]]
      : [
          [0, IDENTITY_SPAN],
          [stat.size - IDENTITY_SPAN, IDENTITY_SPAN],
        ];
  for (const [at, length] of spans) hash.update(readExactly(fd, file, at, length));
  return `${stat.size}:${stat.mtimeMs}:${hash.digest('hex')}`;
}

function readExactly(fd: number, file: string, at: number, length: number, into?: Uint8Array): Uint8Array {
  const out = into ?? new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, length - done, at + done);
    if (n === 0) throw damaged(file, at + done, 'the file ended while it was being read (truncated?)');
    done += n;
  }
  return out;
}

function damaged(file: string, offset: number, detail: string): GraphFileError {
  return new GraphFileError(
    `${file}: damaged ONNX file at byte ${offset}: ${detail}; re-export the model or download it again`,
  );
}

/** Forward reads of a file through a bounded buffer. */
class FileWindow {
  private buf = new Uint8Array(WINDOW_MIN);
  private start = 0;
  private end = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
    readonly file: string,
  ) {}

  byte(pos: number): number {
    if (pos < this.start || pos >= this.end) this.load(pos);
    return this.buf[pos - this.start];
  }

  private load(pos: number): void {
    if (pos >= this.size) throw damaged(this.file, pos, 'the file ends in the middle of a field (truncated?)');
    const sequential = pos === this.end && this.end > 0;
    const want = sequential ? Math.min(this.buf.byteLength * 2, WINDOW_MAX) : WINDOW_MIN;
    if (want !== this.buf.byteLength) this.buf = new Uint8Array(want);
    const length = Math.min(want, this.size - pos);
    readExactly(this.fd, this.file, pos, length, this.buf.subarray(0, length));
    this.start = pos;
    this.end = pos + length;
  }

  /** Bytes [from, to) as a new array; large ranges are read straight into it rather than through the window. */
  copy(from: number, to: number): Uint8Array {
    if (to > this.size) throw damaged(this.file, this.size, 'the file ends in the middle of a field (truncated?)');
    if (from >= this.start && to <= this.end) return this.buf.slice(from - this.start, to - this.start);
    return readExactly(this.fd, this.file, from, to - from);
  }
}

interface Field {
  number: number;
  wire: number;
  /** Offset of the field's tag. */
  start: number;
  /** Offset of a length-delimited field's payload (after its length). */
  body: number;
  end: number;
}

/** Bytes of the output and where in the file they came from (-1: written by the walk). */
interface Part {
  bytes: Uint8Array;
  origin: number;
}

/** Output under construction: parts plus a pending range of the file to copy, merged while contiguous. */
class Chunks {
  readonly parts: Part[] = [];
  private flushed = 0;
  private from = -1;
  private to = -1;

  constructor(private readonly window: FileWindow) {}

  get length(): number {
    return this.flushed + (this.from < 0 ? 0 : this.to - this.from);
  }

  copy(from: number, to: number): void {
    if (from === this.to) {
      this.to = to;
      return;
    }
    this.flush();
    this.from = from;
    this.to = to;
  }

  push(bytes: Uint8Array): void {
    this.insert(undefined, [{ bytes, origin: -1 }]);
  }

  pushAll(other: Chunks): void {
    this.insert(undefined, other.done());
  }

  /** Adds parts at index `at` of the parts so far (the pending range included), or at the end. */
  insert(at: number | undefined, parts: Part[]): void {
    this.flush();
    at ??= this.parts.length;
    // Loops, not spread arguments: a graph can have tens of thousands of parts.
    const tail = this.parts.splice(at);
    for (const p of parts) this.parts.push(p);
    for (const p of tail) this.parts.push(p);
    this.flushed += parts.reduce((n, p) => n + p.bytes.byteLength, 0);
  }

  flush(): void {
    if (this.from < 0) return;
    const bytes = this.window.copy(this.from, this.to);
    this.parts.push({ bytes, origin: this.from });
    this.flushed += bytes.byteLength;
    this.from = this.to = -1;
  }

  /** Every part, the pending range read. */
  done(): Part[] {
    this.flush();
    return this.parts;
  }
}

/** The walked model in one buffer, and a map back from its offsets to the file's. */
interface Walked {
  bytes: Uint8Array;
  referenced: number;
  /** File offset of the byte at `offset` of `bytes`, when it was copied from the file. */
  fileOffset(offset: number): number | undefined;
}

class GraphWalk {
  private referenced = 0;

  constructor(
    private readonly w: FileWindow,
    private readonly inlineBelow: number,
    private readonly location: string,
  ) {}

  model(): Walked {
    const out = new Chunks(this.w);
    // Protobuf merges repeated occurrences of a message field, and ORT's parser does; protobufjs keeps only the
    // last. Concatenating the payloads is that merge, so every graph occurrence goes into one field, at the first.
    let graph: Chunks | undefined;
    let graphAt = 0;
    for (const f of this.fields(0, this.w.size, 'the model')) {
      if (f.number !== MODEL_GRAPH || f.wire !== WIRE_LEN) {
        out.copy(f.start, f.end);
        continue;
      }
      const body = this.graph(f.body, f.end);
      if (graph) {
        graph.pushAll(body);
        continue;
      }
      graph = body;
      out.flush();
      graphAt = out.parts.length;
    }
    if (graph) out.insert(graphAt, [{ bytes: header(MODEL_GRAPH, graph.length), origin: -1 }, ...graph.done()]);
    const parts = out.done();
    const starts: number[] = [];
    let at = 0;
    for (const p of parts) {
      starts.push(at);
      at += p.bytes.byteLength;
    }
    const fileOffset = (offset: number) => {
      let i = starts.length - 1;
      while (i > 0 && starts[i] > offset) i--;
      const p = parts[i];
      return p && p.origin >= 0 && offset - starts[i] < p.bytes.byteLength ? p.origin + offset - starts[i] : undefined;
    };
    return { bytes: concatBytes(parts.map((p) => p.bytes)), referenced: this.referenced, fileOffset };
  }

  private graph(start: number, end: number): Chunks {
    const out = new Chunks(this.w);
    for (const f of this.fields(start, end, 'the graph')) {
      const tensor = f.number === GRAPH_INITIALIZER && f.wire === WIRE_LEN ? this.tensor(f.body, f.end) : undefined;
      if (!tensor) {
        out.copy(f.start, f.end);
        continue;
      }
      out.push(header(GRAPH_INITIALIZER, tensor.length));
      out.pushAll(tensor);
    }
    return out;
  }

  /** The tensor re-emitted as an external reference when its raw_data is large enough, else undefined (copy it). */
  private tensor(start: number, end: number): Chunks | undefined {
    const fields = [...this.fields(start, end, 'an initializer')];
    // raw_data written more than once: the last occurrence wins, as in any protobuf parser.
    const raw = fields.filter((f) => f.number === TENSOR_RAW_DATA && f.wire === WIRE_LEN).pop();
    if (!raw || raw.end - raw.body < this.inlineBelow) return undefined;
    const out = new Chunks(this.w);
    const replaced = new Set([TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION]);
    for (const f of fields) if (!replaced.has(f.number)) out.copy(f.start, f.end);
    const entries: [string, string][] = [
      ['location', this.location],
      ['offset', String(raw.body)],
      ['length', String(raw.end - raw.body)],
    ];
    for (const [key, value] of entries) {
      const entry = concatBytes([stringField(1, key), stringField(2, value)]);
      out.push(concatBytes([header(TENSOR_EXTERNAL_DATA, entry.byteLength), entry]));
    }
    out.push(concatBytes([varint(TENSOR_DATA_LOCATION * 8 + WIRE_VARINT), varint(1)]));
    this.referenced++;
    return out;
  }

  /** The fields of the message occupying [start, end): tags and lengths are read, payloads only skipped. */
  private *fields(start: number, end: number, what: string): Generator<Field> {
    let pos = start;
    while (pos < end) {
      const fieldStart = pos;
      const [tag, afterTag] = this.varint(pos, end, what);
      const number = Math.floor(tag / 8);
      const wire = tag % 8;
      if (number === 0 || tag > 0xffffffff) {
        throw damaged(this.w.file, fieldStart, `invalid field number ${number} in ${what}`);
      }
      let body = afterTag;
      let fieldEnd: number;
      switch (wire) {
        case WIRE_VARINT:
          fieldEnd = this.varint(afterTag, end, what)[1];
          break;
        case WIRE_I64:
          fieldEnd = afterTag + 8;
          break;
        case WIRE_I32:
          fieldEnd = afterTag + 4;
          break;
        case WIRE_LEN: {
          const [length, afterLength] = this.varint(afterTag, end, what);
          body = afterLength;
          fieldEnd = afterLength + length;
          break;
        }
        case 3:
        case 4:
          throw damaged(
            this.w.file,
            fieldStart,
            `field ${number} of ${what} is a protobuf group, which no ONNX message uses`,
          );
        default:
          throw damaged(this.w.file, fieldStart, `field ${number} of ${what} has unknown wire type ${wire}`);
      }
      if (fieldEnd > end) {
        const where = end === this.w.size ? 'the end of the file (truncated?)' : `the end of ${what}`;
        throw damaged(this.w.file, fieldStart, `field ${number} of ${what} runs past ${where}`);
      }
      yield { number, wire, start: fieldStart, body, end: fieldEnd };
      pos = fieldEnd;
    }
  }

  /**
   * A base-128 varint of up to 64 bits (10 bytes). Values are only used as tags and lengths, both far below 2^53 in
   * a valid file, so a double holds them; a larger one fails the bounds checks as it should.
   */
  private varint(pos: number, end: number, what: string): [number, number] {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos + i >= end) {
        const where = end === this.w.size ? 'the file ends' : `${what} ends`;
        throw damaged(this.w.file, pos, `${where} inside a field header`);
      }
      const b = this.w.byte(pos + i);
      value += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return [value, pos + i + 1];
    }
    throw damaged(this.w.file, pos, `a varint in ${what} is longer than 10 bytes`);
  }
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

function header(field: number, length: number): Uint8Array {
  return concatBytes([varint(field * 8 + WIRE_LEN), varint(length)]);
}

function stringField(field: number, text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  return concatBytes([header(field, bytes.byteLength), bytes]);
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
