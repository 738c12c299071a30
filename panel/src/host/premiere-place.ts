// Putting an imported result on the timeline exactly over the original clip, in two steps that are each checked
// against what Premiere reports afterwards:
//
//   1. trim: the result's project item gets In/Out [0, clip length) (its own undo step, "Reshoot: trim the
//      result…"; it changes only the item Reshoot imported into its bin, nothing on the timeline). It cannot share
//      a transaction with the placement: an action carries the data of the moment it is created (Adobe's changelog:
//      actions "contain data that can quickly become stale"), so an overwrite made beside the trim would place the
//      untrimmed length and cover the first frames of the next clip;
//   2. place: an overwrite on the first video track above the clip that is empty over the span, else an insert on
//      a new track (limitShift, so nothing else moves). A track that refuses the edit (a locked track: the API can
//      neither read nor change locks) is skipped for the next. This is the one undo step on the sequence, named
//      after the prompt.
//
// Premiere has no API that groups two transactions into one undo step, so undoing the placement leaves the trim
// of the bin item in the history; undoing that too changes nothing on the timeline.

import type {
  AudioTrack,
  ClipProjectItem,
  Constants,
  premierepro,
  Project,
  ProjectItem,
  Sequence,
  VideoClipTrackItem,
  VideoTrack,
} from '@adobe/premierepro';
import { add, transact } from './premiere-edit';
import { samePath } from './premiere-paths';
import { overlaps, parseTicks } from './premiere-ticks';

export interface Placement {
  project: Project;
  sequence: Sequence;
  /** The imported result: the project item, the same item as a clip, and the file it plays. */
  projectItem: ProjectItem;
  item: ClipProjectItem;
  mediaPath: string;
  /** The original clip's video track and span, in ticks. */
  trackIndex: number;
  start: bigint;
  end: bigint;
  /** The undo step's name. */
  label: string;
  bin: string;
}

export interface Placed {
  trackIndex: number;
  newTrack: boolean;
  /** The track item the result became. */
  trackItem: VideoClipTrackItem;
}

export const UNDO_TRIM = 'Reshoot: trim the result to the clip span';

type TrackItem = VideoClipTrackItem;

export class ResultPlacer {
  constructor(private readonly ppro: premierepro) {}

  async place(p: Placement): Promise<Placed> {
    await this.trim(p);
    const clipType = this.ppro.Constants.TrackItemType.CLIP;
    const refused: string[] = [];
    const videoCount = await p.sequence.getVideoTrackCount();
    for (let index = p.trackIndex + 1; index < videoCount; index++) {
      if (!(await isFree(await p.sequence.getVideoTrack(index), clipType, p.start, p.end))) continue;
      const audioCount = await p.sequence.getAudioTrackCount();
      // The result is video-only, so the audio index places nothing; it is still one that could not harm the
      // original's audio if it did: a track empty over the span.
      const audioIndex = await freeAudioTrack(p.sequence, clipType, audioCount, p.start, p.end);
      const outcome = this.edit(p, index, audioIndex, false);
      if (outcome.ok) return { trackIndex: index, newTrack: false, trackItem: await this.check(p, index) };
      refused.push(`V${index + 1} (${outcome.reason})`);
    }
    // An insert past the last track makes a new one; the audio index past the last audio track never ripples audio.
    const audioCount = await p.sequence.getAudioTrackCount();
    const outcome = this.edit(p, videoCount, audioCount, true);
    if (!outcome.ok) {
      refused.push(`a new track V${videoCount + 1} (${outcome.reason})`);
      throw new Error(
        `Premiere refused to place the result on ${refused.join(', ')}. Check that those tracks are not locked; the result is in the "${p.bin}" bin if you want to place it by hand.`,
      );
    }
    return { trackIndex: videoCount, newTrack: true, trackItem: await this.check(p, videoCount) };
  }

  /** Step 1: In/Out of the result's project item set to the clip's length, then read back. */
  private async trim(p: Placement): Promise<void> {
    const video = this.ppro.Constants.MediaType.VIDEO;
    const length = p.end - p.start;
    if (await this.trimmed(p.item, video, length)) return;
    const TickTime = this.ppro.TickTime;
    const inPoint = TickTime.createWithTicks('0');
    const outPoint = TickTime.createWithTicks(length.toString());
    const outcome = transact(p.project, UNDO_TRIM, (ca) => {
      add(ca, p.item.createSetInOutPointsAction(inPoint, outPoint), 'trim the result to the clip span');
    });
    if (!outcome.ok || !(await this.trimmed(p.item, video, length))) {
      throw new Error(
        `Premiere would not trim the result to the clip's length (${outcome.ok ? 'its In/Out did not change' : outcome.reason}), and placing it untrimmed could cover the next clip. Set its In/Out in the "${p.bin}" bin and place it by hand.`,
      );
    }
  }

  private async trimmed(item: ClipProjectItem, video: Constants.MediaType, length: bigint): Promise<boolean> {
    const [inPoint, outPoint] = await Promise.all([item.getInPoint(video), item.getOutPoint(video)]);
    return parseTicks(inPoint.ticks, 'the result In') === 0n && parseTicks(outPoint.ticks, 'the result Out') === length;
  }

  /** Step 2: one overwrite or insert, made and committed in one lock. */
  private edit(p: Placement, videoIndex: number, audioIndex: number, insert: boolean): { ok: boolean; reason: string } {
    const editor = this.ppro.SequenceEditor.getEditor(p.sequence);
    const at = this.ppro.TickTime.createWithTicks(p.start.toString());
    const item = p.projectItem;
    return transact(p.project, p.label, (ca) => {
      add(
        ca,
        insert
          ? editor.createInsertProjectItemAction(item, at, videoIndex, audioIndex, true)
          : editor.createOverwriteItemAction(item, at, videoIndex, audioIndex),
        `place the result on V${videoIndex + 1}`,
      );
    });
  }

  /** Reads the track back: the result must sit exactly over the original's span. */
  private async check(p: Placement, videoIndex: number): Promise<TrackItem> {
    const track = await p.sequence.getVideoTrack(videoIndex);
    const items: TrackItem[] = track.getTrackItems(this.ppro.Constants.TrackItemType.CLIP, false);
    for (const candidate of items) {
      const [start, end, projectItem] = await Promise.all([
        candidate.getStartTime(),
        candidate.getEndTime(),
        candidate.getProjectItem(),
      ]);
      if (parseTicks(start.ticks, 'a clip start') !== p.start) continue;
      const clip = projectItem ? this.ppro.ClipProjectItem.cast(projectItem) : null;
      if (!clip || !samePath(await clip.getMediaFilePath(), p.mediaPath)) continue;
      const placedEnd = parseTicks(end.ticks, 'a clip end');
      if (placedEnd === p.end) return candidate;
      throw new Error(
        `The result was placed on V${videoIndex + 1} but ends ${placedEnd < p.end ? 'before' : 'after'} the original clip (the rendered file is ${placedEnd < p.end ? 'shorter' : 'longer'} than the clip). Undo the placement (Edit → Undo) and trim it by hand.`,
      );
    }
    throw new Error(
      `Premiere reported the result placed on V${videoIndex + 1}, but it is not there at the original clip's start. Check the timeline; the result is in the "${p.bin}" bin.`,
    );
  }
}

async function isFree(
  track: VideoTrack | AudioTrack,
  clipType: Constants.TrackItemType,
  start: bigint,
  end: bigint,
): Promise<boolean> {
  const items: Array<
    VideoClipTrackItem | { getStartTime: TrackItem['getStartTime']; getEndTime: TrackItem['getEndTime'] }
  > = track.getTrackItems(clipType, false);
  for (const item of items) {
    const [itemStart, itemEnd] = await Promise.all([item.getStartTime(), item.getEndTime()]);
    if (overlaps(parseTicks(itemStart.ticks, 'a clip start'), parseTicks(itemEnd.ticks, 'a clip end'), start, end))
      return false;
  }
  return true;
}

async function freeAudioTrack(
  sequence: Sequence,
  clipType: Constants.TrackItemType,
  count: number,
  start: bigint,
  end: bigint,
): Promise<number> {
  for (let index = 0; index < count; index++) {
    if (await isFree(await sequence.getAudioTrack(index), clipType, start, end)) return index;
  }
  return count;
}
