// The Host for a browser tab served by the engine itself. There is no timeline: the user types a media path on this
// machine (the engine reads files, the browser never uploads them), the "selection" is that file's range, and the
// result is shown beside the original instead of being placed.
import { SourceRange, validationProblem, type FolderListing } from '../../../engine/src/api/schemas';
import { parseTime, secondsToTimecode } from '../../../engine/src/api/timecode';
import { EngineClient, EngineError, type MediaInfo } from '../engine-client';
import type { SourceFormValues, SourcePicker } from '../ui/source';
import { FieldError } from '../ui/errors';
import { basename } from '../ui/format';
import type { ClipSelection, HistoryEntry, Host, PlaceResult, Selection, SourceRef } from './host';

const TICKS_PER_SECOND = 254016000000n;
const TOKEN_KEY = 'reshoot.token';
const HISTORY_KEY = 'reshoot.history.v1';
/** The source fields as last typed, and the files probed without a problem: a reload keeps both. */
const SOURCE_KEY = 'reshoot.source.v1';
const RECENT_KEY = 'reshoot.recent.v1';
const RECENT_MAX = 8;
const DRAFT_KEY = 'reshoot.form.v1';

export class BrowserHost implements Host, SourcePicker {
  readonly kind = 'browser' as const;
  private form: SourceFormValues = { path: '', in: '', out: '' };
  private probed: { path: string; info: MediaInfo } | null = null;
  private probing: { path: string; promise: Promise<MediaInfo> } | null = null;
  private listeners = new Set<() => void>();

  constructor(private readonly win: Window = window) {
    this.captureToken();
    const saved = this.readJson(SOURCE_KEY) as Partial<SourceFormValues> | null;
    if (saved && typeof saved.path === 'string')
      this.form = { path: saved.path, in: String(saved.in ?? ''), out: String(saved.out ?? '') };
  }

  loadDraft(): unknown {
    return this.readJson(DRAFT_KEY);
  }

  saveDraft(draft: unknown): void {
    this.writeJson(DRAFT_KEY, draft);
  }

  async listFolder(path?: string): Promise<FolderListing> {
    return (await this.client()).files(path);
  }

  recent(): string[] {
    const list = this.readJson(RECENT_KEY);
    return Array.isArray(list) ? list.filter((p): p is string => typeof p === 'string') : [];
  }

  engineUrl(): string {
    return this.win.location.origin;
  }

  async readToken(): Promise<string | null> {
    return this.storage('sessionStorage')?.getItem(TOKEN_KEY) ?? this.memoryToken;
  }

  // -- SourcePicker: the form the UI shows in place of a timeline selection --

  values(): SourceFormValues {
    return { ...this.form };
  }

  set(values: Partial<SourceFormValues>): void {
    // Naming the path again (Probe pressed) reads the file again: it may have been re-rendered in between.
    if (values.path !== undefined && !this.probing) this.probed = null;
    const next = { ...this.form, ...values };
    if (next.path === this.form.path && next.in === this.form.in && next.out === this.form.out) return;
    this.form = next;
    this.writeJson(SOURCE_KEY, next);
    for (const cb of this.listeners) cb();
  }

  info(): MediaInfo | null {
    return this.probed && this.probed.path === this.form.path ? this.probed.info : null;
  }

  // -- Host --

  async getSelection(): Promise<Selection> {
    const { path } = this.form;
    if (!path) return { kind: 'none' };
    const info = await this.probe(path);
    const v = info.video;
    const fps = v.fps.num / v.fps.den;
    const duration = (v.frameCount * v.fps.den) / v.fps.num;
    const time = (text: string, blank: number, name: 'In' | 'Out') => {
      if (text.trim() === '') return blank;
      const sec = parseTime(text, v.fps);
      if (sec === undefined)
        throw new FieldError(
          'Check In and Out',
          `${name} "${text.trim()}" is not a time: write timecode in the clip's rate (${secondsToTimecode(1.5, v.fps)}) or seconds (1.5)`,
          name === 'In' ? 'source.in' : 'source.out',
        );
      return sec;
    };
    const range = { path, in: time(this.form.in, 0, 'In'), out: time(this.form.out, duration, 'Out') };
    // The engine's own schema, so a bad range reads here exactly as the engine would word it.
    const parsed = SourceRange.safeParse(range);
    if (!parsed.success) {
      const p = validationProblem(parsed.error, 'range');
      throw new FieldError(
        p.title,
        p.detail,
        p.field ? `source.${p.field}` : 'source',
        p.issues?.map((i) => ({ field: `source.${i.field}`, message: i.message })),
      );
    }
    // Frames whose start lies in [in, out), as the engine counts them; the out point may name the end of the last frame.
    const first = Math.ceil(range.in * fps - 1e-6);
    const end = Math.min(v.frameCount, Math.ceil(range.out * fps - 1e-6));
    const frames = Math.max(0, end - first);
    // In the editor's words, like the engine's (media/range.ts): In and Out, times as timecode, the clip by name.
    const tc = (t: number) => secondsToTimecode(t, v.fps);
    const length = `${tc(duration)}, ${v.frameCount} frames`;
    if (range.in >= duration)
      throw new FieldError(
        'Check In and Out',
        `In is at or past the end of the clip (${length}); choose an In before ${tc(duration)}`,
        'source.in',
      );
    if (range.out > duration + (1 + 1e-6) / fps)
      throw new FieldError(
        'Check In and Out',
        `Out is past the end of the clip (${length}); leave it blank for the end, or choose a time at or before ${tc(duration)}`,
        'source.out',
      );
    if (frames === 0)
      throw new FieldError(
        'Check In and Out',
        `Out must be at least a frame after In: no frame starts between ${tc(range.in)} and ${tc(range.out)} (frames are ${Number((1 / fps).toFixed(4))} s apart); widen the range`,
        'source.out',
      );
    const ticks = (frameCount: number) =>
      ((BigInt(frameCount) * TICKS_PER_SECOND * BigInt(v.fps.den)) / BigInt(v.fps.num)).toString();
    const clip: ClipSelection = {
      kind: 'clip',
      name: basename(path),
      mediaPath: path,
      sourceIn: range.in,
      sourceOut: range.out,
      sequenceStart: 0,
      sequenceEnd: (frames * v.fps.den) / v.fps.num,
      sequenceStartTicks: '0',
      sequenceEndTicks: ticks(frames),
      fps,
      frameWidth: v.displayWidth,
      frameHeight: v.displayHeight,
      frames,
      trackIndex: 0,
      renderReason: null,
    };
    return clip;
  }

  onSelectionChanged(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  async prepareSource(sel: ClipSelection): Promise<SourceRef> {
    return { path: sel.mediaPath, in: sel.sourceIn, out: sel.sourceOut };
  }

  /** Empty: the engine picks its own renders folder (output.folder is left out of the request). */
  async resultsFolder(): Promise<string> {
    return '';
  }

  /** Nothing to place in a browser; the UI shows the result beside the original instead. */
  async placeResult(): Promise<PlaceResult> {
    return { trackIndex: 0, newTrack: false, notCarried: [], lookBaked: false, undoSteps: 1 };
  }

  /** A browser cannot open a folder on disk; it opens the result video in a new tab instead. */
  async revealFile(path: string): Promise<void> {
    // Opened before any await: browsers block pop-ups that do not come straight from a click.
    const tab = this.win.open('about:blank', '_blank');
    try {
      const client = await this.client();
      const job = (await client.jobs()).find((j) => j.outputPath === path || j.result?.path === path);
      if (!job)
        throw new FieldError(
          'Result not found',
          `the engine has no job that wrote ${path}; open the file from its folder instead`,
        );
      const url = client.resultUrl(job.id);
      if (tab) {
        tab.opener = null;
        tab.location.href = url;
      } else {
        this.win.location.assign(url);
      }
    } catch (e) {
      tab?.close();
      throw e;
    }
  }

  async loadHistory(): Promise<HistoryEntry[]> {
    const raw = this.storage('localStorage')?.getItem(HISTORY_KEY);
    if (!raw) return [];
    try {
      const parsed: unknown = JSON.parse(raw);
      return Array.isArray(parsed) ? (parsed as HistoryEntry[]) : [];
    } catch {
      return [];
    }
  }

  async saveHistory(entries: HistoryEntry[]): Promise<void> {
    const store = this.storage('localStorage');
    if (!store) throw new FieldError('History not saved', 'this browser does not allow local storage for this page');
    store.setItem(HISTORY_KEY, JSON.stringify(entries));
  }

  // -- internals --

  private memoryToken: string | null = null;

  /**
   * The engine prints its URL with ?token=…; the token moves to sessionStorage (this tab only, gone when it closes)
   * and leaves the address bar, so it is not shown, bookmarked or shared with the page address.
   */
  private captureToken(): void {
    const url = new URL(this.win.location.href);
    const token = url.searchParams.get('token');
    if (!token) return;
    this.memoryToken = token;
    this.storage('sessionStorage')?.setItem(TOKEN_KEY, token);
    url.searchParams.delete('token');
    this.win.history.replaceState(this.win.history.state, '', `${url.pathname}${url.search}${url.hash}`);
  }

  private readJson(key: string): unknown {
    try {
      const raw = this.storage('localStorage')?.getItem(key);
      return raw ? (JSON.parse(raw) as unknown) : null;
    } catch {
      return null;
    }
  }

  /** Best effort: a page without storage works as before, it only forgets on reload. */
  private writeJson(key: string, value: unknown): void {
    try {
      this.storage('localStorage')?.setItem(key, JSON.stringify(value));
    } catch {
      // Storage full or refused.
    }
  }

  private storage(kind: 'localStorage' | 'sessionStorage'): Storage | null {
    // Storage access throws in some privacy modes instead of being absent.
    try {
      return this.win[kind];
    } catch {
      return null;
    }
  }

  private async client(): Promise<EngineClient> {
    return new EngineClient({ baseUrl: this.engineUrl(), token: await this.readToken() });
  }

  private async probe(path: string): Promise<MediaInfo> {
    if (this.probed?.path === path) return this.probed.info;
    if (this.probing?.path === path) return this.probing.promise;
    const promise = (async () => {
      try {
        const info = await (await this.client()).probe(path);
        this.probed = { path, info };
        this.writeJson(RECENT_KEY, [path, ...this.recent().filter((p) => p !== path)].slice(0, RECENT_MAX));
        return info;
      } catch (e) {
        // Whatever the engine said about the file, it is the path field the user has to fix.
        if (e instanceof EngineError && e.status >= 400 && e.status < 500 && e.status !== 401)
          throw new FieldError(e.title, e.detail, 'source.path');
        throw e;
      } finally {
        if (this.probing?.path === path) this.probing = null;
      }
    })();
    this.probing = { path, promise };
    return promise;
  }
}
