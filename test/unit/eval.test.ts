import { deflateSync } from 'node:zlib';
import { ImageBatch, MaskBatch, imageBatch, sliceFrames, toRgb24 } from '../../engine/src/diffusion/images';
import { makeMovingObjectClip } from '../../engine/src/eval/synthetic-clip';
import { colourError, maskIoU, maskedPsnr, meanColour, mse, psnr, warpError } from '../../engine/src/eval/metrics';
import { decodePng, encodePng, imageBatchFramePng, maskPng } from '../../engine/src/media/png';
import { contactSheet, contactSheetPng, labelWidth, sampleIndices } from '../../engine/src/eval/contact-sheet';

function constantBatch(n: number, h: number, w: number, rgb: [number, number, number]): ImageBatch {
  const b = imageBatch(n, h, w);
  const hw = h * w;
  for (let f = 0; f < n; f++) for (let c = 0; c < 3; c++) b.data.fill(rgb[c], (f * 3 + c) * hw, (f * 3 + c + 1) * hw);
  return b;
}

function mask(n: number, h: number, w: number, on: (f: number, y: number, x: number) => boolean): MaskBatch {
  const data = new Float32Array(n * h * w);
  for (let f = 0; f < n; f++)
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[(f * h + y) * w + x] = on(f, y, x) ? 1 : 0;
  return { n, height: h, width: w, data };
}

/** Deterministic bytes without Math.random, so failures reproduce. */
function pseudoBytes(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe('synthetic moving-object clip', () => {
  const base = {
    frames: 6,
    width: 64,
    height: 48,
    objectColour: [0.6, -0.4, -0.5] as [number, number, number],
    backgroundColour: [-0.3, 0.2, 0.5] as [number, number, number],
    size: 0.25,
    velocity: [4, 1] as [number, number],
    seed: 7,
  };

  it('has the requested frame count and sizes', () => {
    const clip = makeMovingObjectClip(base);
    expect(clip.frames).toMatchObject({ n: 6, height: 48, width: 64 });
    expect(clip.frames.data.length).toBe(6 * 3 * 48 * 64);
    expect(clip.objectMask).toMatchObject({ n: 6, height: 48, width: 64 });
    expect(clip.objectMask.data.length).toBe(6 * 48 * 64);
    expect(clip.flow.length).toBe(5 * 2 * 48 * 64);
    expect(clip.occlusion).toMatchObject({ n: 5, height: 48, width: 64 });
    for (const v of clip.frames.data) expect(Math.abs(v)).toBeLessThanOrEqual(1);
  });

  it('square mask is exactly side² pixels, binary, and moves by the velocity', () => {
    const clip = makeMovingObjectClip(base);
    const hw = 48 * 64;
    const side = Math.round(0.25 * 48);
    for (let t = 0; t < 6; t++) {
      let area = 0;
      for (let p = 0; p < hw; p++) {
        const m = clip.objectMask.data[t * hw + p];
        expect(m === 0 || m === 1).toBe(true);
        area += m;
      }
      expect(area).toBe(side * side);
      const [x, y] = clip.positions[t];
      expect(clip.objectMask.data[t * hw + y * 64 + x]).toBe(1);
      expect(clip.objectMask.data[t * hw + (y + side - 1) * 64 + x + side - 1]).toBe(1);
      expect(clip.objectMask.data[t * hw + y * 64 + x + side]).toBe(0);
      if (t > 0) expect([x - clip.positions[t - 1][0], y - clip.positions[t - 1][1]]).toEqual([4, 1]);
    }
  });

  it('circle mask area is close to πr²', () => {
    const clip = makeMovingObjectClip({ ...base, shape: 'circle', width: 96, height: 96, size: 0.4 });
    const r = Math.round(0.4 * 96) / 2;
    const hw = 96 * 96;
    for (let t = 0; t < clip.frames.n; t++) {
      let area = 0;
      for (let p = 0; p < hw; p++) area += clip.objectMask.data[t * hw + p];
      expect(Math.abs(area - Math.PI * r * r) / (Math.PI * r * r)).toBeLessThan(0.03);
    }
  });

  it('object pixels carry the object colour and background pixels the background colour, within the noise', () => {
    const clip = makeMovingObjectClip(base);
    const inside = meanColour(clip.frames, clip.objectMask, 'inside');
    const outside = meanColour(clip.frames, clip.objectMask, 'outside');
    for (let c = 0; c < 3; c++) {
      // 864 object pixels with std 0.03: the mean's std is ~0.001.
      expect(Math.abs(inside[c] - base.objectColour[c])).toBeLessThan(0.006);
      expect(Math.abs(outside[c] - base.backgroundColour[c])).toBeLessThan(0.003);
    }
    // Per-pixel Euclidean distance of 3 independent N(0, 0.03²) channels averages 0.03·√(8/π) ≈ 0.048.
    const e = colourError(clip.frames, clip.objectMask, base.objectColour, 'inside');
    expect(e).toBeGreaterThan(0.035);
    expect(e).toBeLessThan(0.06);
  });

  it('is deterministic from the seed', () => {
    const a = makeMovingObjectClip(base);
    const b = makeMovingObjectClip(base);
    const c = makeMovingObjectClip({ ...base, seed: 8 });
    expect(Buffer.from(a.frames.data.buffer).equals(Buffer.from(b.frames.data.buffer))).toBe(true);
    expect(Buffer.from(a.frames.data.buffer).equals(Buffer.from(c.frames.data.buffer))).toBe(false);
    expect(mse(a.objectMask.data, c.objectMask.data)).toBe(0);
  });

  it('noise 0 gives flat colours', () => {
    const clip = makeMovingObjectClip({ ...base, noise: 0 });
    expect(colourError(clip.frames, clip.objectMask, base.objectColour, 'inside')).toBeCloseTo(0, 6);
    expect(colourError(clip.frames, clip.objectMask, base.backgroundColour, 'outside')).toBeCloseTo(0, 6);
  });

  it('default velocity moves left to right across about half the frame', () => {
    const clip = makeMovingObjectClip({ ...base, velocity: undefined, frames: 9 });
    const dx = clip.positions[8][0] - clip.positions[0][0];
    expect(clip.positions[8][1]).toBe(clip.positions[0][1]);
    expect(dx).toBeGreaterThan(0.4 * 64);
    expect(dx).toBeLessThan(0.6 * 64);
  });

  it('the exact flow warps frame t+1 onto frame t; zero or reversed flow does not', () => {
    for (const shape of ['square', 'circle'] as const) {
      const clip = makeMovingObjectClip({ ...base, shape });
      const exact = warpError(clip.frames, clip.flow, clip.occlusion);
      expect(exact).toBeLessThanOrEqual(1e-4);
      const still = warpError(clip.frames, new Float32Array(clip.flow.length), clip.occlusion);
      expect(still).toBeGreaterThan(1e-3);
      expect(still).toBeGreaterThan(100 * Math.max(exact, 1e-7));
      const reversed = warpError(
        clip.frames,
        clip.flow.map((v) => -v),
        clip.occlusion,
      );
      expect(reversed).toBeGreaterThan(1e-3);
    }
  });

  it('object leaving the frame: out-of-frame flow targets are excluded', () => {
    const clip = makeMovingObjectClip({ ...base, velocity: [16, 0], frames: 5 });
    // The path is longer than the frame: the object starts cut by the left edge and leaves on the right.
    expect(clip.positions[0][0]).toBeLessThan(0);
    expect(clip.positions[4][0] + 12).toBeGreaterThan(64);
    const hw = 48 * 64;
    let leaving = 0;
    for (let t = 0; t < 4; t++) for (let p = 0; p < hw; p++) if ((p % 64) + clip.flow[t * 2 * hw + p] > 63) leaving++;
    expect(leaving).toBeGreaterThan(0);
    expect(warpError(clip.frames, clip.flow, clip.occlusion)).toBeLessThanOrEqual(1e-4);
  });
});

describe('metrics', () => {
  it('psnr of a constant offset has the closed-form value', () => {
    const a = constantBatch(2, 4, 5, [0, 0, 0]);
    // 0.02 is not exact in float32, hence closeTo rather than toBe.
    expect(psnr(a, constantBatch(2, 4, 5, [0.02, 0.02, 0.02]))).toBeCloseTo(10 * Math.log10(4 / 0.0004), 5);
    expect(psnr(a, constantBatch(2, 4, 5, [0.02, 0.02, 0.02]))).toBeCloseTo(40, 5);
    // 0.5 is exact: MSE 0.25, PSNR = 10·log10(4 / 0.25).
    expect(psnr(a, constantBatch(2, 4, 5, [0.5, -0.5, 0.5]))).toBeCloseTo(10 * Math.log10(16), 10);
    expect(psnr(a, constantBatch(2, 4, 5, [0.5, -0.5, 0.5]), 1)).toBeCloseTo(10 * Math.log10(4), 10);
  });

  it('psnr is Infinity for identical batches', () => {
    const clip = makeMovingObjectClip({
      frames: 2,
      width: 8,
      height: 8,
      objectColour: [1, 0, 0],
      backgroundColour: [0, 0, 1],
    });
    expect(psnr(clip.frames, sliceFrames(clip.frames, 0, 2))).toBe(Infinity);
  });

  it('mse averages squared differences', () => {
    expect(mse(new Float32Array([0, 1, 2, 3]), new Float32Array([1, 1, 0, 3]))).toBe(5 / 4);
    expect(() => mse(new Float32Array(3), new Float32Array(4))).toThrow(/3 vs 4/);
  });

  it('maskedPsnr ignores the other region', () => {
    const a = constantBatch(1, 4, 4, [0, 0, 0]);
    const b = constantBatch(1, 4, 4, [0, 0, 0]);
    const m = mask(1, 4, 4, (_f, y) => y < 2);
    // Change only the inside (top half) of b, by 0.5 in every channel, and put garbage weight nowhere else.
    for (let c = 0; c < 3; c++) for (let p = 0; p < 8; p++) b.data[c * 16 + p] = 0.5;
    expect(maskedPsnr(a, b, m, 'outside')).toBe(Infinity);
    expect(maskedPsnr(a, b, m, 'inside')).toBeCloseTo(10 * Math.log10(4 / 0.25), 10);
    // Whole-image PSNR dilutes the error by the area: MSE 0.125.
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(4 / 0.125), 10);
    // Changing the outside changes only the outside number.
    for (let c = 0; c < 3; c++) b.data[c * 16 + 15] = -1;
    expect(maskedPsnr(a, b, m, 'inside')).toBeCloseTo(10 * Math.log10(4 / 0.25), 10);
    expect(maskedPsnr(a, b, m, 'outside')).toBeCloseTo(10 * Math.log10(4 / (1 / 8)), 10);
    expect(
      maskedPsnr(
        a,
        b,
        mask(1, 4, 4, () => true),
        'outside',
      ),
    ).toBeNaN();
  });

  it('meanColour and colourError over hand-made regions', () => {
    const b = constantBatch(2, 2, 2, [0.2, 0.4, -0.6]);
    // Frame 1, pixel 3 is a different colour and is the only "inside" pixel of frame 1.
    b.data[(1 * 3 + 0) * 4 + 3] = -1;
    b.data[(1 * 3 + 1) * 4 + 3] = 1;
    b.data[(1 * 3 + 2) * 4 + 3] = 0;
    const m = mask(2, 2, 2, (f, y, x) => (f === 0 ? x === 0 : y === 1 && x === 1));
    const inside = meanColour(b, m, 'inside');
    // Inside: 2 pixels of (0.2, 0.4, -0.6) and 1 of (-1, 1, 0).
    expect(inside[0]).toBeCloseTo((0.4 - 1) / 3, 6);
    expect(inside[1]).toBeCloseTo((0.8 + 1) / 3, 6);
    expect(inside[2]).toBeCloseTo(-1.2 / 3, 6);
    expect(meanColour(b, m, 'outside').map((v) => Number(v.toFixed(6)))).toEqual([0.2, 0.4, -0.6]);
    // Distances to (0.2, 0.4, -0.6): 0, 0 and √(1.44 + 0.36 + 0.36).
    expect(colourError(b, m, [0.2, 0.4, -0.6])).toBeCloseTo(Math.sqrt(2.16) / 3, 6);
    expect(colourError(b, m, [0.2, 0.4, -0.6], 'outside')).toBeCloseTo(0, 6);
    // A 3-4-5 triangle in the red-green plane.
    expect(colourError(b, m, [0.5, 0.8, -0.6], 'outside')).toBeCloseTo(0.5, 6);
    // Soft weights: half weight on the odd pixel.
    const soft: MaskBatch = { ...m, data: m.data.map((v, i) => (i === 7 ? 0.5 : v)) };
    expect(colourError(b, soft, [0.2, 0.4, -0.6])).toBeCloseTo((0.5 * Math.sqrt(2.16)) / 2.5, 6);
  });

  it('maskIoU gives exact fractions', () => {
    const a = mask(1, 2, 4, (_f, y) => y === 0); // pixels 0..3
    const b = mask(1, 2, 4, (_f, y, x) => (y === 0 && x >= 2) || (y === 1 && x < 2)); // pixels 2..5
    expect(maskIoU(a, b)).toBeCloseTo(2 / 6, 12);
    expect(maskIoU(a, a)).toBe(1);
    expect(
      maskIoU(
        a,
        mask(1, 2, 4, (_f, y) => y === 1),
      ),
    ).toBe(0);
    expect(
      maskIoU(
        mask(1, 2, 4, () => false),
        mask(1, 2, 4, () => false),
      ),
    ).toBe(1);
    // 0.6 passes 0.5 but not 0.7.
    const soft: MaskBatch = { ...a, data: a.data.map((v) => v * 0.6) };
    expect(maskIoU(soft, a)).toBe(1);
    expect(maskIoU(soft, a, 0.7)).toBe(0);
  });

  it('size mismatches throw and name the sizes', () => {
    const a = imageBatch(2, 4, 5);
    const b = imageBatch(2, 5, 4);
    expect(() => psnr(a, b)).toThrow(/2x4x5 vs 2x5x4/);
    expect(() => psnr(a, imageBatch(3, 4, 5))).toThrow(/sizes differ/);
    expect(() =>
      maskedPsnr(
        a,
        a,
        mask(2, 4, 4, () => true),
        'inside',
      ),
    ).toThrow(/mask size 2x4x4 differs from image size 2x4x5/);
    expect(() =>
      meanColour(
        a,
        mask(1, 4, 5, () => true),
        'inside',
      ),
    ).toThrow(/1x4x5/);
    expect(() =>
      colourError(
        a,
        mask(2, 5, 5, () => true),
        [0, 0, 0],
      ),
    ).toThrow(/2x5x5/);
    expect(() =>
      maskIoU(
        mask(1, 2, 2, () => true),
        mask(1, 2, 3, () => true),
      ),
    ).toThrow(/1x2x2 vs 1x2x3/);
    expect(() => warpError(a, new Float32Array(10))).toThrow(/flow has 10 values, expected 1x2x4x5/);
    expect(() =>
      warpError(
        a,
        new Float32Array(40),
        mask(2, 4, 5, () => false),
      ),
    ).toThrow(/occlusion size 2x4x5/);
    expect(() => warpError(imageBatch(1, 4, 5), new Float32Array(0))).toThrow(/at least 2 frames/);
  });

  it('warpError: hand-computed values, bilinear sampling and the forward-flow direction', () => {
    // Frame 0 black, frame 1 white, zero flow: error 1 in [0,1] units.
    const bw = imageBatch(2, 2, 3);
    bw.data.fill(-1, 0, 18);
    bw.data.fill(1, 18, 36);
    expect(warpError(bw, new Float32Array(12))).toBeCloseTo(1, 10);
    // Every flow target outside the frame: nothing visible, contributes 0.
    expect(warpError(bw, new Float32Array(12).fill(5))).toBe(0);
    // Occlusion mask excluding the bottom row leaves the same per-pixel error.
    expect(
      warpError(
        bw,
        new Float32Array(12),
        mask(1, 2, 3, (_f, y) => y === 1),
      ),
    ).toBeCloseTo(1, 10);

    // 1x4 ramp: frame 1 channel values v1(x) = 0.2·x - 0.5. Frame 0 shows the content that moves +0.5 px:
    // O_0(x) = O_1(x + 0.5), so forward flow is +0.5 and the warp samples O_1 between pixels.
    const ramp = imageBatch(2, 1, 4);
    for (let c = 0; c < 3; c++) {
      for (let x = 0; x < 4; x++) {
        ramp.data[(3 + c) * 4 + x] = 0.2 * x - 0.5;
        ramp.data[c * 4 + x] = 0.2 * (x + 0.5) - 0.5;
      }
    }
    const flow = new Float32Array(8);
    flow.fill(0.5, 0, 4);
    // Pixel 3 points to 3.5, outside the frame, and is dropped; the other three match exactly.
    expect(warpError(ramp, flow)).toBeCloseTo(0, 10);
    // The opposite sign samples 0.2 away in [-1,1], i.e. 0.1 in [0,1]; pixel 0 (target -0.5) is dropped.
    expect(
      warpError(
        ramp,
        flow.map((v) => -v),
      ),
    ).toBeCloseTo(0.01, 8);
  });
});

// ---- PNG helpers written independently of engine/src/eval/png.ts, so a shared bug cannot cancel out. ----

function testCrc(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}

function testChunk(type: string, data: Uint8Array): Buffer {
  const typeAndData = Buffer.concat([Buffer.from(type, 'ascii'), Buffer.from(data)]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(testCrc(typeAndData));
  return Buffer.concat([len, typeAndData, crc]);
}

const PNG_SIG = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);

function buildPng(opts: {
  width: number;
  height: number;
  colourType: number;
  bitDepth?: number;
  interlace?: number;
  pixels: Uint8Array;
  channels: number;
  filter: (y: number) => number;
  idatPieces?: number;
  extra?: Buffer[];
}): Buffer {
  const { width, height, channels, pixels } = opts;
  const stride = width * channels;
  const raw: number[] = [];
  for (let y = 0; y < height; y++) {
    const ft = opts.filter(y);
    raw.push(ft);
    for (let i = 0; i < stride; i++) {
      const x = pixels[y * stride + i];
      const a = i >= channels ? pixels[y * stride + i - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      const c = y > 0 && i >= channels ? pixels[(y - 1) * stride + i - channels] : 0;
      let pred = 0;
      if (ft === 1) pred = a;
      else if (ft === 2) pred = b;
      else if (ft === 3) pred = Math.floor((a + b) / 2);
      else if (ft === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a),
          pb = Math.abs(p - b),
          pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      raw.push((x - pred + 256) % 256);
    }
  }
  const z = deflateSync(Buffer.from(raw));
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = opts.bitDepth ?? 8;
  ihdr[9] = opts.colourType;
  ihdr[12] = opts.interlace ?? 0;
  const pieces = opts.idatPieces ?? 1;
  const idats: Buffer[] = [];
  const step = Math.ceil(z.length / pieces);
  for (let i = 0; i < z.length; i += step) idats.push(testChunk('IDAT', z.subarray(i, i + step)));
  return Buffer.concat([
    PNG_SIG,
    testChunk('IHDR', ihdr),
    ...(opts.extra ?? []),
    ...idats,
    testChunk('IEND', new Uint8Array(0)),
  ]);
}

describe('png', () => {
  it('CRC of the IEND chunk matches the well-known constant', () => {
    // Every PNG ends with 49 45 4E 44 AE 42 60 82.
    const png = encodePng(new Uint8Array(3), 1, 1);
    expect(png.subarray(png.length - 8).toString('hex')).toBe('49454e44ae426082');
    expect(png.subarray(0, 8).equals(PNG_SIG)).toBe(true);
    expect(png.toString('latin1', 12, 16)).toBe('IHDR');
  });

  it.each([3, 4] as const)('round-trips %i-channel images byte for byte', (channels) => {
    for (const [w, h] of [
      [1, 1],
      [7, 5],
      [33, 17],
    ]) {
      // Noise and a smooth gradient, so both unfiltered and predicted rows are exercised.
      const noisy = pseudoBytes(w * h * channels, w * 31 + h);
      const smooth = new Uint8Array(w * h * channels).map(
        (_, i) => (Math.floor(i / channels) % w) * 3 + Math.floor(i / (w * channels)) * 5 + (i % channels) * 40,
      );
      for (const pixels of [noisy, smooth]) {
        const png = encodePng(pixels, w, h, channels);
        const back = decodePng(png);
        expect(back).toMatchObject({ width: w, height: h, channels });
        expect(Buffer.from(back.data).equals(Buffer.from(pixels))).toBe(true);
      }
    }
  });

  it('encodePng checks the pixel count', () => {
    expect(() => encodePng(new Uint8Array(10), 2, 2, 3)).toThrow(/needs 12 bytes, got 10/);
  });

  const colourTypes: [number, number][] = [
    [0, 1],
    [2, 3],
    [4, 2],
    [6, 4],
  ];
  for (const [colourType, channels] of colourTypes) {
    it.each([0, 1, 2, 3, 4])(`decodes colour type ${colourType} with filter type %i on every row`, (filter) => {
      const w = 6;
      const h = 5;
      const pixels = pseudoBytes(w * h * channels, 100 + colourType * 10 + filter);
      const png = buildPng({ width: w, height: h, colourType, channels, pixels, filter: () => filter, idatPieces: 3 });
      const out = decodePng(png);
      expect(out).toMatchObject({ width: w, height: h, channels });
      expect(Array.from(out.data)).toEqual(Array.from(pixels));
    });
  }

  it('decodes mixed per-row filters and skips ancillary chunks', () => {
    const pixels = pseudoBytes(9 * 7 * 3, 5);
    const text = testChunk('tEXt', Buffer.from('Comment\0hello', 'latin1'));
    const png = buildPng({
      width: 9,
      height: 7,
      colourType: 2,
      channels: 3,
      pixels,
      filter: (y) => (y * 3) % 5,
      extra: [text],
    });
    expect(Array.from(decodePng(png).data)).toEqual(Array.from(pixels));
  });

  it('rejects corrupt and unsupported files with clear messages', () => {
    const good = encodePng(pseudoBytes(4 * 4 * 3, 1), 4, 4);
    const badCrc = Buffer.from(good);
    badCrc[8 + 8 + 13 + 3] ^= 0xff; // last byte of the IHDR CRC
    expect(() => decodePng(badCrc)).toThrow(/CRC mismatch in IHDR/);
    const badData = Buffer.from(good);
    badData[8 + 25 + 8] ^= 0x01; // first byte of IDAT data: CRC no longer matches
    expect(() => decodePng(badData)).toThrow(/CRC mismatch in IDAT/);
    const badSig = Buffer.from(good);
    badSig[1] = 0x51;
    expect(() => decodePng(badSig)).toThrow(/signature/);
    expect(() => decodePng(good.subarray(0, good.length - 12))).toThrow(/IEND/);

    const px = pseudoBytes(4 * 4 * 3, 2);
    expect(() =>
      decodePng(
        buildPng({ width: 4, height: 4, colourType: 2, channels: 3, pixels: px, filter: () => 0, interlace: 1 }),
      ),
    ).toThrow(/interlaced.*supported: 8-bit/);
    expect(() =>
      decodePng(
        buildPng({ width: 2, height: 4, colourType: 2, channels: 6, bitDepth: 16, pixels: px, filter: () => 0 }),
      ),
    ).toThrow(/bit depth 16 is not supported; supported: 8-bit/);
    expect(() =>
      decodePng(
        buildPng({ width: 4, height: 4, colourType: 3, channels: 1, pixels: px.subarray(0, 16), filter: () => 0 }),
      ),
    ).toThrow(/palette.*supported/);
  });

  it('frame and mask PNGs decode to the batch pixels', () => {
    const clip = makeMovingObjectClip({
      frames: 3,
      width: 10,
      height: 6,
      objectColour: [1, -1, 0],
      backgroundColour: [-0.5, 0.5, 0.25],
      seed: 3,
    });
    const frame = decodePng(imageBatchFramePng(clip.frames, 2));
    expect(frame).toMatchObject({ width: 10, height: 6, channels: 3 });
    expect(Array.from(frame.data)).toEqual(Array.from(toRgb24(sliceFrames(clip.frames, 2, 1))));
    const m = decodePng(maskPng(clip.objectMask, 1));
    expect(m).toMatchObject({ width: 10, height: 6, channels: 1 });
    expect(Array.from(m.data)).toEqual(Array.from(clip.objectMask.data.subarray(60, 120)).map((v) => v * 255));
    const soft: MaskBatch = { n: 1, height: 1, width: 3, data: new Float32Array([0, 0.5, 2]) };
    expect(Array.from(decodePng(maskPng(soft, 0)).data)).toEqual([0, 128, 255]);
    expect(() => imageBatchFramePng(clip.frames, 3)).toThrow(/out of range/);
  });
});

describe('contact sheet', () => {
  const clip = makeMovingObjectClip({
    frames: 10,
    width: 8,
    height: 6,
    objectColour: [1, 0.2, -1],
    backgroundColour: [-1, -0.2, 0.6],
    size: 0.5,
    velocity: [0, 0],
    seed: 11,
  });
  // Give every frame its own brightness so a wrongly sampled frame is caught.
  const source = imageBatch(
    10,
    6,
    8,
    clip.frames.data.map((v, i) => Math.max(-1, Math.min(1, v + Math.floor(i / 144) * 0.05 - 0.5))),
  );
  const edited = imageBatch(
    10,
    6,
    8,
    source.data.map((v) => -v),
  );

  it('samples frames evenly including first and last', () => {
    expect(sampleIndices(10, 4)).toEqual([0, 3, 6, 9]);
    expect(sampleIndices(3, 8)).toEqual([0, 1, 2]);
    expect(sampleIndices(5, 1)).toEqual([0]);
  });

  it('has exact dimensions and puts frame pixels where the layout says', () => {
    const sheet = contactSheet(
      [
        { label: 'Source', frames: source },
        { label: 'Edited', frames: edited },
      ],
      { maxColumns: 4, gap: 2, scale: 3 },
    );
    // cell 24x18, labels 6 chars = 35 px, left = 2 + 35 + 2 = 39, 4 columns of 24 + 2, rows of 18 + 2.
    expect(labelWidth('SOURCE')).toBe(35);
    expect(sheet.width).toBe(39 + 4 * 26);
    expect(sheet.height).toBe(2 + 2 * 20);
    expect(sheet.rgb.length).toBe(sheet.width * sheet.height * 3);

    const px = (x: number, y: number) =>
      Array.from(sheet.rgb.subarray((y * sheet.width + x) * 3, (y * sheet.width + x) * 3 + 3));
    for (const [row, batch] of [
      [0, source],
      [1, edited],
    ] as const) {
      for (const [col, frame] of [
        [0, 0],
        [2, 6],
        [3, 9],
      ]) {
        const rgb = toRgb24(sliceFrames(batch, frame, 1));
        for (const [fx, fy] of [
          [0, 0],
          [5, 4],
          [7, 5],
        ]) {
          const want = Array.from(rgb.subarray((fy * 8 + fx) * 3, (fy * 8 + fx) * 3 + 3));
          for (const [sx, sy] of [
            [0, 0],
            [2, 2],
            [1, 2],
          ]) {
            expect(px(39 + col * 26 + fx * 3 + sx, 2 + row * 20 + fy * 3 + sy)).toEqual(want);
          }
        }
      }
    }
    // Gaps are the dark background, the label area has light ink in it.
    const bg = px(0, 0);
    expect(Math.max(...bg)).toBeLessThan(50);
    expect(px(39 + 24, 10)).toEqual(bg);
    expect(px(39 + 10, 2 + 18)).toEqual(bg);
    let ink = 0;
    for (let y = 2; y < 20; y++) for (let x = 2; x < 37; x++) if (px(x, y)[0] > 200) ink++;
    expect(ink).toBeGreaterThan(30);
  });

  it('labels render legibly distinct glyphs', () => {
    const one = (label: string) => contactSheet([{ label, frames: source }], { maxColumns: 1, gap: 1, scale: 1 });
    const a = one('A');
    const b = one('B');
    expect(a.width).toBe(1 + 5 + 1 + 8 + 1);
    expect(Buffer.from(a.rgb).equals(Buffer.from(b.rgb))).toBe(false);
    // Lower case draws like upper case.
    expect(Buffer.from(one('edit: 50%').rgb).equals(Buffer.from(one('EDIT: 50%').rgb))).toBe(true);
  });

  it('scales small frames up by default and writes a decodable PNG', () => {
    const sheet = contactSheet([{ label: '', frames: source }], { maxColumns: 2, gap: 0 });
    // 96 / 6 = 16x; no label column when labels are empty.
    expect(sheet.width).toBe(2 * 8 * 16);
    expect(sheet.height).toBe(6 * 16);
    const png = decodePng(contactSheetPng([{ label: '', frames: source }], { maxColumns: 2, gap: 0 }));
    expect(png).toMatchObject({ width: sheet.width, height: sheet.height, channels: 3 });
    expect(Buffer.from(png.data).equals(Buffer.from(sheet.rgb))).toBe(true);
  });
});
