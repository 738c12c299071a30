// What the panel UI needs from wherever it runs: Premiere Pro (UXP) or a browser tab served by the engine. The UI
// knows nothing else about its host.

/** A selected video clip, with both its source range (media time) and its place on the timeline (sequence time). */
export interface ClipSelection {
  kind: 'clip';
  name: string;
  /** The clip's media file; what the engine reads when the clip plays its media as is. */
  mediaPath: string;
  /** Source range in seconds from the start of the media file. */
  sourceIn: number;
  sourceOut: number;
  /** Timeline range in seconds, and the same in ticks (254016000000 per second) for exact placement. */
  sequenceStart: number;
  sequenceEnd: number;
  sequenceStartTicks: string;
  sequenceEndTicks: string;
  /** Sequence frame rate and frame size. */
  fps: number;
  frameWidth: number;
  frameHeight: number;
  /** Frames the clip spans on the timeline. */
  frames: number;
  /** 0-based video track index (0 = V1). */
  trackIndex: number;
  /**
   * Why the clip cannot be read straight from its media file (speed change, reversed, nested sequence,
   * offline media); null when it can. The host renders such clips through Premiere's exporter first.
   */
  renderReason: string | null;
}

export type Selection =
  | { kind: 'no-project' }
  | { kind: 'no-sequence' }
  | { kind: 'none' }
  | { kind: 'several'; count: number }
  | { kind: 'audio-only' }
  | ClipSelection;

/** The range the engine should read. */
export interface SourceRef {
  path: string;
  in: number;
  out: number;
}

export interface PlaceResult {
  /** 0-based video track the result went to. */
  trackIndex: number;
  newTrack: boolean;
  /** What of the original's look (Motion, Opacity, effects) could not be given to the result, one line each. */
  notCarried: string[];
  /** The clip was rendered through Premiere, so its look is already in the result. */
  lookBaked: boolean;
  /**
   * Undo steps on the timeline that together remove the result (the placement, and the look given to it): Premiere's
   * API cannot group transactions into one.
   */
  undoSteps: number;
}

export interface HistoryEntry {
  jobId: string;
  createdAt: string;
  clipName: string;
  prompt: string;
  sourcePrompt: string;
  seed: number;
  settings: {
    steps: number;
    guidance: number;
    strength?: number;
    method: string;
    /** maskLabel's words; an automatic mask read from attention or both says so ("auto mask from attention"). */
    mask: string;
    /** Cross-frame attention's anchors and mode when the job asked for it (entries from before it have none). */
    crossFrame?: { anchors: string; mode: string };
    /** Structure lock's strength when above 0, and whether word swap was on; absent in entries from before them. */
    structure?: number;
    wordSwap?: boolean;
    /** TokenFlow's keyframe spacing (attention.tokenFlow.keyframeEvery) when it was on. */
    tokenFlow?: number;
    /** Word emphasis (attention.reweight) when the job had any; absent in entries from before it. */
    reweight?: { word: string; scale: number }[];
  };
  resultPath: string;
  /** Where it was placed, so "place again" can reuse the clip's timeline range. */
  placement?: {
    sequenceStartTicks: string;
    sequenceEndTicks: string;
    trackIndex: number;
    renderReason?: string | null;
  };
}

/** The export preset that renders clips Premiere has to render first. */
export interface ExportPresetChoice {
  /** Native path of the preset file, or null when there is none. */
  path: string | null;
  /** Chosen by the editor, bundled with the panel, or none at all. */
  origin: 'chosen' | 'bundled' | 'none';
  /** Why the editor's choice is not the one in use (moved or deleted). */
  problem?: string;
}

export interface Host {
  readonly kind: 'premiere' | 'browser';
  /** Base URL of the engine, e.g. http://127.0.0.1:7865. */
  engineUrl(): string;
  /** The engine's access token, or null when it cannot be found (engine never started). */
  readToken(): Promise<string | null>;
  getSelection(): Promise<Selection>;
  /** Calls back when the user selects something else; returns the unsubscribe function. */
  onSelectionChanged(cb: () => void): () => void;
  /** A file and range the engine can read: the media as is, or a rendered copy of the clip. */
  prepareSource(sel: ClipSelection, onStatus?: (message: string) => void): Promise<SourceRef>;
  /** A persistent folder for results (next to the project in Premiere), never a temporary one. */
  resultsFolder(): Promise<string>;
  /**
   * Imports the result, places it exactly over the original on a free track above it and gives it the original's
   * look. `renderReason` says whether the clip was rendered (its look is then in the result); where it is unknown
   * (undefined) the look is not carried.
   */
  placeResult(
    sel: Pick<ClipSelection, 'sequenceStartTicks' | 'sequenceEndTicks' | 'trackIndex' | 'name'> & {
      renderReason?: string | null;
    },
    resultPath: string,
    label: string,
  ): Promise<PlaceResult>;
  /** Shows the file in the OS file browser (or opens it, where that is all a host can do). */
  revealFile(path: string): Promise<void>;
  /** Premiere only: the preset that renders clips first, and a file dialog to choose another (null: closed). */
  exportPreset?(): Promise<ExportPresetChoice>;
  chooseExportPreset?(): Promise<ExportPresetChoice | null>;
  loadHistory(): Promise<HistoryEntry[]>;
  saveHistory(entries: HistoryEntry[]): Promise<void>;
}
