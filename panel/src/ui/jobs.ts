// Jobs in flight: one card each with stage, percent, ETA, a live thumbnail and Cancel. Browsers follow a job over
// Server-Sent Events (progress and preview images as they happen); UXP has no EventSource and no TextDecoder to
// read a stream by hand, so there the card polls GET /v1/jobs/:id, and the newest preview whenever the job moved on.
import type { Job } from '../../../engine/src/api/schemas';
import { isTerminal, type EngineClient } from '../engine-client';
import type { ClipSelection, SourceRef } from '../host/host';
import { button, fill, h, setDisabled, show } from './dom';
import { describeError } from './errors';
import type { SubmitKind } from './edit-form';
import { basename, eta, jobLine, percent } from './format';

export interface JobContext {
  kind: SubmitKind;
  clip: ClipSelection;
  source: SourceRef;
}

export interface JobListOptions {
  client(): EngineClient | null;
  live: 'sse' | 'poll';
  pollMs: number;
  /** A job this UI follows ended; ctx is null for jobs found running on the engine (submitted elsewhere or before a reload). */
  onEnded(card: JobCard): void;
  /** Browser only: show the result beside the original. */
  onCompare?(job: Job): void;
  onReveal(path: string): void;
  /** A finished preview: render the whole range with the preview's seed and settings. */
  onRenderFull?(card: JobCard): void;
  /** A job this UI shows changed state (queued, running, ended): the queue figures elsewhere are stale. */
  onStateChange?(): void;
  /** Offer the result as a download (a browser page cannot open the folder it is in). */
  download?: boolean;
  /**
   * Every state the card shows, and each live preview image, for views that follow a job elsewhere;
   * engineLost: the engine stopped answering while the job was not finished.
   */
  onUpdate?(job: Job, engineLost: boolean): void;
  onPreview?(job: Job, pngBase64: string): void;
}

interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, fn: (ev: { data: string }) => void): void;
  close(): void;
  onerror: ((ev: unknown) => void) | null;
}
type EventSourceCtor = new (url: string) => EventSourceLike;

// Browsers allow six connections per host over HTTP/1.1; the result video and stills need some of them.
const MAX_STREAMS = 2;
const MAX_ENDED_CARDS = 4;

export class JobList {
  readonly el: HTMLElement;
  private readonly list = h('div', { class: 'job-list', id: 'jobs' });
  private readonly cards = new Map<string, JobCard>();
  private streams = 0;

  constructor(private readonly opts: JobListOptions) {
    this.el = h(
      'section',
      { class: 'section jobs hidden' },
      h('h2', { class: 'section-title', text: 'Jobs' }),
      this.list,
    );
  }

  has(id: string): boolean {
    return this.cards.has(id);
  }

  add(job: Job, ctx: JobContext | null): JobCard {
    const existing = this.cards.get(job.id);
    if (existing) return existing;
    const card = new JobCard(job, ctx, this.opts, () => this.remove(job.id));
    this.cards.set(job.id, card);
    this.list.insertBefore(card.el, this.list.firstChild);
    show(this.el, true);
    this.follow(card);
    this.trim();
    return card;
  }

  /** Shows jobs that are queued or running on the engine but not on this page (after a reload, or from the CLI). */
  adopt(jobs: Job[]): void {
    for (const j of [...jobs].reverse()) if (!isTerminal(j.state) && !this.cards.has(j.id)) this.add(j, null);
  }

  stopAll(): void {
    for (const c of this.cards.values()) c.stop();
  }

  private remove(id: string): void {
    const c = this.cards.get(id);
    if (!c) return;
    c.stop();
    c.el.parentNode?.removeChild(c.el);
    this.cards.delete(id);
    show(this.el, this.cards.size > 0);
  }

  /** Drops the ended cards added first, past the last few: the one the user just canceled or finished stays. */
  private trim(): void {
    const ended = [...this.cards.values()].filter((c) => isTerminal(c.job.state));
    for (const c of ended.slice(0, -MAX_ENDED_CARDS)) this.remove(c.job.id);
  }

  private follow(card: JobCard): void {
    const client = this.opts.client();
    if (!client || isTerminal(card.job.state)) return;
    const ES = (globalThis as unknown as { EventSource?: EventSourceCtor }).EventSource;
    if (this.opts.live === 'sse' && ES && this.streams < MAX_STREAMS) {
      this.streams++;
      let released = false;
      const release = () => {
        if (!released) this.streams--;
        released = true;
      };
      const es = new ES(client.eventsUrl(card.job.id));
      const onJob = (ev: { data: string }) => {
        card.engineLost(false);
        const d = JSON.parse(ev.data) as { job?: Job };
        if (d.job) card.update(d.job);
        if (d.job && isTerminal(d.job.state)) {
          es.close();
          release();
        }
      };
      for (const type of ['job', 'progress', 'done']) es.addEventListener(type, onJob);
      es.addEventListener('preview', (ev) => card.preview((JSON.parse(ev.data) as { png: string }).png));
      es.onerror = () => {
        // EventSource retries by itself while CONNECTING: the engine went away, and the job waits for it.
        if (es.readyState === 0 && !isTerminal(card.job.state)) card.engineLost(true);
        // CLOSED means it gave up (or the job ended): poll instead.
        if (es.readyState === 2) {
          release();
          if (!isTerminal(card.job.state)) card.stopWith(this.poll(client, card));
        }
      };
      card.stopWith(() => {
        es.close();
        release();
      });
    } else {
      card.stopWith(this.poll(client, card));
    }
  }

  private poll(client: EngineClient, card: JobCard): () => void {
    let failing = false;
    let shownAt = '';
    let fetching = false;
    const fetchPreview = (j: Job) => {
      // A new picture comes with a new step (or frames, or stage); one request at a time, a lost one is not retried.
      const at = `${j.progress.stage}:${j.progress.frameRange?.first}:${j.progress.step}`;
      if (j.state !== 'running' || at === shownAt || fetching) return;
      fetching = true;
      client
        .latestPreview(j.id)
        .then((png) => {
          if (!png) return;
          shownAt = at;
          card.preview(png);
        })
        .catch(() => undefined)
        .finally(() => (fetching = false));
    };
    return client.watch(
      card.job.id,
      (j) => {
        // The engine is back: the "engine stopped" state from the failed polls goes.
        if (failing) card.engineLost(false);
        failing = false;
        card.update(j);
        fetchPreview(j);
      },
      {
        intervalMs: this.opts.pollMs,
        onError: (e) => {
          failing = true;
          // Unreachable: the job is where the engine left it and goes on when it is back. Anything else is news.
          if (e.code === 'unreachable' || e.status === 0 || e.status >= 500) card.engineLost(true);
          else card.note(e.detail, 'error');
        },
      },
    );
  }
}

export class JobCard {
  readonly el: HTMLElement;
  private readonly thumb = h('img', { class: 'job-thumb-img', attrs: { alt: '' } });
  private readonly title = h('div', { class: 'job-prompt' });
  private readonly stage = h('div', { class: 'job-stage' });
  private readonly bar = h('div', { class: 'bar-fill' });
  private readonly pct = h('span', { class: 'job-pct' });
  private readonly etaEl = h('span', { class: 'job-eta' });
  private readonly noteEl = h('div', { class: 'job-note hidden' });
  private readonly restartEl = h('div', { class: 'job-restarts hidden' });
  private lost = false;
  private readonly actions = h('div', { class: 'job-actions hidden' });
  private readonly closeButton: HTMLButtonElement;
  private readonly cancelButton: HTMLButtonElement;
  private stops: (() => void)[] = [];
  private ended = false;
  private hadPreview = false;

  constructor(
    public job: Job,
    readonly ctx: JobContext | null,
    private readonly opts: JobListOptions,
    private readonly dismiss: () => void,
  ) {
    const kind = job.request.preview ? 'Preview' : 'Edit';
    this.cancelButton = button('Cancel', () => void this.cancel(), { class: 'small danger job-cancel' });
    this.closeButton = button('×', () => this.dismiss(), {
      class: 'icon quiet job-close',
      title: 'Remove from the list',
    });
    this.title.textContent = job.request.prompt;
    this.title.title = job.request.prompt;
    const client = opts.client();
    const src = job.request.source;
    // Until the first preview arrives, the thumbnail shows the clip itself rather than an empty box.
    const still = client?.stillUrl(src.path, src.in, 192);
    if (still) this.thumb.src = still;
    this.thumb.addEventListener('error', () => this.thumb.classList.add('broken'));
    this.thumb.addEventListener('load', () => this.thumb.classList.remove('broken'));
    this.el = h(
      'article',
      { class: 'job', attrs: { 'data-job-id': job.id } },
      h('div', { class: 'job-thumb' }, this.thumb),
      h(
        'div',
        { class: 'job-body' },
        h(
          'div',
          { class: 'job-head' },
          h('span', { class: `badge ${kind.toLowerCase()}`, text: kind }),
          this.title,
          this.cancelButton,
          this.closeButton,
        ),
        this.stage,
        h(
          'div',
          {
            class: 'bar',
            attrs: { role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': 'Progress' },
          },
          this.bar,
        ),
        h('div', { class: 'job-meta' }, this.pct, this.etaEl),
        this.restartEl,
        this.noteEl,
        this.actions,
      ),
    );
    this.render();
  }

  update(job: Job): void {
    if (job.id !== this.job.id) return;
    // Answers cross: Cancel's reply is the job as it was when asked (still running), and it can land after the event
    // stream's `done`. An ended job never runs again, so a later answer that says otherwise is stale.
    if (this.ended && !isTerminal(job.state)) return;
    const was = this.job.state;
    this.job = job;
    if (was !== job.state) this.opts.onStateChange?.();
    this.render();
    this.opts.onUpdate?.(job, this.lost);
    if (isTerminal(job.state) && !this.ended) {
      this.ended = true;
      this.stop();
      this.onEnded();
    }
  }

  preview(pngBase64: string): void {
    if (this.ended) return;
    this.hadPreview = true;
    this.thumb.src = `data:image/png;base64,${pngBase64}`;
    this.thumb.classList.add('live');
    this.opts.onPreview?.(this.job, pngBase64);
  }

  /**
   * The engine stopped answering while this job was not finished: the job is not lost (the engine picks it up again
   * when it restarts), but nothing is waiting in a queue either, and Cancel cannot reach anyone.
   */
  engineLost(lost: boolean): void {
    if (this.lost === lost || (lost && this.ended)) return;
    this.lost = lost;
    this.render();
    // The action bar and the viewer show this job too: they must not say it waits in a queue that is gone.
    this.opts.onUpdate?.(this.job, lost);
  }

  /** A line under the progress: placement status, or why something failed. */
  note(text: string | null, tone: 'info' | 'ok' | 'error' = 'info', action?: { label: string; run: () => void }): void {
    show(this.noteEl, !!text);
    this.noteEl.className = `job-note ${tone}${text ? '' : ' hidden'}`;
    fill(this.noteEl, text ?? '', action ? button(action.label, action.run, { class: 'small link' }) : null);
  }

  stopWith(stop: () => void): void {
    this.stops.push(stop);
  }

  stop(): void {
    for (const s of this.stops.splice(0)) s();
  }

  private async cancel(): Promise<void> {
    const client = this.opts.client();
    if (!client) return;
    setDisabled(this.cancelButton, true);
    this.cancelButton.textContent = 'Canceling…';
    try {
      this.update(await client.cancel(this.job.id));
    } catch (e) {
      const p = describeError(e);
      this.note(`${p.title}: ${p.detail}`, 'error');
      setDisabled(this.cancelButton, false);
      this.cancelButton.textContent = 'Cancel';
    }
  }

  private onEnded(): void {
    const j = this.job;
    const client = this.opts.client();
    if (j.state === 'succeeded' && j.result) {
      const still = client?.stillUrl(j.result.path, j.result.durationSec / 2, 192);
      if (still) this.thumb.src = still;
      this.thumb.classList.remove('live');
      fill(this.actions);
      show(this.actions, true);
      const preview = !!j.request.preview;
      if (preview && this.opts.onRenderFull)
        this.actions.appendChild(
          button('Render full', () => this.opts.onRenderFull!(this), {
            class: 'small primary job-render-full',
            title: `The whole range with this preview's seed (${j.seed}) and settings`,
          }),
        );
      if (this.opts.onCompare)
        this.actions.appendChild(
          button('Compare', () => this.opts.onCompare!(this.job), {
            class: 'small',
            title: 'Play the result beside the original',
          }),
        );
      if (this.opts.download && client) {
        const a = h('a', {
          class: 'btn small quiet job-download',
          text: 'Download',
          attrs: { href: client.downloadUrl(j.id), download: basename(j.result.path) },
        });
        this.actions.appendChild(a);
      } else {
        this.actions.appendChild(
          button('Show in folder', () => this.opts.onReveal(j.result!.path), {
            class: 'small quiet job-reveal',
            title: 'Open the folder that holds the result',
          }),
        );
      }
      if (!preview) this.actions.appendChild(this.pathLine(j.result.path));
    } else if (j.state === 'failed' && j.error) {
      this.note(j.error.detail, 'error');
    } else if (j.state === 'canceled' && this.hadPreview) {
      this.thumb.classList.add('dim');
    }
    this.opts.onEnded(this);
  }

  /** Where the result is, selectable, with Copy: in a browser the path is the only way to find the file on disk. */
  private pathLine(file: string): HTMLElement {
    const field = h('input', {
      class: 'input mono job-path',
      attrs: { type: 'text', readonly: '', 'aria-label': 'Result file' },
    });
    field.value = file;
    const copied = h('span', { class: 'job-copied', attrs: { 'aria-live': 'polite' } });
    const copy = button(
      'Copy',
      () =>
        void copyText(file, field).then((ok) => {
          copied.textContent = ok ? 'Copied' : 'Select the path and copy it';
        }),
      { class: 'small quiet job-copy', title: 'Copy the path of the result file' },
    );
    return h('div', { class: 'job-path-row' }, field, copy, copied);
  }

  private render(): void {
    const j = this.job;
    const p = j.progress;
    const terminal = isTerminal(j.state);
    this.el.setAttribute('data-state', j.state);
    if (this.lost && !terminal) this.el.setAttribute('data-engine-lost', 'true');
    else this.el.removeAttribute('data-engine-lost');
    this.stage.textContent = jobLine(j, this.lost);
    show(this.restartEl, j.restarts > 0);
    this.restartEl.textContent =
      j.restarts > 0
        ? `The engine stopped while this job ran; it restarted from the beginning${j.restarts > 1 ? ` (${j.restarts} times)` : ''}.`
        : '';
    const fraction = j.state === 'succeeded' ? 1 : p.fraction;
    this.bar.style.width = `${Math.round(fraction * 1000) / 10}%`;
    this.bar.parentElement?.setAttribute('aria-valuenow', String(Math.floor(fraction * 100)));
    this.pct.textContent =
      j.state === 'queued'
        ? ''
        : j.state === 'canceled' || j.state === 'failed'
          ? `stopped at ${percent(p.fraction)}`
          : percent(fraction);
    this.etaEl.textContent = j.state === 'running' ? eta(p.etaSec) : j.state === 'succeeded' ? `seed ${j.seed}` : '';
    // No one to cancel with while the engine is away; the job itself is kept for its restart.
    show(this.cancelButton, !terminal && !this.lost);
    show(this.closeButton, terminal);
    // The restart has its own line above; its warning would only say it again.
    const warning = j.warnings.filter((w) => !/engine restarted while this job was running/.test(w)).at(-1);
    if (warning && !terminal) this.note(warning, 'info');
  }
}

/** The clipboard where the host has one (browsers, on a click); else the text is selected for the user to copy. */
async function copyText(text: string, field: HTMLInputElement): Promise<boolean> {
  const clipboard = (globalThis as { navigator?: { clipboard?: { writeText(t: string): Promise<void> } } }).navigator
    ?.clipboard;
  try {
    if (clipboard) {
      await clipboard.writeText(text);
      return true;
    }
  } catch {
    // Refused (no focus, no permission): fall back to selecting it.
  }
  field.focus?.();
  field.select?.();
  return false;
}
