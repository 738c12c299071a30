// One viewer for the clip, the live preview of a running job and the finished result, so the picture the user is
// editing stays in one place. The engine serves the result as a video but has no route that streams an arbitrary
// range of the source, and adding one just for this view would widen what a token can read; the source side is
// therefore built from /v1/media/still frames of the range, kept in step with the result video's clock: the result has
// exactly the range's frames at the source's rate, so frame k of the result is frame startFrame + k of the source.
// The automatic mask comes back as one PNG per output frame (result.mattePath); the still route refuses still images,
// so the engine serves those PNGs by job and frame (GET /v1/jobs/:id/matte?frame=k).
import type { Job } from '../../../engine/src/api/schemas';
import { framesToTimecode } from '../../../engine/src/api/timecode';
import type { EngineClient } from '../engine-client';
import type { ClipSelection } from '../host/host';
import { button, fill, h, segmented, setDisabled, show } from './dom';
import { basename, jobLine } from './format';
import type { Box } from './mask-box';

export interface ViewerOptions {
  client(): EngineClient | null;
  /** The result video and the compare modes (the browser); without it the viewer shows the clip and live previews. */
  compare: boolean;
}

export type CompareMode = 'ab' | 'wipe' | 'toggle' | 'difference' | 'matte';

const MODES: { value: CompareMode; label: string; title: string }[] = [
  { value: 'ab', label: 'A|B', title: 'Before and after side by side' },
  { value: 'wipe', label: 'Wipe', title: 'After over before, split by the wipe line' },
  { value: 'toggle', label: 'Toggle', title: 'One at a time; the B key or the button switches' },
  { value: 'difference', label: 'Diff', title: 'The difference of the two: black where nothing changed' },
  { value: 'matte', label: 'Matte', title: 'The automatic mask over the result: tinted where the edit was allowed' },
];

/** What the viewer is about: the clip, a running job's live preview, or a finished job. */
type Showing = { kind: 'none' } | { kind: 'source' } | { kind: 'live'; jobId: string } | { kind: 'result'; job: Job };

interface Range {
  path: string;
  fps: number;
  /** First frame of the range in the media, and how many. */
  startFrame: number;
  frames: number;
  width: number;
  height: number;
  /** The media's length when known (the browser's probe), so the filmstrip can show the range inside it. */
  mediaSec?: number;
}

// Every frame of short ranges is fetched up front; longer ones get an even spread and the exact frame on pause.
const PREFETCH_ALL_UP_TO = 150;
const PREFETCH_SPREAD = 100;
const CONCURRENT_STILLS = 2;
const FILMSTRIP_THUMBS = 8;
const MATTE_TINT = [255, 64, 160] as const;
// HTMLMediaElement's code for a source it cannot decode; Chromium gives the same code when the file is missing.
const MEDIA_ERR_SRC_NOT_SUPPORTED = 4;

export class Viewer {
  readonly el: HTMLElement;
  private readonly title = h('div', { class: 'compare-title', id: 'viewer-title' });
  private readonly sub = h('div', { class: 'compare-sub', id: 'viewer-sub' });
  private readonly stage = h('div', { class: 'viewer-stage mode-none', id: 'viewer-stage' });
  private readonly before = h('div', { class: 'pane-media before-media', id: 'before' });
  private readonly paneA: HTMLElement;
  private readonly paneB: HTMLElement;
  private readonly video = h('video', { class: 'pane-media after-media', id: 'after-video' });
  private readonly live = h('img', { class: 'pane-media live-media hidden', id: 'viewer-live', attrs: { alt: '' } });
  private readonly canvas = h('canvas', { class: 'viewer-canvas hidden', id: 'viewer-canvas' });
  private readonly boxEl = h('div', { class: 'viewer-box hidden', id: 'viewer-box', attrs: { 'aria-hidden': 'true' } });
  private readonly wipeLine = h('div', { class: 'wipe-line', attrs: { 'aria-hidden': 'true' } });
  private readonly badge = h('div', { class: 'viewer-badge', id: 'viewer-badge' });
  private readonly compareBar: HTMLElement | null = null;
  private readonly modes: ReturnType<typeof segmented<CompareMode>> | null = null;
  private readonly wipe = h('input', { class: 'wipe', id: 'wipe' });
  private readonly toggleButton: HTMLButtonElement;
  private readonly strip = h('div', { class: 'filmstrip-thumbs' });
  private readonly markIn = h('div', { class: 'mark mark-in' });
  private readonly markOut = h('div', { class: 'mark mark-out' });
  private readonly playhead = h('div', { class: 'playhead' });
  private readonly inOut = h('div', { class: 'inout mono', id: 'viewer-inout' });
  private readonly filmstrip: HTMLElement;
  private readonly playButton: HTMLButtonElement;
  private readonly scrub = h('input', { class: 'scrub', id: 'scrub' });
  private readonly clock = h('span', { class: 'clock mono', id: 'compare-clock', attrs: { 'aria-live': 'off' } });
  private readonly message = h('div', { class: 'compare-message hidden' });
  // A browser cannot open the folder the result is in: it can play the file in a tab of its own, or save it.
  private readonly openLink = h('a', {
    class: 'btn small quiet',
    id: 'open-result',
    text: 'Open in a tab',
    title: 'Play the result file in a new browser tab',
    attrs: { target: '_blank', rel: 'noopener' },
  });
  private readonly downloadLink = h('a', {
    class: 'btn small quiet',
    id: 'download-result',
    text: 'Download',
    title: 'Save the result file',
  });
  private showing: Showing = { kind: 'none' };
  /** Set once the user works with a result (scrubs, plays, changes the mode): choosing another clip must not replace it. */
  private pinned = false;
  private clip: ClipSelection | null = null;
  private clipMediaSec: number | undefined;
  private range: Range | null = null;
  private current = 0;
  private showingB = true;
  private box: Box | null = null;
  private cache = new Map<number, HTMLImageElement>();
  private mattes = new Map<number, HTMLImageElement>();
  private queue: number[] = [];
  private loading = new Set<number>();
  private generation = 0;
  private raf = 0;

  constructor(private readonly opts: ViewerOptions) {
    this.video.muted = true;
    this.video.loop = true;
    this.video.playsInline = true;
    this.video.preload = 'auto';
    this.video.setAttribute('aria-label', 'The edited result');
    this.scrub.type = 'range';
    this.scrub.min = '0';
    this.scrub.step = '1';
    this.scrub.setAttribute('aria-label', 'Frame');
    this.wipe.type = 'range';
    this.wipe.min = '0';
    this.wipe.max = '100';
    this.wipe.value = '50';
    this.wipe.setAttribute('aria-label', 'Wipe position, percent from the left');
    this.playButton = button('Play', () => this.togglePlay(), { class: 'play', id: 'play' });
    this.toggleButton = button('Showing B', () => this.flip(), { class: 'small', id: 'toggle-ab' });
    this.toggleButton.setAttribute('aria-pressed', 'true');

    // The overlays live in pane A so their percentages are the frame's, whichever mode lays the panes out.
    this.paneA = h(
      'div',
      { class: 'pane pane-a' },
      this.before,
      this.canvas,
      this.wipeLine,
      this.boxEl,
      h('span', { class: 'pane-tag', text: 'A · Before' }),
    );
    this.paneB = h(
      'div',
      { class: 'pane pane-b' },
      opts.compare ? this.video : null,
      this.live,
      h('span', { class: 'pane-tag', text: 'B · After' }),
    );
    fill(this.stage, this.paneA, this.paneB, this.badge);

    if (opts.compare) {
      this.modes = segmented<CompareMode>('compare-mode', MODES, 'ab', () => {
        this.pin();
        this.renderMode();
      });
      this.modes.el.classList.add('small');
      this.modes.el.setAttribute('aria-label', 'Compare');
      this.compareBar = h(
        'div',
        { class: 'compare empty', id: 'compare' },
        this.modes.el,
        h('div', { class: 'compare-extra' }, this.wipe, this.toggleButton),
      );
      this.wipe.addEventListener('input', () => {
        this.pin();
        this.renderWipe();
      });
    }
    this.filmstrip = h(
      'div',
      { class: 'filmstrip', id: 'filmstrip', attrs: { 'aria-hidden': 'true' } },
      this.strip,
      this.markIn,
      this.markOut,
      this.playhead,
    );
    this.filmstrip.addEventListener('click', (ev) => this.stripClick(ev as MouseEvent));

    this.scrub.addEventListener('input', () => {
      this.pin();
      this.seek(Number(this.scrub.value));
    });
    this.stage.addEventListener('keydown', (ev) => {
      if (ev.key.toLowerCase() === 'b' && this.mode() === 'toggle') this.flip();
    });
    this.video.addEventListener('play', () => this.startClock());
    this.video.addEventListener('pause', () => {
      this.stopClock();
      this.sync(true);
    });
    this.video.addEventListener('seeked', () => this.sync(!this.playing()));
    this.video.addEventListener('loadeddata', () => this.sync(true));
    this.video.addEventListener('error', () => {
      if (this.showing.kind === 'result') void this.explainUnplayable(this.showing.job);
    });
    this.video.addEventListener('click', () => this.togglePlay());

    this.el = h(
      'section',
      { class: 'section viewer', id: 'viewer', attrs: { 'aria-labelledby': 'viewer-heading' } },
      h(
        'div',
        { class: 'compare-head' },
        h(
          'div',
          { class: 'compare-heading' },
          h('h2', { class: 'section-title', id: 'viewer-heading', text: 'Viewer' }),
          this.title,
          this.sub,
        ),
        h('div', { class: 'viewer-links' }, this.openLink, this.downloadLink),
      ),
      this.stage,
      this.compareBar,
      this.filmstrip,
      this.inOut,
      h('div', { class: 'transport' }, this.playButton, this.scrub, this.clock),
      this.message,
    );
    this.stage.setAttribute('tabindex', '-1');
    this.render();
  }

  /** The frame the viewer is on, 0-based within the range, and the job it shows (tests and the action bar read it). */
  state(): { kind: Showing['kind']; jobId: string | null; frame: number; pinned: boolean } {
    const jobId =
      this.showing.kind === 'result' ? this.showing.job.id : this.showing.kind === 'live' ? this.showing.jobId : null;
    return { kind: this.showing.kind, jobId, frame: this.current, pinned: this.pinned };
  }

  isShowing(jobId: string): boolean {
    return this.state().jobId === jobId;
  }

  /** The chosen clip: shown as soon as it changes, unless a result the user is working with is on screen. */
  setClip(clip: ClipSelection | null, mediaSec?: number): void {
    const same =
      !!clip &&
      !!this.clip &&
      clip.mediaPath === this.clip.mediaPath &&
      clip.sourceIn === this.clip.sourceIn &&
      clip.sourceOut === this.clip.sourceOut;
    this.clip = clip;
    this.clipMediaSec = mediaSec;
    if (same) return;
    if (this.showing.kind === 'result' && this.pinned) return;
    if (this.showing.kind === 'live') return;
    this.showSource();
  }

  /** The box mask as drawn in the form, shown over every frame; null hides it. */
  setBox(box: Box | null): void {
    this.box = box;
    this.renderBox();
  }

  /** A job this page submitted: the viewer follows it (a new action of the user's, so it unpins any result). */
  follow(job: Job): void {
    this.pinned = false;
    // What went wrong with the result shown before is not about this job.
    show(this.message, false);
    this.stopClock();
    this.video.pause();
    this.showing = { kind: 'live', jobId: job.id };
    this.range = this.clipRange();
    this.resetFrames();
    this.live.removeAttribute('src');
    this.title.textContent = job.request.prompt;
    this.title.title = job.request.prompt;
    this.sub.textContent = `${basename(job.request.source.path)} · live ${job.request.preview ? 'preview' : 'edit'} · seed ${job.seed}`;
    this.render();
    this.update(job);
  }

  update(job: Job, engineLost = false): void {
    if (this.showing.kind !== 'live' || this.showing.jobId !== job.id) return;
    this.badge.textContent = `${job.request.preview ? 'Preview' : 'Edit'} · ${jobLine(job, engineLost)}`;
  }

  preview(job: Job, pngBase64: string): void {
    if (this.showing.kind !== 'live' || this.showing.jobId !== job.id) return;
    this.live.src = `data:image/png;base64,${pngBase64}`;
    show(this.live, true);
    this.stage.classList.add('has-live');
  }

  /**
   * A job ended: its result shows only when the viewer was following it. The viewer stays on what the user last
   * started or chose; another job ending (queued earlier, or from elsewhere) says so on its own card.
   */
  ended(job: Job): void {
    if (this.showing.kind !== 'live' || this.showing.jobId !== job.id) return;
    if (job.state === 'succeeded' && job.result && this.opts.compare) this.showResult(job, false);
    else this.showSource();
  }

  /** Shows a finished job; from a button the user pressed (pin), or because it just finished (no pin). */
  showResult(job: Job, pin = true): void {
    const client = this.opts.client();
    if (!client || !job.result || !this.opts.compare) return;
    this.stopClock();
    this.pinned = pin;
    this.showing = { kind: 'result', job };
    const r = job.result;
    const fps = r.fps.num / r.fps.den;
    this.range = {
      path: job.request.source.path,
      fps,
      // Same rule as the engine's range resolution: the first frame that starts at or after the in point.
      startFrame: Math.max(0, Math.ceil(job.request.source.in * fps - 1e-6)),
      frames: r.frames,
      width: r.width,
      height: r.height,
      mediaSec: this.clip && this.clip.mediaPath === job.request.source.path ? this.clipMediaSec : undefined,
    };
    this.resetFrames();
    this.title.textContent = job.request.prompt;
    this.title.title = job.request.prompt;
    this.sub.textContent = `${basename(job.request.source.path)} · ${r.frames} frames · ${r.width}×${r.height}${job.request.preview ? ' · preview' : ''} · seed ${job.seed}`;
    show(this.message, false);
    this.openLink.setAttribute('href', client.resultUrl(job.id));
    this.downloadLink.setAttribute('href', client.downloadUrl(job.id));
    this.downloadLink.setAttribute('download', basename(r.path));
    this.video.src = client.resultUrl(job.id);
    this.video.load();
    this.render();
  }

  hide(): void {
    this.stopClock();
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.load();
    this.generation++;
    this.showing = { kind: 'none' };
    this.render();
  }

  private showSource(): void {
    this.stopClock();
    this.video.pause();
    this.pinned = false;
    this.range = this.clipRange();
    this.showing = this.range ? { kind: 'source' } : { kind: 'none' };
    this.resetFrames();
    if (this.clip) {
      this.title.textContent = this.clip.name || basename(this.clip.mediaPath);
      this.title.title = this.clip.mediaPath;
      this.sub.textContent = `${this.clip.frames} frames · ${this.clip.frameWidth}×${this.clip.frameHeight}`;
    }
    this.render();
  }

  private clipRange(): Range | null {
    const c = this.clip;
    if (!c || !c.mediaPath) return null;
    return {
      path: c.mediaPath,
      fps: c.fps,
      startFrame: Math.max(0, Math.ceil(c.sourceIn * c.fps - 1e-6)),
      frames: Math.max(1, c.frames),
      width: c.frameWidth,
      height: c.frameHeight,
      mediaSec: this.clipMediaSec,
    };
  }

  private resetFrames(): void {
    this.generation++;
    this.current = 0;
    this.cache = new Map();
    this.mattes = new Map();
    this.queue = [];
    this.loading = new Set();
    fill(this.before);
    this.prefetch();
  }

  private mode(): CompareMode {
    return this.modes?.value() ?? 'ab';
  }

  private pin(): void {
    if (this.showing.kind === 'result') this.pinned = true;
  }

  private flip(): void {
    this.showingB = !this.showingB;
    this.pin();
    this.renderMode();
  }

  private render(): void {
    const kind = this.showing.kind;
    const r = this.range;
    this.stage.className = `viewer-stage mode-${kind}`;
    this.el.classList.toggle('empty', kind === 'none');
    this.el.setAttribute('data-showing', kind);
    this.el.setAttribute('data-job-id', this.state().jobId ?? '');
    if (kind === 'none') {
      this.title.textContent = 'No clip yet';
      this.title.title = '';
      this.sub.textContent = 'The clip shows here once chosen; then the live preview, and the result beside it.';
    }
    if (kind !== 'live') {
      show(this.live, false);
      this.live.removeAttribute('src');
      this.badge.textContent = kind === 'source' ? 'Source' : '';
    }
    show(this.badge, !!this.badge.textContent || kind === 'live');
    const aspect = r ? `${r.width} / ${r.height}` : '16 / 9';
    this.paneA.style.aspectRatio = aspect;
    this.paneB.style.aspectRatio = aspect;
    const hasResult = kind === 'result';
    this.compareBar?.classList.toggle('empty', !hasResult);
    show(this.openLink, hasResult);
    show(this.downloadLink, hasResult);
    setDisabled(this.playButton, !hasResult);
    this.scrub.max = String(Math.max(0, (r?.frames ?? 1) - 1));
    this.scrub.value = '0';
    setDisabled(this.scrub, !r);
    if (!hasResult) {
      this.video.pause();
      if (this.opts.compare && this.video.getAttribute('src')) {
        this.video.removeAttribute('src');
        this.video.load();
      }
    }
    this.renderFilmstrip();
    this.renderMode();
    this.renderBox();
    this.showFrame(0, true);
  }

  private renderMode(): void {
    const mode = this.showing.kind === 'result' ? this.mode() : 'source';
    for (const m of ['ab', 'wipe', 'toggle', 'difference', 'matte', 'source'])
      this.stage.classList.toggle(`cmp-${m}`, m === mode);
    const canvas = mode === 'difference' || mode === 'matte';
    show(this.canvas, canvas);
    show(this.wipe, mode === 'wipe');
    show(this.toggleButton, mode === 'toggle');
    this.toggleButton.textContent = this.showingB ? 'Showing B · After' : 'Showing A · Before';
    this.toggleButton.setAttribute('aria-pressed', this.showingB ? 'true' : 'false');
    this.stage.classList.toggle('show-a', mode === 'toggle' && !this.showingB);
    const noMatte = mode === 'matte' && this.showing.kind === 'result' && !this.showing.job.result?.mattePath;
    if (noMatte) this.fail('This edit has no automatic mask to show: choose Auto under "Where to change".');
    else if (this.message.textContent?.startsWith('This edit has no automatic mask')) show(this.message, false);
    this.renderWipe();
    this.draw();
  }

  private renderWipe(): void {
    const at = Number(this.wipe.value);
    this.paneB.style.clipPath = this.stage.classList.contains('cmp-wipe') ? `inset(0 0 0 ${at}%)` : '';
    this.wipeLine.style.left = `${at}%`;
  }

  private renderBox(): void {
    const b = this.box;
    show(this.boxEl, !!b && this.showing.kind !== 'none');
    if (!b) return;
    this.boxEl.style.left = `${b.x * 100}%`;
    this.boxEl.style.top = `${b.y * 100}%`;
    this.boxEl.style.width = `${b.w * 100}%`;
    this.boxEl.style.height = `${b.h * 100}%`;
  }

  private renderFilmstrip(): void {
    const r = this.range;
    const client = this.opts.client();
    show(this.filmstrip, !!r);
    show(this.inOut, !!r);
    if (!r || !client) {
      fill(this.strip);
      this.inOut.textContent = '';
      return;
    }
    const inSec = r.startFrame / r.fps;
    const outSec = (r.startFrame + r.frames) / r.fps;
    // The whole media when its length is known, so the marks show where the range sits; else the range itself.
    const span = r.mediaSec && r.mediaSec >= outSec - 1e-6 ? r.mediaSec : null;
    const from = span ? 0 : inSec;
    const to = span ?? outSec;
    const thumbs: HTMLImageElement[] = [];
    for (let i = 0; i < FILMSTRIP_THUMBS; i++) {
      const t = from + ((i + 0.5) / FILMSTRIP_THUMBS) * (to - from);
      const img = h('img', { class: 'filmstrip-thumb', attrs: { alt: '', draggable: 'false' } });
      img.src = client.stillUrl(r.path, t, 96);
      thumbs.push(img);
    }
    fill(this.strip, thumbs);
    const pct = (s: number) =>
      `${(Math.max(0, Math.min(1, (s - from) / Math.max(1e-9, to - from))) * 100).toFixed(2)}%`;
    this.markIn.style.left = pct(inSec);
    this.markOut.style.left = pct(outSec);
    this.filmstrip.setAttribute('data-from', String(from));
    this.filmstrip.setAttribute('data-to', String(to));
    this.inOut.textContent = `In ${framesToTimecode(r.startFrame, r.fps)} · Out ${framesToTimecode(r.startFrame + r.frames, r.fps)} · ${r.frames} frames`;
  }

  private stripClick(ev: MouseEvent): void {
    const r = this.range;
    if (!r) return;
    const box = this.filmstrip.getBoundingClientRect();
    const from = Number(this.filmstrip.getAttribute('data-from'));
    const to = Number(this.filmstrip.getAttribute('data-to'));
    const t = from + ((ev.clientX - box.left) / Math.max(1, box.width)) * (to - from);
    this.pin();
    this.seek(Math.floor(t * r.fps + 1e-6) - r.startFrame);
  }

  private playing(): boolean {
    return !this.video.paused && !this.video.ended;
  }

  private togglePlay(): void {
    if (this.showing.kind !== 'result') return;
    this.pin();
    if (this.playing()) this.video.pause();
    else void this.video.play().catch(() => {});
  }

  private seek(k: number): void {
    const r = this.range;
    if (!r) return;
    const frame = Math.max(0, Math.min(r.frames - 1, k));
    // The middle of the frame, so decoders that round either way land on it.
    if (this.showing.kind === 'result') this.video.currentTime = (frame + 0.5) / r.fps;
    this.showFrame(frame, !this.playing());
  }

  private frameAt(t: number): number {
    const r = this.range;
    return r ? Math.max(0, Math.min(r.frames - 1, Math.floor(t * r.fps + 1e-3))) : 0;
  }

  private sync(exact: boolean): void {
    if (this.showing.kind !== 'result') return;
    this.showFrame(this.frameAt(this.video.currentTime), exact);
  }

  private showFrame(k: number, exact: boolean): void {
    this.scrub.value = String(k);
    this.renderClock(k);
    this.showBefore(k, exact);
    this.draw();
  }

  private startClock(): void {
    this.playButton.textContent = 'Pause';
    this.stopClock();
    const v = this.video as HTMLVideoElement & {
      requestVideoFrameCallback?: (cb: () => void) => number;
    };
    // Follow the frames the video actually presents where the browser says which; otherwise every animation frame.
    const tick = () => {
      if (!this.playing()) return;
      this.sync(false);
      this.raf = v.requestVideoFrameCallback ? v.requestVideoFrameCallback(tick) : requestAnimationFrame(tick);
    };
    tick();
  }

  private stopClock(): void {
    if (!this.playing()) this.playButton.textContent = 'Play';
    const v = this.video as HTMLVideoElement & { cancelVideoFrameCallback?: (h: number) => void };
    if (this.raf) {
      if (v.cancelVideoFrameCallback) v.cancelVideoFrameCallback(this.raf);
      cancelAnimationFrame(this.raf);
    }
    this.raf = 0;
  }

  private renderClock(k: number): void {
    const r = this.range;
    if (!r) {
      this.clock.textContent = '';
      this.playhead.style.left = '0%';
      return;
    }
    // The source's own timecode at its own rate, as Premiere's source monitor shows it.
    this.clock.textContent = `${framesToTimecode(r.startFrame + k, r.fps)} · frame ${k + 1} of ${r.frames}`;
    const from = Number(this.filmstrip.getAttribute('data-from'));
    const to = Number(this.filmstrip.getAttribute('data-to'));
    const t = (r.startFrame + k + 0.5) / r.fps;
    this.playhead.style.left = `${(Math.max(0, Math.min(1, (t - from) / Math.max(1e-9, to - from))) * 100).toFixed(2)}%`;
  }

  /** Shows frame k of the range on the "before" side: exactly when it is at hand, else the nearest one fetched. */
  private showBefore(k: number, exact: boolean): void {
    this.current = k;
    if (!this.range) return;
    const img = this.cache.get(k) ?? (exact ? undefined : this.nearest(k));
    if (img && this.before.firstChild !== img) fill(this.before, img);
    if (!this.cache.has(k)) {
      this.queue = [k, ...this.queue.filter((f) => f !== k)];
      this.pump();
    }
    if (this.mode() === 'matte') this.loadMatte(k);
  }

  private nearest(k: number): HTMLImageElement | undefined {
    const n = this.range?.frames ?? 0;
    for (let d = 1; d < n; d++) {
      const img = this.cache.get(k - d) ?? this.cache.get(k + d);
      if (img) return img;
    }
    return undefined;
  }

  private prefetch(): void {
    const n = this.range?.frames ?? 0;
    const step = n <= PREFETCH_ALL_UP_TO ? 1 : Math.ceil(n / PREFETCH_SPREAD);
    for (let k = 0; k < n; k += step) this.queue.push(k);
  }

  private pump(): void {
    const client = this.opts.client();
    const r = this.range;
    if (!client || !r) return;
    const gen = this.generation;
    while (this.loading.size < CONCURRENT_STILLS && this.queue.length) {
      const k = this.queue.shift()!;
      if (this.cache.has(k) || this.loading.has(k)) continue;
      this.loading.add(k);
      // Made through the document rather than new Image(): UXP, where the viewer shows the clip too, may lack Image.
      const img = h('img', { class: 'before-still', attrs: { alt: `Original frame ${k + 1}`, draggable: 'false' } });
      const done = (ok: boolean) => {
        if (gen !== this.generation) return;
        this.loading.delete(k);
        if (ok) {
          this.cache.set(k, img);
          if (k === this.current || !this.before.firstChild) fill(this.before, img);
          if (k === this.current) this.draw();
        } else if (this.cache.size === 0 && this.loading.size === 0) {
          this.fail('The original frames could not be read; the source file may have moved.');
        }
        this.pump();
      };
      img.onload = () => done(true);
      img.onerror = () => done(false);
      img.src = client.stillUrl(r.path, (r.startFrame + k + 0.5) / r.fps, 960);
    }
  }

  /** The matte of output frame k, from the job's own matte route (one PNG per frame). */
  private loadMatte(k: number): void {
    const client = this.opts.client();
    const job = this.showing.kind === 'result' ? this.showing.job : null;
    if (!client || !job?.result?.mattePath || this.mattes.has(k)) return;
    const img = h('img', { attrs: { alt: '' } });
    const gen = this.generation;
    img.onload = () => {
      if (gen === this.generation && k === this.current) this.draw();
    };
    img.src = client.matteUrl(job.id, k);
    this.mattes.set(k, img);
  }

  /** Difference and matte overlay are drawn: both need the two pictures' pixels, not just stacked elements. */
  private draw(): void {
    const mode = this.mode();
    const r = this.range;
    if (this.showing.kind !== 'result' || !r || (mode !== 'difference' && mode !== 'matte')) return;
    const ctx = this.canvas.getContext?.('2d');
    if (!ctx) return;
    if (this.canvas.width !== r.width || this.canvas.height !== r.height) {
      this.canvas.width = r.width;
      this.canvas.height = r.height;
    }
    const { width: w, height: hh } = this.canvas;
    ctx.globalCompositeOperation = 'source-over';
    ctx.clearRect(0, 0, w, hh);
    const a = this.cache.get(this.current);
    const videoReady = this.video.readyState >= 2;
    if (mode === 'difference') {
      if (!a || !videoReady) return;
      ctx.drawImage(a, 0, 0, w, hh);
      ctx.globalCompositeOperation = 'difference';
      ctx.drawImage(this.video, 0, 0, w, hh);
      ctx.globalCompositeOperation = 'source-over';
      this.canvas.setAttribute('data-frame', String(this.current));
      this.canvas.removeAttribute('data-matte');
      return;
    }
    if (videoReady) ctx.drawImage(this.video, 0, 0, w, hh);
    const matte = this.mattes.get(this.current);
    if (!matte || !matte.complete || !matte.naturalWidth) {
      this.loadMatte(this.current);
      return;
    }
    // The matte's grey level becomes the tint's opacity: white (edited) shows strongest.
    const tmp = document.createElement('canvas');
    tmp.width = w;
    tmp.height = hh;
    const t = tmp.getContext('2d');
    if (!t) return;
    t.drawImage(matte, 0, 0, w, hh);
    const px = t.getImageData(0, 0, w, hh);
    for (let i = 0; i < px.data.length; i += 4) {
      const v = px.data[i];
      px.data[i] = MATTE_TINT[0];
      px.data[i + 1] = MATTE_TINT[1];
      px.data[i + 2] = MATTE_TINT[2];
      px.data[i + 3] = Math.round(v * 0.55);
    }
    t.putImageData(px, 0, 0);
    ctx.drawImage(tmp, 0, 0);
    this.canvas.setAttribute('data-frame', String(this.current));
    this.canvas.setAttribute('data-matte', matte.src);
  }

  /**
   * Why the result does not play. Chromium reports a missing file and a codec it lacks alike, so the engine is asked
   * whether the file is there: ProRes, the usual finishing format, plays in Premiere but not in Chromium.
   */
  private async explainUnplayable(job: Job): Promise<void> {
    const unsupported = this.video.error?.code === MEDIA_ERR_SRC_NOT_SUPPORTED;
    const there = await this.opts.client()?.resultExists(job.id);
    if (this.showing.kind !== 'result' || this.showing.job.id !== job.id) return;
    const download = () =>
      h('a', {
        class: 'btn small link',
        text: 'Download',
        attrs: { href: this.downloadLink.getAttribute('href') ?? '', download: basename(job.result?.path ?? '') },
      });
    if (there === false) this.fail('The result video could not be loaded. It may have been moved or deleted.');
    else if (there && job.result?.codec === 'prores')
      this.fail('This browser cannot play ProRes; Download it, or open it in Premiere. ', download());
    else if (there && unsupported)
      this.fail('This browser cannot play this video; Download it to play it elsewhere. ', download());
    else this.fail('The result video could not be loaded; check that the engine is running.');
  }

  private fail(text: string, action?: HTMLElement): void {
    fill(this.message, text, action ?? null);
    show(this.message, true);
  }
}
