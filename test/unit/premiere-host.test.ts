// The Premiere adapter against the fake `premierepro` module, which enforces Premiere 26.3's lock/transaction rules:
// an adapter call that would throw in Premiere throws here too.

import type { ClipSelection, Selection } from '../../panel/src/host/host';
import { PremiereHost, RENDER_STATUS, type UxpModule } from '../../panel/src/host/premiere';
import { win32 } from 'node:path';
import { tokenFile } from '../../engine/src/api/token-location';
import { tokenDir, tokenPath } from '../../engine/src/server/token';
import { UNDO_EFFECTS, UNDO_LOOK } from '../../panel/src/host/premiere-look';
import { UNDO_TRIM } from '../../panel/src/host/premiere-place';
import { CHOSEN_PRESET_KEY, memoryStore, type SettingsStore } from '../../panel/src/host/premiere-presets';
import { UNDO_COPY, UNDO_MARK, UNDO_SOLO } from '../../panel/src/host/premiere-render';
import {
  FakeClipProjectItem,
  FakeConstants,
  FakePremiere,
  FakeTickTime,
  FakeVideoClipTrackItem,
  tick,
  type FakeOptions,
  type FakeSequence,
  type FakeTrackItemBase,
  frames,
  seconds,
  TICKS_PER_SECOND,
} from '../support/fake-premierepro';
import { createFilter, MATCH } from '../support/fake-premierepro-components';

const TB = 10594584000n; // ticks per frame at 23.976 fps
const PROJECT_DIR = '/Users/editor/Films/Harbour';
const RENDERS = `${PROJECT_DIR}/Reshoot Renders`;
const PLUGIN = '/Users/editor/Library/Application Support/Adobe/UXP/Plugins/External/com.reshoot.panel_0.1.0';
const PRORES = `${PLUGIN}/presets/Reshoot ProRes 422 HQ.epr`;
const H264 = `${PLUGIN}/presets/Reshoot H.264 High Quality.epr`;
const RESULT = `${RENDERS}/Harbour wide-edit-01.mp4`;
const LABEL = 'Reshoot: a blue vintage convertible';

interface Setup {
  fake: FakePremiere;
  host: PremiereHost;
  seq: FakeSequence;
  openPath: jest.Mock<Promise<string>, [string, string?]>;
  /** UXP's file dialog: what it returns is what the editor picked (null: closed). */
  pick: jest.Mock<Promise<{ nativePath: string } | null>, [unknown?]>;
  settings: SettingsStore;
}

function setup(
  options: FakeOptions & {
    platform?: string;
    home?: string;
    uxp?: UxpModule;
    presets?: 'both' | 'h264' | 'none';
    settings?: SettingsStore;
  } = {},
): Setup {
  const fake = new FakePremiere(options);
  const presets = options.presets ?? 'both';
  if (presets === 'both') fake.addPreset(PRORES, 'mov');
  if (presets !== 'none') fake.addPreset(H264, 'mp4');
  const seq = fake.project
    ? fake.addSequence({ name: 'Harbour edit', timebase: TB, videoTracks: 3, audioTracks: 2 })
    : (null as unknown as FakeSequence);
  const openPath = jest.fn(async (_path: string, _text?: string) => '');
  const pick = jest.fn(async (_options?: unknown): Promise<{ nativePath: string } | null> => null);
  const settings = options.settings ?? memoryStore();
  const host = new PremiereHost({
    ppro: fake.ppro,
    fs: fake.fs,
    os: { homedir: () => options.home ?? '/Users/editor', platform: () => options.platform ?? 'darwin' },
    uxp: options.uxp ?? {
      shell: { openPath },
      storage: {
        localFileSystem: { getPluginFolder: async () => ({ nativePath: PLUGIN }), getFileForOpening: pick },
      },
    },
    settings,
  });
  return { fake, host, seq, openPath, pick, settings };
}

/** The original clip of most scenarios: "Harbour wide" on V1, frames 48–168, with its audio on A1. */
function addOriginal(
  fake: FakePremiere,
  seq: FakeSequence,
  extra: Partial<Parameters<FakePremiere['addClip']>[1]> = {},
) {
  return fake.addClip(seq, {
    track: 0,
    name: 'Harbour wide',
    start: frames(48),
    end: frames(168),
    inPoint: seconds(10),
    mediaPath: '/Volumes/Footage/A001_C003.mov',
    selected: true,
    linkedAudioTrack: 0,
    ...extra,
  });
}

async function selectedClip(host: PremiereHost): Promise<ClipSelection> {
  const sel: Selection = await host.getSelection();
  if (sel.kind !== 'clip') throw new Error(`expected a clip, got ${sel.kind}`);
  return sel;
}

function snapshot(item: FakeTrackItemBase) {
  return {
    track: item.track.index,
    ...item.timing,
    disabled: item.disabled,
    name: item.name,
    projectItem: item.projectItem,
  };
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('getSelection', () => {
  test('one clip selected: source range, timeline range in seconds and ticks, fps, size, frames, track', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq);

    const sel = await selectedClip(host);

    expect(sel).toMatchObject({
      kind: 'clip',
      name: 'Harbour wide',
      mediaPath: '/Volumes/Footage/A001_C003.mov',
      sequenceStartTicks: (48n * TB).toString(),
      sequenceEndTicks: (168n * TB).toString(),
      frameWidth: 1920,
      frameHeight: 1080,
      frames: 120,
      trackIndex: 0,
      renderReason: null,
    });
    expect(sel.sequenceStartTicks).toBe('508540032000');
    expect(sel.fps).toBe(254016000000 / 10594584000);
    expect(sel.fps).toBeCloseTo(23.976, 3);
    expect(sel.sequenceStart).toBeCloseTo(2.002, 12); // 48 × 1001/24000 s
    expect(sel.sequenceEnd).toBeCloseTo(7.007, 12);
    expect(sel.sourceIn).toBeCloseTo(10, 12);
    expect(sel.sourceOut).toBeCloseTo(15.005, 12); // 120 frames of media after the In
  });

  test('media with a start timecode: In/Out stay counted from the first frame of the file', async () => {
    const { fake, seq, host } = setup();
    // Timecode 01:00:00:00, 60 s of media; Premiere reports the points relative to the media start.
    addOriginal(fake, seq, { mediaStartTicks: seconds(3600), durationTicks: seconds(60) });
    const sel = await selectedClip(host);
    expect(sel.sourceIn).toBeCloseTo(10, 12);
    expect(sel.sourceOut).toBeCloseTo(15.005, 12);
  });

  test('a build reporting timecode-based In/Out: the media start is subtracted', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, {
      mediaStartTicks: seconds(3600),
      durationTicks: seconds(60),
      pointsIncludeMediaStart: true,
    });
    const sel = await selectedClip(host);
    expect(sel.sourceIn).toBeCloseTo(10, 9);
    expect(sel.sourceOut).toBeCloseTo(15.005, 9);
  });

  test('nothing selected', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { selected: false });
    await expect(host.getSelection()).resolves.toEqual({ kind: 'none' });
  });

  test('several video clips selected (their linked audio does not count)', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq);
    fake.addClip(seq, {
      track: 0,
      start: frames(200),
      end: frames(260),
      mediaPath: '/Volumes/Footage/A001_C004.mov',
      selected: true,
      linkedAudioTrack: 0,
    });
    await expect(host.getSelection()).resolves.toEqual({ kind: 'several', count: 2 });
  });

  test('only audio selected', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { selected: false });
    fake.addAudioClip(seq, {
      track: 1,
      start: frames(0),
      end: frames(300),
      mediaPath: '/Volumes/Sound/ambience.wav',
      selected: true,
    });
    await expect(host.getSelection()).resolves.toEqual({ kind: 'audio-only' });
  });

  test('video with its linked audio selected gives the video clip', async () => {
    const { fake, seq, host } = setup();
    const { video, audio } = addOriginal(fake, seq);
    expect(video.selected && audio?.selected).toBe(true);
    const sel = await selectedClip(host);
    expect(sel.name).toBe('Harbour wide');
    expect(sel.trackIndex).toBe(0);
  });

  test('on builds where the track item classes only offer cast(), the video clip is still told from audio', async () => {
    const { fake, seq, host } = setup({ trackItemClasses: 'cast-only' });
    expect(typeof (fake.ppro as unknown as Record<string, unknown>).VideoClipTrackItem).toBe('object');
    addOriginal(fake, seq);
    const sel = await selectedClip(host);
    expect(sel.name).toBe('Harbour wide');

    const audioOnly = setup({ trackItemClasses: 'cast-only' });
    audioOnly.fake.addAudioClip(audioOnly.seq, { track: 0, start: 0n, end: frames(10), selected: true });
    await expect(audioOnly.host.getSelection()).resolves.toEqual({ kind: 'audio-only' });
  });

  test('no project open', async () => {
    const { host } = setup({ projectPath: null });
    await expect(host.getSelection()).resolves.toEqual({ kind: 'no-project' });
  });

  test('no active sequence', async () => {
    const { fake, host } = setup();
    fake.project!.activeSequence = null;
    await expect(host.getSelection()).resolves.toEqual({ kind: 'no-sequence' });
  });

  test('speed-changed, reversed, nested and offline clips name why they need rendering', async () => {
    const cases: Array<[Partial<Parameters<FakePremiere['addClip']>[1]>, RegExp]> = [
      [{ speed: 0.5 }, /^speed changed to 50%$/],
      [{ reversed: true }, /^reversed$/],
      [{ nested: true }, /^nested sequence$/],
      [{ offline: true }, /^media offline$/],
    ];
    for (const [extra, reason] of cases) {
      const { fake, seq, host } = setup();
      addOriginal(fake, seq, extra);
      const sel = await selectedClip(host);
      expect(sel.renderReason).toMatch(reason);
    }
  });
});

describe('prepareSource', () => {
  test('a clip that plays its media as is goes to the engine as media path and source range, nothing rendered', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq);
    const sel = await selectedClip(host);
    await expect(host.prepareSource(sel)).resolves.toEqual({
      path: '/Volumes/Footage/A001_C003.mov',
      in: sel.sourceIn,
      out: sel.sourceOut,
    });
    expect(fake.exportCalls).toHaveLength(0);
    expect(fake.undoStack).toHaveLength(0);
  });

  test('speed-changed clip: the clip alone is rendered from a copy of the sequence with the bundled ProRes preset; the sequence and its In/Out are untouched', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { speed: 0.5 });
    // A title above the clip, an adjustment layer above that, and clips before and after it on V1.
    fake.addClip(seq, { track: 1, name: 'Title', start: frames(60), end: frames(100), mediaPath: '/g/title.png' });
    fake.addClip(seq, { track: 2, name: 'Grade', start: frames(0), end: frames(400), mediaPath: '/g/adjust.prproj' });
    fake.addClip(seq, { track: 0, name: 'Before', start: frames(0), end: frames(48), mediaPath: '/f/b.mov' });
    fake.addClip(seq, { track: 0, name: 'After', start: frames(168), end: frames(300), mediaPath: '/f/a.mov' });
    seq.inTicks = frames(10);
    seq.outTicks = frames(500);
    const before = seq.videoTracks.map((t) => t.items.map(snapshot));
    const sel = await selectedClip(host);
    const status: string[] = [];

    const source = await host.prepareSource(sel, (m) => status.push(m));

    // The subsequence was cut from a copy, over exactly the clip's range.
    expect(fake.subsequenceCalls).toHaveLength(1);
    const [sub] = fake.subsequenceCalls;
    expect(sub.parent).not.toBe(seq);
    expect(sub).toMatchObject({ ignoreTrackTargeting: true, inTicks: 48n * TB, outTicks: 168n * TB });

    // What was rendered: the clip and nothing else.
    expect(fake.renders).toHaveLength(1);
    expect(fake.renders[0].layers).toEqual([{ track: 0, name: 'Harbour wide', start: 0n, end: 120n * TB }]);
    const [call] = fake.exportCalls;
    expect(call.sequence).toBe(sub.sequence);
    expect(call.exportType).toBe(FakeConstants.ExportType.IMMEDIATELY);
    expect(call.presetFile).toBe(PRORES);
    expect(call.outputFile).toMatch(
      /^\/Users\/editor\/Films\/Harbour\/Reshoot Renders\/Harbour wide-\d{8}-\d{6}-\d{3}\.source\.mov$/,
    );
    expect(fake.fs.files.has(call.outputFile!)).toBe(true);

    // The editor's sequence: same In/Out, same items, nothing disabled; the copy and the subsequence are gone.
    expect(seq.inTicks).toBe(frames(10));
    expect(seq.outTicks).toBe(frames(500));
    expect(seq.videoTracks.map((t) => t.items.map(snapshot))).toEqual(before);
    expect(fake.project!.sequences).toEqual([seq]);
    expect(fake.deletedSequences).toHaveLength(2);
    expect(fake.undoStack.map((u) => u.label)).toEqual([UNDO_COPY, UNDO_MARK, UNDO_SOLO]);
    expect(fake.undoStack[2].actions).toEqual(['disable "Title"', 'disable "Grade"']);
    expect(status).toContain(RENDER_STATUS);

    expect(source.path).toBe(call.outputFile);
    expect(source.in).toBe(0);
    expect(source.out).toBeCloseTo(5.005, 12);
    expect(source.out).toBe(sel.sequenceEnd - sel.sequenceStart);
  });

  test('a sequence without In/Out marks still has none after a render (never written, so "none" survives)', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { reversed: true });
    expect(seq.inTicks).toBeNull();
    await host.prepareSource(await selectedClip(host));
    expect(fake.renders).toHaveLength(1);
    expect(seq.inTicks).toBeNull();
    expect(seq.outTicks).toBeNull();
    // No step of the render names the editor's sequence.
    expect(fake.undoStack.flatMap((u) => u.actions).filter((a) => a.includes('"Harbour edit"'))).toEqual([
      'clone "Harbour edit"',
    ]);
  });

  test('without the ProRes preset the H.264 one is used, and the file takes the extension Premiere gives for it', async () => {
    const { fake, seq, host } = setup({ presets: 'h264' });
    addOriginal(fake, seq, { speed: 2 });
    const source = await host.prepareSource(await selectedClip(host));
    expect(fake.exportCalls[0].presetFile).toBe(H264);
    expect(source.path).toMatch(/\.source\.mp4$/);
    expect(fake.renders).toHaveLength(1);
  });

  test('no preset at all: a clear error that says how to make and choose one, before anything is changed', async () => {
    const { fake, seq, host } = setup({ presets: 'none' });
    addOriginal(fake, seq, { speed: 2 });
    const failure = host.prepareSource(await selectedClip(host));
    await expect(failure).rejects.toThrow(
      /no export preset it can render this clip with \(Reshoot ProRes 422 HQ\.epr is missing; Reshoot H\.264 High Quality\.epr is missing; bundled presets are looked for in .*com\.reshoot\.panel_0\.1\.0\/presets\)/,
    );
    await expect(failure).rejects.toThrow(/Export mode.*Match Source.*\.epr.*"Choose render preset…"/);
    await expect(failure).rejects.not.toThrow(/Reinstall/);
    expect(fake.undoStack).toHaveLength(0);
    expect(fake.exportCalls).toHaveLength(0);
    expect(fake.fs.dirs.has(RENDERS)).toBe(false);
    expect(await host.exportPreset()).toEqual({ path: null, origin: 'none' });
  });

  describe('a render preset the editor chooses', () => {
    const MINE = '/Users/editor/Documents/Adobe/Presets/ProRes HQ match.epr';

    test('renders with it, with the extension Premiere gives, and a new panel remembers it', async () => {
      const { fake, seq, host, pick, settings } = setup({ presets: 'none' });
      fake.fs.addDir('/Users/editor/Documents/Adobe/Presets');
      fake.addPreset(MINE, 'mov');
      addOriginal(fake, seq, { speed: 2 });
      pick.mockResolvedValueOnce({ nativePath: MINE });

      expect(await host.chooseExportPreset()).toEqual({ path: MINE, origin: 'chosen' });
      expect(pick).toHaveBeenCalledWith({ types: ['epr'], allowMultiple: false });
      const source = await host.prepareSource(await selectedClip(host));
      expect(fake.exportCalls.map((c) => c.presetFile)).toEqual([MINE]);
      expect(source.path).toMatch(/\.source\.mov$/);
      expect(fake.fs.files.has(source.path)).toBe(true);

      // The panel reopened (a new adapter), same settings: the choice holds without asking again.
      const again = new PremiereHost({
        ppro: fake.ppro,
        fs: fake.fs,
        os: { homedir: () => '/Users/editor', platform: () => 'darwin' },
        uxp: { storage: { localFileSystem: { getPluginFolder: async () => ({ nativePath: PLUGIN }) } } },
        settings,
      });
      expect(await again.exportPreset()).toEqual({ path: MINE, origin: 'chosen' });
    });

    test('wins over the bundled preset; once moved away, the bundled one renders and the panel says why', async () => {
      const { fake, seq, host, pick } = setup();
      fake.fs.addDir('/Users/editor/Documents/Adobe/Presets');
      fake.addPreset(MINE, 'mxf');
      addOriginal(fake, seq, { reversed: true });
      expect(await host.exportPreset()).toEqual({ path: PRORES, origin: 'bundled' });
      pick.mockResolvedValueOnce({ nativePath: MINE });
      await host.chooseExportPreset();
      const first = await host.prepareSource(await selectedClip(host));
      expect(first.path).toMatch(/\.source\.mxf$/);

      fake.fs.files.delete(MINE);
      expect(await host.exportPreset()).toEqual({
        path: PRORES,
        origin: 'bundled',
        problem: `the preset you chose, ${MINE}, is no longer there`,
      });
      const second = await host.prepareSource(await selectedClip(host));
      expect(second.path).toMatch(/\.source\.mov$/);
      expect(fake.exportCalls.map((c) => c.presetFile)).toEqual([MINE, PRORES]);
    });

    test('a file that is no preset, or one Premiere cannot read, is refused and the choice stays as it was', async () => {
      const { fake, host, pick, settings } = setup({ presets: 'none' });
      fake.fs.addDir('/Users/editor/Documents');
      fake.fs.addFile('/Users/editor/Documents/notes.txt', 'x');
      fake.fs.addFile('/Users/editor/Documents/broken.epr', 'not xml');
      pick.mockResolvedValueOnce({ nativePath: '/Users/editor/Documents/notes.txt' });
      await expect(host.chooseExportPreset()).rejects.toThrow(/notes\.txt is not an export preset \(\.epr\)/);
      pick.mockResolvedValueOnce({ nativePath: '/Users/editor/Documents/broken.epr' });
      await expect(host.chooseExportPreset()).rejects.toThrow(
        /Premiere cannot render with .*broken\.epr \(Premiere could not read it: Could not read the export preset/,
      );
      expect(settings.getItem(CHOSEN_PRESET_KEY)).toBeNull();
      // Closing the dialog changes nothing either.
      expect(await host.chooseExportPreset()).toBeNull();
      expect(settings.getItem(CHOSEN_PRESET_KEY)).toBeNull();
    });
  });

  test('the fake refuses a render without a preset, as the panel must assume Premiere does', async () => {
    const { fake, seq } = setup();
    const manager = fake.ppro.EncoderManager.getManager();
    const immediately = fake.ppro.Constants.ExportType.IMMEDIATELY;
    await expect(manager.exportSequence(seq as never, immediately, `${RENDERS}/x.mp4`)).resolves.toBe(false);
    fake.fs.addDir(RENDERS);
    await expect(manager.exportSequence(seq as never, immediately, `${RENDERS}/x.mp4`, PRORES)).resolves.toBe(false);
    await expect(manager.exportSequence(seq as never, immediately, `${RENDERS}/x.mov`, PRORES)).resolves.toBe(true);
  });

  test('a title on a locked track cannot be hidden: the render stops with what to do, nothing is exported', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { speed: 0.5 });
    fake.addClip(seq, { track: 2, name: 'Title', start: frames(60), end: frames(100), mediaPath: '/g/title.png' });
    seq.videoTracks[2].locked = true;
    await expect(host.prepareSource(await selectedClip(host))).rejects.toThrow(
      /would not hide what lies over or under the clip on V3 .*If one of those tracks is locked, unlock it and try again/,
    );
    expect(fake.exportCalls).toHaveLength(0);
    expect(fake.project!.sequences).toEqual([seq]);
    expect(seq.videoTracks[2].items[0].disabled).toBe(false);
  });

  test('nested sequence is rendered the same way', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { nested: true });
    const sel = await selectedClip(host);
    expect(sel.mediaPath).toBe('');
    const source = await host.prepareSource(sel);
    expect(fake.exportCalls).toHaveLength(1);
    expect(source).toEqual({ path: fake.exportCalls[0].outputFile, in: 0, out: sel.sequenceEnd - sel.sequenceStart });
  });

  test('a failed export is reported, and the copy and the subsequence are still deleted', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { reversed: true });
    seq.inTicks = frames(3);
    seq.outTicks = frames(400);
    fake.exportSucceeds = false;
    const sel = await selectedClip(host);
    await expect(host.prepareSource(sel)).rejects.toThrow(
      /Premiere could not render the clip to .*Reshoot Renders.*Check that the export preset/,
    );
    expect(fake.deletedSequences).toHaveLength(2);
    expect(fake.project!.sequences).toEqual([seq]);
    expect(seq.inTicks).toBe(frames(3));
    expect(seq.outTicks).toBe(frames(400));
  });

  test('a failed subsequence is reported and the copy is deleted', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { speed: 2 });
    seq.inTicks = frames(3);
    seq.outTicks = frames(400);
    fake.failSubsequence = true;
    const sel = await selectedClip(host);
    await expect(host.prepareSource(sel)).rejects.toThrow(
      /could not make a subsequence of the clip's range \(Subsequence creation failed\)/,
    );
    expect(fake.exportCalls).toHaveLength(0);
    expect(fake.project!.sequences).toEqual([seq]);
    expect(seq.inTicks).toBe(frames(3));
    expect(seq.outTicks).toBe(frames(400));
  });

  test('offline media is not rendered: the editor is asked to relink it', async () => {
    const { fake, seq, host } = setup();
    addOriginal(fake, seq, { offline: true });
    const sel = await selectedClip(host);
    await expect(host.prepareSource(sel)).rejects.toThrow(/offline.*Link Media/);
    expect(fake.exportCalls).toHaveLength(0);
    expect(fake.undoStack).toHaveLength(0);
  });

  test('an unsaved project cannot render: it has no folder to render into', async () => {
    const { fake, seq, host } = setup({ projectPath: '' });
    addOriginal(fake, seq, { speed: 0.5 });
    const sel = await selectedClip(host);
    await expect(host.prepareSource(sel)).rejects.toThrow(/Save the project first/);
    expect(fake.undoStack).toHaveLength(0);
  });
});

describe('placeResult', () => {
  function withResult(s: Setup, lengthTicks = 120n * TB): void {
    s.fake.fs.addFile(RESULT, 'edited video');
    s.fake.mediaDurations.set(RESULT, lengthTicks);
  }

  test('V2 free: the result goes on V2 at the original start in one undo step named after the prompt; the original is untouched', async () => {
    const s = setup();
    const { video, audio } = addOriginal(s.fake, s.seq);
    withResult(s);
    const before = snapshot(video);
    const audioBefore = snapshot(audio!);
    const sel = await selectedClip(s.host);

    await expect(s.host.placeResult(sel, RESULT, LABEL)).resolves.toEqual({
      trackIndex: 1,
      newTrack: false,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });

    const v2 = s.seq.videoTracks[1].items;
    expect(v2).toHaveLength(1);
    expect(v2[0].timing.start).toBe(48n * TB);
    expect(v2[0].timing.end).toBe(168n * TB);
    const placed = v2[0].projectItem as FakeClipProjectItem;
    expect(placed.mediaPath).toBe(RESULT);
    expect(placed.parent?.name).toBe('Reshoot');
    expect(s.fake.importCalls).toEqual([{ paths: [RESULT], bin: s.fake.findBin('Reshoot') }]);

    // First use: the bin is created in its own step; the timeline edit is the single step named after the prompt.
    expect(s.fake.undoStack.map((u) => u.label)).toEqual(['Reshoot: create the "Reshoot" bin', LABEL]);
    // The result is exactly the span long, so there is nothing to trim.
    expect(s.fake.undoStack[1].actions).toEqual(['overwrite "Harbour wide-edit-01.mp4" at V2']);

    expect(s.seq.videoTracks[0].items).toEqual([video]);
    expect(snapshot(video)).toEqual(before);
    expect(s.seq.audioTracks[0].items).toEqual([audio]);
    expect(snapshot(audio!)).toEqual(audioBefore);
    // A1 holds the original's audio; the (video-only) result names the first audio track free over the span.
    expect(s.fake.edits).toEqual([
      expect.objectContaining({ kind: 'overwrite', videoTrackIndex: 1, audioTrackIndex: 1, atTicks: 48n * TB }),
    ]);
  });

  test('with the Reshoot bin already there, placing is exactly one undo step', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    const bin = s.fake.addBin('Reshoot');
    withResult(s);
    await s.host.placeResult(await selectedClip(s.host), RESULT, LABEL);
    expect(s.fake.undoStack.map((u) => u.label)).toEqual([LABEL]);
    expect(s.fake.importCalls[0].bin).toBe(bin);
  });

  test('V2 busy over the span but V3 free: V3', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    const { video: title } = s.fake.addClip(s.seq, {
      track: 1,
      start: frames(150),
      end: frames(220),
      mediaPath: '/Volumes/GFX/title.mov',
    });
    withResult(s);
    const titleBefore = snapshot(title);
    const before = snapshot(video);

    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).resolves.toEqual({
      trackIndex: 2,
      newTrack: false,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });

    expect(s.seq.videoTracks[2].items.map((i) => [i.timing.start, i.timing.end])).toEqual([[48n * TB, 168n * TB]]);
    expect(s.seq.videoTracks[1].items).toEqual([title]);
    expect(snapshot(title)).toEqual(titleBefore);
    expect(snapshot(video)).toEqual(before);
  });

  test('V2 busy only outside the span (clips touching both ends): V2, and a result a frame too long does not eat the next clip', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    const { video: before } = s.fake.addClip(s.seq, {
      track: 1,
      start: frames(0),
      end: frames(48),
      mediaPath: '/Volumes/GFX/a.mov',
    });
    const { video: after } = s.fake.addClip(s.seq, {
      track: 1,
      start: frames(168),
      end: frames(300),
      mediaPath: '/Volumes/GFX/b.mov',
    });
    withResult(s, 121n * TB);
    const beforeSnap = snapshot(before);
    const afterSnap = snapshot(after);

    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).resolves.toEqual({
      trackIndex: 1,
      newTrack: false,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });

    const spans = s.seq.videoTracks[1]
      .getTrackItems(FakeConstants.TrackItemType.CLIP, false)
      .map((i) => [i.timing.start / TB, i.timing.end / TB]);
    expect(spans).toEqual([
      [0n, 48n],
      [48n, 168n],
      [168n, 300n],
    ]);
    expect(snapshot(before)).toEqual(beforeSnap);
    expect(snapshot(after)).toEqual(afterSnap);
    // Trim and placement are two checked steps: the overwrite is made after the trim has landed.
    expect(s.fake.undoStack.map((u) => u.label)).toEqual(['Reshoot: create the "Reshoot" bin', UNDO_TRIM, LABEL]);
    expect(s.fake.undoStack[1].actions).toEqual(['set In/Out of "Harbour wide-edit-01.mp4"']);
    expect(s.fake.undoStack[2].actions).toEqual(['overwrite "Harbour wide-edit-01.mp4" at V2']);
  });

  test('trim and overwrite in one transaction would cover the next clip: the fake reads the length when the action is made', async () => {
    const s = setup();
    const project = s.fake.project!;
    const item = new FakeClipProjectItem(s.fake, 'long.mp4', { durationTicks: 121n * TB, mediaPath: '/r/long.mp4' });
    project.root.add(item);
    s.fake.addClip(s.seq, { track: 1, start: frames(120), end: frames(200), mediaPath: '/Volumes/GFX/b.mov' });
    const editor = s.fake.ppro.SequenceEditor.getEditor(s.seq as never);
    project.lockedAccess(() => {
      project.executeTransaction((ca) => {
        ca.addAction(item.createSetInOutPointsAction(tick(0n), tick(72n * TB)));
        ca.addAction(editor.createOverwriteItemAction(item as never, tick(0n), 1, 0));
      });
    });
    // The overwrite was made before the trim committed: the whole 121 frames went in, and the next clip lost 1.
    const v2 = s.seq.videoTracks[1].getTrackItems(FakeConstants.TrackItemType.CLIP, false);
    expect(v2.map((i) => [i.timing.start / TB, i.timing.end / TB])).toEqual([
      [0n, 121n],
      [121n, 200n],
    ]);
  });

  test('a locked free track is skipped for the next one; the result still sits exactly over the original', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    s.seq.videoTracks[1].locked = true;
    withResult(s);
    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).resolves.toEqual({
      trackIndex: 2,
      newTrack: false,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });
    expect(s.seq.videoTracks[1].items).toEqual([]);
    expect(s.seq.videoTracks[2].items.map((i) => [i.timing.start / TB, i.timing.end / TB])).toEqual([[48n, 168n]]);
    expect(s.fake.undoStack.map((u) => u.label)).toEqual(['Reshoot: create the "Reshoot" bin', LABEL]);
  });

  test('every track locked: the result goes on a new track, which no lock covers, and nothing else moves', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    for (const t of [...s.seq.videoTracks, ...s.seq.audioTracks]) t.locked = true;
    withResult(s);
    const before = snapshot(video);
    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).resolves.toEqual({
      trackIndex: 3,
      newTrack: true,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });
    expect(s.seq.videoTracks[3].items.map((i) => [i.timing.start / TB, i.timing.end / TB])).toEqual([[48n, 168n]]);
    expect(snapshot(video)).toEqual(before);
    expect(s.fake.edits.map((e) => e.kind)).toEqual(['insert']);
  });

  test('sync locks: the fake moves sync-locked tracks on an insert without limitShift; the panel always limits it', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    const { video: later } = s.fake.addClip(s.seq, {
      track: 1,
      start: frames(200),
      end: frames(260),
      mediaPath: '/f/l.mov',
    });
    const { video: loose } = s.fake.addClip(s.seq, {
      track: 2,
      start: frames(200),
      end: frames(260),
      mediaPath: '/f/m.mov',
    });
    s.seq.videoTracks[2].syncLocked = false;
    // Every track above is busy over the span, so the panel inserts on a new track.
    s.fake.addClip(s.seq, { track: 1, start: frames(40), end: frames(180), mediaPath: '/f/b1.mov' });
    s.fake.addClip(s.seq, { track: 2, start: frames(40), end: frames(180), mediaPath: '/f/b2.mov' });
    withResult(s);
    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).resolves.toMatchObject({
      trackIndex: 3,
      newTrack: true,
    });
    expect([video, later, loose].map((i) => i.timing.start / TB)).toEqual([48n, 200n, 200n]);

    // The same insert without limitShift, by hand: the sync-locked V2 moves, the unlocked V3 does not.
    const project = s.fake.project!;
    const editor = s.fake.ppro.SequenceEditor.getEditor(s.seq as never);
    const item = s.fake.allClipItems().find((c) => c.mediaPath === RESULT)!;
    project.lockedAccess(() => {
      project.executeTransaction((ca) => {
        ca.addAction(editor.createInsertProjectItemAction(item as never, tick(0n), 4, 2, false));
      });
    });
    expect([later, loose].map((i) => i.timing.start / TB)).toEqual([320n, 200n]);
  });

  test('a result shorter than the clip is reported after placing, not passed off as a match', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    withResult(s, 100n * TB);
    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).rejects.toThrow(
      /placed on V2 but ends before the original clip \(the rendered file is shorter than the clip\)\. Undo the placement/,
    );
  });

  test('no free track above: insert at the track count creates V4, with limitShift so nothing else moves', async () => {
    const s = setup();
    const { video, audio } = addOriginal(s.fake, s.seq);
    const { video: v2 } = s.fake.addClip(s.seq, {
      track: 1,
      start: frames(0),
      end: frames(100),
      mediaPath: '/Volumes/GFX/a.mov',
    });
    const { video: v3 } = s.fake.addClip(s.seq, {
      track: 2,
      start: frames(160),
      end: frames(400),
      mediaPath: '/Volumes/GFX/b.mov',
    });
    const later = s.fake.addClip(s.seq, {
      track: 0,
      start: frames(300),
      end: frames(400),
      mediaPath: '/Volumes/Footage/A002.mov',
      linkedAudioTrack: 0,
    });
    withResult(s);
    const snaps = [video, audio!, v2, v3, later.video, later.audio!].map(snapshot);

    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).resolves.toEqual({
      trackIndex: 3,
      newTrack: true,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });

    expect(s.seq.videoTracks).toHaveLength(4);
    expect(s.seq.videoTracks[3].items.map((i) => [i.timing.start, i.timing.end])).toEqual([[48n * TB, 168n * TB]]);
    expect(s.fake.edits).toEqual([
      expect.objectContaining({
        kind: 'insert',
        videoTrackIndex: 3,
        audioTrackIndex: 2,
        limitShift: true,
        atTicks: 48n * TB,
      }),
    ]);
    expect(s.seq.audioTracks).toHaveLength(2);
    expect([video, audio!, v2, v3, later.video, later.audio!].map(snapshot)).toEqual(snaps);
    expect(s.fake.undoStack.filter((u) => u.label === LABEL)).toHaveLength(1);
  });

  test('result import refused: a clear error and no edit at all', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    s.fake.addBin('Reshoot');
    withResult(s);
    s.fake.importBehaviour = 'fail';
    const before = snapshot(video);

    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).rejects.toThrow(
      `Premiere could not import ${RESULT}: the import was refused`,
    );

    expect(s.fake.undoStack).toEqual([]);
    expect(s.fake.edits).toEqual([]);
    expect(s.seq.videoTracks.map((t) => t.items.length)).toEqual([1, 0, 0]);
    expect(snapshot(video)).toEqual(before);
  });

  test('result file missing: the import fails with the path in the error, no edit', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    s.fake.addBin('Reshoot');
    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).rejects.toThrow(
      `Premiere could not import ${RESULT}:`,
    );
    expect(s.fake.undoStack).toEqual([]);
    expect(s.fake.edits).toEqual([]);
  });

  test('import reports success but no item uses the file: error, no edit', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    s.fake.addBin('Reshoot');
    withResult(s);
    s.fake.importBehaviour = 'vanish';
    await expect(s.host.placeResult(await selectedClip(s.host), RESULT, LABEL)).rejects.toThrow(
      /could not import .*no project item uses that file/,
    );
    expect(s.fake.undoStack).toEqual([]);
  });

  test('the imported item is found although Premiere reports its path with other slashes and case (Windows)', async () => {
    const s = setup({ projectPath: 'C:\\Projects\\Harbour\\harbour.prproj' });
    addOriginal(s.fake, s.seq, { mediaPath: 'D:\\Footage\\A001_C003.mov', bin: 'Footage' });
    const result = 'C:\\Projects\\Harbour\\Reshoot Renders\\edit.mp4';
    s.fake.fs.addFile(result, 'x');
    s.fake.mediaDurations.set(result, 120n * TB);
    s.fake.reportedImportPath = (p) => p.replace(/\\/g, '/').toLowerCase();
    await expect(s.host.placeResult(await selectedClip(s.host), result, LABEL)).resolves.toEqual({
      trackIndex: 1,
      newTrack: false,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });
    expect((s.seq.videoTracks[1].items[0].projectItem as FakeClipProjectItem).mediaPath).toBe(
      'c:/projects/harbour/reshoot renders/edit.mp4',
    );
  });

  test('placing the same result again reuses the imported item and takes the next free track', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    withResult(s);
    const sel = await selectedClip(s.host);
    await s.host.placeResult(sel, RESULT, LABEL);
    await expect(s.host.placeResult(sel, RESULT, `${LABEL} (again)`)).resolves.toEqual({
      trackIndex: 2,
      newTrack: false,
      notCarried: [],
      lookBaked: false,
      undoSteps: 1,
    });
    expect(s.fake.importCalls).toHaveLength(1);
    expect(s.fake.allClipItems().filter((i) => i.mediaPath === RESULT)).toHaveLength(1);
  });

  test("the result goes back to the clip's own sequence even after another sequence became active", async () => {
    const s = setup();
    addOriginal(s.fake, s.seq);
    withResult(s);
    const sel = await selectedClip(s.host);
    const other = s.fake.addSequence({ name: 'Trailer', timebase: TB, videoTracks: 2, audioTracks: 1 });
    expect(s.fake.project!.activeSequence).toBe(other);
    await s.host.placeResult(sel, RESULT, LABEL);
    expect(s.seq.videoTracks[1].items).toHaveLength(1);
    expect(other.videoTracks.every((t) => t.items.length === 0)).toBe(true);
  });
});

describe("the original's look and the reasons to render", () => {
  function withResult(s: Setup, lengthTicks = 120n * TB): void {
    s.fake.fs.addFile(RESULT, 'edited video');
    s.fake.mediaDurations.set(RESULT, lengthTicks);
  }
  function placedVideo(s: Setup, track: number): FakeVideoClipTrackItem {
    const item = s.seq.videoTracks[track].items[0];
    if (!(item instanceof FakeVideoClipTrackItem)) throw new Error(`nothing placed on V${track + 1}`);
    return item;
  }

  test('a clip at 50 % scale, moved, at 80 % opacity, cropped 30 % and graded comes back with the same; the grade is named as not carried', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    const motion = video.chain.find(MATCH.motion)!;
    motion.param('Scale').value = 50;
    motion.param('Position').value = { x: 700, y: 400 };
    motion.param('Rotation').value = 12;
    video.chain.find(MATCH.opacity)!.param('Opacity').value = 80;
    const crop = await createFilter(s.fake.rules, MATCH.crop);
    crop.param('Left').value = 30;
    crop.param('Bottom').value = 30;
    const grade = await createFilter(s.fake.rules, MATCH.lumetri);
    grade.param('Look').value = 'Kodak 2383';
    grade.param('Exposure').value = 0.5;
    video.chain.components.push(crop, grade);
    withResult(s);

    const placed = await s.host.placeResult(await selectedClip(s.host), RESULT, LABEL);

    const result = placedVideo(s, 1);
    expect(result.chain.components.map((c) => c.matchName)).toEqual([
      MATCH.opacity,
      MATCH.motion,
      MATCH.timeRemapping,
      MATCH.crop,
      MATCH.lumetri,
    ]);
    const values = (matchName: string) =>
      Object.fromEntries(result.chain.find(matchName)!.params.map((p) => [p.displayName, p.value]));
    expect(values(MATCH.motion)).toMatchObject({ Scale: 50, Position: { x: 700, y: 400 }, Rotation: 12 });
    expect(values(MATCH.opacity)).toMatchObject({ Opacity: 80 });
    expect(values(MATCH.crop)).toEqual({ Left: 30, Top: 0, Right: 0, Bottom: 30, Zoom: false, 'Edge Feather': 0 });
    expect(values(MATCH.lumetri)).toEqual({ Look: '', Exposure: 0.5 });
    expect(placed.notCarried).toEqual(['Lumetri Color (Look): re-apply it']);
    expect(placed.lookBaked).toBe(false);
    expect(placed.undoSteps).toBe(3);
    // Placement is one step on the timeline; the look two more (effects appended, then every value).
    expect(s.fake.undoStack.map((u) => u.label)).toEqual([
      'Reshoot: create the "Reshoot" bin',
      LABEL,
      UNDO_EFFECTS,
      UNDO_LOOK,
    ]);
    // The original keeps its own look.
    expect(video.chain.find(MATCH.motion)!.param('Scale').value).toBe(50);
  });

  test('keyframed opacity is named, not guessed; the still values are carried', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    video.chain.find(MATCH.opacity)!.param('Opacity').keyframes = [
      { at: 0n, value: 0 },
      { at: 24n * TB, value: 100 },
    ];
    video.chain.find(MATCH.motion)!.param('Scale').value = 75;
    withResult(s);
    const placed = await s.host.placeResult(await selectedClip(s.host), RESULT, LABEL);
    expect(placed.notCarried).toEqual(['Opacity keyframes (Opacity): set them again by hand']);
    const result = placedVideo(s, 1);
    expect(result.chain.find(MATCH.motion)!.param('Scale').value).toBe(75);
    expect(result.chain.find(MATCH.opacity)!.param('Opacity').value).toBe(100);
  });

  test('a history entry from before renders were recorded: the look is not guessed, and the card says so', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    video.chain.find(MATCH.motion)!.param('Scale').value = 50;
    withResult(s);
    const placed = await s.host.placeResult(
      {
        sequenceStartTicks: String(48n * TB),
        sequenceEndTicks: String(168n * TB),
        trackIndex: 0,
        name: 'Harbour wide',
      },
      RESULT,
      LABEL,
    );
    expect(placed.notCarried).toEqual([expect.stringMatching(/does not say whether the clip was rendered/)]);
    expect(placedVideo(s, 1).chain.find(MATCH.motion)!.param('Scale').value).toBe(100);
  });

  test('a rendered clip has its look in the render: nothing is carried again', async () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq, { speed: 0.5 });
    video.chain.find(MATCH.motion)!.param('Scale').value = 50;
    const sel = await selectedClip(s.host);
    await s.host.prepareSource(sel);
    withResult(s);
    const placed = await s.host.placeResult(sel, RESULT, LABEL);
    expect(placed).toMatchObject({ lookBaked: true, notCarried: [] });
    expect(placedVideo(s, 1).chain.find(MATCH.motion)!.param('Scale').value).toBe(100);
  });

  test('a clip with a title above it: rendered without the title, and the result goes above without covering it', async () => {
    const s = setup();
    addOriginal(s.fake, s.seq, { speed: 2 });
    const { video: title } = s.fake.addClip(s.seq, {
      track: 1,
      name: 'Title',
      start: frames(60),
      end: frames(100),
      mediaPath: '/g/title.png',
    });
    const sel = await selectedClip(s.host);
    await s.host.prepareSource(sel);
    expect(s.fake.renders[0].layers.map((l) => l.name)).toEqual(['Harbour wide']);
    withResult(s);
    await expect(s.host.placeResult(sel, RESULT, LABEL)).resolves.toMatchObject({ trackIndex: 2, newTrack: false });
    expect(s.seq.videoTracks[1].items).toEqual([title]);
    expect(title.disabled).toBe(false);
    expect(placedVideo(s, 2).timing).toMatchObject({ start: 48n * TB, end: 168n * TB });
  });

  test('time remapping, a non-square pixel aspect and an interpreted frame rate each send the clip through Premiere', async () => {
    const remap = setup();
    const { video } = addOriginal(remap.fake, remap.seq);
    video.chain.find(MATCH.timeRemapping)!.param('Speed').value = 50;
    expect((await selectedClip(remap.host)).renderReason).toBe('time remapping');

    const anamorphic = setup();
    addOriginal(anamorphic.fake, anamorphic.seq, { pixelAspectRatio: 1.3333 });
    expect((await selectedClip(anamorphic.host)).renderReason).toBe('pixel aspect ratio 1.3333');

    const fake = new FakePremiere();
    const seq = fake.addSequence({ name: 'Harbour edit', timebase: TB });
    fake.addPreset(PRORES, 'mov');
    addOriginal(fake, seq, { interpretedFps: 23.976 });
    const probed: string[] = [];
    const host = new PremiereHost({
      ppro: fake.ppro,
      fs: fake.fs,
      os: { homedir: () => '/Users/editor', platform: () => 'darwin' },
      presetFolder: `${PLUGIN}/presets`,
      // The engine's probe: the file was shot at 59.94 fps and is interpreted as 23.976 for slow motion.
      mediaFrameRate: async (path) => {
        probed.push(path);
        return 59.94;
      },
    });
    const sel = await selectedClip(host);
    expect(probed).toEqual(['/Volumes/Footage/A001_C003.mov']);
    expect(sel.renderReason).toBe('frame rate interpreted as 23.976 fps (the file has 59.94)');
    await host.prepareSource(sel);
    expect(fake.renders).toHaveLength(1);
    // Asked once per file, not on every selection change.
    await selectedClip(host);
    expect(probed).toHaveLength(1);
  });

  test('the fake refuses a value on a keyed parameter and an incompatible keyframe value, as documented', () => {
    const s = setup();
    const { video } = addOriginal(s.fake, s.seq);
    const opacity = video.chain.find(MATCH.opacity)!.param('Opacity');
    expect(() => opacity.createKeyframe('50')).toThrow(/Illegal Parameter type/);
    opacity.keyframes = [{ at: 0n, value: 0 }];
    const project = s.fake.project!;
    let ok = true;
    project.lockedAccess(() => {
      ok = project.executeTransaction((ca) => {
        ca.addAction(opacity.createSetValueAction(opacity.createKeyframe(50)));
      });
    });
    expect(ok).toBe(false);
    expect(s.fake.rules.rejected).toEqual(['Opacity varies over time: set its keyframes instead']);
  });
});

describe('engine token', () => {
  test('engine never started: no token file, null', async () => {
    const { host } = setup();
    await expect(host.readToken()).resolves.toBeNull();
  });

  test('macOS: read from ~/Library/Application Support/reshoot/token', async () => {
    const { fake, host } = setup();
    fake.fs.addFile('/Users/editor/Library/Application Support/reshoot/token', 'Zm9vYmFyYmF6cXV4cXV1eA-token_value\n');
    await expect(host.readToken()).resolves.toBe('Zm9vYmFyYmF6cXV4cXV1eA-token_value');
  });

  test('Windows with AppData redirected to a share: the panel reads the file the engine writes', async () => {
    // The engine on that machine: APPDATA points at the share, the profile is local.
    const env = { APPDATA: '\\\\fs01\\profiles$\\editor\\AppData\\Roaming' };
    // Node's path.join on Windows; this test runs anywhere.
    const written = win32.join(tokenDir(env, 'win32', 'C:\\Users\\editor'), 'token');
    expect(written).toBe('C:\\Users\\editor\\AppData\\Local\\reshoot\\token');
    const { fake, host } = setup({ platform: 'win10', home: 'C:\\Users\\editor' });
    fake.fs.addFile(written, 'windows-token-0123456789');
    await expect(host.readToken()).resolves.toBe('windows-token-0123456789');
  });

  test('macOS and Linux: engine and panel name the same file; XDG_CONFIG_HOME does not move the token', () => {
    expect(tokenPath(tokenDir({}, 'darwin', '/Users/editor'))).toBe(tokenFile('darwin', '/Users/editor'));
    expect(tokenPath(tokenDir({ XDG_CONFIG_HOME: '/srv/cfg' }, 'linux', '/home/ed'))).toBe(
      '/home/ed/.config/reshoot/token',
    );
    expect(tokenFile('linux', '/home/ed/')).toBe('/home/ed/.config/reshoot/token');
    // Tests and portable installs move it on purpose.
    expect(tokenPath(tokenDir({ RESHOOT_HOME: '/tmp/rh' }, 'linux', '/home/ed'))).toBe('/tmp/rh/config/token');
  });
});

describe('results folder and history', () => {
  test('"Reshoot Renders" next to the project file, created once', async () => {
    const { fake, host } = setup();
    expect(fake.fs.dirs.has(RENDERS)).toBe(false);
    await expect(host.resultsFolder()).resolves.toBe(RENDERS);
    expect(fake.fs.dirs.has(RENDERS)).toBe(true);
    await expect(host.resultsFolder()).resolves.toBe(RENDERS);
  });

  test('Windows project path', async () => {
    const { fake, host } = setup({ projectPath: 'C:\\Projects\\Harbour\\harbour.prproj' });
    await expect(host.resultsFolder()).resolves.toBe('C:\\Projects\\Harbour\\Reshoot Renders');
    expect(fake.fs.dirs.has('C:\\Projects\\Harbour\\Reshoot Renders')).toBe(true);
  });

  test('unsaved project: asks to save first', async () => {
    const { host } = setup({ projectPath: '' });
    await expect(host.resultsFolder()).rejects.toThrow(/Save the project first/);
  });

  test('no project: asks to open one', async () => {
    const { host } = setup({ projectPath: null });
    await expect(host.resultsFolder()).rejects.toThrow(/Open a project/);
  });

  test("history is saved in the project's renders folder and read back", async () => {
    const { fake, host } = setup();
    await expect(host.loadHistory()).resolves.toEqual([]);
    const entry = {
      jobId: 'job-1',
      createdAt: '2026-01-02T03:04:05.000Z',
      clipName: 'Harbour wide',
      prompt: 'a blue vintage convertible',
      sourcePrompt: 'a red car',
      seed: 42,
      settings: { steps: 20, guidance: 7.5, strength: 0.8, method: 'inversion', mask: 'auto' },
      resultPath: RESULT,
      placement: { sequenceStartTicks: '508540032000', sequenceEndTicks: '1779890112000', trackIndex: 1 },
    };
    await host.saveHistory([entry]);
    expect(fake.fs.files.has(`${RENDERS}/reshoot-history.json`)).toBe(true);
    await expect(host.loadHistory()).resolves.toEqual([entry]);
  });

  test('an unsaved project has an empty history, and a damaged file is reported', async () => {
    await expect(setup({ projectPath: '' }).host.loadHistory()).resolves.toEqual([]);
    const { fake, host } = setup();
    fake.fs.addFile(`${RENDERS}/reshoot-history.json`, '{ not json');
    await expect(host.loadHistory()).rejects.toThrow(/reshoot-history\.json is not valid JSON/);
  });
});

describe('revealFile', () => {
  test('opens the folder that holds the file', async () => {
    const { host, openPath } = setup();
    await host.revealFile(RESULT);
    expect(openPath).toHaveBeenCalledWith(RENDERS, expect.any(String));
  });

  test('reports the reason openPath gives', async () => {
    const openPath = jest.fn(async () => 'Permission denied');
    const { host } = setup({ uxp: { shell: { openPath } } });
    await expect(host.revealFile(RESULT)).rejects.toThrow(`Could not open ${RENDERS}: Permission denied`);
  });

  test('without shell.openPath it says where the file is', async () => {
    const { host } = setup({ uxp: {} });
    await expect(host.revealFile(RESULT)).rejects.toThrow(RESULT);
  });
});

describe('onSelectionChanged', () => {
  test('listens on the active sequence and stops when unsubscribed', async () => {
    const { fake, seq, host } = setup();
    const cb = jest.fn();
    const off = host.onSelectionChanged(cb);
    await flush();
    expect(fake.events.targeted).toEqual([
      expect.objectContaining({ target: seq, name: FakeConstants.SequenceEvent.SELECTION_CHANGED }),
    ]);
    fake.fireSelectionChanged(seq);
    expect(cb).toHaveBeenCalledTimes(1);
    off();
    fake.fireSelectionChanged(seq);
    expect(cb).toHaveBeenCalledTimes(1);
    expect(fake.events.targeted).toEqual([]);
    expect(fake.events.global).toEqual([]);
  });

  test('follows the editor to another sequence', async () => {
    const { fake, seq, host } = setup();
    const cb = jest.fn();
    const off = host.onSelectionChanged(cb);
    await flush();
    const other = fake.addSequence({ name: 'Trailer', active: false });
    fake.activate(other);
    await flush();
    expect(cb).toHaveBeenCalledTimes(1);
    fake.fireSelectionChanged(other);
    expect(cb).toHaveBeenCalledTimes(2);
    fake.fireSelectionChanged(seq);
    expect(cb).toHaveBeenCalledTimes(2);
    off();
  });

  test('falls back to the global event where a sequence is not accepted as target', async () => {
    const { fake, seq, host } = setup();
    fake.events.rejectTargets = true;
    const cb = jest.fn();
    const off = host.onSelectionChanged(cb);
    await flush();
    expect(fake.events.global).toEqual([
      expect.objectContaining({ name: FakeConstants.SequenceEvent.SELECTION_CHANGED }),
    ]);
    fake.fireSelectionChanged(seq);
    expect(cb).toHaveBeenCalledTimes(1);
    off();
    expect(fake.events.global).toEqual([]);
  });
});

describe('the fake enforces Premiere 26.3 rules (so the tests above prove compliance)', () => {
  test('an action created outside lockedAccess throws', () => {
    const { fake, seq } = setup();
    expect(() => seq.createSetInPointAction(tick(0n))).toThrow(/inside project\.lockedAccess/);
    const editor = fake.ppro.SequenceEditor.getEditor(seq as never);
    expect(() =>
      editor.createOverwriteItemAction(seq.projectItem as never, FakeTickTime.TIME_ZERO as never, 0, 0),
    ).toThrow(/inside project\.lockedAccess/);
  });

  test('an async transaction callback throws and changes nothing', () => {
    const { fake, seq } = setup();
    const project = fake.project!;
    expect(() =>
      project.lockedAccess(() => {
        // eslint-disable-next-line @typescript-eslint/no-misused-promises -- the misuse under test: Premiere refuses it
        project.executeTransaction(async (ca) => {
          ca.addAction(seq.createSetInPointAction(tick(frames(5))));
        }, 'async');
      }),
    ).toThrow(/must be synchronous/);
    expect(seq.inTicks).toBeNull();
    expect(fake.undoStack).toEqual([]);
  });

  test('awaiting inside lockedAccess throws', () => {
    const { fake } = setup();
    expect(() =>
      // eslint-disable-next-line @typescript-eslint/no-misused-promises -- the misuse under test: Premiere refuses it
      fake.project!.lockedAccess(async () => {
        await Promise.resolve();
      }),
    ).toThrow(/must be synchronous/);
  });

  test('addAction outside its transaction, or with an action from an ended lock, throws', () => {
    const { fake, seq } = setup();
    const project = fake.project!;
    let kept: { addAction(a: unknown): boolean } | null = null;
    let stale: unknown = null;
    project.lockedAccess(() => {
      stale = seq.createSetInPointAction(tick(0n));
      project.executeTransaction((ca) => {
        kept = ca;
      }, 'empty');
    });
    expect(() => kept!.addAction(stale)).toThrow(/outside its executeTransaction/);
    expect(() =>
      project.lockedAccess(() => {
        project.executeTransaction((ca) => {
          ca.addAction(stale);
        }, 'stale');
      }),
    ).toThrow(/lockedAccess that has ended/);
    expect(fake.undoStack).toEqual([]);
  });

  test('actions apply only when the callback returns, as one undo step with its label', () => {
    const { fake, seq } = setup();
    const project = fake.project!;
    let during: bigint | null = -1n;
    project.lockedAccess(() => {
      project.executeTransaction((ca) => {
        ca.addAction(seq.createSetInPointAction(tick(frames(5))));
        ca.addAction(seq.createSetOutPointAction(tick(frames(50))));
        during = seq.inTicks;
      }, 'Mark');
    });
    expect(during).toBeNull();
    expect([seq.inTicks, seq.outTicks]).toEqual([frames(5), frames(50)]);
    expect(fake.undoStack).toEqual([
      { label: 'Mark', actions: ['set In of "Harbour edit"', 'set Out of "Harbour edit"'] },
    ]);
  });

  test('importFiles with undefined as the bin throws "Illegal Parameter type"', async () => {
    const { fake } = setup();
    fake.fs.addFile(RESULT, 'x');
    await expect(fake.project!.importFiles([RESULT], true, undefined, false)).rejects.toThrow('Illegal Parameter type');
    await expect(fake.project!.importFiles([RESULT], true)).resolves.toBe(true);
  });

  test('ticks: 254016000000 per second', () => {
    expect(FakeTickTime.createWithSeconds(1).ticks).toBe(TICKS_PER_SECOND.toString());
    expect(new FakeTickTime(frames(24000)).seconds).toBeCloseTo(1001, 9);
  });
});
