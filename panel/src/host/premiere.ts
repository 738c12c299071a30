// Host adapter for Premiere Pro (UXP, 25.6+). Every Premiere call here is one documented in the reference notes
// (../shared/reference/premiere-uxp.md); the modules are injected so the tests can run it against a faithful fake.
//
// Edits follow the 26.3 rules: all awaiting happens first, then one project.lockedAccess() holding one
// executeTransaction() whose callback creates and adds the actions synchronously. Each such transaction is one
// undo step in Premiere's history.

import type {
  AudioClipTrackItem,
  ClipProjectItem,
  FolderItem,
  premierepro,
  Project,
  ProjectItem,
  Sequence,
  VideoClipTrackItem,
} from '@adobe/premierepro';
import { tokenFile } from '../../../engine/src/api/token-location';
import type { ClipSelection, ExportPresetChoice, HistoryEntry, Host, PlaceResult, Selection, SourceRef } from './host';
import { add, messageOf, transact } from './premiere-edit';
import { dirname, hasFolder, joinPath, safeFileStem, samePath } from './premiere-paths';
import { applyLook, readLook, remapsTime, TIME_REMAPPING, type LookComponent } from './premiere-look';
import { ResultPlacer } from './premiere-place';
import { ExportPresets, panelSettings, type PresetFileSystem, type SettingsStore } from './premiere-presets';
import { ClipRenderer } from './premiere-render';
import { parseTicks, ticksToSeconds, TICKS_PER_SECOND } from './premiere-ticks';

/** The parts of UXP's Node-like `fs` module the adapter uses (promise forms: no callback passed). */
export interface UxpFs {
  readFile(path: string, options?: { encoding?: string }): Promise<string | ArrayBuffer>;
  writeFile(path: string, data: string, options?: { encoding?: string }): Promise<unknown>;
  mkdir(path: string, options?: { recursive?: boolean }): Promise<unknown>;
  lstat(path: string): Promise<{ isDirectory?: () => boolean; isFile?: () => boolean }>;
}

export interface UxpOs {
  homedir(): string;
  platform(): string;
}

export interface UxpModule {
  shell?: { openPath?: (path: string, developerText?: string) => Promise<string> };
  storage?: { localFileSystem?: PresetFileSystem };
}

export interface PremiereHostOptions {
  /** The `premierepro` module: `require('premierepro')` in the panel. */
  ppro: premierepro;
  uxp?: UxpModule;
  fs?: UxpFs;
  os?: UxpOs;
  engineUrl?: string;
  /**
   * The folder (native path) holding the export presets of export-presets.ts; by default the plugin folder's
   * presets/, where the .ccx puts them.
   */
  presetFolder?: string;
  /** Where the chosen export preset is remembered; localStorage by default. */
  settings?: SettingsStore;
  /** Overrides os.platform() ("darwin", "win32", "win10"). */
  platform?: string;
  /** The frame rate of a media file as it is stored (the engine's probe), or null where unknown. */
  mediaFrameRate?: (path: string) => Promise<number | null>;
}

export const RESULTS_FOLDER_NAME = 'Reshoot Renders';
export const RESULTS_BIN_NAME = 'Reshoot';
export const HISTORY_FILE_NAME = 'reshoot-history.json';
export const RENDER_STATUS = 'Rendering the clip through Premiere…';

const REASON_OFFLINE = 'media offline';
const REASON_NESTED = 'nested sequence';
const REASON_REVERSED = 'reversed';
const REASON_NOT_MEDIA = 'not a media file (graphic or generated clip)';
const REASON_TIME_REMAPPING = 'time remapping';

const MEDIA_START_COLUMN = 'Column.Intrinsic.MediaStart';
const MEDIA_END_COLUMN = 'Column.Intrinsic.MediaEnd';

export class ProjectNotSavedError extends Error {
  constructor() {
    super(
      `Save the project first: Reshoot keeps its renders in a "${RESULTS_FOLDER_NAME}" folder next to the project file, and an unsaved project has no folder yet.`,
    );
    this.name = 'ProjectNotSavedError';
  }
}

export class NoProjectError extends Error {
  constructor() {
    super('Open a project in Premiere Pro first.');
    this.name = 'NoProjectError';
  }
}

interface Context {
  project: Project;
  sequence: Sequence;
}

interface StoredHistory {
  version: 1;
  entries: HistoryEntry[];
}

type TrackItem = VideoClipTrackItem | AudioClipTrackItem;

export class PremiereHost implements Host {
  readonly kind = 'premiere' as const;

  private readonly ppro: premierepro;
  private readonly engineBase: string;
  private readonly presets: ExportPresets;
  private readonly mediaFrameRate: ((path: string) => Promise<number | null>) | undefined;
  private readonly frameRates = new Map<string, number>();
  private readonly platformOverride: string | undefined;
  private uxpModule: UxpModule | undefined;
  private fsModule: UxpFs | undefined;
  private osModule: UxpOs | undefined;
  // The selection names no sequence, and an engine job takes minutes: the result must go back to the sequence the
  // clip came from even if the editor has opened another one meanwhile.
  private readonly origins = new WeakMap<object, Context>();

  constructor(options: PremiereHostOptions) {
    this.ppro = options.ppro;
    this.uxpModule = options.uxp;
    this.fsModule = options.fs;
    this.osModule = options.os;
    this.engineBase = options.engineUrl ?? 'http://127.0.0.1:7865';
    this.presets = new ExportPresets(
      this.ppro,
      () => this.uxp().storage?.localFileSystem,
      async (path) => (await this.statOrNull(path)) !== null,
      options.settings ?? panelSettings(),
      options.presetFolder,
    );
    this.mediaFrameRate = options.mediaFrameRate;
    this.platformOverride = options.platform;
  }

  engineUrl(): string {
    return this.engineBase;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Selection

  async getSelection(): Promise<Selection> {
    const project = await this.ppro.Project.getActiveProject();
    if (!project) return { kind: 'no-project' };
    const sequence = await project.getActiveSequence();
    if (!sequence) return { kind: 'no-sequence' };

    const items = await (await sequence.getSelection()).getTrackItems();
    const videos: VideoClipTrackItem[] = [];
    for (const item of items) {
      const video = this.asVideoClip(item);
      if (video) videos.push(video);
    }
    if (videos.length === 0) return items.length > 0 ? { kind: 'audio-only' } : { kind: 'none' };
    if (videos.length > 1) return { kind: 'several', count: videos.length };

    const clip = await this.describeClip(project, sequence, videos[0]);
    this.origins.set(clip, { project, sequence });
    return clip;
  }

  onSelectionChanged(cb: () => void): () => void {
    const events = this.ppro.EventManager;
    const SequenceEvent = this.ppro.Constants.SequenceEvent;
    const notify = (): void => cb();
    let disposed = false;
    let detachSequence: (() => void) | null = null;

    const attachToActive = async (): Promise<void> => {
      detachSequence?.();
      detachSequence = null;
      const project = await this.ppro.Project.getActiveProject();
      const sequence = project ? await project.getActiveSequence() : null;
      if (disposed || !sequence) return;
      events.addEventListener(sequence, SequenceEvent.SELECTION_CHANGED, notify);
      detachSequence = () => events.removeEventListener(sequence, SequenceEvent.SELECTION_CHANGED, notify);
    };

    // A sequence listener only hears its own sequence; when another becomes active the listener moves with it, and
    // the panel refreshes because what is selected has changed too.
    const onActivated = (): void => {
      void attachToActive().then(notify, notify);
    };

    let detachGlobal: () => void = () => {};
    const useGlobal = (): void => {
      if (disposed) return;
      events.addGlobalEventListener(SequenceEvent.SELECTION_CHANGED, notify);
      detachGlobal = () => events.removeGlobalEventListener(SequenceEvent.SELECTION_CHANGED, notify);
    };

    void attachToActive().then(
      () => {
        if (disposed) return;
        if (!detachSequence) {
          useGlobal();
          return;
        }
        events.addGlobalEventListener(SequenceEvent.ACTIVATED, onActivated);
        const previous = detachGlobal;
        detachGlobal = () => {
          previous();
          events.removeGlobalEventListener(SequenceEvent.ACTIVATED, onActivated);
        };
      },
      // Builds that do not accept a sequence as event target still deliver the global event.
      useGlobal,
    );

    return () => {
      disposed = true;
      detachSequence?.();
      detachSequence = null;
      detachGlobal();
      detachGlobal = () => {};
    };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Source for the engine

  async prepareSource(sel: ClipSelection, onStatus?: (message: string) => void): Promise<SourceRef> {
    if (sel.renderReason === null) return { path: sel.mediaPath, in: sel.sourceIn, out: sel.sourceOut };
    if (sel.renderReason.includes(REASON_OFFLINE)) {
      // Rendering would only encode Premiere's "Media Offline" slate.
      throw new Error(
        `The media of "${sel.name}" is offline. Relink it in Premiere (right-click the clip → Link Media…), select the clip again and retry.`,
      );
    }

    const { project, sequence } = await this.contextFor(sel);
    // The preset first: without one nothing is created, not even the renders folder.
    const preset = await this.presets.forRender(sequence);
    const folder = await this.resultsFolder();
    const outFile = joinPath(folder, `${safeFileStem(sel.name)}-${timestamp()}.source.${preset.extension}`);
    onStatus?.(RENDER_STATUS);
    await new ClipRenderer(this.ppro, onStatus).render({
      project,
      sequence,
      trackIndex: sel.trackIndex,
      start: parseTicks(sel.sequenceStartTicks, 'the clip start'),
      end: parseTicks(sel.sequenceEndTicks, 'the clip end'),
      outFile,
      presetPath: preset.path,
    });
    if (!(await this.statOrNull(outFile))) {
      throw new Error(
        `Premiere reported the render finished, but ${outFile} is not there. Check that the "${RESULTS_FOLDER_NAME}" folder can be written, then try again.`,
      );
    }
    return { path: outFile, in: 0, out: sel.sequenceEnd - sel.sequenceStart };
  }

  exportPreset(): Promise<ExportPresetChoice> {
    return this.presets.current();
  }

  async chooseExportPreset(): Promise<ExportPresetChoice | null> {
    const project = await this.ppro.Project.getActiveProject();
    return this.presets.choose((await project?.getActiveSequence()) ?? null);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Results

  async resultsFolder(): Promise<string> {
    const folder = this.resultsFolderPath(await this.requireProject());
    const stat = await this.statOrNull(folder);
    if (stat) {
      if (stat.isDirectory && !stat.isDirectory()) {
        throw new Error(`${folder} exists but is not a folder. Rename it so Reshoot can keep its renders there.`);
      }
      return folder;
    }
    try {
      await this.fs().mkdir(folder);
    } catch (err) {
      throw new Error(
        `Could not create ${folder}: ${messageOf(err)}. The panel needs permission to write next to the project file.`,
        { cause: err },
      );
    }
    return folder;
  }

  async placeResult(sel: Parameters<Host['placeResult']>[0], resultPath: string, label: string): Promise<PlaceResult> {
    const { project, sequence } = await this.contextFor(sel);
    const start = parseTicks(sel.sequenceStartTicks, 'the clip start');
    const end = parseTicks(sel.sequenceEndTicks, 'the clip end');
    if (end <= start)
      throw new Error(`The clip "${sel.name}" has no length on the timeline, so there is nothing to place.`);

    // "Place again" finds the item imported the first time instead of importing the file twice.
    let item = await this.findByMediaPath(project, resultPath);
    if (!item) {
      const bin = await this.resultsBin(project);
      let imported: boolean;
      try {
        // Always with a real bin: passing undefined as the bin threw "Illegal Parameter type" on a 2026 build.
        imported = await project.importFiles([resultPath], true, bin);
      } catch (err) {
        throw new Error(
          `Premiere could not import ${resultPath}: ${messageOf(err)}. Check that the file exists and plays, then use "Place again".`,
          { cause: err },
        );
      }
      if (!imported) {
        throw new Error(
          `Premiere could not import ${resultPath}: the import was refused. Check that the file exists and plays, then use "Place again".`,
        );
      }
      item = await this.findByMediaPath(project, resultPath, bin);
      if (!item) {
        throw new Error(
          `Premiere could not import ${resultPath}: the import reported success but no project item uses that file. Import it by hand from the "${RESULTS_FOLDER_NAME}" folder.`,
        );
      }
    }

    const clipItem = this.asClipItem(item);
    if (!clipItem) throw new Error(`${resultPath} was imported as something other than a clip; place it by hand.`);
    // Read before placing: the original's look, where it is to be carried (a rendered clip has it in the render).
    const carry = sel.renderReason === null;
    const original = carry ? await this.originalAt(sequence, sel.trackIndex, start) : null;
    const look: LookComponent[] | null = original ? await readLook(project, original) : null;
    const placed = await new ResultPlacer(this.ppro).place({
      project,
      sequence,
      projectItem: item,
      item: clipItem,
      mediaPath: resultPath,
      trackIndex: sel.trackIndex,
      start,
      end,
      label,
      bin: RESULTS_BIN_NAME,
    });
    const applied = look
      ? await applyLook(this.ppro, project, placed.trackItem, look)
      : {
          notCarried: carry
            ? [
                "the original's look: the original clip is no longer where it was; set Motion, Opacity and effects by hand",
              ]
            : sel.renderReason === undefined
              ? [
                  "the original's look: this history entry does not say whether the clip was rendered through Premiere; set Motion, Opacity and effects by hand if the result needs them",
                ]
              : [],
          undoSteps: 0,
        };
    return {
      trackIndex: placed.trackIndex,
      newTrack: placed.newTrack,
      notCarried: applied.notCarried,
      lookBaked: !!sel.renderReason,
      undoSteps: 1 + applied.undoSteps,
    };
  }

  /** The video clip that starts at `start` on the track, if it is still there. */
  private async originalAt(sequence: Sequence, trackIndex: number, start: bigint): Promise<VideoClipTrackItem | null> {
    if (trackIndex >= (await sequence.getVideoTrackCount())) return null;
    const items: VideoClipTrackItem[] = (await sequence.getVideoTrack(trackIndex)).getTrackItems(
      this.ppro.Constants.TrackItemType.CLIP,
      false,
    );
    for (const item of items) {
      if (parseTicks((await item.getStartTime()).ticks, 'a clip start') === start) return item;
    }
    return null;
  }

  async readToken(): Promise<string | null> {
    const file = this.tokenPath();
    if (!(await this.statOrNull(file))) return null;
    let data: string | ArrayBuffer;
    try {
      data = await this.fs().readFile(file, { encoding: 'utf-8' });
    } catch (err) {
      throw new Error(
        `Could not read the engine token at ${file}: ${messageOf(err)}. The panel needs permission to read that folder.`,
        { cause: err },
      );
    }
    const token = (typeof data === 'string' ? data : asciiText(data)).trim();
    return token === '' ? null : token;
  }

  async revealFile(path: string): Promise<void> {
    const shell = this.uxp().shell;
    if (!shell || typeof shell.openPath !== 'function') {
      throw new Error(`This version of Premiere cannot open folders from a panel. The file is at ${path}`);
    }
    const folder = dirname(path) || path;
    let answer: string;
    try {
      answer = await shell.openPath(folder, 'Reshoot shows the folder that holds this result.');
    } catch (err) {
      throw new Error(`Could not open ${folder}: ${messageOf(err)}`, { cause: err });
    }
    // openPath resolves with "" on success and with the reason otherwise.
    if (typeof answer === 'string' && answer !== '') throw new Error(`Could not open ${folder}: ${answer}`);
  }

  async loadHistory(): Promise<HistoryEntry[]> {
    let folder: string;
    try {
      folder = this.resultsFolderPath(await this.requireProject());
    } catch (err) {
      // No project or an unsaved one has no history of its own yet.
      if (err instanceof ProjectNotSavedError || err instanceof NoProjectError) return [];
      throw err;
    }
    const file = joinPath(folder, HISTORY_FILE_NAME);
    if (!(await this.statOrNull(file))) return [];
    const data = await this.fs().readFile(file, { encoding: 'utf-8' });
    let parsed: unknown;
    try {
      parsed = JSON.parse(typeof data === 'string' ? data : asciiText(data));
    } catch {
      throw new Error(`${file} is not valid JSON. Fix it, or move it away to start a new history for this project.`);
    }
    const entries = Array.isArray(parsed) ? parsed : isStoredHistory(parsed) ? parsed.entries : null;
    if (!entries)
      throw new Error(`${file} does not hold a Reshoot history. Move it away to start a new history for this project.`);
    return entries.filter(isHistoryEntry);
  }

  async saveHistory(entries: HistoryEntry[]): Promise<void> {
    const file = joinPath(await this.resultsFolder(), HISTORY_FILE_NAME);
    const stored: StoredHistory = { version: 1, entries };
    try {
      await this.fs().writeFile(file, `${JSON.stringify(stored, null, 2)}\n`, { encoding: 'utf-8' });
    } catch (err) {
      throw new Error(`Could not save the history to ${file}: ${messageOf(err)}`, { cause: err });
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Premiere helpers

  private async requireProject(): Promise<Project> {
    const project = await this.ppro.Project.getActiveProject();
    if (!project) throw new NoProjectError();
    return project;
  }

  private async contextFor(sel: object): Promise<Context> {
    const known = this.origins.get(sel);
    if (known) return known;
    const project = await this.requireProject();
    const sequence = await project.getActiveSequence();
    if (!sequence) throw new Error('Open the sequence that holds the clip in Premiere first.');
    return { project, sequence };
  }

  private resultsFolderPath(project: Project): string {
    const projectPath = project.path;
    if (!hasFolder(projectPath)) throw new ProjectNotSavedError();
    return joinPath(dirname(projectPath), RESULTS_FOLDER_NAME);
  }

  /**
   * The video clip behind a selected item, or null for audio. `instanceof` works on current builds; `cast` exists on
   * some builds and is missing on others; the method check is the last resort where neither is available.
   */
  private asVideoClip(item: TrackItem): VideoClipTrackItem | null {
    const statics = this.ppro as unknown as Record<string, unknown>;
    const Video = statics.VideoClipTrackItem;
    const Audio = statics.AudioClipTrackItem;
    if (typeof Video === 'function' && item instanceof Video) return item as VideoClipTrackItem;
    if (typeof Audio === 'function' && item instanceof Audio) return null;
    const cast = (Video as { cast?: unknown } | undefined)?.cast;
    if (typeof cast === 'function') {
      try {
        const video = cast.call(Video, item) as VideoClipTrackItem | null | undefined;
        return video ?? null;
      } catch {
        return null;
      }
    }
    return typeof (item as { createAddVideoTransitionAction?: unknown }).createAddVideoTransitionAction === 'function'
      ? (item as VideoClipTrackItem)
      : null;
  }

  private asClipItem(item: ProjectItem): ClipProjectItem | null {
    try {
      return this.ppro.ClipProjectItem.cast(item) ?? null;
    } catch {
      return null;
    }
  }

  private asFolder(item: ProjectItem): FolderItem | null {
    try {
      return this.ppro.FolderItem.cast(item) ?? null;
    } catch {
      return null;
    }
  }

  private async describeClip(project: Project, sequence: Sequence, item: VideoClipTrackItem): Promise<ClipSelection> {
    const [name, projectItem, inPoint, outPoint, startTime, endTime, speed, reversed, trackIndex, timebase, size] =
      await Promise.all([
        item.getName(),
        item.getProjectItem(),
        item.getInPoint(),
        item.getOutPoint(),
        item.getStartTime(),
        item.getEndTime(),
        item.getSpeed(),
        item.isSpeedReversed(),
        item.getTrackIndex(),
        sequence.getTimebase(),
        this.frameSize(sequence),
      ]);
    const clip = projectItem ? this.asClipItem(projectItem) : null;
    const [mediaPath, nested, offline] = clip
      ? await Promise.all([clip.getMediaFilePath(), clip.isSequence(), clip.isOffline()])
      : ['', false, false];

    const ticksPerFrame = parseTicks(timebase, 'the sequence timebase');
    if (ticksPerFrame <= 0n) throw new Error(`Premiere reported a sequence timebase of ${timebase} ticks per frame`);
    const start = parseTicks(startTime.ticks, 'the clip start');
    const end = parseTicks(endTime.ticks, 'the clip end');
    let sourceIn = parseTicks(inPoint.ticks, 'the clip In point');
    let sourceOut = parseTicks(outPoint.ticks, 'the clip Out point');
    if (clip && !nested && projectItem) {
      const offset = await this.timecodeOffset(projectItem, sourceIn, sourceOut);
      sourceIn -= offset;
      sourceOut -= offset;
    }

    const reasons: string[] = [];
    if (offline) reasons.push(REASON_OFFLINE);
    if (nested) reasons.push(REASON_NESTED);
    if (reversed || speed < 0) reasons.push(REASON_REVERSED);
    if (Math.abs(Math.abs(speed) - 1) > 1e-6) reasons.push(`speed changed to ${formatPercent(Math.abs(speed))}`);
    if (!nested && !mediaPath) reasons.push(REASON_NOT_MEDIA);
    if (remapsTime(await readLook(project, item, [TIME_REMAPPING]))) reasons.push(REASON_TIME_REMAPPING);
    if (clip && !nested && mediaPath) reasons.push(...(await this.interpretationReasons(clip, mediaPath)));

    return {
      kind: 'clip',
      name,
      mediaPath,
      sourceIn: ticksToSeconds(sourceIn),
      sourceOut: ticksToSeconds(sourceOut),
      sequenceStart: ticksToSeconds(start),
      sequenceEnd: ticksToSeconds(end),
      sequenceStartTicks: start.toString(),
      sequenceEndTicks: end.toString(),
      fps: Number(TICKS_PER_SECOND) / Number(ticksPerFrame),
      frameWidth: size.width,
      frameHeight: size.height,
      frames: Math.round(Number(end - start) / Number(ticksPerFrame)),
      trackIndex,
      renderReason: reasons.length > 0 ? reasons.join(', ') : null,
    };
  }

  /**
   * Interpret Footage changes what the engine would read from the file: a pixel aspect other than square (the
   * engine reads stored pixels), and a frame rate other than the file's own (the clip's In/Out count the file's
   * frames at the interpreted rate). The API gives only the interpreted values; the file's own rate comes from the
   * engine's probe where the panel has one, and without it an interpreted rate goes unnoticed.
   */
  private async interpretationReasons(clip: ClipProjectItem, mediaPath: string): Promise<string[]> {
    let fps: number;
    let par: number;
    try {
      const interpretation = await clip.getFootageInterpretation();
      fps = interpretation.getFrameRate();
      par = interpretation.getPixelAspectRatio();
    } catch {
      return [];
    }
    const reasons: string[] = [];
    if (Number.isFinite(par) && par > 0 && Math.abs(par - 1) > 1e-3)
      reasons.push(`pixel aspect ratio ${Number(par.toFixed(4))}`);
    const own = await this.fileFrameRate(mediaPath);
    if (own && Number.isFinite(fps) && fps > 0 && Math.abs(fps - own) > 0.005)
      reasons.push(`frame rate interpreted as ${Number(fps.toFixed(3))} fps (the file has ${Number(own.toFixed(3))})`);
    return reasons;
  }

  /** The engine's probe of a file's own frame rate, asked once per file (not on every selection change). */
  private async fileFrameRate(mediaPath: string): Promise<number | null> {
    if (!this.mediaFrameRate) return null;
    const known = this.frameRates.get(mediaPath);
    if (known !== undefined) return known;
    const fps = await this.mediaFrameRate(mediaPath).catch(() => null);
    // Unknown (no engine yet) is asked again next time.
    if (fps !== null) this.frameRates.set(mediaPath, fps);
    return fps;
  }

  /**
   * Ticks to subtract from a clip's In/Out to count from the file's first frame. Track item In/Out points are
   * documented as relative to the media start (Adobe's sample: media starting at 1 min with an In at 1 min 1 s
   * reports 1 s), which is already what the engine needs, so this is normally 0. Only when the points cannot be
   * relative — the Out lies past the media's own length while the In is at or after the start timecode — are they
   * read as timecode-based and shifted by Column.Intrinsic.MediaStart.
   */
  private async timecodeOffset(projectItem: ProjectItem, sourceIn: bigint, sourceOut: bigint): Promise<bigint> {
    const metadata = (
      this.ppro as { Metadata?: { getProjectColumnsMetadata?: (item: ProjectItem) => Promise<string> } }
    ).Metadata;
    if (typeof metadata?.getProjectColumnsMetadata !== 'function') return 0n;
    let columns: unknown;
    try {
      columns = JSON.parse(await metadata.getProjectColumnsMetadata(projectItem));
    } catch {
      return 0n;
    }
    if (!Array.isArray(columns)) return 0n;
    const column = (id: string): bigint | null => {
      const found = columns.find((c: unknown) => (c as { ColumnID?: unknown })?.ColumnID === id) as
        { ColumnValue?: unknown } | undefined;
      const value = found?.ColumnValue;
      if ((typeof value !== 'string' && typeof value !== 'number') || !/^\d+$/.test(String(value).trim())) return null;
      return BigInt(String(value).trim());
    };
    const mediaStart = column(MEDIA_START_COLUMN);
    const mediaEnd = column(MEDIA_END_COLUMN);
    if (mediaStart === null || mediaEnd === null || mediaStart <= 0n || mediaEnd <= mediaStart) return 0n;
    const length = mediaEnd - mediaStart;
    if (sourceOut > length && sourceIn >= mediaStart && sourceOut - mediaStart <= length) return mediaStart;
    return 0n;
  }

  private async frameSize(sequence: Sequence): Promise<{ width: number; height: number }> {
    if (typeof sequence.getFrameSize === 'function') {
      const rect = await sequence.getFrameSize();
      if (rect && rect.width > 0 && rect.height > 0) return { width: rect.width, height: rect.height };
    }
    const settings = await sequence.getSettings();
    const rect = await settings.getVideoFrameRect();
    if (rect && rect.width > 0 && rect.height > 0) return { width: rect.width, height: rect.height };
    throw new Error('Premiere did not report the sequence frame size.');
  }

  /** Walks the bins (the preferred one first) for the clip whose media is `path`. */
  private async findByMediaPath(project: Project, path: string, preferred?: ProjectItem): Promise<ProjectItem | null> {
    const root = await project.getRootItem();
    const queue: FolderItem[] = [];
    const preferredFolder = preferred ? this.asFolder(preferred) : null;
    if (preferredFolder) queue.push(preferredFolder);
    queue.push(root);
    const seen = new Set<unknown>();
    while (queue.length > 0) {
      const folder = queue.shift() as FolderItem;
      for (const child of await folder.getItems()) {
        const subfolder = this.asFolder(child);
        if (subfolder) {
          queue.push(subfolder);
          continue;
        }
        if (seen.has(child)) continue;
        seen.add(child);
        const clip = this.asClipItem(child);
        if (!clip) continue;
        const media = await clip.getMediaFilePath();
        if (media && samePath(media, path)) return child;
      }
    }
    return null;
  }

  /** The top-level "Reshoot" bin, created (as its own undo step) the first time. */
  private async resultsBin(project: Project): Promise<ProjectItem> {
    const root = await project.getRootItem();
    const existing = await this.findBin(root);
    if (existing) return existing;
    const created = transact(project, `Reshoot: create the "${RESULTS_BIN_NAME}" bin`, (ca) => {
      add(ca, root.createBinAction(RESULTS_BIN_NAME, false), `create the "${RESULTS_BIN_NAME}" bin`);
    });
    const bin = created.ok ? await this.findBin(root) : null;
    if (!bin) {
      throw new Error(
        `Premiere could not create the "${RESULTS_BIN_NAME}" bin (${created.ok ? 'it did not appear' : created.reason}). Create a bin named "${RESULTS_BIN_NAME}" in the Project panel and place the result again.`,
      );
    }
    return bin;
  }

  private async findBin(root: FolderItem): Promise<ProjectItem | null> {
    for (const child of await root.getItems()) {
      if (child.name === RESULTS_BIN_NAME && this.asFolder(child)) return child;
    }
    return null;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Files

  private tokenPath(): string {
    const os = this.os();
    return tokenFile(this.platformOverride ?? os.platform(), os.homedir());
  }

  private async statOrNull(path: string): Promise<{ isDirectory?: () => boolean } | null> {
    try {
      return await this.fs().lstat(path);
    } catch {
      return null;
    }
  }

  private fs(): UxpFs {
    this.fsModule ??= require('fs') as UxpFs;
    return this.fsModule;
  }

  private os(): UxpOs {
    this.osModule ??= require('os') as UxpOs;
    return this.osModule;
  }

  private uxp(): UxpModule {
    this.uxpModule ??= require('uxp') as UxpModule;
    return this.uxpModule;
  }
}

function formatPercent(speed: number): string {
  return `${Number((speed * 100).toFixed(2))}%`;
}

function timestamp(): string {
  const d = new Date();
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}-${two(d.getHours())}${two(d.getMinutes())}${two(d.getSeconds())}-${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** UXP has no TextDecoder; the files read as bytes here (token, history) are ASCII/UTF-8 JSON. */
function asciiText(buffer: ArrayBuffer): string {
  const bytes = new Uint8Array(buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  try {
    return decodeURIComponent(escape(text));
  } catch {
    return text;
  }
}

function isStoredHistory(value: unknown): value is StoredHistory {
  return typeof value === 'object' && value !== null && Array.isArray((value as { entries?: unknown }).entries);
}

function isHistoryEntry(value: unknown): value is HistoryEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Record<string, unknown>;
  return typeof entry.jobId === 'string' && typeof entry.resultPath === 'string' && typeof entry.prompt === 'string';
}
