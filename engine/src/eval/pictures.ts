// Pictures for the evaluation report: mask overlays (where the automatic mask agrees with the true object) and a
// per-frame line chart, drawn with the contact sheet's bitmap font so the report needs no plotting library.
import type { ImageBatch, MaskBatch } from '../diffusion/images';
import { drawText, fill, labelWidth } from './contact-sheet';
import { encodePng } from '../media/png';

type Rgb8 = [number, number, number];

/** A palette that stays distinguishable on the dark chart background. */
export const SERIES_COLOURS: Rgb8[] = [
  [230, 159, 0],
  [86, 180, 233],
  [0, 158, 115],
  [240, 228, 66],
  [0, 114, 178],
  [213, 94, 0],
  [204, 121, 167],
  [255, 255, 255],
  [150, 150, 150],
  [120, 200, 120],
  [200, 120, 120],
];

/**
 * The source dimmed, with the automatic mask against the truth: green where both say object, red where only the
 * automatic mask does (edit leaks into the background), blue where only the truth does (object left unedited).
 * Both masks are read at > 0.5.
 */
export function maskOverlay(source: ImageBatch, auto: MaskBatch, truth: MaskBatch): ImageBatch {
  const { n, height: H, width: W } = source;
  const hw = H * W;
  const data = new Float32Array(n * 3 * hw);
  const tint: Record<string, [number, number, number]> = {
    tp: [-0.2, 0.9, -0.2],
    fp: [0.95, -0.3, -0.3],
    fn: [-0.3, -0.2, 0.95],
  };
  for (let f = 0; f < n; f++) {
    for (let p = 0; p < hw; p++) {
      const a = auto.data[f * hw + p] > 0.5;
      const t = truth.data[f * hw + p] > 0.5;
      const key = a && t ? 'tp' : a ? 'fp' : t ? 'fn' : '';
      for (let c = 0; c < 3; c++) {
        const v = source.data[(f * 3 + c) * hw + p];
        data[(f * 3 + c) * hw + p] = key ? 0.15 * v + 0.85 * tint[key][c] : 0.45 * v - 0.4;
      }
    }
  }
  return { n, height: H, width: W, data };
}

/** A [n, h, w] matte as gray frames for a contact sheet. */
export function maskFrames(mask: MaskBatch): ImageBatch {
  const hw = mask.height * mask.width;
  const data = new Float32Array(mask.n * 3 * hw);
  for (let f = 0; f < mask.n; f++)
    for (let c = 0; c < 3; c++) for (let p = 0; p < hw; p++) data[(f * 3 + c) * hw + p] = mask.data[f * hw + p] * 2 - 1;
  return { n: mask.n, height: mask.height, width: mask.width, data };
}

export interface Series {
  label: string;
  values: number[];
  colour?: Rgb8;
}

export interface ChartOptions {
  title: string;
  xLabel?: string;
  width?: number;
  height?: number;
  /** First x value (the x of values[0]); default 0. */
  x0?: number;
}

/** Short tick labels the bitmap font can draw: 3 significant digits, exponent form for small or large values. */
export function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 0.01 && a < 1000) return String(+v.toPrecision(3));
  return v.toExponential(1).replace('e', 'E').replace('+', '');
}

/** Line chart of one or more series over the same x (frame pairs), y from 0 to the largest value. */
export function lineChartPng(series: Series[], o: ChartOptions): Buffer {
  const width = o.width ?? 720;
  const height = o.height ?? 400;
  const rgb = new Uint8Array(width * height * 3);
  fill(rgb, width, 0, 0, width, height, [24, 24, 28]);
  const fs = 1;
  const finite = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
  const yMax = finite.length ? Math.max(...finite) * 1.05 || 1 : 1;
  const xCount = Math.max(2, ...series.map((s) => s.values.length));
  const legendRows = series.length;
  const left = 60;
  const right = 12;
  const top = 22 + legendRows * 11;
  const bottom = 28;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  drawText(rgb, width, left, 6, o.title, fs);
  series.forEach((s, i) => {
    const colour = s.colour ?? SERIES_COLOURS[i % SERIES_COLOURS.length];
    fill(rgb, width, left, 20 + i * 11, 14, 5, colour);
    drawText(rgb, width, left + 20, 19 + i * 11, s.label, fs);
  });
  const axis: Rgb8 = [110, 110, 120];
  fill(rgb, width, left, top, 1, plotH + 1, axis);
  fill(rgb, width, left, top + plotH, plotW + 1, 1, axis);
  for (let k = 0; k <= 4; k++) {
    const y = top + plotH - Math.round((k * plotH) / 4);
    fill(rgb, width, left - 4, y, 4, 1, axis);
    for (let x = left + 1; x <= left + plotW; x += 4) fill(rgb, width, x, y, 1, 1, [50, 50, 56]);
    const label = tickLabel((k * yMax) / 4);
    drawText(rgb, width, left - 6 - labelWidth(label, fs), y - 3, label, fs);
  }
  const x0 = o.x0 ?? 0;
  const xs = (i: number) => left + Math.round((i * plotW) / (xCount - 1));
  const step = Math.max(1, Math.ceil(xCount / 12));
  for (let i = 0; i < xCount; i += step) {
    fill(rgb, width, xs(i), top + plotH, 1, 4, axis);
    const label = String(x0 + i);
    drawText(rgb, width, xs(i) - Math.floor(labelWidth(label, fs) / 2), top + plotH + 7, label, fs);
  }
  if (o.xLabel) drawText(rgb, width, left + plotW - labelWidth(o.xLabel, fs), height - 9, o.xLabel, fs);
  const ys = (v: number) => top + plotH - Math.round((Math.min(v, yMax) / yMax) * plotH);
  series.forEach((s, i) => {
    const colour = s.colour ?? SERIES_COLOURS[i % SERIES_COLOURS.length];
    for (let j = 0; j < s.values.length; j++) {
      if (!Number.isFinite(s.values[j])) continue;
      fill(rgb, width, xs(j) - 1, ys(s.values[j]) - 1, 3, 3, colour);
      if (j + 1 < s.values.length && Number.isFinite(s.values[j + 1]))
        line(rgb, width, xs(j), ys(s.values[j]), xs(j + 1), ys(s.values[j + 1]), colour);
    }
  });
  return encodePng(rgb, width, height, 3);
}

/** Bresenham line, one pixel wide. */
function line(rgb: Uint8Array, width: number, x0: number, y0: number, x1: number, y1: number, colour: Rgb8): void {
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  let x = x0;
  let y = y0;
  for (;;) {
    fill(rgb, width, x, y, 1, 1, colour);
    if (x === x1 && y === y1) break;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y += sy;
    }
  }
}
