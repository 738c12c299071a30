// Minimal PNG writer and reader on node:zlib, so reports and user mattes need no image dependency. The reader
// covers what editors actually export for mattes (8-bit gray, gray+alpha, RGB, RGBA); anything else is
// refused with a message naming what is supported, rather than decoded wrongly.

import { deflateSync, inflateSync } from 'node:zlib';
import { ImageBatch, MaskBatch, sliceFrames, toRgb24 } from '../diffusion/images';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const SUPPORTED = 'supported: 8-bit, non-interlaced, colour type 0 (gray), 2 (RGB), 4 (gray+alpha) or 6 (RGBA)';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO 3309 / PNG), the checksum over each chunk's type and data. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out, 4, 8 + data.length), 8 + data.length);
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/** Filter one row with type `type` into out (length stride), bpp bytes per pixel, prev = previous raw row or null. */
function filterRow(type: number, row: Uint8Array, prev: Uint8Array | null, bpp: number, out: Uint8Array): void {
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0;
    const b = prev ? prev[i] : 0;
    const c = prev && i >= bpp ? prev[i - bpp] : 0;
    let pred: number;
    switch (type) {
      case 0:
        pred = 0;
        break;
      case 1:
        pred = a;
        break;
      case 2:
        pred = b;
        break;
      case 3:
        pred = (a + b) >>> 1;
        break;
      default:
        pred = paeth(a, b, c);
        break;
    }
    out[i] = (row[i] - pred) & 0xff;
  }
}

/**
 * A PNG of 8-bit RGB or RGBA pixels (packed, row after row). Each row gets the filter with the smallest sum of
 * absolute signed residuals, libpng's heuristic, which usually shrinks smooth frames a lot for little work.
 */
export function encodePng(rgb: Uint8Array, width: number, height: number, channels: 3 | 4 = 3): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`encodePng: width and height must be positive integers, got ${width}x${height}`);
  }
  if (channels !== 3 && channels !== 4) throw new Error(`encodePng: channels must be 3 or 4, got ${String(channels)}`);
  return encodeRaw(rgb, width, height, channels, channels === 3 ? 2 : 6);
}

function encodeRaw(pixels: Uint8Array, width: number, height: number, channels: number, colourType: number): Buffer {
  const stride = width * channels;
  if (pixels.length !== stride * height) {
    throw new Error(`encodePng: ${width}x${height}x${channels} needs ${stride * height} bytes, got ${pixels.length}`);
  }
  const raw = new Uint8Array((stride + 1) * height);
  const trial = new Uint8Array(stride);
  const best = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : null;
    let bestType = 0;
    let bestScore = Infinity;
    for (let type = 0; type < 5; type++) {
      filterRow(type, row, prev, channels, trial);
      let score = 0;
      for (let i = 0; i < stride; i++) score += trial[i] < 128 ? trial[i] : 256 - trial[i];
      if (score < bestScore) {
        bestScore = score;
        bestType = type;
        best.set(trial);
      }
    }
    raw[y * (stride + 1)] = bestType;
    raw.set(best, y * (stride + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = colourType;
  ihdr[10] = 0; // compression: deflate
  ihdr[11] = 0; // filter method: adaptive
  ihdr[12] = 0; // no interlace
  return Buffer.concat([
    SIGNATURE,
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

export interface DecodedPng {
  width: number;
  height: number;
  /** 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** Packed 8-bit samples, row after row. */
  data: Uint8Array;
}

const CHANNELS_BY_COLOUR_TYPE: Record<number, 1 | 2 | 3 | 4> = { 0: 1, 2: 3, 4: 2, 6: 4 };

export function decodePng(buf: Buffer): DecodedPng {
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIGNATURE))
    throw new Error('decodePng: not a PNG file (bad signature)');
  let pos = 8;
  let header: { width: number; height: number; channels: 1 | 2 | 3 | 4 } | null = null;
  const idat: Buffer[] = [];
  let ended = false;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) throw new Error(`decodePng: truncated chunk header at byte ${pos}`);
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    const dataStart = pos + 8;
    const dataEnd = dataStart + len;
    if (dataEnd + 4 > buf.length) throw new Error(`decodePng: truncated ${type} chunk at byte ${pos}`);
    const stored = buf.readUInt32BE(dataEnd);
    const actual = crc32(buf, pos + 4, dataEnd);
    if (stored !== actual) {
      throw new Error(
        `decodePng: CRC mismatch in ${type} chunk at byte ${pos} (stored ${stored.toString(16)}, computed ${actual.toString(16)}); file is corrupt`,
      );
    }
    const data = buf.subarray(dataStart, dataEnd);
    if (type === 'IHDR') {
      if (len !== 13) throw new Error(`decodePng: IHDR must be 13 bytes, got ${len}`);
      const width = data.readUInt32BE(0);
      const height = data.readUInt32BE(4);
      const depth = data[8];
      const colourType = data[9];
      if (width === 0 || height === 0) throw new Error(`decodePng: empty image ${width}x${height}`);
      if (colourType === 3) throw new Error(`decodePng: palette PNGs (colour type 3) are not supported; ${SUPPORTED}`);
      const channels = CHANNELS_BY_COLOUR_TYPE[colourType];
      if (!channels) throw new Error(`decodePng: unknown colour type ${colourType}; ${SUPPORTED}`);
      if (depth !== 8) throw new Error(`decodePng: bit depth ${depth} is not supported; ${SUPPORTED}`);
      if (data[10] !== 0 || data[11] !== 0)
        throw new Error(`decodePng: unknown compression/filter method ${data[10]}/${data[11]}`);
      if (data[12] !== 0) throw new Error(`decodePng: interlaced (Adam7) PNGs are not supported; ${SUPPORTED}`);
      header = { width, height, channels };
    } else if (!header) {
      throw new Error(`decodePng: first chunk is ${type}, expected IHDR`);
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      ended = true;
      break;
    } else if ((type.charCodeAt(0) & 0x20) === 0 && type !== 'PLTE') {
      // Upper-case first letter marks a critical chunk: skipping one we do not understand could misread pixels.
      // PLTE is only a display hint for the truecolour types accepted here.
      throw new Error(`decodePng: unknown critical chunk ${type}`);
    }
    pos = dataEnd + 4;
  }
  if (!header) throw new Error('decodePng: no IHDR chunk');
  if (!ended) throw new Error('decodePng: missing IEND chunk (truncated file?)');
  if (idat.length === 0) throw new Error('decodePng: no IDAT chunk');

  const { width, height, channels } = header;
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat));
  } catch (e) {
    throw new Error(`decodePng: image data does not inflate: ${(e as Error).message}`, { cause: e });
  }
  const stride = width * channels;
  if (raw.length < (stride + 1) * height) {
    throw new Error(
      `decodePng: image data has ${raw.length} bytes, ${width}x${height}x${channels} needs ${(stride + 1) * height}`,
    );
  }
  const out = new Uint8Array(stride * height);
  const bpp = channels;
  for (let y = 0; y < height; y++) {
    const type = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const dst = y * stride;
    const up = dst - stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? out[dst + i - bpp] : 0;
      const b = y > 0 ? out[up + i] : 0;
      const c = y > 0 && i >= bpp ? out[up + i - bpp] : 0;
      let pred: number;
      switch (type) {
        case 0:
          pred = 0;
          break;
        case 1:
          pred = a;
          break;
        case 2:
          pred = b;
          break;
        case 3:
          pred = (a + b) >>> 1;
          break;
        case 4:
          pred = paeth(a, b, c);
          break;
        default:
          throw new Error(`decodePng: row ${y} has unknown filter type ${type}`);
      }
      out[dst + i] = (raw[src + i] + pred) & 0xff;
    }
  }
  return { width, height, channels, data: out };
}

/** One frame of a planar [-1, 1] batch as an RGB PNG. */
export function imageBatchFramePng(batch: ImageBatch, index: number): Buffer {
  if (!Number.isInteger(index) || index < 0 || index >= batch.n)
    throw new Error(`imageBatchFramePng: frame ${index} out of range 0..${batch.n - 1}`);
  return encodePng(toRgb24(sliceFrames(batch, index, 1)), batch.width, batch.height, 3);
}

/** One matte of a [0, 1] mask batch as a gray PNG (0 -> black, 1 -> white). */
export function maskPng(mask: MaskBatch, index: number): Buffer {
  if (!Number.isInteger(index) || index < 0 || index >= mask.n)
    throw new Error(`maskPng: mask ${index} out of range 0..${mask.n - 1}`);
  const hw = mask.height * mask.width;
  const gray = new Uint8Array(hw);
  for (let p = 0; p < hw; p++) {
    const v = Math.round(mask.data[index * hw + p] * 255);
    gray[p] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return encodeRaw(gray, mask.width, mask.height, 1, 0);
}
