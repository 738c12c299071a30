// `reshoot doctor`: what this machine can do. Node and the platform, ONNX Runtime and which GPU providers really open
// a session, which ffmpeg and ffprobe the engine uses (where, which versions, why they were picked, what works worse
// with them) and where the engine keeps its token, data and models. Exit status 0 when the engine can run here
// (warnings or not), 1 when it cannot.
import { spawnSync } from 'node:child_process';
import { configDir, dataDir, modelsDir } from '../config/paths';
import { ffmpegInspection, type FfmpegInspection, type ToolChoice } from '../media/binaries';
import { onnxRuntimeStatus, type OnnxRuntimeStatus } from '../models/ort-support';
import type { ProviderProbe } from '../models/provider-probe';
import { tokenDir, tokenPath } from '../server/token';
import { MediaError } from '../media/errors';
import { parse } from './args';

type Tool = ToolChoice | { error: MediaError };

function toolJson(
  t: Tool,
):
  | { ok: true; path: string; version: string; source: string; raw?: string }
  | { ok: false; error: string; file?: string } {
  if ('error' in t) return { ok: false, error: t.error.message, ...(t.error.file ? { file: t.error.file } : {}) };
  return { ok: true, path: t.path, version: t.version, source: t.source, ...(t.parsed ? { raw: t.parsed.raw } : {}) };
}

/** The Node majors the test suite runs on (package.json `engines` says the same). */
export const TESTED_NODE_MAJORS = [20, 22, 24];

export function nodeReport(version: string = process.versions.node) {
  const major = Number(version.split('.')[0]);
  return {
    version,
    tested: TESTED_NODE_MAJORS.includes(major),
    platform: `${process.platform}-${process.arch}`,
  };
}

export function pathsReport() {
  return { config: configDir(), token: tokenPath(tokenDir()), data: dataDir(), models: modelsDir() };
}

/**
 * The GPU probe, in a child (this same CLI, `doctor --gpu-probe`): Dawn and the GPU runtimes print their own driver
 * errors to stderr, which must not mix into the report.
 */
export function probeGpuInChild(cli: string = process.argv[1]): ProviderProbe | { error: string } {
  const r = spawnSync(process.execPath, [cli, 'doctor', '--gpu-probe'], { encoding: 'utf8', timeout: 60_000 });
  const last = r.stdout?.trim().split('\n').pop();
  if (r.status === 0 && last) return JSON.parse(last) as ProviderProbe;
  const why = r.error?.message ?? `exit ${r.status ?? r.signal}`;
  return { error: `the provider probe failed (${why}): ${r.stderr?.trim().split('\n').pop() ?? ''}` };
}

export interface DoctorInputs {
  ffmpeg?: FfmpegInspection;
  onnxRuntime: OnnxRuntimeStatus;
  /** Absent when ONNX Runtime does not load, or when the probe was not asked for. */
  gpu?: ProviderProbe | { error: string };
}

/** The report as one JSON-able object (what `--json` prints). */
export function doctorReport(inputs: DoctorInputs) {
  const s = inputs.ffmpeg ?? ffmpegInspection();
  const ffmpeg = toolJson(s.ffmpeg);
  const ffprobe = toolJson(s.ffprobe);
  return {
    ok: ffmpeg.ok && ffprobe.ok && inputs.onnxRuntime.ok,
    node: nodeReport(),
    onnxRuntime: inputs.onnxRuntime,
    ...(inputs.gpu ? { gpu: inputs.gpu } : {}),
    paths: pathsReport(),
    ffmpeg,
    ffprobe,
    why: s.why,
    warnings: s.warnings,
  };
}

const SOURCE: Record<string, string> = {
  env: 'from FFMPEG_PATH/FFPROBE_PATH',
  'beside-env': 'beside the one set by variable',
  path: 'from PATH',
  bundled: 'bundled with Reshoot (npm package)',
};

/** The report as text lines (what `reshoot doctor` prints). */
export function doctorText(report: ReturnType<typeof doctorReport>): string {
  const lines: string[] = [];
  const { node, onnxRuntime: ort } = report;
  lines.push(
    `node     ${node.version} on ${node.platform}${node.tested ? '' : `; not a tested Node (tested: ${TESTED_NODE_MAJORS.join(', ')})`}`,
  );
  if (ort.ok) {
    lines.push(
      `onnx     ONNX Runtime ${ort.version}; backends ${ort.backends.map((b) => b.name + (b.bundled ? '' : ' (not bundled)')).join(', ')}`,
    );
  } else {
    lines.push(`onnx     NOT USABLE: ${ort.problem}`);
  }
  if (report.gpu && 'error' in report.gpu) lines.push(`gpu      ${report.gpu.error}`);
  else if (report.gpu) {
    for (const g of report.gpu.gpu)
      lines.push(`gpu      ${g.name}: ${g.usable ? 'opens a session' : `not usable (${g.note})`}`);
    if (report.gpu.gpu.length === 0) lines.push('gpu      this build lists no GPU provider');
  }
  for (const [name, p] of Object.entries(report.paths)) lines.push(`${name.padEnd(8)} ${p}`);
  for (const name of ['ffmpeg', 'ffprobe'] as const) {
    const t = report[name];
    if (t.ok) {
      const src =
        t.source === 'env'
          ? `from ${name === 'ffmpeg' ? 'FFMPEG_PATH' : 'FFPROBE_PATH'}`
          : t.source === 'beside-env'
            ? `beside ${name === 'ffmpeg' ? 'FFPROBE_PATH' : 'FFMPEG_PATH'}`
            : SOURCE[t.source];
      lines.push(`${name.padEnd(8)} ${t.path}`, `${''.padEnd(8)} version ${t.version}; ${src}`);
    } else {
      lines.push(`${name.padEnd(8)} NOT USABLE: ${t.error}`);
    }
  }
  lines.push(`why      ${report.why}`);
  for (const w of report.warnings) lines.push(`warning  ${w}`);
  if (report.warnings.length === 0 && report.ok) lines.push('ok       no known problems with this pair');
  return lines.join('\n');
}

export async function runDoctor(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    json: { type: 'boolean' },
    'no-gpu': { type: 'boolean' },
    'gpu-probe': { type: 'boolean' },
  });
  if (values['gpu-probe']) {
    const { probeGpuProviders, oneNodeGraph } = await import('../models/provider-probe');
    console.log(JSON.stringify(await probeGpuProviders(oneNodeGraph())));
    return 0;
  }
  const onnxRuntime = await onnxRuntimeStatus();
  const gpu = onnxRuntime.ok && !values['no-gpu'] ? probeGpuInChild() : undefined;
  const report = doctorReport({ onnxRuntime, gpu });
  console.log(values.json ? JSON.stringify(report) : doctorText(report));
  return report.ok ? 0 : 1;
}

/** One line naming the ffmpeg in use, for `reshoot models check`. Never throws. */
export function ffmpegLine(s: FfmpegInspection = ffmpegInspection()): string {
  const part = (name: 'ffmpeg' | 'ffprobe') => {
    const t = toolJson(s[name]);
    return t.ok ? `${name} ${t.version} [${t.source}] ${t.path}` : `${name} not usable (${t.error})`;
  };
  const n = s.warnings.length;
  return `${part('ffmpeg')}; ${part('ffprobe')}${n ? `; ${n} warning${n > 1 ? 's' : ''}, see \`reshoot doctor\`` : ''}`;
}
