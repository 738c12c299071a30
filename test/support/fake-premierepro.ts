// A fake of the documented `premierepro` UXP module (../shared/reference/premiere-uxp.md), for testing the panel's
// Premiere adapter without Premiere. It keeps Premiere 26.3's rules, so code that would fail in Premiere fails here:
//   - every create*Action must run inside project.lockedAccess(), and the Action may not outlive that lock;
//   - compoundAction.addAction only inside executeTransaction;
//   - lockedAccess/executeTransaction callbacks must be synchronous (a returned Promise throws);
//   - actions take effect only when the transaction callback returns, all or none, as one undo step;
//   - importFiles with `undefined` passed as the bin throws "Illegal Parameter type" (the reported 2026 pitfall);
//   - getters are async, except VideoTrack.getTrackItems, SequenceEditor.getEditor, EncoderManager.getManager,
//     *.cast and TickTime.
// Anything the notes call unverified is kept strict (an overwrite at an out-of-range track index is refused).
// Where the real host is stricter than an optimistic reading, so is the fake (issue 14):
//   - the classes are checked against @adobe/premierepro's declarations (premiere-shape.ts);
//   - exportSequence refuses to render without an .epr preset that exists, and the output file must carry the
//     extension getExportFileExtension gives for that preset (the documentation describes only the call with
//     neither file nor preset; Adobe's sample always passes a preset);
//   - a render composites every enabled track item of the sequence (titles, adjustment layers, other clips):
//     `renders` records what each export showed;
//   - an edit that touches a locked track fails (the API can neither read nor change a track lock), and a
//     sequence's clone keeps its locks; an insert without limitShift moves every sync-locked track;
//   - an action's data is read when the action is created, not when the transaction commits: an overwrite created
//     in the same transaction as the trim of its project item places the untrimmed length (Adobe's changelog:
//     actions "contain data that can quickly become stale");
//   - a sequence's In/Out: the documentation does not say what getInPoint/getOutPoint return when none is set, and
//     there is no action to clear them. The fake answers 0 and the sequence end, which a caller cannot tell from
//     marks set there, so code that reads them and writes them back turns "none" into explicit marks.

import { FakeVideoComponentChain, createFilter, intrinsicChain } from './fake-premierepro-components';
import type { Shape } from './premiere-shape';
import type {
  ClipProjectItem,
  FolderItem,
  premierepro,
  Project,
  ProjectItem,
  Sequence,
  SequenceEditor,
  TickTime,
  TrackItemSelection,
  VideoClipTrackItem,
  VideoTrack,
} from '@adobe/premierepro';

export const TICKS_PER_SECOND = 254016000000n;

// ---------------------------------------------------------------------------------------------------------------
// Constants. The real values are opaque; distinct values are enough for the adapter, which passes them through.

export const FakeConstants = {
  TrackItemType: { EMPTY: 0, CLIP: 1, TRANSITION: 2, PREVIEW: 3, FEEDBACK: 4 },
  SequenceEvent: {
    ACTIVATED: 'sequence.activated',
    CLOSED: 'sequence.closed',
    SELECTION_CHANGED: 'sequence.selectionChanged',
  },
  ProjectEvent: {
    OPENED: 'project.opened',
    CLOSED: 'project.closed',
    DIRTY: 'project.dirty',
    ACTIVATED: 'project.activated',
    PROJECT_ITEM_SELECTION_CHANGED: 'project.itemSelectionChanged',
  },
  ExportType: {
    QUEUE_TO_AME: 'export.queueToAme',
    QUEUE_TO_APP: 'export.queueToApp',
    IMMEDIATELY: 'export.immediately',
  },
  MediaType: { ANY: 'media.any', DATA: 'media.data', VIDEO: 'media.video', AUDIO: 'media.audio' },
  ContentType: { ANY: 0, SEQUENCE: 1, MEDIA: 2 },
  OperationCompleteEvent: {
    EXPORT_MEDIA_COMPLETE: 'op.exportMediaComplete',
    IMPORT_MEDIA_COMPLETE: 'op.importMediaComplete',
  },
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Time

export class FakeTickTime implements Shape<TickTime> {
  constructor(readonly value: bigint) {}
  get ticks(): string {
    return this.value.toString();
  }
  get ticksNumber(): number {
    return Number(this.value);
  }
  get seconds(): number {
    return Number(this.value) / Number(TICKS_PER_SECOND);
  }
  equals(other: TickTime): boolean {
    return timeArg(other) === this.value;
  }
  add(other: TickTime): FakeTickTime {
    return new FakeTickTime(this.value + timeArg(other));
  }
  subtract(other: TickTime): FakeTickTime {
    return new FakeTickTime(this.value - timeArg(other));
  }
  multiply(factor: number): FakeTickTime {
    return new FakeTickTime(BigInt(Math.round(Number(this.value) * factor)));
  }
  divide(divisor: number): FakeTickTime {
    return new FakeTickTime(BigInt(Math.round(Number(this.value) / divisor)));
  }
  static createWithTicks(ticks: string): FakeTickTime {
    if (typeof ticks !== 'string' || !/^-?\d+$/.test(ticks)) throw new Error('Illegal Parameter type');
    return new FakeTickTime(BigInt(ticks));
  }
  static createWithSeconds(seconds: number): FakeTickTime {
    return new FakeTickTime(BigInt(Math.round(seconds * Number(TICKS_PER_SECOND))));
  }
  alignToFrame(frameRate: { ticksPerFrame: number }): FakeTickTime {
    const per = BigInt(frameRate.ticksPerFrame);
    return new FakeTickTime((this.value / per) * per);
  }
  alignToNearestFrame(frameRate: { ticksPerFrame: number }): FakeTickTime {
    const per = BigInt(frameRate.ticksPerFrame);
    return new FakeTickTime(((this.value + per / 2n) / per) * per);
  }
  static createWithFrameAndFrameRate(frameCount: number, frameRate: { ticksPerFrame: number }): FakeTickTime {
    return new FakeTickTime(BigInt(frameCount) * BigInt(frameRate.ticksPerFrame));
  }
  static readonly TIME_ZERO = new FakeTickTime(0n);
  static readonly TIME_ONE_SECOND = new FakeTickTime(TICKS_PER_SECOND);
  static readonly TIME_ONE_MINUTE = new FakeTickTime(60n * TICKS_PER_SECOND);
  static readonly TIME_ONE_HOUR = new FakeTickTime(3600n * TICKS_PER_SECOND);
}

/** A fake TickTime typed as Adobe's (whose declared call signatures no instance can have). */
export function tick(ticks: bigint): TickTime {
  return new FakeTickTime(ticks) as unknown as TickTime;
}

/** Premiere's answer to an argument of the wrong kind. */
function instance<T>(value: unknown, Ctor: abstract new (...args: never[]) => T): T {
  if (!(value instanceof Ctor)) throw new Error('Illegal Parameter type');
  return value;
}

function mediaTypeArg(value: unknown): void {
  if (!Object.values(FakeConstants.MediaType).includes(value as never)) throw new Error('Illegal Parameter type');
}

function refuseLocked(track: FakeTrack, what: string): void {
  if (track.locked) throw new Error(`${what}: ${track.name} is locked`);
}

function timeArg(t: unknown): bigint {
  if (!(t instanceof FakeTickTime)) throw new Error('Illegal Parameter type');
  return t.value;
}

// ---------------------------------------------------------------------------------------------------------------
// Locks, transactions, undo

export class FakeAction {
  constructor(
    readonly description: string,
    readonly lock: number,
    /** Validates against the state at commit time and returns the change, or throws to fail the transaction. */
    readonly prepare: () => () => void,
  ) {}
}

export interface UndoStep {
  label: string;
  actions: string[];
}

function isPromiseLike(value: unknown): value is Promise<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

class Rules {
  private readonly locks: number[] = [];
  private readonly openLocks = new Set<number>();
  private nextLock = 1;
  private transaction: FakeAction[] | null = null;
  readonly undoStack: UndoStep[] = [];
  /** Why each failed transaction failed. */
  readonly rejected: string[] = [];

  createAction(description: string, prepare: () => () => void): FakeAction {
    const lock = this.locks[this.locks.length - 1];
    if (lock === undefined)
      throw new Error(`${description}: actions must be created inside project.lockedAccess() (Premiere 26.3)`);
    return new FakeAction(description, lock, prepare);
  }

  lockedAccess(callback: () => void): void {
    if (typeof callback !== 'function') throw new Error('Illegal Parameter type');
    const lock = this.nextLock++;
    this.locks.push(lock);
    this.openLocks.add(lock);
    let result: unknown;
    try {
      result = callback();
    } finally {
      this.locks.pop();
      this.openLocks.delete(lock);
    }
    if (isPromiseLike(result)) {
      result.then(undefined, () => undefined);
      throw new Error(
        'lockedAccess callback returned a Promise: the callback must be synchronous (no async, no await)',
      );
    }
  }

  executeTransaction(
    callback: (compound: { addAction(a: unknown): boolean; readonly empty: boolean }) => void,
    undoString?: string,
  ): boolean {
    if (typeof callback !== 'function') throw new Error('Illegal Parameter type');
    const actions: FakeAction[] = [];
    const outer = this.transaction;
    this.transaction = actions;
    const compound = {
      addAction: (action: unknown): boolean => {
        if (this.transaction !== actions) throw new Error('addAction called outside its executeTransaction callback');
        if (!(action instanceof FakeAction)) throw new Error('Illegal Parameter type');
        if (!this.openLocks.has(action.lock))
          throw new Error(`${action.description}: the action was created in a lockedAccess that has ended`);
        actions.push(action);
        return true;
      },
      get empty(): boolean {
        return actions.length === 0;
      },
    };
    let result: unknown;
    try {
      result = callback(compound);
    } finally {
      this.transaction = outer;
    }
    if (isPromiseLike(result)) {
      result.then(undefined, () => undefined);
      throw new Error(
        'executeTransaction callback returned a Promise: the callback must be synchronous (no async, no await)',
      );
    }
    if (actions.length === 0) return true;
    let changes: Array<() => void>;
    try {
      changes = actions.map((a) => a.prepare());
    } catch (err) {
      this.rejected.push(err instanceof Error ? err.message : String(err));
      return false;
    }
    for (const change of changes) change();
    this.undoStack.push({ label: undoString ?? '', actions: actions.map((a) => a.description) });
    return true;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// In-memory file system with UXP fs's promise API

export class FakeFs {
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>();
  readonly writes: string[] = [];

  constructor(dirs: string[] = []) {
    for (const d of dirs) this.addDir(d);
  }

  addDir(path: string): void {
    let p = trimSep(path);
    while (p && !this.dirs.has(p)) {
      this.dirs.add(p);
      const parent = parentOf(p);
      if (parent === p) break;
      p = parent;
    }
  }

  addFile(path: string, content = ''): void {
    this.addDir(parentOf(path));
    this.files.set(path, content);
  }

  async readFile(path: string, options?: { encoding?: string }): Promise<string | ArrayBuffer> {
    const content = this.files.get(path);
    if (content === undefined) throw enoent('open', path);
    if (options?.encoding) return content;
    return new TextEncoder().encode(content).buffer;
  }

  async writeFile(path: string, data: string, _options?: { encoding?: string }): Promise<number> {
    if (!this.dirs.has(parentOf(path))) throw enoent('open', path);
    this.files.set(path, String(data));
    this.writes.push(path);
    return String(data).length;
  }

  async mkdir(path: string, options?: { recursive?: boolean }): Promise<number> {
    const p = trimSep(path);
    if (this.dirs.has(p) || this.files.has(p))
      throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${path}'`), { code: 'EEXIST' });
    if (!this.dirs.has(parentOf(p)) && !options?.recursive) throw enoent('mkdir', path);
    this.addDir(p);
    return 0;
  }

  async lstat(path: string): Promise<{ isFile(): boolean; isDirectory(): boolean }> {
    const p = trimSep(path);
    if (this.files.has(p)) return { isFile: () => true, isDirectory: () => false };
    if (this.dirs.has(p)) return { isFile: () => false, isDirectory: () => true };
    throw enoent('lstat', path);
  }
}

function enoent(op: string, path: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, ${op} '${path}'`), { code: 'ENOENT' });
}

function trimSep(p: string): string {
  if (/^[A-Za-z]:[\\/]?$/.test(p) || p === '/') return p;
  return p.replace(/[\\/]+$/, '');
}

function parentOf(p: string): string {
  const t = trimSep(p);
  const i = Math.max(t.lastIndexOf('/'), t.lastIndexOf('\\'));
  if (i < 0) return t;
  if (i === 0) return '/';
  if (i === 2 && /^[A-Za-z]:/.test(t)) return t.slice(0, 3);
  return t.slice(0, i);
}

// ---------------------------------------------------------------------------------------------------------------
// Project items

let nextId = 1;

export class FakeProjectItem implements Partial<Shape<ProjectItem>> {
  readonly id = `item-${nextId++}`;
  parent: FakeFolderItem | null = null;
  constructor(
    protected readonly world: FakePremiere,
    public name: string,
  ) {}
  get type(): number {
    return 1;
  }
  getId(): string {
    return this.id;
  }
  getParentBin(): FakeFolderItem | null {
    return this.parent;
  }
  async getProject(): Promise<FakeProject | null> {
    return this.world.project;
  }
  async getColorLabelIndex(): Promise<number> {
    return 0;
  }
}

export class FakeFolderItem extends FakeProjectItem implements Partial<Shape<FolderItem>> {
  readonly children: FakeProjectItem[] = [];
  override get type(): number {
    return 2;
  }
  async getItems(): Promise<FakeProjectItem[]> {
    return [...this.children];
  }
  add(item: FakeProjectItem): void {
    item.parent = this;
    this.children.push(item);
  }
  remove(item: FakeProjectItem): void {
    const i = this.children.indexOf(item);
    if (i >= 0) this.children.splice(i, 1);
    item.parent = null;
  }
  createBinAction(name: string, makeUnique: boolean): FakeAction {
    return this.world.rules.createAction(`create bin "${name}"`, () => () => {
      let unique = name;
      for (let n = 2; makeUnique && this.children.some((c) => c.name === unique); n++) unique = `${name} ${n}`;
      this.add(new FakeFolderItem(this.world, unique));
    });
  }
  createMoveItemAction(itemArg: ProjectItem, parentArg: FolderItem): FakeAction {
    const item = instance(itemArg, FakeProjectItem);
    const newParent = instance(parentArg, FakeFolderItem);
    return this.world.rules.createAction(`move "${item.name}"`, () => () => {
      this.remove(item);
      newParent.add(item);
    });
  }
}

export interface MediaSpec {
  mediaPath?: string;
  /** Length of the media in ticks (for imports and placement). */
  durationTicks?: bigint;
  offline?: boolean;
  hasAudio?: boolean;
  /** Column.Intrinsic.MediaStart/MediaEnd: the media's start timecode and end, in ticks. */
  mediaStartTicks?: bigint;
  mediaEndTicks?: bigint;
  /** Interpret Footage: the frame rate Premiere plays the file at (default: its own) and its pixel aspect ratio. */
  interpretedFps?: number;
  pixelAspectRatio?: number;
}

export class FakeClipProjectItem extends FakeProjectItem implements Partial<Shape<ClipProjectItem>> {
  mediaPath: string;
  durationTicks: bigint;
  offline: boolean;
  hasAudio: boolean;
  mediaStartTicks: bigint | null;
  mediaEndTicks: bigint | null;
  sequence: FakeSequence | null = null;
  interpretedFps: number;
  pixelAspectRatio: number;
  /** Source In/Out marks on the project item; they decide what an insert or overwrite places. */
  markIn: bigint | null = null;
  markOut: bigint | null = null;

  constructor(world: FakePremiere, name: string, spec: MediaSpec = {}) {
    super(world, name);
    this.mediaPath = spec.mediaPath ?? '';
    this.durationTicks = spec.durationTicks ?? 60n * TICKS_PER_SECOND;
    this.offline = spec.offline ?? false;
    this.hasAudio = spec.hasAudio ?? false;
    this.mediaStartTicks = spec.mediaStartTicks ?? null;
    this.mediaEndTicks = spec.mediaEndTicks ?? null;
    this.interpretedFps = spec.interpretedFps ?? 23.976;
    this.pixelAspectRatio = spec.pixelAspectRatio ?? 1;
  }
  async getFootageInterpretation(): Promise<{ getFrameRate(): number; getPixelAspectRatio(): number }> {
    if (this.sequence) throw new Error('A sequence has no footage interpretation');
    return { getFrameRate: () => this.interpretedFps, getPixelAspectRatio: () => this.pixelAspectRatio };
  }
  async getMediaFilePath(): Promise<string> {
    return this.mediaPath;
  }
  async isSequence(): Promise<boolean> {
    return this.sequence !== null;
  }
  async isOffline(): Promise<boolean> {
    return this.offline;
  }
  async getContentType(): Promise<number> {
    return this.sequence ? FakeConstants.ContentType.SEQUENCE : FakeConstants.ContentType.MEDIA;
  }
  async getSequence(): Promise<FakeSequence | null> {
    return this.sequence;
  }
  async getInPoint(mediaType: unknown): Promise<FakeTickTime> {
    mediaTypeArg(mediaType);
    return new FakeTickTime(this.markIn ?? 0n);
  }
  async getOutPoint(mediaType: unknown): Promise<FakeTickTime> {
    mediaTypeArg(mediaType);
    return new FakeTickTime(this.markOut ?? this.length());
  }
  createSetInOutPointsAction(inPoint: TickTime, outPoint: TickTime): FakeAction {
    const a = timeArg(inPoint);
    const b = timeArg(outPoint);
    return this.world.rules.createAction(`set In/Out of "${this.name}"`, () => {
      if (b <= a) throw new Error('Out point before In point');
      return () => {
        this.markIn = a;
        this.markOut = b;
      };
    });
  }
  /** Length in ticks of what an edit would place: the marked part of the media. */
  placedLength(): bigint {
    const end = this.markOut !== null && this.markOut < this.length() ? this.markOut : this.length();
    return end - (this.markIn ?? 0n);
  }
  length(): bigint {
    return this.sequence ? this.sequence.endTicks() : this.durationTicks;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Track items and tracks

export interface ClipTiming {
  start: bigint;
  end: bigint;
  inPoint: bigint;
  speed: number;
  reversed: boolean;
  /** When true, getInPoint/getOutPoint count from the start timecode instead of the media's first frame. */
  pointsIncludeMediaStart: boolean;
}

export abstract class FakeTrackItemBase implements Partial<Shape<VideoClipTrackItem>> {
  selected = false;
  disabled = false;
  constructor(
    protected readonly world: FakePremiere,
    public track: FakeTrack,
    public name: string,
    public projectItem: FakeProjectItem,
    public timing: ClipTiming,
  ) {}
  async getName(): Promise<string> {
    return this.name;
  }
  async getIsSelected(): Promise<boolean> {
    return this.selected;
  }
  async getSpeed(): Promise<number> {
    return this.timing.speed;
  }
  async isSpeedReversed(): Promise<number> {
    return this.timing.reversed ? 1 : 0;
  }
  async isAdjustmentLayer(): Promise<boolean> {
    return false;
  }
  async isDisabled(): Promise<boolean> {
    return this.disabled;
  }
  async getStartTime(): Promise<FakeTickTime> {
    return new FakeTickTime(this.timing.start);
  }
  async getEndTime(): Promise<FakeTickTime> {
    return new FakeTickTime(this.timing.end);
  }
  async getDuration(): Promise<FakeTickTime> {
    return new FakeTickTime(this.timing.end - this.timing.start);
  }
  async getInPoint(): Promise<FakeTickTime> {
    return new FakeTickTime(this.timing.inPoint + this.timecodeBase());
  }
  async getOutPoint(): Promise<FakeTickTime> {
    const sourceLength = BigInt(Math.round(Number(this.timing.end - this.timing.start) * Math.abs(this.timing.speed)));
    return new FakeTickTime(this.timing.inPoint + sourceLength + this.timecodeBase());
  }
  async getTrackIndex(): Promise<number> {
    return this.track.index;
  }
  async getProjectItem(): Promise<FakeProjectItem> {
    return this.projectItem;
  }
  async getType(): Promise<number> {
    return FakeConstants.TrackItemType.CLIP;
  }
  createSetDisabledAction(disabled: boolean): FakeAction {
    if (typeof disabled !== 'boolean') throw new Error('Illegal Parameter type');
    return this.world.rules.createAction(`${disabled ? 'disable' : 'enable'} "${this.name}"`, () => {
      refuseLocked(this.track, `disable "${this.name}"`);
      return () => {
        this.disabled = disabled;
      };
    });
  }
  createMoveAction(offset: TickTime): FakeAction {
    const by = timeArg(offset);
    return this.world.rules.createAction(`move "${this.name}"`, () => () => {
      this.timing.start += by;
      this.timing.end += by;
    });
  }
  createSetStartAction(t: TickTime): FakeAction {
    const v = timeArg(t);
    return this.world.rules.createAction(`set start of "${this.name}"`, () => () => {
      this.timing.start = v;
    });
  }
  createSetEndAction(t: TickTime): FakeAction {
    const v = timeArg(t);
    return this.world.rules.createAction(`set end of "${this.name}"`, () => () => {
      this.timing.end = v;
    });
  }
  private timecodeBase(): bigint {
    const item = this.projectItem;
    return this.timing.pointsIncludeMediaStart && item instanceof FakeClipProjectItem
      ? (item.mediaStartTicks ?? 0n)
      : 0n;
  }
}

export class FakeVideoClipTrackItem extends FakeTrackItemBase {
  /** Opacity, Motion, Time Remapping, then the filters; edits to it are refused on a locked track. */
  chain: FakeVideoComponentChain = intrinsicChain(this.world.rules, this.track.frame, (what) =>
    refuseLocked(this.track, what),
  );
  async getComponentChain(): Promise<FakeVideoComponentChain> {
    return this.chain;
  }
  static readonly TRACKITEMTYPE_EMPTY = 0;
  static readonly TRACKITEMTYPE_CLIP = 1;
  static readonly TRACKITEMTYPE_TRANSITION = 2;
  static readonly TRACKITEMTYPE_PREVIEW = 3;
  static readonly TRACKITEMTYPE_FEEDBACK = 4;
  createAddVideoTransitionAction(): FakeAction {
    return this.world.rules.createAction(`add transition to "${this.name}"`, () => () => undefined);
  }
}

export class FakeAudioClipTrackItem extends FakeTrackItemBase {
  static readonly TRACKITEMTYPE_EMPTY = 0;
  static readonly TRACKITEMTYPE_CLIP = 1;
  static readonly TRACKITEMTYPE_TRANSITION = 2;
  static readonly TRACKITEMTYPE_PREVIEW = 3;
  static readonly TRACKITEMTYPE_FEEDBACK = 4;
}

export class FakeTrack implements Partial<Shape<VideoTrack>> {
  readonly items: FakeTrackItemBase[] = [];
  /** Locked in the timeline: edits that touch the track fail. */
  locked = false;
  /** Sync lock (on by default in Premiere): an insert elsewhere shifts this track too, unless limitShift. */
  syncLocked = true;
  /** The sequence's frame, for the Motion defaults of new clips. */
  frame = { width: 1920, height: 1080 };
  constructor(
    readonly kind: 'video' | 'audio',
    public index: number,
  ) {}
  get name(): string {
    return `${this.kind === 'video' ? 'Video' : 'Audio'} ${this.index + 1}`;
  }
  get id(): number {
    return this.index;
  }
  async getIndex(): Promise<number> {
    return this.index;
  }
  /** Synchronous, as documented. */
  getTrackItems(type: unknown, includeEmpty: boolean): FakeTrackItemBase[] {
    if (type !== FakeConstants.TrackItemType.CLIP) throw new Error('this fake only lists CLIP track items');
    if (typeof includeEmpty !== 'boolean') throw new Error('Illegal Parameter type');
    return [...this.items].sort((a, b) => (a.timing.start < b.timing.start ? -1 : 1));
  }
  /** Overwrite edit: whatever lies in [start, end) is cut away. */
  clear(start: bigint, end: bigint): void {
    for (const item of [...this.items]) {
      const { start: s, end: e } = item.timing;
      if (!(s < end && e > start)) continue;
      if (s >= start && e <= end) {
        this.items.splice(this.items.indexOf(item), 1);
      } else if (s < start && e > end) {
        const tail = cloneItem(item, this);
        tail.timing.inPoint += end - s;
        tail.timing.start = end;
        this.items.push(tail);
        item.timing.end = start;
      } else if (s < start) {
        item.timing.end = start;
      } else {
        item.timing.inPoint += end - s;
        item.timing.start = end;
      }
    }
  }
  /** Insert edit: everything from `at` on moves right by `by`, cutting a clip that spans `at`. */
  ripple(at: bigint, by: bigint): void {
    for (const item of [...this.items]) {
      if (item.timing.start >= at) {
        item.timing.start += by;
        item.timing.end += by;
      } else if (item.timing.end > at) {
        const tail = cloneItem(item, this);
        tail.timing.inPoint += at - item.timing.start;
        tail.timing.start = at + by;
        tail.timing.end = item.timing.end + by;
        this.items.push(tail);
        item.timing.end = at;
      }
    }
  }
}

function cloneItem(item: FakeTrackItemBase, track: FakeTrack): FakeTrackItemBase {
  const Ctor = item instanceof FakeVideoClipTrackItem ? FakeVideoClipTrackItem : FakeAudioClipTrackItem;
  const copy = new Ctor((item as unknown as { world: FakePremiere }).world, track, item.name, item.projectItem, {
    ...item.timing,
  });
  copy.disabled = item.disabled;
  if (item instanceof FakeVideoClipTrackItem && copy instanceof FakeVideoClipTrackItem) {
    const world = (item as unknown as { world: FakePremiere }).world;
    copy.chain = item.chain.copy(world.rules, (what) => refuseLocked(track, what));
  }
  return copy;
}

export class FakeTrackItemSelection implements Partial<Shape<TrackItemSelection>> {
  constructor(private readonly items: FakeTrackItemBase[]) {}
  async getTrackItems(): Promise<FakeTrackItemBase[]> {
    return [...this.items];
  }
  addItem(trackItem: unknown): boolean {
    const item = instance(trackItem, FakeTrackItemBase);
    this.items.push(item);
    return true;
  }
  removeItem(trackItem: unknown): boolean {
    const item = instance(trackItem, FakeTrackItemBase);
    const i = this.items.indexOf(item);
    if (i >= 0) this.items.splice(i, 1);
    return i >= 0;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sequences

export interface SubsequenceCall {
  ignoreTrackTargeting: boolean | undefined;
  /** The parent's In/Out when the subsequence was made. */
  inTicks: bigint;
  outTicks: bigint;
  sequence: FakeSequence;
  /** The sequence it was cut from. */
  parent: FakeSequence;
}

export class FakeSequence implements Partial<Shape<Sequence>> {
  readonly guid: { toString(): string };
  readonly videoTracks: FakeTrack[] = [];
  readonly audioTracks: FakeTrack[] = [];
  readonly projectItem: FakeClipProjectItem;
  inTicks: bigint | null = null;
  outTicks: bigint | null = null;

  constructor(
    private readonly world: FakePremiere,
    public name: string,
    readonly timebase: bigint,
    readonly width: number,
    readonly height: number,
    videoTracks: number,
    audioTracks: number,
  ) {
    const id = `seq-${nextId++}`;
    this.guid = { toString: () => id };
    for (let i = 0; i < videoTracks; i++) this.videoTracks.push(new FakeTrack('video', i));
    for (const track of this.videoTracks) track.frame = { width, height };
    for (let i = 0; i < audioTracks; i++) this.audioTracks.push(new FakeTrack('audio', i));
    this.projectItem = new FakeClipProjectItem(world, name);
    this.projectItem.sequence = this;
  }

  /** What a render of this sequence composites: every enabled video clip. */
  enabledVideoItems(): RenderRecord['layers'] {
    return this.videoTracks.flatMap((track) =>
      track.items
        .filter((item) => !item.disabled)
        .map((item) => ({ track: track.index, name: item.name, start: item.timing.start, end: item.timing.end })),
    );
  }

  endTicks(): bigint {
    let end = 0n;
    for (const track of [...this.videoTracks, ...this.audioTracks])
      for (const item of track.items) if (item.timing.end > end) end = item.timing.end;
    return end;
  }

  async getSelection(): Promise<FakeTrackItemSelection> {
    const selected = [...this.videoTracks, ...this.audioTracks].flatMap((t) => t.items.filter((i) => i.selected));
    return new FakeTrackItemSelection(selected);
  }
  async getVideoTrackCount(): Promise<number> {
    return this.videoTracks.length;
  }
  async getAudioTrackCount(): Promise<number> {
    return this.audioTracks.length;
  }
  async getCaptionTrackCount(): Promise<number> {
    return 0;
  }
  async getVideoTrack(index: number): Promise<FakeTrack> {
    const track = this.videoTracks[index];
    if (!track) throw new Error(`Video track index ${index} out of range`);
    return track;
  }
  async getAudioTrack(index: number): Promise<FakeTrack> {
    const track = this.audioTracks[index];
    if (!track) throw new Error(`Audio track index ${index} out of range`);
    return track;
  }
  async getTimebase(): Promise<string> {
    return this.timebase.toString();
  }
  async getFrameSize(): Promise<{ width: number; height: number }> {
    return { width: this.width, height: this.height };
  }
  async getSettings(): Promise<{
    getVideoFrameRect(): Promise<{ width: number; height: number }>;
    getVideoFrameRate(): { value: number; ticksPerFrame: number };
  }> {
    return {
      getVideoFrameRect: async () => ({ width: this.width, height: this.height }),
      getVideoFrameRate: () => ({
        value: Number(TICKS_PER_SECOND) / Number(this.timebase),
        ticksPerFrame: Number(this.timebase),
      }),
    };
  }
  async getZeroPoint(): Promise<FakeTickTime> {
    return new FakeTickTime(0n);
  }
  async getEndTime(): Promise<FakeTickTime> {
    return new FakeTickTime(this.endTicks());
  }
  async getInPoint(): Promise<FakeTickTime> {
    return new FakeTickTime(this.inTicks ?? 0n);
  }
  async getOutPoint(): Promise<FakeTickTime> {
    return new FakeTickTime(this.outTicks ?? this.endTicks());
  }
  async getProjectItem(): Promise<FakeClipProjectItem> {
    return this.projectItem;
  }
  createSetInPointAction(t: TickTime): FakeAction {
    const v = timeArg(t);
    return this.world.rules.createAction(`set In of "${this.name}"`, () => () => {
      this.inTicks = v;
    });
  }
  createSetOutPointAction(t: TickTime): FakeAction {
    const v = timeArg(t);
    return this.world.rules.createAction(`set Out of "${this.name}"`, () => () => {
      this.outTicks = v;
    });
  }
  createCloneAction(): FakeAction {
    return this.world.rules.createAction(`clone "${this.name}"`, () => () => {
      const copy = this.emptyCopy(`${this.name} Copy`);
      const all = (tracks: FakeTrack[], into: FakeTrack[]): void =>
        tracks.forEach((track, i) => {
          for (const item of track.items) into[i].items.push(cloneItem(item, into[i]));
        });
      all(this.videoTracks, copy.videoTracks);
      all(this.audioTracks, copy.audioTracks);
      copy.inTicks = this.inTicks;
      copy.outTicks = this.outTicks;
      this.world.project?.addSequence(copy, false);
    });
  }
  /** Same settings and tracks (with their locks), no items. */
  private emptyCopy(name: string): FakeSequence {
    const copy = new FakeSequence(
      this.world,
      name,
      this.timebase,
      this.width,
      this.height,
      this.videoTracks.length,
      this.audioTracks.length,
    );
    const keep = (from: FakeTrack, to: FakeTrack): void => {
      to.locked = from.locked;
      to.syncLocked = from.syncLocked;
    };
    this.videoTracks.forEach((t, i) => keep(t, copy.videoTracks[i]));
    this.audioTracks.forEach((t, i) => keep(t, copy.audioTracks[i]));
    return copy;
  }
  async createSubsequence(ignoreTrackTargeting?: boolean): Promise<FakeSequence> {
    if (this.world.failSubsequence) throw new Error('Subsequence creation failed');
    const from = this.inTicks ?? 0n;
    const to = this.outTicks ?? this.endTicks();
    const sub = this.emptyCopy(`${this.name} Sub-Sequence`);
    const copy = (source: FakeTrack[], target: FakeTrack[]): void => {
      source.forEach((track, i) => {
        for (const item of track.items) {
          if (!(item.timing.start < to && item.timing.end > from)) continue;
          const clone = cloneItem(item, target[i]);
          clone.timing.start = (item.timing.start > from ? item.timing.start : from) - from;
          clone.timing.end = (item.timing.end < to ? item.timing.end : to) - from;
          clone.selected = false;
          target[i].items.push(clone);
        }
      });
    };
    copy(this.videoTracks, sub.videoTracks);
    copy(this.audioTracks, sub.audioTracks);
    this.world.subsequenceCalls.push({
      ignoreTrackTargeting,
      inTicks: from,
      outTicks: to,
      sequence: sub,
      parent: this,
    });
    this.world.project?.addSequence(sub, false);
    return sub;
  }
}

export class FakeSequenceEditor implements Partial<Shape<SequenceEditor>> {
  constructor(
    private readonly world: FakePremiere,
    private readonly sequence: FakeSequence,
  ) {}

  createOverwriteItemAction(
    projectItem: unknown,
    time: TickTime,
    videoTrackIndex: number,
    audioTrackIndex: number,
  ): FakeAction {
    const at = timeArg(time);
    const item = this.placeable(projectItem);
    checkIndex(videoTrackIndex);
    checkIndex(audioTrackIndex);
    // What the edit places is read now, when the action is made, not when the transaction commits.
    const length = item.placedLength();
    const inPoint = item.markIn ?? 0n;
    return this.world.rules.createAction(`overwrite "${item.name}" at V${videoTrackIndex + 1}`, () => {
      const seq = this.sequence;
      // Overwriting at a track index that does not exist is unverified in Premiere; refuse it.
      if (videoTrackIndex >= seq.videoTracks.length)
        throw new Error(`Video track index ${videoTrackIndex} out of range for overwrite`);
      if (item.hasAudio && audioTrackIndex >= seq.audioTracks.length)
        throw new Error(`Audio track index ${audioTrackIndex} out of range for overwrite`);
      refuseLocked(seq.videoTracks[videoTrackIndex], `overwrite "${item.name}"`);
      if (item.hasAudio) refuseLocked(seq.audioTracks[audioTrackIndex], `overwrite "${item.name}"`);
      return () => {
        const video = seq.videoTracks[videoTrackIndex];
        video.clear(at, at + length);
        video.items.push(this.newItem(FakeVideoClipTrackItem, video, item, at, length, inPoint));
        if (item.hasAudio) {
          const audio = seq.audioTracks[audioTrackIndex];
          audio.clear(at, at + length);
          audio.items.push(this.newItem(FakeAudioClipTrackItem, audio, item, at, length, inPoint));
        }
        this.world.edits.push({ kind: 'overwrite', videoTrackIndex, audioTrackIndex, atTicks: at, projectItem: item });
      };
    });
  }

  createInsertProjectItemAction(
    projectItem: unknown,
    time: TickTime,
    videoTrackIndex: number,
    audioTrackIndex: number,
    limitShift: boolean,
  ): FakeAction {
    const at = timeArg(time);
    const item = this.placeable(projectItem);
    checkIndex(videoTrackIndex);
    checkIndex(audioTrackIndex);
    if (typeof limitShift !== 'boolean') throw new Error('Illegal Parameter type');
    const length = item.placedLength();
    const inPoint = item.markIn ?? 0n;
    return this.world.rules.createAction(`insert "${item.name}" at V${videoTrackIndex + 1}`, () => {
      const seq = this.sequence;
      // The input tracks take the new item; without limitShift every sync-locked track with something after `at`
      // moves with them (Adobe's sample: limitShift true = "don't shift non-input track").
      const shifted = (track: FakeTrack | undefined, input: boolean): boolean =>
        track !== undefined &&
        (input || (!limitShift && track.syncLocked && track.items.some((i) => i.timing.end > at)));
      for (const [tracks, index] of [
        [seq.videoTracks, videoTrackIndex],
        [seq.audioTracks, item.hasAudio ? audioTrackIndex : -1],
      ] as const) {
        tracks.forEach((track, i) => {
          if (shifted(track, i === index)) refuseLocked(track, `insert "${item.name}"`);
        });
      }
      return () => {
        // Documented: a track index past the existing tracks creates a new track.
        const video = trackAt(seq.videoTracks, 'video', videoTrackIndex);
        const audio = item.hasAudio ? trackAt(seq.audioTracks, 'audio', audioTrackIndex) : null;
        const inputs = new Set<FakeTrack>([video, ...(audio ? [audio] : [])]);
        for (const track of [...seq.videoTracks, ...seq.audioTracks]) {
          if (inputs.has(track) || (!limitShift && track.syncLocked)) track.ripple(at, length);
        }
        video.items.push(this.newItem(FakeVideoClipTrackItem, video, item, at, length, inPoint));
        if (audio) audio.items.push(this.newItem(FakeAudioClipTrackItem, audio, item, at, length, inPoint));
        this.world.edits.push({
          kind: 'insert',
          videoTrackIndex,
          audioTrackIndex,
          atTicks: at,
          projectItem: item,
          limitShift,
        });
      };
    });
  }

  private placeable(projectItem: unknown): FakeClipProjectItem {
    if (!(projectItem instanceof FakeClipProjectItem)) throw new Error('Illegal Parameter type');
    return projectItem;
  }

  private newItem(
    Ctor: typeof FakeVideoClipTrackItem | typeof FakeAudioClipTrackItem,
    track: FakeTrack,
    item: FakeClipProjectItem,
    at: bigint,
    length: bigint,
    inPoint: bigint,
  ): FakeTrackItemBase {
    return new Ctor(this.world, track, item.name, item, {
      start: at,
      end: at + length,
      inPoint,
      speed: 1,
      reversed: false,
      pointsIncludeMediaStart: false,
    });
  }
}

function checkIndex(index: unknown): void {
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0) throw new Error('Illegal Parameter type');
}

function trackAt(tracks: FakeTrack[], kind: 'video' | 'audio', index: number): FakeTrack {
  if (index < tracks.length) return tracks[index];
  const track = new FakeTrack(kind, tracks.length);
  if (tracks[0]) track.frame = tracks[0].frame;
  tracks.push(track);
  return track;
}

// ---------------------------------------------------------------------------------------------------------------
// Project

export class FakeProject implements Partial<Shape<Project>> {
  readonly guid = { toString: () => 'project-1' };
  readonly root: FakeFolderItem;
  readonly sequences: FakeSequence[] = [];
  activeSequence: FakeSequence | null = null;

  constructor(
    private readonly world: FakePremiere,
    public name: string,
    public path: string,
  ) {
    this.root = new FakeFolderItem(world, name);
  }

  async getActiveSequence(): Promise<FakeSequence | null> {
    return this.activeSequence;
  }
  async getSequences(): Promise<FakeSequence[]> {
    return [...this.sequences];
  }
  async getRootItem(): Promise<FakeFolderItem> {
    return this.root;
  }
  async getInsertionBin(): Promise<FakeFolderItem> {
    return this.root;
  }
  lockedAccess(callback: () => void): void {
    this.world.rules.lockedAccess(callback);
  }
  executeTransaction(
    callback: (compound: { addAction(a: unknown): boolean; readonly empty: boolean }) => void,
    undoString?: string,
  ): boolean {
    return this.world.rules.executeTransaction(callback, undoString);
  }
  async importFiles(...args: unknown[]): Promise<boolean> {
    const [paths, , targetBin] = args;
    // Reported on a 2026 build: the four-argument form with an undefined bin throws.
    if (args.length >= 3 && targetBin === undefined) throw new Error('Illegal Parameter type');
    if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) throw new Error('Illegal Parameter type');
    if (targetBin !== undefined && !(targetBin instanceof FakeFolderItem)) throw new Error('Illegal Parameter type');
    this.world.importCalls.push({ paths: [...paths], bin: targetBin ?? null });
    if (this.world.importBehaviour === 'fail') return false;
    const bin = targetBin ?? this.root;
    for (const path of paths) {
      if (!this.world.fs.files.has(path)) return false;
      if (this.world.importBehaviour === 'vanish') continue;
      const name = path.split(/[\\/]/).pop() ?? path;
      const item = new FakeClipProjectItem(this.world, name, {
        mediaPath: this.world.reportedImportPath(path),
        durationTicks: this.world.mediaDurations.get(path) ?? 10n * TICKS_PER_SECOND,
      });
      bin.add(item);
    }
    return true;
  }
  async deleteSequence(sequenceArg: Sequence): Promise<boolean> {
    const sequence = instance(sequenceArg, FakeSequence);
    this.world.deletedSequences.push(sequence);
    if (!this.world.deleteSequenceSucceeds) return false;
    const i = this.sequences.indexOf(sequence);
    if (i < 0) return false;
    this.sequences.splice(i, 1);
    sequence.projectItem.parent?.remove(sequence.projectItem);
    return true;
  }
  addSequence(sequence: FakeSequence, active: boolean): void {
    this.sequences.push(sequence);
    this.root.add(sequence.projectItem);
    if (active) this.activeSequence = sequence;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Events and export

type Handler = (event?: object) => void;

class FakeEventManager {
  readonly targeted: Array<{ target: unknown; name: unknown; handler: Handler }> = [];
  readonly global: Array<{ name: unknown; handler: Handler }> = [];
  rejectTargets = false;

  addEventListener(target: unknown, name: unknown, handler: Handler): void {
    if (this.rejectTargets) throw new Error('Illegal Parameter type');
    this.targeted.push({ target, name, handler });
  }
  removeEventListener(target: unknown, name: unknown, handler: Handler): void {
    const i = this.targeted.findIndex((l) => l.target === target && l.name === name && l.handler === handler);
    if (i >= 0) this.targeted.splice(i, 1);
  }
  addGlobalEventListener(name: unknown, handler: Handler): void {
    this.global.push({ name, handler });
  }
  removeGlobalEventListener(name: unknown, handler: Handler): void {
    const i = this.global.findIndex((l) => l.name === name && l.handler === handler);
    if (i >= 0) this.global.splice(i, 1);
  }
  dispatch(target: FakeSequence, name: string): void {
    const event = { id: target.guid.toString(), name: target.name };
    for (const l of [...this.targeted]) if (l.target === target && l.name === name) l.handler(event);
    for (const l of [...this.global]) if (l.name === name) l.handler(event);
  }
}

export interface ExportCall {
  sequence: FakeSequence;
  exportType: unknown;
  outputFile: string | undefined;
  presetFile: string | undefined;
  exportFull: boolean | undefined;
  argumentCount: number;
}

export interface RenderRecord {
  file: string;
  preset: string;
  layers: Array<{ track: number; name: string; start: bigint; end: bigint }>;
}

export interface EditRecord {
  kind: 'overwrite' | 'insert';
  videoTrackIndex: number;
  audioTrackIndex: number;
  atTicks: bigint;
  projectItem: FakeClipProjectItem;
  limitShift?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// The world and its builder

export interface SequenceSpec {
  name?: string;
  /** Ticks per frame; 10594584000 is 23.976 fps. */
  timebase?: bigint;
  width?: number;
  height?: number;
  videoTracks?: number;
  audioTracks?: number;
  active?: boolean;
}

export interface ClipSpec extends MediaSpec {
  track: number;
  start: bigint;
  end: bigint;
  name?: string;
  /** Source In in ticks from the media's first frame. */
  inPoint?: bigint;
  speed?: number;
  reversed?: boolean;
  /** Makes the clip a nested sequence (its project item is a sequence). */
  nested?: boolean;
  selected?: boolean;
  /** Adds a linked audio clip on this audio track, selected with the video. */
  linkedAudioTrack?: number;
  pointsIncludeMediaStart?: boolean;
  /** Put the media's project item in this bin (created under the root) instead of the root. */
  bin?: string;
}

export interface FakeOptions {
  /** null: no project open. '' : an unsaved project. */
  projectPath?: string | null;
  /**
   * 'constructors': VideoClipTrackItem/AudioClipTrackItem are classes and `instanceof` works (Auphonic's report).
   * 'cast-only': they are plain objects with a static cast() (leancoderkavy's report); instanceof is impossible.
   */
  trackItemClasses?: 'constructors' | 'cast-only';
}

export class FakePremiere {
  readonly rules = new Rules();
  readonly fs: FakeFs;
  readonly events = new FakeEventManager();
  project: FakeProject | null;

  // Scenario switches
  exportSucceeds = true;
  deleteSequenceSucceeds = true;
  failSubsequence = false;
  importBehaviour: 'ok' | 'fail' | 'vanish' = 'ok';
  /** How Premiere reports an imported file's path (e.g. other slashes/case); the identity by default. */
  reportedImportPath: (path: string) => string = (p) => p;
  readonly mediaDurations = new Map<string, bigint>();
  private readonly presetExtensions = new Map<string, string>();

  // Records
  readonly exportCalls: ExportCall[] = [];
  /** Each successful render and the video layers it composited. */
  readonly renders: RenderRecord[] = [];
  readonly subsequenceCalls: SubsequenceCall[] = [];
  readonly deletedSequences: FakeSequence[] = [];
  readonly importCalls: Array<{ paths: string[]; bin: FakeFolderItem | null }> = [];
  readonly edits: EditRecord[] = [];

  readonly ppro: premierepro;
  private readonly mediaItems = new Map<string, FakeClipProjectItem>();

  constructor(options: FakeOptions = {}) {
    const projectPath =
      options.projectPath === undefined ? '/Users/editor/Films/Harbour/harbour.prproj' : options.projectPath;
    this.fs = new FakeFs();
    if (projectPath === null) {
      this.project = null;
    } else {
      const name = projectPath
        ? (projectPath.split(/[\\/]/).pop() ?? projectPath).replace(/\.prproj$/, '')
        : 'Untitled';
      this.project = new FakeProject(this, name, projectPath);
      if (projectPath) this.fs.addDir(parentOf(projectPath));
    }
    this.ppro = this.buildModule(options.trackItemClasses ?? 'constructors');
  }

  get undoStack(): UndoStep[] {
    return this.rules.undoStack;
  }

  addSequence(spec: SequenceSpec = {}): FakeSequence {
    const project = this.requireProject();
    const seq = new FakeSequence(
      this,
      spec.name ?? 'Sequence 01',
      spec.timebase ?? 10594584000n,
      spec.width ?? 1920,
      spec.height ?? 1080,
      spec.videoTracks ?? 3,
      spec.audioTracks ?? 2,
    );
    project.addSequence(seq, spec.active ?? true);
    return seq;
  }

  addClip(seq: FakeSequence, spec: ClipSpec): { video: FakeVideoClipTrackItem; audio: FakeAudioClipTrackItem | null } {
    const track = seq.videoTracks[spec.track];
    if (!track) throw new Error(`no video track ${spec.track}`);
    const projectItem = spec.nested ? this.nestedSequenceItem(seq, spec) : this.mediaItem(spec);
    const timing: ClipTiming = {
      start: spec.start,
      end: spec.end,
      inPoint: spec.inPoint ?? 0n,
      speed: spec.speed ?? 1,
      reversed: spec.reversed ?? false,
      pointsIncludeMediaStart: spec.pointsIncludeMediaStart ?? false,
    };
    const name = spec.name ?? projectItem.name;
    const video = new FakeVideoClipTrackItem(this, track, name, projectItem, timing);
    video.selected = spec.selected ?? false;
    track.items.push(video);
    let audio: FakeAudioClipTrackItem | null = null;
    if (spec.linkedAudioTrack !== undefined) {
      const audioTrack = seq.audioTracks[spec.linkedAudioTrack];
      if (!audioTrack) throw new Error(`no audio track ${spec.linkedAudioTrack}`);
      audio = new FakeAudioClipTrackItem(this, audioTrack, name, projectItem, { ...timing });
      audio.selected = spec.selected ?? false;
      audioTrack.items.push(audio);
    }
    return { video, audio };
  }

  addAudioClip(seq: FakeSequence, spec: ClipSpec): FakeAudioClipTrackItem {
    const track = seq.audioTracks[spec.track];
    if (!track) throw new Error(`no audio track ${spec.track}`);
    const projectItem = this.mediaItem(spec);
    const audio = new FakeAudioClipTrackItem(this, track, spec.name ?? projectItem.name, projectItem, {
      start: spec.start,
      end: spec.end,
      inPoint: spec.inPoint ?? 0n,
      speed: spec.speed ?? 1,
      reversed: spec.reversed ?? false,
      pointsIncludeMediaStart: false,
    });
    audio.selected = spec.selected ?? false;
    track.items.push(audio);
    return audio;
  }

  /** A top-level bin, as if the editor had made it. */
  addBin(name: string): FakeFolderItem {
    const bin = new FakeFolderItem(this, name);
    this.requireProject().root.add(bin);
    return bin;
  }

  findBin(name: string): FakeFolderItem | null {
    const project = this.requireProject();
    return (
      (project.root.children.find((c) => c instanceof FakeFolderItem && c.name === name) as
        FakeFolderItem | undefined) ?? null
    );
  }

  /** Every clip project item in the project, depth first. */
  allClipItems(): FakeClipProjectItem[] {
    const out: FakeClipProjectItem[] = [];
    const walk = (folder: FakeFolderItem): void => {
      for (const c of folder.children) {
        if (c instanceof FakeFolderItem) walk(c);
        else if (c instanceof FakeClipProjectItem) out.push(c);
      }
    };
    walk(this.requireProject().root);
    return out;
  }

  fireSelectionChanged(seq: FakeSequence): void {
    this.events.dispatch(seq, FakeConstants.SequenceEvent.SELECTION_CHANGED);
  }

  activate(seq: FakeSequence): void {
    this.requireProject().activeSequence = seq;
    this.events.dispatch(seq, FakeConstants.SequenceEvent.ACTIVATED);
  }

  /** An export preset the fake's file system holds, and the extension it writes. */
  addPreset(path: string, extension: string): void {
    this.fs.addFile(path, '<?xml version="1.0" encoding="UTF-8"?><PremiereData Version="3"/>');
    this.presetExtensions.set(path, extension);
  }

  private presetExtension(path: string): string | undefined {
    return this.fs.files.has(path) ? this.presetExtensions.get(path) : undefined;
  }

  private requireProject(): FakeProject {
    if (!this.project) throw new Error('the scenario has no project');
    return this.project;
  }

  private mediaItem(spec: ClipSpec): FakeClipProjectItem {
    const path = spec.mediaPath ?? '/Volumes/Footage/A001_C003.mov';
    const existing = this.mediaItems.get(path);
    if (existing) return existing;
    const item = new FakeClipProjectItem(this, path.split(/[\\/]/).pop() ?? path, spec);
    item.mediaPath = path;
    this.mediaItems.set(path, item);
    const project = this.requireProject();
    const bin = spec.bin ? (this.findBin(spec.bin) ?? this.addBin(spec.bin)) : project.root;
    bin.add(item);
    return item;
  }

  private nestedSequenceItem(parent: FakeSequence, spec: ClipSpec): FakeClipProjectItem {
    const nested = new FakeSequence(
      this,
      spec.name ?? 'Nested Sequence 01',
      parent.timebase,
      parent.width,
      parent.height,
      1,
      1,
    );
    this.requireProject().addSequence(nested, false);
    return nested.projectItem;
  }

  private buildModule(classes: 'constructors' | 'cast-only'): premierepro {
    const trackItemStatics = {
      TRACKITEMTYPE_EMPTY: 0,
      TRACKITEMTYPE_CLIP: 1,
      TRACKITEMTYPE_TRANSITION: 2,
      TRACKITEMTYPE_PREVIEW: 3,
      TRACKITEMTYPE_FEEDBACK: 4,
    };
    const VideoClipTrackItem =
      classes === 'constructors'
        ? FakeVideoClipTrackItem
        : { ...trackItemStatics, cast: (item: unknown) => (item instanceof FakeVideoClipTrackItem ? item : null) };
    const AudioClipTrackItem =
      classes === 'constructors'
        ? FakeAudioClipTrackItem
        : { ...trackItemStatics, cast: (item: unknown) => (item instanceof FakeAudioClipTrackItem ? item : null) };
    const encoder = {
      isAMEInstalled: false,
      // Rest parameters, so that the call records how many arguments the panel passed (3 without a preset, 4 with).
      exportSequence: async (
        ...args: [
          sequence: unknown,
          exportType: unknown,
          outputFile?: string,
          presetFile?: string,
          exportFull?: boolean,
        ]
      ): Promise<boolean> => {
        const [sequence, exportType, outputFile, presetFile, exportFull] = args;
        if (!(sequence instanceof FakeSequence)) throw new Error('Illegal Parameter type');
        this.exportCalls.push({ sequence, exportType, outputFile, presetFile, exportFull, argumentCount: args.length });
        if (!this.exportSucceeds || !outputFile) return false;
        // Strict where the documentation is silent: a file without a preset is not rendered.
        const extension = presetFile === undefined ? undefined : this.presetExtension(presetFile);
        if (extension === undefined) return false;
        if (!outputFile.toLowerCase().endsWith(`.${extension}`)) return false;
        if (!this.fs.dirs.has(parentOf(outputFile))) return false;
        this.renders.push({ file: outputFile, preset: presetFile!, layers: sequence.enabledVideoItems() });
        this.fs.addFile(outputFile, `rendered ${sequence.name}`);
        this.mediaDurations.set(outputFile, sequence.endTicks());
        return true;
      },
    };
    const api = {
      Constants: FakeConstants,
      TickTime: FakeTickTime,
      Project: {
        getActiveProject: async () => this.project,
      },
      ProjectItem: {
        cast: (item: unknown) => item,
        TYPE_CLIP: 1,
        TYPE_BIN: 2,
        TYPE_ROOT: 3,
      },
      ClipProjectItem: {
        cast: (item: unknown) => (item instanceof FakeClipProjectItem ? item : null),
      },
      FolderItem: {
        cast: (item: unknown) => (item instanceof FakeFolderItem ? item : null),
      },
      VideoClipTrackItem,
      AudioClipTrackItem,
      SequenceEditor: {
        getEditor: (sequence: unknown) => {
          if (!(sequence instanceof FakeSequence)) throw new Error('Illegal Parameter type');
          return new FakeSequenceEditor(this, sequence);
        },
      },
      EncoderManager: {
        getManager: () => encoder,
        getExportFileExtension: async (sequence: unknown, presetFilePath: unknown) => {
          instance(sequence, FakeSequence);
          if (typeof presetFilePath !== 'string') throw new Error('Illegal Parameter type');
          const extension = this.presetExtension(presetFilePath);
          if (extension === undefined) throw new Error(`Could not read the export preset ${presetFilePath}`);
          return extension;
        },
        EXPORT_IMMEDIATELY: FakeConstants.ExportType.IMMEDIATELY,
        EXPORT_QUEUE_TO_AME: FakeConstants.ExportType.QUEUE_TO_AME,
        EXPORT_QUEUE_TO_APP: FakeConstants.ExportType.QUEUE_TO_APP,
      },
      EventManager: this.events,
      VideoFilterFactory: {
        createComponent: (matchName: unknown) => createFilter(this.rules, matchName),
      },
      Metadata: {
        getProjectColumnsMetadata: async (item: unknown) => {
          const columns: Array<{ ColumnID: string; ColumnValue: string; ColumnName: string }> = [];
          if (item instanceof FakeClipProjectItem && item.mediaStartTicks !== null) {
            columns.push({
              ColumnID: 'Column.Intrinsic.MediaStart',
              ColumnName: 'Media Start',
              ColumnValue: item.mediaStartTicks.toString(),
            });
            const end = item.mediaEndTicks ?? item.mediaStartTicks + item.durationTicks;
            columns.push({
              ColumnID: 'Column.Intrinsic.MediaEnd',
              ColumnName: 'Media End',
              ColumnValue: end.toString(),
            });
          }
          return JSON.stringify(columns);
        },
      },
    };
    return api as unknown as premierepro;
  }
}

/** Ticks of `frames` frames at a timebase (ticks per frame). */
export function frames(count: number, timebase = 10594584000n): bigint {
  return BigInt(count) * timebase;
}

export function seconds(s: number): bigint {
  return BigInt(Math.round(s * Number(TICKS_PER_SECOND)));
}
