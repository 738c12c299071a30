// The evaluation report: report.json (every figure), report.md (tables a person reads) and pictures/ (before/after
// contact sheets, mask overlays, per-frame warp-error charts), so the difference between methods can be seen.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageBatch } from '../diffusion/images';
import { contactSheetPng } from './contact-sheet';
import type { EvalClip, MethodResult, MethodSpec } from './harness';
import { lineChartPng, maskFrames, maskOverlay, type Series } from './pictures';
import type { UserDefaultsReport } from './user-defaults';

export interface EvalSummary {
  /** The method the figures are for (the job defaults). */
  method: string;
  roundTripPsnr: number | null;
  /** Plain DDIM inversion + regeneration without direct inversion or mask: the inversion's own accuracy. */
  inversionRoundTripPsnr: number | null;
  autoMaskIoU: number | null;
  backgroundPsnr: number | null;
  /** The same without any mask (plain inversion), for the effect of preservation. */
  backgroundPsnrNoMask: number | null;
  warpErrorRatio: number | null;
  peakRssRatio: number | null;
  /**
   * The job defaults on a user-sized clip (user-defaults.ts), automatic mask: fraction of the object's pixels edited
   * to the target colour, and background PSNR outside the object. Null when the check did not run.
   */
  defaultsObjectEdited: number | null;
  defaultsObjectEditedNoMask: number | null;
  defaultsBackgroundPsnr: number | null;
  defaultsBackgroundPsnrNoMask: number | null;
  /** UNet evaluations per frame of that clip's first edit at the defaults (no mask), inversion included. */
  defaultUnetEvalsPerFrame: number | null;
  /** The same for a re-edit of the stored trajectory (another target prompt, same source). */
  defaultReEditUnetEvalsPerFrame: number | null;
  /**
   * Prompt-to-prompt word swap (0.8 of the steps, no mask) on oracle-attn: mean distance inside the object to the
   * exact edit (harness.ts, exactEditError); null without a synthetic suite or when the row did not run.
   */
  wordSwapColourError: number | null;
}

export interface EvalReport {
  tool: string;
  version: string;
  suite: string;
  date: string;
  command: string;
  machine: { cpu: string; cores: number; memoryGiB: number; platform: string; node: string };
  model: { name: string; dir: string };
  settings: Record<string, unknown>;
  summary: EvalSummary;
  methods: { id: string; label: string; description: string; metrics: Record<string, number> }[];
  clips: {
    name: string;
    description: string;
    frames: number;
    width: number;
    height: number;
    flow: string;
    results: Record<string, Omit<MethodResult, 'output' | 'mask' | 'perPairWarpError' | 'perPairWarpErrorSource'>>;
    perPairWarpError: Record<string, number[]>;
  }[];
  /** The job defaults on a user-sized clip; null when not run (a real clip, or turned off). */
  userDefaults: UserDefaultsReport | null;
  peakRss: unknown;
  clipMetrics: unknown;
  notes: string[];
  pictures: string[];
}

function round(v: number, digits = 4): number {
  return Number.isFinite(v) ? +v.toPrecision(digits) : v;
}

function fmt(v: number | undefined | null, digits = 3): string {
  if (v === undefined || v === null || Number.isNaN(v)) return '—';
  if (v === 100) return '∞';
  if (Math.abs(v) !== 0 && (Math.abs(v) < 0.01 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return v.toFixed(digits);
}

/** The report's JSON form of one result: numbers rounded, pictures' arrays dropped. */
export function serialisable(r: MethodResult): EvalReport['clips'][number]['results'][string] {
  const { output: _o, mask: _m, perPairWarpError: _p, perPairWarpErrorSource: _s, ...rest } = r;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest))
    out[k] =
      typeof v === 'number'
        ? round(v, 5)
        : Array.isArray(v)
          ? v.map((x) => (typeof x === 'number' ? round(x, 4) : x))
          : v;
  return out as EvalReport['clips'][number]['results'][string];
}

/** Pictures of one clip; returns the written paths relative to the report folder. */
export function writeClipPictures(
  dir: string,
  clip: EvalClip,
  methods: MethodSpec[],
  results: Map<string, MethodResult>,
  highlight: string[],
): string[] {
  const pics = path.join(dir, 'pictures');
  fs.mkdirSync(pics, { recursive: true });
  const written: string[] = [];
  const write = (name: string, png: Buffer) => {
    fs.writeFileSync(path.join(pics, name), png);
    written.push(path.join('pictures', name));
  };
  const rows: { label: string; frames: ImageBatch }[] = [{ label: 'SOURCE', frames: clip.frames }];
  for (const m of methods) {
    const r = results.get(m.id);
    if (r?.output) rows.push({ label: m.id.toUpperCase(), frames: r.output });
  }
  write(`${clip.name}-edits.png`, contactSheetPng(rows, { maxColumns: 8 }));

  const maskRows: { label: string; frames: ImageBatch }[] = [{ label: 'SOURCE', frames: clip.frames }];
  if (clip.objectMask) maskRows.push({ label: 'TRUE MASK', frames: maskFrames(clip.objectMask) });
  for (const id of highlight) {
    const r = results.get(id);
    if (!r?.mask) continue;
    maskRows.push({ label: `${id.toUpperCase()} MASK`, frames: maskFrames(r.mask) });
    if (clip.objectMask)
      maskRows.push({
        label: `${id.toUpperCase()} VS TRUTH`,
        frames: maskOverlay(clip.frames, r.mask, clip.objectMask),
      });
  }
  if (maskRows.length > 1) write(`${clip.name}-masks.png`, contactSheetPng(maskRows, { maxColumns: 8 }));

  const series: Series[] = [];
  const first = results.values().next().value;
  if (first) series.push({ label: 'source', values: first.perPairWarpErrorSource, colour: [255, 255, 255] });
  for (const m of methods) {
    const r = results.get(m.id);
    // Methods without a mask repaint the background and sit an order of magnitude higher; they would flatten the
    // lines that differ (their figures are in the tables).
    if (r && r.mask && (highlight.includes(m.id) || m.chunkOverlap !== undefined))
      series.push({ label: m.id, values: r.perPairWarpError });
  }
  if (series.length) {
    const seams = [...results.values()].find((r) => r.seamFrames?.length)?.seamFrames;
    const title = `WARP ERROR PER FRAME PAIR, ${clip.name.toUpperCase()} (FLOW: ${clip.flowSource.toUpperCase()})${seams ? `, SEAMS BEFORE FRAMES ${seams.join(' ')}` : ''}`;
    write(`${clip.name}-warp-error.png`, lineChartPng(series, { title, xLabel: 'PAIR T, T+1' }));
  }
  return written;
}

export function markdownReport(r: EvalReport, methods: MethodSpec[]): string {
  const lines: string[] = [];
  const s = r.summary;
  lines.push(`# Reshoot evaluation: ${r.suite} suite`, '');
  lines.push(`Command: \`${r.command}\`  `);
  lines.push(
    `Machine: ${r.machine.cpu} (${r.machine.cores} cores), ${r.machine.memoryGiB} GiB, ${r.machine.platform}, Node ${r.machine.node}. Date: ${r.date}.  `,
  );
  lines.push(
    `Model: ${r.model.name} (${r.model.dir}). Settings: ${Object.entries(r.settings)
      .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
      .join(', ')}.`,
    '',
  );
  lines.push('## Summary (job default method)', '');
  lines.push('| figure | value |', '|---|---|');
  lines.push(`| round trip PSNR (target = source prompt) | ${fmt(s.roundTripPsnr, 1)} dB |`);
  lines.push(`| plain DDIM inversion round trip PSNR | ${fmt(s.inversionRoundTripPsnr, 1)} dB |`);
  lines.push(`| automatic mask IoU vs true object | ${fmt(s.autoMaskIoU)} |`);
  lines.push(
    `| background PSNR outside the true object | ${fmt(s.backgroundPsnr, 1)} dB (no mask: ${fmt(s.backgroundPsnrNoMask, 1)} dB) |`,
  );
  lines.push(`| warp error ratio, edit ÷ source | ${fmt(s.warpErrorRatio)} |`);
  lines.push(`| peak RSS ratio, long ÷ short clip | ${fmt(s.peakRssRatio)} |`);
  lines.push(`| word swap: object error against the exact edit (oracle-attn) | ${fmt(s.wordSwapColourError)} |`, '');
  lines.push('∞ = identical (PSNR of identical images; stored as 100 in report.json).', '');
  const u = r.userDefaults;
  if (u) {
    const st = u.settings;
    lines.push('## The job defaults on a user-sized clip', '');
    lines.push(
      `${u.description}: ${u.frames} frames of ${u.width}×${u.height}, "${st.sourcePrompt}" → "${st.prompt}", ${st.steps} steps, guidance ${st.guidance}, strength ${st.strength}, direct inversion ${st.directInversion ? 'on' : 'off'}, consistency: ${describeConsistencyShort(st.consistency)}. Outputs clamped to [−1, 1] as the encoder clamps them. (The method table below runs at guidance 1.)`,
      '',
    );
    lines.push(
      '| mask | object edited (fraction) | object mean colour | background PSNR dB | mask IoU | UNet evals/frame | s |',
      '|---|---|---|---|---|---|---|',
    );
    for (const [label, f] of [
      ['none (first edit)', u.noMask],
      ['automatic (re-edit)', u.autoMask],
    ] as const)
      lines.push(
        `| ${label} | ${fmt(f.objectEdited)} | (${f.objectMean.map((v) => v.toFixed(2)).join(', ')}) | ${fmt(f.backgroundPsnr, 1)} | ${fmt(f.autoMaskIoU)} | ${fmt(f.unetEvalsPerFrame, 0)} | ${fmt(f.seconds, 1)} |`,
      );
    lines.push(
      '',
      `A re-edit without a mask runs ${fmt(u.reEditUnetEvalsPerFrame, 0)} UNet evaluations per frame.`,
      '',
    );
  }
  lines.push('## Methods (means over clips)', '');
  const cols: [string, string, number][] = [
    ['IoU', 'autoMaskIoU', 3],
    ['bg PSNR dB', 'backgroundPsnr', 1],
    ['bg SSIM', 'backgroundSsim', 4],
    ['colour err', 'colourError', 3],
    ['exact-edit err', 'exactEditError', 3],
    ['WE ratio', 'warpErrorRatio', 3],
    ['object WE ratio', 'objectWarpErrorRatio', 3],
    ['seam WE ratio', 'seamWarpErrorRatio', 3],
    ['UNet evals/frame', 'unetEvalsPerFrame', 1],
    ['s/frame', 'secondsPerFrame', 3],
    ['clips', 'clips', 0],
  ];
  lines.push(`| method | ${cols.map((c) => c[0]).join(' | ')} |`);
  lines.push(`|---|${cols.map(() => '---').join('|')}|`);
  for (const m of r.methods) lines.push(`| ${m.id} | ${cols.map(([, k, d]) => fmt(m.metrics[k], d)).join(' | ')} |`);
  lines.push('');
  for (const m of methods) lines.push(`- **${m.id}**: ${m.description}`);
  lines.push('');
  lines.push('## Per clip', '');
  for (const c of r.clips) {
    lines.push(`### ${c.name}: ${c.description}`, '');
    lines.push(`${c.frames} frames, ${c.width}×${c.height}, flow: ${c.flow}.`, '');
    lines.push(
      '| method | IoU | bg PSNR dB | colour err | WE | WE ratio | object WE ratio | seam WE ratio | s |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const [id, x] of Object.entries(c.results)) {
      lines.push(
        `| ${id} | ${fmt(x.autoMaskIoU)} | ${fmt(x.backgroundPsnr, 1)} | ${fmt(x.colourError)} | ${fmt(x.warpError)} | ${fmt(x.warpErrorRatio)} | ${fmt(x.objectWarpErrorRatio)} | ${fmt(x.seamWarpErrorRatio)} | ${fmt(x.seconds, 2)} |`,
      );
    }
    lines.push('');
    for (const p of r.pictures.filter((p) => path.basename(p).startsWith(`${c.name}-`)))
      lines.push(`![${path.basename(p)}](${p})`);
    lines.push('');
  }
  lines.push('## Peak memory', '');
  if (r.pictures.includes(path.join('pictures', 'peak-rss.png')))
    lines.push(`![peak-rss.png](${path.join('pictures', 'peak-rss.png')})`, '');
  lines.push('```json', JSON.stringify(r.peakRss, null, 2), '```', '');
  lines.push(
    '## CLIP metrics',
    '',
    typeof r.clipMetrics === 'string' ? r.clipMetrics : '```json\n' + JSON.stringify(r.clipMetrics, null, 2) + '\n```',
    '',
  );
  if (r.notes.length) lines.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  return lines.join('\n');
}

function describeConsistencyShort(c: UserDefaultsReport['settings']['consistency']): string {
  const lc = c.latentCorrection;
  return [
    lc ? `latent correction ${lc.steps} steps` : 'no latent correction',
    `mask smoothing ${c.maskSmoothing ?? 0}`,
    `soft edge ${c.softEdge ?? 0}`,
    c.anchorStats ? 'anchor stats' : 'no anchor stats',
  ].join(', ');
}
