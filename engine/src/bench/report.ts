// The benchmark report as text: the per-stage table, then the headline ratios against their targets.
import type { BenchReport, CaseReport } from './run';
import { STAGES } from './run';
import { formatUnetCalls } from './unet-calls';

const STAGE_TITLES: Record<(typeof STAGES)[number], string> = {
  probe: 'probe',
  decode: 'decode',
  vaeEncode: 'VAE enc',
  inversion: 'invert',
  edit: 'edit',
  vaeDecode: 'VAE dec',
  encode: 'encode',
  other: 'other',
};

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '))
    .join('\n');
}

const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
const num = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(digits);

export function casesTable(cases: CaseReport[]): string {
  const head = [
    'case',
    'size',
    'wall ms',
    ...STAGES.map((s) => STAGE_TITLES[s]),
    'UNet calls',
    'UNet ms',
    'loop JS ms',
    'evals/f',
    'ORT',
    'frames/s',
    'peak RSS MiB',
  ];
  const rows = cases.map((c) => [
    c.name,
    c.workingSize,
    c.totalMs.toFixed(0),
    ...STAGES.map((s) => `${c.stagesMs[s].toFixed(0)} ${pct(c.shares[s])}`),
    String(c.unetCalls),
    c.unetMs.toFixed(0),
    c.loopJsMs.toFixed(0),
    c.unetEvalsPerFrame.toFixed(0),
    pct(c.ortShare),
    c.framesPerSec.toFixed(2),
    c.peakRssMb.toFixed(0),
  ]);
  return table([head, ...rows]);
}

export function formatReport(r: BenchReport): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push(`Reshoot ${r.version}${r.commit ? ` (${r.commit})` : ''} benchmark, ${r.date}`);
  lines.push(`${m.cpu} ×${m.cores}, ${m.memoryGiB} GiB, ${m.os}, node ${m.node}, onnxruntime-node ${m.onnxruntime}`);
  lines.push(
    `execution providers: ${r.providers.backends.join(', ')}; GPU: ${r.providers.gpu.map((g) => `${g.name} ${g.usable ? 'usable' : `not usable (${g.note})`}`).join('; ') || 'none listed'}`,
  );
  if (r.cases.length) {
    lines.push(
      '',
      "Per stage (ms and share of the job's wall time), CPU provider; inversion edits with guidance 7.5 and a source prompt:",
    );
    lines.push(casesTable(r.cases));
  }
  if (r.gpuCases.length) lines.push('', 'GPU providers:', casesTable(r.gpuCases));
  const d = r.details;
  lines.push('', 'Headline figures (ratios within this run):');
  const s = r.summary;
  if (d.ortShare)
    lines.push(
      `  ORT share            ${num(s.ortShare, 3)}  (target ${r.targets.ortShare}; ${d.ortShare.case}${d.reEdit ? `, warm engine; rounds ${d.reEdit.ortShareRounds.map((v) => v.toFixed(3)).join(', ')}` : ', cold engine'}: ${d.ortShare.ortMs.toFixed(0)} of ${d.ortShare.totalMs.toFixed(0)} ms in session.run; UNet alone ${num(d.ortShare.unetOnlyShare, 3)})`,
    );
  if (d.memory)
    lines.push(
      `  memory flatness      ${num(s.memoryFlatness, 3)}  (target ${r.targets.memoryFlatness}; peak RSS ${d.memory.long.peakRssMb.toFixed(0)} MiB for 60 s ÷ ${d.memory.short.peakRssMb.toFixed(0)} MiB for 5 s; ${d.memory.model}; wall ${(d.memory.long.totalMs / 1000).toFixed(1)} s vs ${(d.memory.short.totalMs / 1000).toFixed(1)} s)`,
    );
  if (d.reEdit) {
    lines.push(
      `  re-edit ratio        ${num(s.reEditRatio, 3)}  (target ${r.targets.reEditRatio}; ${d.reEdit.second.totalMs.toFixed(0)} ms ÷ ${d.reEdit.first.totalMs.toFixed(0)} ms, cache hit ${d.reEdit.secondCacheHit}; UNet evals/frame ${d.reEdit.second.unetEvalsPerFrame} vs ${d.reEdit.first.unetEvalsPerFrame})`,
    );
    lines.push(
      `    fastest re-edit ÷ fastest first edit of ${d.reEdit.rounds.length} rounds; per round: ${d.reEdit.rounds.map((v) => v.toFixed(3)).join(', ')}`,
    );
  }
  if (d.unetEvals) {
    lines.push('  UNet evaluations per output frame:');
    for (const [k, v] of Object.entries(d.unetEvals))
      lines.push(`    ${k.padEnd(20)} ${String(v.evalsPerFrame).padStart(5)}  ${v.settings}`);
  }
  if (d.health) {
    lines.push(
      `  health p99           ${num(s.healthP99Ms, 1)} ms  (target ${r.targets.healthP99Ms} ms; worst of the runs below)`,
    );
    for (const h of d.health)
      lines.push(
        `    ${h.name}: p50 ${num(h.p50Ms, 1)} ms, p99 ${num(h.p99Ms, 1)} ms, max ${num(h.maxMs, 1)} ms, ${h.over50} over 50 ms, of ${h.samples} requests, ${h.failures} failed; job ${h.jobState} in ${h.jobSeconds} s (${h.settings})`,
      );
  }
  if (d.burst) {
    const b = d.burst;
    const lat = (l: { p50Ms: number; p99Ms: number; maxMs: number; n: number }) =>
      `p50 ${num(l.p50Ms, 1)} ms, p99 ${num(l.p99Ms, 1)} ms, max ${num(l.maxMs, 1)} ms (${l.n})`;
    lines.push(
      `  burst health p99     ${num(s.burstHealthP99Ms, 1)} ms  (target ${r.targets.burstHealthP99Ms} ms)`,
      `  burst 429 p99        ${num(s.burstRefusedP99Ms, 1)} ms  (target ${r.targets.burstRefusedP99Ms} ms)`,
      `    ${b.settings}: answers ${Object.entries(b.statuses)
        .map(([k, v]) => `${v}× ${k}`)
        .join(', ')} in ${b.burstMs} ms`,
      `    submissions ${lat(b.submit)}; 429s ${lat(b.refused)}; health ${lat(b.health)}, ${b.health.failures} failed`,
    );
  }
  if (d.memory || d.reEdit) {
    lines.push('', 'Runs behind the headline figures:');
    lines.push(
      casesTable([
        ...(d.reEdit ? [d.reEdit.first, d.reEdit.second] : []),
        ...(d.memory ? [d.memory.short, d.memory.long] : []),
      ]),
    );
  }
  if (r.unetCalls) lines.push('', formatUnetCalls(r.unetCalls, r.unetCallRuns ?? 10));
  lines.push('', `bench wall time ${r.wallSeconds} s`);
  return lines.join('\n');
}
