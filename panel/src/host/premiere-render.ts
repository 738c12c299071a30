// Rendering one clip through Premiere, for clips whose frames the engine cannot read from the media file (speed
// change, reverse, nested sequence, interpreted frame rate or pixel aspect). Nothing of the editor's sequence is
// changed, its In/Out points included:
//
//   1. the sequence is cloned (Sequence.createCloneAction), and the clip's range is marked on the clone. The
//      editor's own In/Out are never written: the documentation does not say what getInPoint/getOutPoint return
//      when no mark is set, and Sequence has no action that clears a mark, so "none" could not be put back;
//   2. a subsequence of that range is cut from the clone (the recipe that renders exactly the range, notes §6),
//      and the clone is deleted;
//   3. in the subsequence every video track item but the clip is disabled: titles, graphics, adjustment layers and
//      other clips above or below it would otherwise be baked into the "source" the engine edits, and the result
//      would then cover them on the timeline. The clip keeps its own effects (Motion, crop, opacity, Lumetri…): it
//      renders as the editor sees that clip alone, which is what a render path exists for (speed and reverse are
//      such effects too), so those are baked into the result and not carried again on placement;
//   4. the subsequence is exported with a bundled preset, then deleted.

import type { premierepro, Project, Sequence, VideoClipTrackItem } from '@adobe/premierepro';
import { add, messageOf, transact } from './premiere-edit';
import { parseTicks } from './premiere-ticks';

export interface RenderRequest {
  project: Project;
  sequence: Sequence;
  /** The clip: its video track and its span on the timeline, in ticks. */
  trackIndex: number;
  start: bigint;
  end: bigint;
  outFile: string;
  presetPath: string;
}

export const UNDO_COPY = 'Reshoot: copy the sequence to render one clip';
export const UNDO_MARK = 'Reshoot: mark the clip in the copy';
export const UNDO_SOLO = 'Reshoot: leave only the clip in the render';

export class ClipRenderer {
  constructor(
    private readonly ppro: premierepro,
    private readonly onStatus?: (message: string) => void,
  ) {}

  /** Renders the clip alone to req.outFile; throws with what to do when any step fails. */
  async render(req: RenderRequest): Promise<void> {
    const copy = await this.cloneOf(req.project, req.sequence);
    let sub: Sequence;
    try {
      sub = await this.subsequenceOfClip(req, copy);
    } finally {
      await this.discard(req.project, copy);
    }
    try {
      await this.leaveOnlyTheClip(req, sub);
      await this.exportSequence(req, sub);
    } finally {
      await this.discard(req.project, sub);
    }
  }

  private async cloneOf(project: Project, sequence: Sequence): Promise<Sequence> {
    const before = new Set((await project.getSequences()).map((s) => s.guid.toString()));
    const cloned = transact(project, UNDO_COPY, (ca) => {
      add(ca, sequence.createCloneAction(), `copy the sequence "${sequence.name}"`);
    });
    if (!cloned.ok) {
      throw new Error(
        `Premiere could not copy the sequence "${sequence.name}" to render the clip from (${cloned.reason}). Try again; if it keeps failing, nest the clip (right-click → Nest…) and render that.`,
      );
    }
    const added = (await project.getSequences()).filter((s) => !before.has(s.guid.toString()));
    if (added.length !== 1) {
      throw new Error(
        `Premiere copied the sequence "${sequence.name}" but Reshoot cannot tell which sequence is the copy (${added.length} new sequences). Delete any "${sequence.name} Copy" from the Project panel and try again.`,
      );
    }
    return added[0];
  }

  private async subsequenceOfClip(req: RenderRequest, copy: Sequence): Promise<Sequence> {
    const TickTime = this.ppro.TickTime;
    const clipIn = TickTime.createWithTicks(req.start.toString());
    const clipOut = TickTime.createWithTicks(req.end.toString());
    const marked = transact(req.project, UNDO_MARK, (ca) => {
      add(ca, copy.createSetInPointAction(clipIn), 'set the In point of the copy');
      add(ca, copy.createSetOutPointAction(clipOut), 'set the Out point of the copy');
    });
    if (!marked.ok) {
      throw new Error(
        `Premiere would not mark the clip's range in the copy of the sequence (${marked.reason}), so the clip could not be rendered. Try again.`,
      );
    }
    let sub: Sequence | null = null;
    let failure = 'Premiere returned no sequence';
    try {
      sub = (await copy.createSubsequence(true)) ?? null;
    } catch (err) {
      failure = messageOf(err);
    }
    if (!sub) {
      throw new Error(
        `Premiere could not make a subsequence of the clip's range (${failure}). Check that the clip's track is not locked and try again.`,
      );
    }
    return sub;
  }

  /** Disables every video track item of the subsequence except the clip, and checks that only the clip is left. */
  private async leaveOnlyTheClip(req: RenderRequest, sub: Sequence): Promise<void> {
    const clipType = this.ppro.Constants.TrackItemType.CLIP;
    const hide: Array<{ item: VideoClipTrackItem; track: number }> = [];
    const trackCount = await sub.getVideoTrackCount();
    for (let index = 0; index < trackCount; index++) {
      const items: VideoClipTrackItem[] = (await sub.getVideoTrack(index)).getTrackItems(clipType, false);
      for (const item of items) {
        if (await item.isDisabled()) continue;
        if (index === req.trackIndex && (await this.isTheClip(item, req.end - req.start))) continue;
        hide.push({ item, track: index });
      }
    }
    if (hide.length > 0) {
      const hidden = transact(req.project, UNDO_SOLO, (ca) => {
        for (const { item, track } of hide) add(ca, item.createSetDisabledAction(true), `hide a clip on V${track + 1}`);
      });
      if (!hidden.ok) {
        const tracks = [...new Set(hide.map((h) => `V${h.track + 1}`))].join(', ');
        throw new Error(
          `Premiere would not hide what lies over or under the clip on ${tracks} (${hidden.reason}), and rendering it would bake it into the source. If one of those tracks is locked, unlock it and try again.`,
        );
      }
    }
    const left: number[] = [];
    for (let index = 0; index < trackCount; index++) {
      const items: VideoClipTrackItem[] = (await sub.getVideoTrack(index)).getTrackItems(clipType, false);
      for (const item of items) if (!(await item.isDisabled())) left.push(index);
    }
    if (left.length !== 1 || left[0] !== req.trackIndex) {
      throw new Error(
        `The temporary sequence still shows ${left.length} clips (${left.map((i) => `V${i + 1}`).join(', ') || 'none'}) instead of the clip alone, so it was not rendered. Try again.`,
      );
    }
  }

  /**
   * The subsequence spans exactly the clip, so on the clip's track the clip is the item as long as the span. Where
   * the subsequence's time starts is not documented, so the start is not compared.
   */
  private async isTheClip(item: VideoClipTrackItem, length: bigint): Promise<boolean> {
    const [start, end] = await Promise.all([item.getStartTime(), item.getEndTime()]);
    return parseTicks(end.ticks, 'a clip end') - parseTicks(start.ticks, 'a clip start') === length;
  }

  private async exportSequence(req: RenderRequest, sub: Sequence): Promise<void> {
    const manager = this.ppro.EncoderManager.getManager();
    const advice = `Check that the export preset ${req.presetPath} exists and that the folder of ${req.outFile} can be written, then try again.`;
    let exported: boolean;
    try {
      exported = await manager.exportSequence(
        sub,
        this.ppro.Constants.ExportType.IMMEDIATELY,
        req.outFile,
        req.presetPath,
      );
    } catch (err) {
      throw new Error(`Premiere could not render the clip to ${req.outFile}: ${messageOf(err)}. ${advice}`, {
        cause: err,
      });
    }
    if (!exported)
      throw new Error(`Premiere could not render the clip to ${req.outFile} (the export reported failure). ${advice}`);
  }

  private async discard(project: Project, sequence: Sequence): Promise<void> {
    let deleted: boolean;
    try {
      deleted = await project.deleteSequence(sequence);
    } catch {
      deleted = false;
    }
    // A leftover temporary sequence is clutter, not harm: the editor is told rather than the render lost.
    if (!deleted)
      this.onStatus?.(`Premiere kept the temporary sequence "${sequence.name}"; delete it from the Project panel.`);
  }
}
