// The panel's UI, the same in Premiere (UXP) and in a browser tab served by the engine. It talks to its host only
// through the Host interface and to the engine only through EngineClient; the few things that differ by host
// (events or polling, placing or comparing) are options with defaults taken from host.kind.
import type { Job, JobRequestInput } from '../../../engine/src/api/schemas';
import type { EngineClient } from '../engine-client';
import type { HistoryEntry, Host, PlaceResult } from '../host/host';
import { ActionBar } from './action-bar';
import { collapsible, fill, h, isShown } from './dom';
import { EditForm, type SubmitKind } from './edit-form';
import { EngineStatus, type EngineState } from './engine-status';
import { describeError, FieldError } from './errors';
import { maskLabel, trackName } from './format';
import { HistoryView } from './history';
import { JobList, type JobCard } from './jobs';
import { SourceSection, type SourcePicker } from './source';
import { Viewer } from './viewer';

export interface AppOptions {
  /** A form that chooses the source, for hosts without a selection of their own (the browser). */
  sourcePicker?: SourcePicker;
  /** Follow jobs over Server-Sent Events (with preview images) or by polling. Default: sse in a browser, poll in UXP. */
  live?: 'sse' | 'poll';
  /** Poll period for jobs, default 500 ms. */
  pollMs?: number;
  /** Place finished edits on the timeline (Premiere). Default: host.kind === 'premiere'. */
  placeResults?: boolean;
  /** Show finished edits beside the original. Default: host.kind === 'browser'. */
  compare?: boolean;
  /** How often to look for the engine while it is away, default 3000 ms. */
  retryMs?: number;
}

export interface App {
  destroy(): void;
}

const LABEL_MAX = 80;

export function mountApp(root: HTMLElement, host: Host, options: AppOptions = {}): App {
  const live = options.live ?? (host.kind === 'browser' ? 'sse' : 'poll');
  const placeResults = options.placeResults ?? host.kind === 'premiere';
  const compareEnabled = options.compare ?? host.kind === 'browser';
  const pollMs = options.pollMs ?? 500;

  const status = new EngineStatus(host, { retryMs: options.retryMs });
  const client = (): EngineClient | null => status.client;
  const stillUrl = (path: string, t: number, maxWidth: number) => client()?.stillUrl(path, t, maxWidth) ?? null;
  const reveal = (path: string) => {
    host.revealFile(path).catch((e) => form.showProblem({ ...describeError(e), field: undefined }, () => undefined));
  };

  const source = new SourceSection(host, options.sourcePicker);
  const form = new EditForm({ onSubmit: (kind) => void submit(kind), stillUrl });
  const picker = options.sourcePicker;
  if (picker?.loadDraft && picker.saveDraft) {
    form.restoreDraft(picker.loadDraft());
    // After the form's own handlers, so the draft holds the choice just made.
    const save = () => setTimeout(() => picker.saveDraft!(form.draft()), 0);
    form.el.addEventListener('input', save);
    form.el.addEventListener('click', save);
  }
  const viewer = new Viewer({ client, compare: compareEnabled });
  const compare = compareEnabled ? viewer : null;
  const jobs = new JobList({
    client,
    live,
    pollMs,
    onEnded: (card) => void ended(card),
    onCompare: compare ? (job) => showCompare(job) : undefined,
    onReveal: reveal,
    onRenderFull: (card) => void renderFull(card),
    // The status line's queue figures followed only the end of a job; a job starting changes them too.
    onStateChange: () => void status.check(),
    download: host.kind === 'browser',
    onUpdate: (job, engineLost) => {
      bar.update(job, engineLost);
      viewer.update(job, engineLost);
    },
    onPreview: (job, png) => viewer.preview(job, png),
  });
  const bar = new ActionBar(form.actions, (id) =>
    jobs.el.querySelector(`[data-job-id="${id}"]`)?.scrollIntoView?.({ block: 'nearest' }),
  );
  const history = new HistoryView(host, {
    stillUrl,
    onPlace: placeResults ? (e) => placeAgain(e) : undefined,
    onCompare: compare ? (e) => void compareEntry(e) : undefined,
    onReuse: (e) => form.reuse(e),
    onReveal: (e) => reveal(e.resultPath),
    downloadUrl: host.kind === 'browser' ? (e) => client()?.downloadUrl(e.jobId) ?? null : undefined,
  });

  // Sections fold to their titles, so a docked panel can keep what the user works with on screen.
  for (const section of [source.el, form.el, jobs.el, history.el]) {
    const title = section.querySelector<HTMLElement>('.section-title');
    if (title) collapsible(section, title);
  }
  // The header, the scrolling content and the action bar are three rows of a column as tall as the panel: the bar is
  // in view without position: sticky, which UXP is not known to support.
  const app = h(
    'div',
    { class: `app host-${host.kind}` },
    h(
      'header',
      { class: 'topbar' },
      h(
        'div',
        { class: 'brand' },
        h('span', { class: 'logo', text: 'R', attrs: { 'aria-hidden': 'true' } }),
        h('h1', { class: 'brand-name', text: 'Reshoot' }),
      ),
      status.el,
    ),
    h(
      'main',
      { class: 'columns', id: 'main' },
      // In Premiere the panel is docked and narrow: the picture of the clip comes right under the clip, before the form.
      h('div', { class: 'col col-controls' }, source.el, host.kind === 'premiere' ? viewer.el : null, form.el),
      h('div', { class: 'col col-results' }, host.kind === 'premiere' ? null : viewer.el, jobs.el, history.el),
    ),
    bar.el,
  );
  fill(root, app);
  // The box drawn in the form shows over the clip in the viewer, while the box is the chosen mask.
  const syncBox = () => {
    const drawer = form.el.querySelector<HTMLElement>('.box-drawer');
    const value = form.request({ path: '-', in: 0, out: 1 }, 'preview', '').mask;
    const shown = !!drawer && isShown(drawer) && value?.type === 'box' && value.w > 0;
    viewer.setBox(shown && value?.type === 'box' ? value : null);
  };
  form.el.addEventListener('boxchange', syncBox);
  form.el.addEventListener('click', syncBox);
  form.el.addEventListener('keyup', syncBox);

  let engineState: EngineState['kind'] = 'checking';
  const updateEnabled = () => {
    const connected = status.state.kind === 'connected';
    const clip = source.clip();
    form.setClip(clip);
    // The browser knows the file's streams from its probe; Premiere's selection does not say (null: on, and the
    // engine leaves out audio a clip does not have).
    const probed = options.sourcePicker?.info();
    form.setSourceAudio(clip && probed ? probed.audio.length > 0 : null, clip?.mediaPath ?? null);
    viewer.setClip(clip, probed?.durationSec);
    const sourceProblem = source.problem();
    form.setEnabled(
      connected && !!clip,
      !connected
        ? 'Connect to the engine to edit.'
        : sourceProblem
          ? // A file is chosen; what stops the edit is what the source section marks.
            `${sourceProblem.title}: see the clip above.`
          : host.kind === 'browser'
            ? 'Choose a video file and press Probe.'
            : 'Select one video clip on the timeline.',
    );
  };
  status.onChange((s, c) => {
    const was = engineState;
    engineState = s.kind;
    if (s.kind === 'connected' && was !== 'connected') {
      // The browser's selection needs the engine (it probes the typed path), and jobs may have run while we were away.
      void source.refresh();
      history.render();
      c?.jobs().then(
        (list) => jobs.adopt(list),
        () => {},
      );
    }
    updateEnabled();
  });
  source.onChange(() => {
    form.clearProblemAbout('source');
    updateEnabled();
  });
  const unsubscribe = host.onSelectionChanged(() => void source.refresh());

  void history.load();
  void status.check();
  if (host.kind !== 'browser') void source.refresh();

  async function submit(kind: SubmitKind): Promise<void> {
    const c = client();
    if (!c) return;
    form.clearProblems();
    source.clearInvalid();
    form.setBusy('Checking…');
    try {
      form.validateSettings(kind);
      const sel = await source.refresh();
      // The source section already says what is wrong with the clip, on its card or at its field: saying it again
      // below the form showed every such problem twice.
      if (!sel || sel.kind !== 'clip') {
        source.el.scrollIntoView?.({ block: 'nearest' });
        return;
      }
      if (sel.renderReason) form.setBusy('Rendering the clip in Premiere first…');
      const src = await host.prepareSource(sel, (m) => form.setBusy(m));
      const folder = kind === 'edit' ? await host.resultsFolder() : '';
      const request = form.request(src, kind, folder);
      form.validate(request);
      form.setBusy('Sending to the engine…');
      const job = await c.submit(request);
      viewer.follow(job);
      bar.track(job);
      jobs.add(job, { kind, clip: sel, source: src });
      void status.check();
      if (kind === 'preview') form.fixSeed(job.seed);
    } catch (e) {
      form.showProblem(describeError(e), (name) => source.fieldFor(name));
    } finally {
      form.setBusy(null);
    }
  }

  /**
   * The preview's own request, whole: its seed (drawn by the engine when the form had none) and every setting, as the
   * engine recorded them, so the full render is the preview's picture over the whole range. Only the output is the
   * form's, since a preview has none.
   */
  async function renderFull(card: JobCard): Promise<void> {
    const c = client();
    if (!c) return;
    const { preview: _preview, ...settings } = card.job.request;
    try {
      const folder = await host.resultsFolder();
      const request: JobRequestInput = {
        ...settings,
        seed: card.job.seed,
        output: { ...(folder ? { folder } : {}), ...form.output() },
      };
      const job = await c.submit(request);
      // A render the user asked for, like Edit: the bar and the viewer follow it.
      viewer.follow(job);
      bar.track(job);
      jobs.add(job, card.ctx ? { ...card.ctx, kind: 'edit' } : null);
      void status.check();
    } catch (e) {
      const p = describeError(e);
      card.note(`${p.title}: ${p.detail}`, 'error');
    }
  }

  async function ended(card: JobCard): Promise<void> {
    const job = card.job;
    // The queue figures in the status line changed.
    void status.check();
    viewer.ended(job);
    if (job.state !== 'succeeded' || !job.result) return;
    const ctx = card.ctx;
    if (!ctx || ctx.kind === 'preview') return;
    const label = `Reshoot: ${job.request.prompt}`.slice(0, LABEL_MAX);
    const entry: HistoryEntry = {
      jobId: job.id,
      createdAt: job.createdAt,
      clipName: ctx.clip.name,
      prompt: job.request.prompt,
      sourcePrompt: job.request.sourcePrompt,
      seed: job.seed,
      settings: {
        steps: job.request.steps,
        guidance: job.request.guidance,
        strength: job.request.strength,
        method: job.request.method,
        // The mask's source only when not the engine's own (difference), so Reuse can choose it again.
        mask:
          job.request.mask.type === 'auto' && job.request.mask.from && job.request.mask.from !== 'difference'
            ? `${maskLabel(job.request.mask)} from ${job.request.mask.from}`
            : maskLabel(job.request.mask),
        ...(job.request.attention?.crossFrame
          ? {
              crossFrame: {
                anchors: job.request.attention.crossFrame.anchors,
                mode: job.request.attention.crossFrame.mode,
              },
            }
          : {}),
        // Only when on, like crossFrame, so an entry reads the same as one from before the options existed.
        ...(job.request.attention?.structure ? { structure: job.request.attention.structure } : {}),
        ...(job.request.attention?.wordSwap ? { wordSwap: true } : {}),
        ...(job.request.attention?.tokenFlow ? { tokenFlow: job.request.attention.tokenFlow.keyframeEvery } : {}),
        ...(job.request.attention?.reweight?.length
          ? { reweight: job.request.attention.reweight.map(({ word, scale }) => ({ word, scale })) }
          : {}),
      },
      resultPath: job.result.path,
      // The original's range and track: "place again" puts the result over the same span, above the original.
      placement: {
        sequenceStartTicks: ctx.clip.sequenceStartTicks,
        sequenceEndTicks: ctx.clip.sequenceEndTicks,
        trackIndex: ctx.clip.trackIndex,
        renderReason: ctx.clip.renderReason,
      },
    };
    await history.add(entry);
    if (!placeResults) return;
    const place = async () => {
      card.note('Placing on the timeline…', 'info');
      try {
        const placed = await host.placeResult(ctx.clip, job.result!.path, label);
        card.note(placedText(placed), 'ok');
      } catch (e) {
        const p = describeError(e);
        card.note(`Not placed: ${p.detail}`, 'error', { label: 'Try again', run: () => void place() });
      }
    };
    await place();
  }

  async function placeAgain(e: HistoryEntry): Promise<string> {
    if (!e.placement) throw new FieldError('Nothing to place', 'this entry has no timeline position');
    const placed = await host.placeResult(
      { ...e.placement, name: e.clipName },
      e.resultPath,
      `Reshoot: ${e.prompt}`.slice(0, LABEL_MAX),
    );
    return placedText(placed);
  }

  /** The user asked for this job's result: it stays in the viewer until they choose another. */
  function showCompare(job: Job): void {
    if (!compare) return;
    compare.showResult(job, true);
    compare.el.scrollIntoView?.({ block: 'nearest' });
  }

  async function compareEntry(e: HistoryEntry): Promise<void> {
    const c = client();
    if (!c) return;
    try {
      showCompare(await c.job(e.jobId));
    } catch (err) {
      form.showProblem({ ...describeError(err), field: undefined }, () => undefined);
    }
  }

  return {
    destroy(): void {
      status.stop();
      jobs.stopAll();
      viewer.hide();
      unsubscribe();
      fill(root);
    },
  };
}

function placedText(placed: PlaceResult): string {
  const where = placed.newTrack
    ? `Placed on a new track, ${trackName(placed.trackIndex)}`
    : `Placed on ${trackName(placed.trackIndex)}`;
  // Two undo steps at most touch the timeline: the placement, and the look given to the result.
  const look = placed.lookBaked
    ? "; the clip's look is in the render"
    : placed.notCarried.length > 0
      ? `. Not carried: ${placed.notCarried.join('; ')}`
      : '';
  const undo = placed.undoSteps > 1 ? ` (Edit → Undo ${placed.undoSteps} times removes it)` : '';
  return `${where}${undo}${look}`;
}
