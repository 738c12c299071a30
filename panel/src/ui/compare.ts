// Before/after in the browser. The engine serves the result as a video but has no route that streams an arbitrary
// range of the source, and adding one just for this view would widen what a token can read. The "before" side is
// therefore built from /v1/media/still frames of the source range, kept in step with the result video's clock: the
// result has exactly the range's frames at the source's rate, so frame k of the result is frame startFrame + k of
// the source.
import type { Job } from '../../../engine/src/api/schemas';
import type { EngineClient } from '../engine-client';
import { button, fill, h, show } from './dom';
import { basename, timecode } from './format';

export interface CompareOptions {
  client(): EngineClient | null;
  onReveal(path: string): void;
}

// Every frame of short ranges is fetched up front; longer ones get an even spread and the exact frame on pause.
const PREFETCH_ALL_UP_TO = 150;
const PREFETCH_SPREAD = 100;
const CONCURRENT_STILLS = 2;

export class CompareView {
  readonly el: HTMLElement;
  private readonly title = h('div', { class: 'compare-title' });
  private readonly sub = h('div', { class: 'compare-sub' });
  private readonly before = h('div', { class: 'pane-media before-media', id: 'before' });
  private readonly video = h('video', { class: 'pane-media after-media', id: 'after-video' });
  private readonly playButton: HTMLButtonElement;
  private readonly scrub = h('input', { class: 'scrub', id: 'scrub' });
  private readonly clock = h('span', { class: 'clock mono', id: 'compare-clock' });
  private readonly message = h('div', { class: 'compare-message hidden' });
  private readonly revealButton: HTMLButtonElement;
  private job: Job | null = null;
  private frames = 0;
  private fps = 24;
  private startFrame = 0;
  private current = -1;
  private cache = new Map<number, HTMLImageElement>();
  private queue: number[] = [];
  private loading = new Set<number>();
  private generation = 0;
  private raf = 0;

  constructor(private readonly opts: CompareOptions) {
    this.video.muted = true;
    this.video.loop = true;
    this.video.playsInline = true;
    this.video.preload = 'auto';
    this.video.setAttribute('aria-label', 'The edited result');
    this.scrub.type = 'range';
    this.scrub.min = '0';
    this.scrub.step = '1';
    this.scrub.setAttribute('aria-label', 'Frame');
    this.playButton = button('Play', () => this.togglePlay(), { class: 'play', id: 'play' });
    this.revealButton = button('Open video', () => this.job?.result && this.opts.onReveal(this.job.result.path), {
      class: 'small quiet',
      id: 'open-result',
    });

    this.scrub.addEventListener('input', () => this.seek(Number(this.scrub.value)));
    this.video.addEventListener('play', () => this.startClock());
    this.video.addEventListener('pause', () => {
      this.stopClock();
      this.sync(true);
    });
    this.video.addEventListener('seeked', () => this.sync(!this.playing()));
    this.video.addEventListener('loadeddata', () => this.sync(true));
    this.video.addEventListener('error', () =>
      this.fail('The result video could not be loaded. It may have been moved or deleted.'),
    );
    this.video.addEventListener('click', () => this.togglePlay());

    this.el = h(
      'section',
      { class: 'section compare empty', id: 'compare' },
      h(
        'div',
        { class: 'compare-head' },
        h(
          'div',
          { class: 'compare-heading' },
          h('h2', { class: 'section-title', text: 'Before / after' }),
          this.title,
          this.sub,
        ),
        this.revealButton,
      ),
      h(
        'div',
        { class: 'panes' },
        h(
          'figure',
          { class: 'pane' },
          h('div', { class: 'pane-frame' }, this.before),
          h('figcaption', { text: 'Before' }),
        ),
        h(
          'figure',
          { class: 'pane' },
          h('div', { class: 'pane-frame' }, this.video),
          h('figcaption', { text: 'After' }),
        ),
      ),
      h('div', { class: 'transport' }, this.playButton, this.scrub, this.clock),
      this.message,
    );
    this.setEmpty();
  }

  /** Before anything has finished: the player's frame, saying what will appear in it. */
  private setEmpty(): void {
    this.el.classList.add('empty');
    this.title.textContent = 'Nothing to compare yet';
    this.title.title = '';
    this.sub.textContent = 'A finished edit plays here beside the original, frame for frame; scrub either one.';
    for (const pane of this.el.querySelectorAll<HTMLElement>('.pane-frame')) pane.style.aspectRatio = '16 / 9';
    fill(this.before);
    this.scrub.max = '0';
    this.scrub.value = '0';
    this.scrub.disabled = true;
    this.playButton.disabled = true;
    show(this.revealButton, false);
    show(this.message, false);
    this.clock.textContent = '';
  }

  isShowing(jobId: string): boolean {
    return this.job?.id === jobId;
  }

  show(job: Job): void {
    const client = this.opts.client();
    if (!client || !job.result) return;
    this.stopClock();
    this.generation++;
    this.job = job;
    const r = job.result;
    this.fps = r.fps.num / r.fps.den;
    this.frames = r.frames;
    // Same rule as the engine's range resolution: the first frame that starts at or after the in point.
    this.startFrame = Math.max(0, Math.ceil(job.request.source.in * this.fps - 1e-6));
    this.current = -1;
    this.cache = new Map();
    this.queue = [];
    this.loading = new Set();
    this.scrub.max = String(Math.max(0, this.frames - 1));
    this.scrub.value = '0';
    this.title.textContent = job.request.prompt;
    this.title.title = job.request.prompt;
    this.sub.textContent = `${basename(job.request.source.path)} · ${r.frames} frames · ${r.width}×${r.height}${job.request.preview ? ' · preview' : ''} · seed ${job.seed}`;
    // Both panes keep the result's shape, so the still and the video line up edge to edge.
    for (const pane of this.el.querySelectorAll<HTMLElement>('.pane-frame'))
      pane.style.aspectRatio = `${r.width} / ${r.height}`;
    show(this.message, false);
    this.el.classList.remove('empty');
    this.scrub.disabled = false;
    this.playButton.disabled = false;
    show(this.revealButton, true);
    fill(this.before);
    this.video.src = client.resultUrl(job.id);
    this.video.load();
    this.playButton.textContent = 'Play';
    this.prefetch();
    this.showBefore(0, true);
    this.renderClock(0);
  }

  hide(): void {
    this.stopClock();
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.load();
    this.job = null;
    this.generation++;
    this.setEmpty();
  }

  private playing(): boolean {
    return !this.video.paused && !this.video.ended;
  }

  private togglePlay(): void {
    if (!this.job) return;
    if (this.playing()) this.video.pause();
    else void this.video.play().catch(() => {});
  }

  private seek(k: number): void {
    if (!this.frames) return;
    const frame = Math.max(0, Math.min(this.frames - 1, k));
    // The middle of the frame, so decoders that round either way land on it.
    this.video.currentTime = (frame + 0.5) / this.fps;
    this.showFrame(frame, !this.playing());
  }

  private frameAt(t: number): number {
    return Math.max(0, Math.min(this.frames - 1, Math.floor(t * this.fps + 1e-3)));
  }

  private sync(exact: boolean): void {
    if (!this.frames) return;
    this.showFrame(this.frameAt(this.video.currentTime), exact);
  }

  private showFrame(k: number, exact: boolean): void {
    this.scrub.value = String(k);
    this.renderClock(k);
    this.showBefore(k, exact);
  }

  private startClock(): void {
    this.playButton.textContent = 'Pause';
    this.stopClock();
    const v = this.video as HTMLVideoElement & {
      requestVideoFrameCallback?: (cb: () => void) => number;
      cancelVideoFrameCallback?: (h: number) => void;
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
    this.clock.textContent = `${timecode(k / this.fps, this.fps)} / ${timecode(this.frames / this.fps, this.fps)} · frame ${k + 1} of ${this.frames}`;
  }

  /** Shows frame k of the range on the "before" side: exactly when it is at hand, else the nearest one fetched. */
  private showBefore(k: number, exact: boolean): void {
    this.current = k;
    const img = this.cache.get(k) ?? (exact ? undefined : this.nearest(k));
    if (img && this.before.firstChild !== img) fill(this.before, img);
    if (!this.cache.has(k)) {
      this.queue = [k, ...this.queue.filter((f) => f !== k)];
      this.pump();
    }
  }

  private nearest(k: number): HTMLImageElement | undefined {
    for (let d = 1; d < this.frames; d++) {
      const img = this.cache.get(k - d) ?? this.cache.get(k + d);
      if (img) return img;
    }
    return undefined;
  }

  private prefetch(): void {
    const step = this.frames <= PREFETCH_ALL_UP_TO ? 1 : Math.ceil(this.frames / PREFETCH_SPREAD);
    for (let k = 0; k < this.frames; k += step) this.queue.push(k);
  }

  private pump(): void {
    const client = this.opts.client();
    const job = this.job;
    if (!client || !job) return;
    const gen = this.generation;
    while (this.loading.size < CONCURRENT_STILLS && this.queue.length) {
      const k = this.queue.shift()!;
      if (this.cache.has(k) || this.loading.has(k)) continue;
      this.loading.add(k);
      const img = new Image();
      img.className = 'before-still';
      img.alt = `Original frame ${k + 1}`;
      img.draggable = false;
      const done = (ok: boolean) => {
        if (gen !== this.generation) return;
        this.loading.delete(k);
        if (ok) {
          this.cache.set(k, img);
          if (k === this.current || !this.before.firstChild) fill(this.before, img);
        } else if (this.cache.size === 0 && this.loading.size === 0) {
          this.fail('The original frames could not be read; the source file may have moved.');
        }
        this.pump();
      };
      img.onload = () => done(true);
      img.onerror = () => done(false);
      const t = (this.startFrame + k + 0.5) / this.fps;
      img.src = client.stillUrl(job.request.source.path, t, 960) ?? '';
    }
  }

  private fail(text: string): void {
    this.message.textContent = text;
    show(this.message, true);
  }
}
