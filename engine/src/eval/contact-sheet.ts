// A grid image for looking at an edit at a glance: one labelled row per clip (source, edited, mask...), one
// column per sampled frame. Labels are drawn with a built-in bitmap font so the sheet needs no font files and
// renders identically everywhere.

import { ImageBatch } from '../diffusion/images';
import { encodePng } from '../media/png';

export interface ContactSheetRow {
  label: string;
  frames: ImageBatch;
}

export interface ContactSheetOptions {
  /** Frames per row, sampled evenly over the clip; default 8. */
  maxColumns?: number;
  /** Pixels between cells and around the edge; default 4. */
  gap?: number;
  /** Integer nearest-neighbour magnification; default enlarges frames shorter than 96 px. */
  scale?: number;
}

export interface ContactSheet {
  rgb: Uint8Array;
  width: number;
  height: number;
}

const BACKGROUND: [number, number, number] = [24, 24, 28];
const INK: [number, number, number] = [235, 235, 235];
const GLYPH_W = 5;
const GLYPH_H = 7;
const DEFAULT_TARGET_HEIGHT = 96;

// 5x7 glyphs, rows top to bottom, '#' = ink.
const FONT_SRC: Record<string, string> = {
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '####. #...# #...# #...# #...# #...# ####.',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  ' ': '..... ..... ..... ..... ..... ..... .....',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  ',': '..... ..... ..... ..... .##.. ..#.. .#...',
  '-': '..... ..... ..... ##### ..... ..... .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  '=': '..... ..... ##### ..... ##### ..... .....',
  _: '..... ..... ..... ..... ..... ..... #####',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  '/': '..... ....# ...#. ..#.. .#... #.... .....',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
  '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
};

/** Glyph rows as 5-bit masks, most significant bit = leftmost column. */
const FONT: Map<string, number[]> = new Map(
  Object.entries(FONT_SRC).map(([ch, src]) => [
    ch,
    src.split(' ').map((row) => {
      if (row.length !== GLYPH_W) throw new Error(`font glyph ${JSON.stringify(ch)} has a row of width ${row.length}`);
      let bits = 0;
      for (const px of row) bits = (bits << 1) | (px === '#' ? 1 : 0);
      return bits;
    }),
  ]),
);

/** Width in pixels of a label at font scale fs: glyphs 5 wide with 1 column of spacing between them. */
export function labelWidth(label: string, fs = 1): number {
  return label.length === 0 ? 0 : (label.length * (GLYPH_W + 1) - 1) * fs;
}

export function fill(
  rgb: Uint8Array,
  width: number,
  x: number,
  y: number,
  w: number,
  h: number,
  colour: [number, number, number],
): void {
  for (let yy = y; yy < y + h; yy++) {
    for (let xx = x; xx < x + w; xx++) {
      const i = (yy * width + xx) * 3;
      rgb[i] = colour[0];
      rgb[i + 1] = colour[1];
      rgb[i + 2] = colour[2];
    }
  }
}

export function drawText(rgb: Uint8Array, width: number, x: number, y: number, text: string, fs: number): void {
  let cx = x;
  for (const raw of text.toUpperCase()) {
    const glyph = FONT.get(raw) ?? FONT.get('?')!;
    for (let gy = 0; gy < GLYPH_H; gy++) {
      for (let gx = 0; gx < GLYPH_W; gx++) {
        if ((glyph[gy] >> (GLYPH_W - 1 - gx)) & 1) fill(rgb, width, cx + gx * fs, y + gy * fs, fs, fs, INK);
      }
    }
    cx += (GLYPH_W + 1) * fs;
  }
}

/**
 * Frame indices shown for a clip of n frames in `columns` columns: first and last always, the rest evenly
 * between, so the sheet shows the clip's whole time span. Fewer frames than columns shows every frame.
 */
export function sampleIndices(n: number, columns: number): number[] {
  if (n <= columns) return Array.from({ length: n }, (_, i) => i);
  if (columns === 1) return [0];
  return Array.from({ length: columns }, (_, j) => Math.round((j * (n - 1)) / (columns - 1)));
}

/**
 * Layout, all in sheet pixels, s = scale, fs = font scale (2 when cells are at least 32 px tall, else 1):
 *   cell = (max frame width · s) x (max frame height · s) over all rows; a smaller frame sits at its cell's top-left
 *   row height = max(cell height, 7·fs); label column width L = widest label (0 when every label is empty)
 *   width  = gap + (L > 0 ? L + gap : 0) + columns · (cell width + gap)
 *   height = gap + rows · (row height + gap)
 * Frame j of row r starts at x = gap + (L > 0 ? L + gap : 0) + j · (cell width + gap), y = gap + r · (row height + gap).
 */
export function contactSheet(rows: ContactSheetRow[], opts: ContactSheetOptions = {}): ContactSheet {
  if (rows.length === 0) throw new Error('contactSheet: no rows');
  const maxColumns = opts.maxColumns ?? 8;
  const gap = opts.gap ?? 4;
  if (!Number.isInteger(maxColumns) || maxColumns < 1)
    throw new Error(`contactSheet: maxColumns must be a positive integer, got ${maxColumns}`);
  if (!Number.isInteger(gap) || gap < 0)
    throw new Error(`contactSheet: gap must be a non-negative integer, got ${gap}`);
  for (const r of rows) {
    const f = r.frames;
    if (f.data.length !== f.n * 3 * f.height * f.width) {
      throw new Error(
        `contactSheet: row "${r.label}" is ${f.n}x3x${f.height}x${f.width} but has ${f.data.length} values`,
      );
    }
  }
  const frameW = Math.max(...rows.map((r) => r.frames.width));
  const frameH = Math.max(...rows.map((r) => r.frames.height));
  const scale = opts.scale ?? Math.max(1, Math.floor(DEFAULT_TARGET_HEIGHT / Math.max(1, frameH)));
  if (!Number.isInteger(scale) || scale < 1)
    throw new Error(`contactSheet: scale must be a positive integer, got ${scale}`);

  const cellW = frameW * scale;
  const cellH = frameH * scale;
  const fs = cellH >= 32 ? 2 : 1;
  const rowH = Math.max(cellH, GLYPH_H * fs);
  const labelW = Math.max(...rows.map((r) => labelWidth(r.label, fs)));
  const left = gap + (labelW > 0 ? labelW + gap : 0);
  const columns = Math.min(maxColumns, Math.max(1, ...rows.map((r) => r.frames.n)));
  const width = left + columns * (cellW + gap);
  const height = gap + rows.length * (rowH + gap);

  const rgb = new Uint8Array(width * height * 3);
  fill(rgb, width, 0, 0, width, height, BACKGROUND);

  rows.forEach((row, r) => {
    const top = gap + r * (rowH + gap);
    if (row.label.length > 0) drawText(rgb, width, gap, top + Math.floor((rowH - GLYPH_H * fs) / 2), row.label, fs);
    const { n, height: h, width: w, data } = row.frames;
    const hw = h * w;
    sampleIndices(n, columns).forEach((f, j) => {
      const x0 = left + j * (cellW + gap);
      for (let y = 0; y < h * scale; y++) {
        const sy = Math.floor(y / scale);
        for (let x = 0; x < w * scale; x++) {
          const p = sy * w + Math.floor(x / scale);
          const o = ((top + y) * width + x0 + x) * 3;
          for (let c = 0; c < 3; c++) {
            // Same rounding as toRgb24, so a sheet pixel equals the frame's exported pixel.
            const v = Math.round((data[(f * 3 + c) * hw + p] + 1) * 127.5);
            rgb[o + c] = v < 0 ? 0 : v > 255 ? 255 : v;
          }
        }
      }
    });
  });
  return { rgb, width, height };
}

export function contactSheetPng(rows: ContactSheetRow[], opts?: ContactSheetOptions): Buffer {
  const sheet = contactSheet(rows, opts);
  return encodePng(sheet.rgb, sheet.width, sheet.height, 3);
}
