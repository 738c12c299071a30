// The bar pinned to the bottom of the panel: Preview and Edit, and the progress of the job they last started. In a
// docked 320×560 panel the form, the viewer and the job list cannot all be on screen, so the action and what it did
// stay here, in view, whatever the user has scrolled to.
import type { Job } from '../../../engine/src/api/schemas';
import { isTerminal } from '../engine-client';
import { h, show } from './dom';
import { jobLine, percent } from './format';

export class ActionBar {
  readonly el: HTMLElement;
  private readonly badge = h('span', { class: 'badge' });
  private readonly stage = h('span', { class: 'current-stage' });
  private readonly pct = h('span', { class: 'current-pct mono' });
  private readonly fillEl = h('div', { class: 'bar-fill' });
  private readonly bar = h(
    'div',
    {
      class: 'bar',
      attrs: { role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': 'Job progress' },
    },
    this.fillEl,
  );
  private readonly current: HTMLElement;
  private jobId: string | null = null;

  constructor(actions: HTMLElement, onShowJob: (jobId: string) => void) {
    this.current = h(
      'button',
      {
        class: 'current-job hidden',
        id: 'current-job',
        title: 'Show this job in the list',
        attrs: { type: 'button' },
        on: { click: () => this.jobId && onShowJob(this.jobId) },
      },
      h('span', { class: 'current-line' }, this.badge, this.stage, this.pct),
      this.bar,
    );
    this.el = h(
      'div',
      { class: 'actionbar', id: 'actionbar', attrs: { role: 'region', 'aria-label': 'Actions' } },
      this.current,
      actions,
    );
  }

  /** The job the buttons just started; it stays here, ended or not, until the next one. */
  track(job: Job): void {
    this.jobId = job.id;
    this.update(job);
  }

  update(job: Job, engineLost = false): void {
    if (job.id !== this.jobId) return;
    const kind = job.request.preview ? 'Preview' : 'Edit';
    show(this.current, true);
    this.current.setAttribute('data-job-id', job.id);
    this.current.setAttribute('data-state', job.state);
    if (engineLost && !isTerminal(job.state)) this.current.setAttribute('data-engine-lost', 'true');
    else this.current.removeAttribute('data-engine-lost');
    this.badge.className = `badge ${kind.toLowerCase()}`;
    this.badge.textContent = kind;
    this.stage.textContent = jobLine(job, engineLost);
    const fraction = job.state === 'succeeded' ? 1 : job.progress.fraction;
    this.pct.textContent =
      job.state === 'queued' || (isTerminal(job.state) && job.state !== 'succeeded') ? '' : percent(fraction);
    this.fillEl.style.width = `${Math.round(fraction * 1000) / 10}%`;
    this.bar.setAttribute('aria-valuenow', String(Math.floor(fraction * 100)));
  }
}
