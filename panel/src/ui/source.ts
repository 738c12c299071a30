// What will be edited: Premiere's selected clip, or in a browser a media path typed by the user. Either way the UI
// shows what host.getSelection() returns; the browser adds a small form that drives that selection.
import type { FolderListing } from '../../../engine/src/api/schemas';
import type { MediaInfo } from '../engine-client';
import type { ClipSelection, Host, Selection } from '../host/host';
import { button, field, fill, h, input, setInvalid, show, type Field } from './dom';
import { describeError, type Problemish } from './errors';
import { basename, fpsLabel, seconds, timecode, trackName } from './format';

export interface SourceFormValues {
  path: string;
  /** Seconds as typed; empty means the start (in) or the end (out) of the media. */
  in: string;
  out: string;
}

/** A host without a selection of its own (the browser) lets the user type the source; the host reads it from here. */
export interface SourcePicker {
  values(): SourceFormValues;
  set(values: Partial<SourceFormValues>): void;
  /** The last probe of the current path, or null. */
  info(): MediaInfo | null;
  /** Files chosen before (probed without a problem), newest first. */
  recent?(): string[];
  /** Folders and videos inside the user's folders, through the engine (a page cannot learn a picked file's path). */
  listFolder?(path?: string): Promise<FolderListing>;
  /** The edit form as last left, kept across reloads (the browser); undefined where nothing is kept. */
  loadDraft?(): unknown;
  saveDraft?(draft: unknown): void;
}

const SELECTION_MESSAGES: Record<
  Exclude<Selection['kind'], 'clip'>,
  (s: Selection, host: Host) => { title: string; detail: string }
> = {
  'no-project': () => ({ title: 'No project open', detail: 'Open or create a project in Premiere Pro.' }),
  'no-sequence': () => ({
    title: 'No sequence open',
    detail: "Open a sequence: Reshoot edits clips on the active sequence's timeline.",
  }),
  none: (_s, host) =>
    host.kind === 'browser'
      ? { title: 'No clip yet', detail: 'Type the path of a video file on this machine and press Probe.' }
      : { title: 'Nothing selected', detail: 'Select one video clip on the timeline.' },
  several: (s) => ({
    title: `${s.kind === 'several' ? s.count : 'Several'} clips selected`,
    detail: 'Select just one video clip; Reshoot edits one clip at a time.',
  }),
  'audio-only': () => ({ title: 'Audio clip selected', detail: 'Reshoot edits pictures: select a video clip.' }),
};

export class SourceSection {
  readonly el: HTMLElement;
  private readonly card = h('div', { class: 'clip-card', id: 'clip-card', attrs: { 'aria-live': 'polite' } });
  private readonly cardField: Field;
  private readonly pathField?: Field;
  private readonly inField?: Field;
  private readonly outField?: Field;
  private readonly probeLine = h('div', { class: 'probe-line', id: 'probe-info' });
  private readonly recentRow = h('div', { class: 'recent-clips', id: 'recent-clips' });
  private readonly browser = h('div', { class: 'file-browser hidden', id: 'file-browser' });
  private selection: Selection | null = null;
  private error: Problemish | null = null;
  private refreshing: Promise<Selection | null> | null = null;
  private again = false;
  private listeners: ((s: Selection | null) => void)[] = [];

  constructor(
    private readonly host: Host,
    private readonly picker: SourcePicker | undefined,
  ) {
    this.cardField = { row: this.card, control: this.card, message: h('div', { class: 'field-message' }) };
    const children: HTMLElement[] = [
      h('h2', { class: 'section-title', text: host.kind === 'browser' ? 'Source clip' : 'Selected clip' }),
    ];
    if (picker) {
      const pathInput = input('source-path', { placeholder: '/path/to/clip.mp4' });
      pathInput.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') this.probe();
      });
      pathInput.addEventListener('change', () => this.probe());
      const probeButton = button('Probe', () => this.probe(), {
        id: 'probe',
        title: "Read the file's size, frame rate and length through the engine",
      });
      const extra = h('div', { class: 'field-buttons' }, probeButton);
      if (picker.listFolder)
        extra.appendChild(
          button('Browse…', () => void this.toggleBrowser(), {
            id: 'browse',
            title: 'Choose a video from your folders',
          }),
        );
      this.pathField = field('Media file on this machine', pathInput, { extra });
      this.pathField.row.appendChild(this.recentRow);
      this.pathField.row.appendChild(this.browser);
      // Timecode as Premiere writes it, or seconds: a text field, since a number field refuses "00:00:01:12".
      const inInput = input('source-in', { type: 'text', placeholder: '00:00:00:00', autocomplete: 'off' });
      const outInput = input('source-out', { type: 'text', placeholder: 'end', autocomplete: 'off' });
      for (const el of [inInput, outInput]) el.addEventListener('change', () => this.applyRange());
      // One message under both: a range problem is usually about the pair, and half the width is too narrow for it.
      const rangeMessage = h('div', { class: 'field-message range-message', attrs: { role: 'alert' } });
      this.inField = {
        ...field('In', inInput, { hint: 'Timecode or seconds; blank: the start' }),
        message: rangeMessage,
      };
      this.outField = {
        ...field('Out', outInput, { hint: 'Timecode or seconds; blank: the end' }),
        message: rangeMessage,
      };
      children.push(
        this.pathField.row,
        this.probeLine,
        h('div', { class: 'row two' }, this.inField.row, this.outField.row),
        rangeMessage,
      );
    }
    children.push(this.card, this.cardField.message);
    this.el = h('section', { class: 'section source' }, children);
    // What the page had before a reload (the host keeps it): the fields show it, and the app reads it again once
    // the engine answers.
    if (picker) {
      const v = picker.values();
      (this.pathField!.control as HTMLInputElement).value = v.path;
      (this.inField!.control as HTMLInputElement).value = v.in;
      (this.outField!.control as HTMLInputElement).value = v.out;
    }
    this.renderRecent();
    this.renderSelection(null, null);
  }

  /** The files chosen before, one click each: typing an absolute path again is what a web page should spare. */
  private renderRecent(): void {
    const recent = this.picker?.recent?.() ?? [];
    const current = this.picker?.values().path;
    const others = recent.filter((p) => p !== current).slice(0, 5);
    show(this.recentRow, others.length > 0);
    fill(
      this.recentRow,
      others.length ? h('span', { class: 'recent-label', text: 'Recent:' }) : null,
      others.map((p) => {
        const b = button(basename(p), () => this.choose(p), { class: 'small quiet recent-clip', title: p });
        b.setAttribute('data-path', p);
        return b;
      }),
    );
  }

  private async toggleBrowser(): Promise<void> {
    if (!this.browser.classList.contains('hidden')) return show(this.browser, false);
    show(this.browser, true);
    const current = (this.pathField?.control as HTMLInputElement | undefined)?.value.trim() ?? '';
    // Where the current clip is, when it is inside the user's folders; else the folders themselves.
    const folder = current.replace(/[\\/][^\\/]*$/, '');
    await this.browse(folder || undefined).catch(() => this.browse(undefined));
  }

  /** Lists a folder in the picker; rejects (for the caller to fall back) when the engine refuses it. */
  private async browse(folder: string | undefined): Promise<void> {
    const picker = this.picker;
    if (!picker?.listFolder) return;
    fill(this.browser, h('div', { class: 'file-browser-note', text: 'Reading the folder…' }));
    let listing: FolderListing;
    try {
      listing = await picker.listFolder(folder);
    } catch (e) {
      const p = describeError(e);
      fill(this.browser, h('div', { class: 'file-browser-note error', text: `${p.title}: ${p.detail}` }));
      if (folder !== undefined) throw e;
      return;
    }
    const rows = listing.entries.map((entry) => {
      const b = button(entry.kind === 'folder' ? `${entry.name}/` : entry.name, () => {
        if (entry.kind === 'folder') void this.browse(entry.path).catch(() => undefined);
        else {
          show(this.browser, false);
          this.choose(entry.path);
        }
      });
      b.className = `file-entry ${entry.kind}`;
      b.setAttribute('data-path', entry.path);
      b.title = entry.path;
      return b;
    });
    fill(
      this.browser,
      h(
        'div',
        { class: 'file-browser-head' },
        listing.parent
          ? button('Up', () => void this.browse(listing.parent).catch(() => undefined), { class: 'small quiet' })
          : null,
        listing.path ? button('Your folders', () => void this.browse(undefined), { class: 'small quiet' }) : null,
        h('span', { class: 'file-browser-path mono', text: listing.path ?? 'Your folders' }),
      ),
      rows.length
        ? h('div', { class: 'file-list' }, rows)
        : h('div', { class: 'file-browser-note', text: 'No folders or videos here.' }),
      listing.truncated ? h('div', { class: 'file-browser-note', text: 'Only the first entries are listed.' }) : null,
    );
  }

  private choose(path: string): void {
    if (!this.pathField) return;
    (this.pathField.control as HTMLInputElement).value = path;
    this.probe();
  }

  onChange(cb: (s: Selection | null) => void): void {
    this.listeners.push(cb);
  }

  /** The selected clip, when exactly one video clip is. */
  clip(): ClipSelection | null {
    return this.selection?.kind === 'clip' ? this.selection : null;
  }

  /** What is wrong with the source as last read (a range past the end, a file that is not a video), or null. */
  problem(): Problemish | null {
    return this.error;
  }

  /** Where a problem about `source.*` is shown. */
  fieldFor(name: string): Field | undefined {
    if (name === 'source.path') return this.pathField ?? this.cardField;
    if (name === 'source.in') return this.inField ?? this.cardField;
    if (name === 'source.out') return this.outField ?? this.cardField;
    if (name === 'source') return this.pathField ?? this.cardField;
    return undefined;
  }

  clearInvalid(): void {
    for (const f of [this.pathField, this.inField, this.outField, this.cardField]) if (f) setInvalid(f, null);
  }

  /** Re-reads the selection; concurrent calls coalesce, and a call during a read causes one more read after it. */
  refresh(): Promise<Selection | null> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      let result: Selection | null;
      do {
        this.again = false;
        try {
          result = await this.host.getSelection();
          this.renderSelection(result, null);
          this.renderRecent();
        } catch (e) {
          result = null;
          this.renderSelection(null, describeError(e));
        }
      } while (this.again);
      this.refreshing = null;
      this.selection = result;
      for (const cb of this.listeners) cb(result);
      return result;
    })();
    return this.refreshing;
  }

  private probe(): void {
    if (!this.picker || !this.pathField) return;
    const path = (this.pathField.control as HTMLInputElement).value.trim();
    this.picker.set({ path });
    // The host probes while building the selection; the card shows "reading" until it answers.
    fill(this.probeLine, path ? 'Reading the file…' : '');
    void this.refresh();
  }

  private applyRange(): void {
    if (!this.picker || !this.inField || !this.outField) return;
    this.picker.set({
      in: (this.inField.control as HTMLInputElement).value.trim(),
      out: (this.outField.control as HTMLInputElement).value.trim(),
    });
    void this.refresh();
  }

  /** Puts values into the form (history "reuse"); browser only. */
  setValues(v: Partial<SourceFormValues>): void {
    if (!this.picker) return;
    if (v.path !== undefined && this.pathField) (this.pathField.control as HTMLInputElement).value = v.path;
    if (v.in !== undefined && this.inField) (this.inField.control as HTMLInputElement).value = v.in;
    if (v.out !== undefined && this.outField) (this.outField.control as HTMLInputElement).value = v.out;
    this.picker.set(v);
  }

  private renderSelection(sel: Selection | null, error: Problemish | null): void {
    this.error = error;
    this.clearInvalid();
    this.renderProbe(error);
    if (error) {
      const f = error.field ? this.fieldFor(error.field) : undefined;
      const atField = !!f && f !== this.cardField;
      this.card.className = 'clip-card error';
      // When a form field carries the message, the card only points at it rather than repeating it.
      fill(
        this.card,
        h('div', { class: 'clip-title', text: error.title }),
        h('div', { class: 'clip-detail', text: atField ? 'See the highlighted field above.' : error.detail }),
      );
      if (f && atField) setInvalid(f, error.detail);
      return;
    }
    if (!sel) {
      this.card.className = 'clip-card empty';
      fill(
        this.card,
        h('div', {
          class: 'clip-detail',
          text:
            this.host.kind === 'browser'
              ? 'Type the path of a video file on this machine and press Probe.'
              : 'Reading the selection…',
        }),
      );
      return;
    }
    if (sel.kind !== 'clip') {
      const m = SELECTION_MESSAGES[sel.kind](sel, this.host);
      this.card.className = `clip-card empty kind-${sel.kind}`;
      fill(
        this.card,
        h('div', { class: 'clip-title', text: m.title }),
        h('div', { class: 'clip-detail', text: m.detail }),
      );
      return;
    }
    this.card.className = 'clip-card';
    const premiere = this.host.kind === 'premiere';
    const start = premiere ? sel.sequenceStart : sel.sourceIn;
    const end = premiere ? sel.sequenceEnd : sel.sourceOut;
    fill(
      this.card,
      h(
        'div',
        { class: 'clip-head' },
        h('span', { class: 'clip-title', text: sel.name || basename(sel.mediaPath) }),
        premiere ? h('span', { class: 'badge', text: trackName(sel.trackIndex) }) : null,
      ),
      h(
        'div',
        { class: 'clip-facts' },
        h('span', { class: 'mono', text: `${timecode(start, sel.fps)} – ${timecode(end, sel.fps)}` }),
        h('span', { text: seconds(end - start) }),
        h('span', { text: `${sel.frames} frames` }),
      ),
      premiere
        ? h('div', {
            class: 'clip-sub mono',
            text: `source ${timecode(sel.sourceIn, sel.fps)} – ${timecode(sel.sourceOut, sel.fps)} · ${sel.frameWidth}×${sel.frameHeight} · ${fpsLabel(sel.fps)}`,
          })
        : null,
      sel.renderReason
        ? h('div', {
            class: 'note warn',
            text: `Premiere renders this clip first (${sel.renderReason}), then the engine edits the rendered copy.`,
          })
        : null,
      sel.renderReason ? this.presetRow() : null,
    );
  }

  /** The export preset that render uses, and a way to choose one (no preset ships with the panel yet). */
  private presetRow(): HTMLElement | null {
    const host = this.host;
    if (!host.exportPreset || !host.chooseExportPreset) return null;
    const line = h('span', { class: 'preset-line', id: 'render-preset' });
    const say = (text: string, tone: 'info' | 'error' = 'info') => {
      line.textContent = text;
      line.className = `preset-line ${tone}`;
    };
    const showCurrent = () =>
      host.exportPreset!().then(
        (p) =>
          say(
            p.path
              ? `Render preset: ${basename(p.path)}${p.origin === 'bundled' ? ` (comes with Reshoot${p.problem ? `; ${p.problem}` : ''})` : ''}`
              : `No render preset yet${p.problem ? ` (${p.problem})` : ''}: choose one saved from Premiere's Export mode.`,
            p.path ? 'info' : 'error',
          ),
        (e) => say(describeError(e).detail, 'error'),
      );
    const choose = button(
      'Choose render preset…',
      () =>
        void host.chooseExportPreset!().then(
          (p) => (p ? showCurrent() : undefined),
          (e) => say(describeError(e).detail, 'error'),
        ),
      { class: 'small quiet', id: 'choose-preset', title: 'An .epr export preset saved from Premiere' },
    );
    void showCurrent();
    return h('div', { class: 'clip-preset' }, line, choose);
  }

  private renderProbe(error: Problemish | null): void {
    if (!this.picker) return;
    const info = this.picker.info();
    if (error || !info) {
      fill(this.probeLine, '');
      show(this.probeLine, false);
      return;
    }
    const v = info.video;
    show(this.probeLine, true);
    fill(
      this.probeLine,
      h('span', { text: `${v.displayWidth}×${v.displayHeight}` }),
      h('span', { text: fpsLabel(v.fps) }),
      h('span', { text: seconds(info.durationSec) }),
      h('span', { text: `${v.frameCount} frames` }),
      h('span', { text: v.codec }),
    );
  }
}
