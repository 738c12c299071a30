// How numbers read in the panel. Editors think in frames, so times are SMPTE timecode as Premiere shows it
// (HH:MM:SS:FF, drop-frame HH;MM;SS;FF at 29.97 and 59.94), not decimal seconds.
import type { Job, JobProgress } from '../../../engine/src/api/schemas';
import { secondsToTimecode } from '../../../engine/src/api/timecode';
import { isTerminal } from '../engine-client';

export function timecode(sec: number, fps: number): string {
  return secondsToTimecode(sec, fps);
}

export function seconds(sec: number): string {
  if (!Number.isFinite(sec)) return '—';
  if (sec < 60) return `${trim(sec, 2)} s`;
  const m = Math.floor(sec / 60);
  return `${m} min ${Math.round(sec - m * 60)} s`;
}

export function fpsLabel(fps: { num: number; den: number } | number): string {
  const v = typeof fps === 'number' ? fps : fps.num / fps.den;
  return `${trim(v, 3)} fps`;
}

export function eta(sec: number | undefined): string {
  if (sec === undefined || !Number.isFinite(sec)) return '';
  if (sec < 1) return 'almost done';
  if (sec < 60) return `about ${Math.ceil(sec)} s left`;
  // Under ten minutes to the nearest ten seconds: whole minutes alone held "about 2 min" for a minute on end.
  if (sec < 600) {
    const tens = Math.round(sec / 10) * 10;
    const m = Math.floor(tens / 60);
    const s = tens - m * 60;
    return s ? `about ${m} min ${s} s left` : `about ${m} min left`;
  }
  if (sec < 3600) return `about ${Math.round(sec / 60)} min left`;
  return `about ${trim(sec / 3600, 1)} h left`;
}

export function percent(fraction: number): string {
  return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)}%`;
}

const STAGE_LABELS: Record<JobProgress['stage'], string> = {
  queued: 'Waiting in the queue',
  probing: 'Reading the clip',
  'measuring memory': 'Measuring the model’s memory use (once per size)',
  decoding: 'Decoding frames',
  'encoding latents': 'Encoding frames',
  inverting: 'Inverting',
  editing: 'Editing',
  'decoding latents': 'Rendering frames',
  writing: 'Writing the video',
  done: 'Finishing',
};

/** 1st, 2nd, 3rd, 4th … 11th, 12th, 13th, 21st. */
export function ordinal(n: number): string {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  return `${n}${teen ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th')}`;
}

/** What every view of a job says while the engine is away: the job is kept, not waiting in any queue. */
export const ENGINE_STOPPED = 'Engine stopped — will resume when it is back';

/** The job's stage, or that the engine stopped while the job was not finished. */
export function jobLine(job: Job, engineLost: boolean): string {
  return engineLost && !isTerminal(job.state) ? ENGINE_STOPPED : stageLine(job);
}

export function stageLine(job: Job): string {
  switch (job.state) {
    case 'queued': {
      const place = job.progress.queuePosition;
      return place === 1
        ? 'Waiting in the queue · next'
        : place
          ? `Waiting in the queue · ${ordinal(place)} in line`
          : 'Waiting in the queue';
    }
    case 'succeeded':
      return (
        (job.result ? `Done in ${seconds(job.result.seconds)} · ${job.result.frames} frames` : 'Done') + where(job)
      );
    case 'failed':
      // Which node failed is what a farm's operator needs first: a bad GPU or a missing mount is per machine.
      return (job.error?.title ?? 'Failed') + where(job);
    case 'canceled':
      return 'Canceled';
    default: {
      const p = job.progress;
      const parts = [STAGE_LABELS[p.stage] ?? p.stage];
      // The frames first: the step count starts over with every chunk of a long clip, so alone it seemed to go back.
      if (p.frameRange && p.frames) parts.push(`frames ${p.frameRange.first}–${p.frameRange.last} of ${p.frames}`);
      if (p.step !== undefined && p.steps) parts.push(`step ${p.step}/${p.steps}`);
      else if (!p.frameRange && p.frame !== undefined && p.frames)
        parts.push(`frame ${Math.min(p.frame, p.frames)}/${p.frames}`);
      return parts.join(' · ') + where(job);
    }
  }
}

/** The render node a farm job runs on (`reshoot serve --queue`); nothing for a job the engine runs itself. */
function where(job: Job): string {
  return job.worker ? ` · on ${job.worker.host}` : '';
}

export function maskLabel(mask: Job['request']['mask']): string {
  switch (mask.type) {
    case 'none':
      return 'whole frame';
    case 'auto':
      return 'auto mask';
    case 'file':
      return `matte ${basename(mask.path)}`;
    case 'box':
      return `box ${trim(mask.x, 2)},${trim(mask.y, 2)} ${trim(mask.w, 2)}×${trim(mask.h, 2)}`;
  }
}

export function basename(p: string): string {
  return p.split(/[\\/]/).filter(Boolean).pop() ?? p;
}

export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, (now - t) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

/** 0-based video track index → Premiere's name for it. */
export function trackName(index: number): string {
  return `V${index + 1}`;
}

function trim(n: number, digits: number): string {
  return String(Number(n.toFixed(digits)));
}
