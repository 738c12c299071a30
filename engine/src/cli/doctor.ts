// `reshoot doctor`: which ffmpeg and ffprobe the engine uses, where they are, their versions, why they were picked,
// and what works worse with them. Exit status 0 when both can be used (warnings or not), 1 when one cannot.
import { ffmpegInspection, type FfmpegInspection, type ToolChoice } from '../media/binaries';
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

/** The report as one JSON-able object (what `--json` prints). */
export function doctorReport(s: FfmpegInspection = ffmpegInspection()) {
  const ffmpeg = toolJson(s.ffmpeg);
  const ffprobe = toolJson(s.ffprobe);
  return { ok: ffmpeg.ok && ffprobe.ok, ffmpeg, ffprobe, why: s.why, warnings: s.warnings };
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
  const { values } = parse(argv, { json: { type: 'boolean' } });
  const report = doctorReport();
  console.log(values.json ? JSON.stringify(report) : doctorText(report));
  return report.ok ? 0 : 1;
}

/** One line naming the ffmpeg in use, for `reshoot models check`. Never throws. */
export function ffmpegLine(s: FfmpegInspection = ffmpegInspection()): string {
  const r = doctorReport(s);
  const part = (name: 'ffmpeg' | 'ffprobe') => {
    const t = r[name];
    return t.ok ? `${name} ${t.version} [${t.source}] ${t.path}` : `${name} not usable (${t.error})`;
  };
  const n = r.warnings.length;
  return `${part('ffmpeg')}; ${part('ffprobe')}${n ? `; ${n} warning${n > 1 ? 's' : ''}, see \`reshoot doctor\`` : ''}`;
}
