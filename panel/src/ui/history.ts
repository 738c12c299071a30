// This project's edits, newest first, kept by the host (next to the project in Premiere, localStorage in a browser).
import type { Host, HistoryEntry } from '../host/host';
import { button, fill, h, setDisabled, show } from './dom';
import { describeError } from './errors';
import { ago, basename } from './format';

const MAX_ENTRIES = 200;

export interface HistoryOptions {
  stillUrl(path: string, t: number, maxWidth: number): string | null;
  /** Premiere: place the result again over the same timeline range. */
  onPlace?: (e: HistoryEntry) => Promise<string>;
  /** Browser: show it in the before/after player. */
  onCompare?(e: HistoryEntry): void;
  onReuse(e: HistoryEntry): void;
  /** Premiere: open the folder that holds the result. Browser: play the file in a new tab. */
  onReveal(e: HistoryEntry): void;
  /** Browser: the result as a file to save; a page cannot open a folder on disk. */
  downloadUrl?(e: HistoryEntry): string | null;
}

export class HistoryView {
  readonly el: HTMLElement;
  // UXP does not support <ol>/<li>: a list of divs with list roles reads the same to assistive tools.
  private readonly list = h('div', { class: 'history-list', id: 'history', attrs: { role: 'list' } });
  private readonly empty = h('div', {
    class: 'empty-note',
    text: 'Finished edits appear here, with their prompt and seed so you can repeat or vary them.',
  });
  private readonly error = h('div', { class: 'note error hidden' });
  private entries: HistoryEntry[] = [];

  constructor(
    private readonly host: Host,
    private readonly opts: HistoryOptions,
  ) {
    this.el = h(
      'section',
      { class: 'section history' },
      h('h2', { class: 'section-title', text: host.kind === 'premiere' ? "This project's edits" : 'History' }),
      this.error,
      this.empty,
      this.list,
    );
  }

  async load(): Promise<void> {
    try {
      this.entries = await this.host.loadHistory();
      show(this.error, false);
    } catch (e) {
      this.showError(e);
    }
    this.render();
  }

  async add(entry: HistoryEntry): Promise<void> {
    this.entries = [entry, ...this.entries.filter((e) => e.jobId !== entry.jobId)].slice(0, MAX_ENTRIES);
    this.render();
    await this.save();
  }

  async update(jobId: string, patch: Partial<HistoryEntry>): Promise<void> {
    this.entries = this.entries.map((e) => (e.jobId === jobId ? { ...e, ...patch } : e));
    this.render();
    await this.save();
  }

  private async save(): Promise<void> {
    try {
      await this.host.saveHistory(this.entries);
      show(this.error, false);
    } catch (e) {
      this.showError(e);
    }
  }

  private showError(e: unknown): void {
    const p = describeError(e);
    this.error.textContent = `History could not be saved or read: ${p.detail}`;
    show(this.error, true);
  }

  /** Draws the list again, e.g. once the engine is reachable and thumbnails can be loaded. */
  render(): void {
    show(this.empty, this.entries.length === 0);
    fill(
      this.list,
      this.entries.map((e) => this.item(e)),
    );
  }

  private item(e: HistoryEntry): HTMLElement {
    const thumbUrl = this.opts.stillUrl(e.resultPath, 0, 192);
    const thumb = h('img', { class: 'history-thumb', attrs: { alt: '', loading: 'lazy' } });
    if (thumbUrl) thumb.src = thumbUrl;
    // A result that was moved or deleted keeps its entry (the prompt and seed still matter) but loses its picture.
    thumb.addEventListener('error', () => thumb.classList.add('broken'));
    const status = h('div', { class: 'history-status' });
    const actions: HTMLElement[] = [];
    if (this.opts.onPlace && e.placement) {
      const place = this.opts.onPlace;
      // Every outcome of a placement ends up in the entry's status line, so the click handler need not wait for it.
      const placeAgain = async (): Promise<void> => {
        setDisabled(b, true);
        status.textContent = 'Placing…';
        try {
          status.textContent = await place(e);
        } catch (err) {
          status.textContent = describeError(err).detail;
          status.classList.add('error');
        } finally {
          setDisabled(b, false);
        }
      };
      const b = button('Place again', () => void placeAgain(), { class: 'small history-place' });
      actions.push(b);
    }
    if (this.opts.onCompare) actions.push(button('Compare', () => this.opts.onCompare!(e), { class: 'small' }));
    const browser = this.host.kind === 'browser';
    actions.push(
      button(browser ? 'Open in a tab' : 'Reveal file', () => this.opts.onReveal(e), {
        class: 'small quiet history-open',
        title: browser ? `Play ${basename(e.resultPath)} in a new browser tab` : e.resultPath,
      }),
    );
    const download = this.opts.downloadUrl?.(e);
    if (download)
      actions.push(
        h('a', {
          class: 'btn small quiet history-download',
          text: 'Download',
          title: e.resultPath,
          attrs: { href: download, download: basename(e.resultPath) },
        }),
      );
    actions.push(
      button('Reuse', () => this.opts.onReuse(e), {
        class: 'small quiet',
        title: 'Put this prompt, seed and settings back into the form',
      }),
    );
    const s = e.settings;
    const facts = [
      `seed ${e.seed}`,
      `${s.steps} steps`,
      `guidance ${s.guidance}`,
      s.strength !== undefined ? `strength ${s.strength}` : null,
      s.method,
      s.mask,
    ]
      .filter(Boolean)
      .join(' · ');
    return h(
      'div',
      { class: 'history-item', attrs: { 'data-job-id': e.jobId, role: 'listitem' } },
      h('div', { class: 'history-thumb-wrap' }, thumb),
      h(
        'div',
        { class: 'history-body' },
        h('div', {
          class: 'history-prompt',
          text: e.prompt,
          title: e.sourcePrompt ? `was: ${e.sourcePrompt}` : e.prompt,
        }),
        h('div', { class: 'history-meta', text: `${e.clipName || basename(e.resultPath)} · ${ago(e.createdAt)}` }),
        h('div', { class: 'history-facts', text: facts }),
        h('div', { class: 'history-actions' }, actions),
        status,
      ),
    );
  }
}
