// Prompt, mask and settings, and the two buttons. The request is checked with the engine's own zod schema before it
// is sent, so a mistake is pointed at in the form with the very words the engine would use.
import { z } from 'zod';
import {
  AttentionSpec,
  CODECS,
  JobRequest,
  MaskSpec,
  METHODS,
  STRUCTURE_PRESETS,
  type JobRequestInput,
} from '../../../engine/src/api/schemas';
import type { ClipSelection, HistoryEntry, SourceRef } from '../host/host';
import { button, diceIcon, field, fill, h, input, segmented, setDisabled, setInvalid, show, type Field } from './dom';
import { FieldError, type Problemish } from './errors';
import { BoxDrawer, type Box } from './mask-box';

export type MaskChoice = 'none' | 'auto' | 'file' | 'box';
export type SubmitKind = 'preview' | 'edit';

export const PREVIEW = { frames: 4, scale: 0.5 } as const;

type Method = (typeof METHODS)[number];
const METHOD_TEXT: Record<string, { label: string; title: string }> = {
  inversion: { label: 'Inversion', title: 'Invert the clip, then edit: keeps what the prompt does not mention' },
  sdedit: { label: 'SDEdit', title: 'Add noise, then denoise under the prompt: looser, faster' },
  fast: { label: 'Fast', title: 'For distilled models (SD-Turbo, LCM): one to four steps per frame' },
};

type CrossFrame = NonNullable<AttentionSpec['crossFrame']>;
type Anchors = 'off' | CrossFrame['anchors'];
type AnchorMode = CrossFrame['mode'];
// From the contract, like the methods, so an anchor choice the engine adds shows up; "off" stands for its null.
const CROSS_FRAME = AttentionSpec.shape.crossFrame.unwrap().unwrap().shape;
const ANCHORS_TEXT: Record<string, { label: string; title: string }> = {
  off: { label: 'Off', title: 'Each frame attends to itself only' },
  first: {
    label: 'First frame',
    title: "Every frame also reads the first frame's keys and values: steadier (Text2Video-Zero)",
  },
  'first+previous': {
    label: 'First + previous',
    title: "The first frame's and the previous frame's (FateZero): one frame per UNet call, slower",
  },
  all: {
    label: 'All in a call',
    title:
      'Every frame of a UNet call reads every other one (Tune-A-Video, TokenFlow keyframes): memory grows with the square of the frames per call',
  },
};
const MODE_TEXT: Record<string, { label: string; title: string }> = {
  extend: { label: 'Add to own', title: "A frame reads its own keys and values and the anchors'" },
  replace: { label: 'Replace own', title: "A frame reads the anchors' keys and values instead of its own" },
};

// The contract's presets, in its order from looser to tighter, so one the engine adds shows up here too.
type Structure = keyof typeof STRUCTURE_PRESETS;
const STRUCTURES = Object.keys(STRUCTURE_PRESETS) as Structure[];
const STRUCTURE_TITLE: Record<string, string> = {
  off: 'The edit may change the layout and motion of the footage',
  reimagine: 'The layout of the footage for the first steps only: new shapes, much the same composition',
  loose: 'Layout and motion of the footage for half of the steps: shapes may still change',
  balanced: "Layout and motion of the footage for most of the steps (PnP's setting)",
  'keep structure': 'Layout and motion of the footage through every step: mostly the look changes',
};
// The form's label for the source prompt is "What is there now", so the hint says it in those words.
const TOKEN_FLOW_HINT =
  'Edits one keyframe in every few frames and carries the edit to the others along the footage’s own motion; Stable Diffusion models only, not with Cross-frame.';
/** TokenFlow's choices: off, or one keyframe in every 4, 8 (the paper's) or 16 frames. */
const TOKEN_FLOW = ['off', '4', '8', '16'] as const;
type TokenFlowChoice = (typeof TOKEN_FLOW)[number];
const WORD_SWAP_HINT =
  "Words shared with the description of what is there now keep where they were: turning 'red car' into 'blue car' changes only the car. Needs that description.";

// Where the automatic mask is read from: the contract's choices (the "auto" member of MaskSpec), so one the engine adds
// shows up here too. "difference" is the engine's own when none is sent.
type MaskFrom = NonNullable<Extract<JobRequestInput['mask'], { type: 'auto' }>['from']>;
const MASK_FROM: readonly MaskFrom[] = MaskSpec.options[1].shape.from.unwrap().options;
const MASK_FROM_TEXT: Record<string, { label: string; title: string }> = {
  difference: { label: 'Difference', title: 'Where the two prompts disagree (DiffEdit)' },
  attention: {
    label: 'Attention',
    title: 'Where the model looks for the words you changed (FateZero); needs the description of what is there now',
  },
  both: { label: 'Both', title: 'The mean of the two' },
};

type Reweight = NonNullable<AttentionSpec['reweight']>[number];
const EMPHASIS_HINT =
  'Make words count more or less: word=scale (0 ignores it, 2 doubles it). Stable Diffusion models only.';

/**
 * "blue=2, car=0.5" as attention.reweight's entries, and the entries that are not word=number, in the engine's words
 * (its CLI's rule for --reweight). A missing word or a scale out of range is left to the schema, which says why.
 */
function parseEmphasis(text: string): { entries: Reweight[]; malformed: string[] } {
  const entries: Reweight[] = [];
  const malformed: string[] = [];
  for (const part of text.split(',')) {
    const pair = part.trim();
    if (!pair) continue;
    const [word, scale, ...rest] = pair.split('=');
    const n = Number(scale);
    if (rest.length || scale === undefined || scale.trim() === '' || !Number.isFinite(n))
      malformed.push(`attention.reweight takes word=scale pairs separated by commas, e.g. blue=2; got "${pair}"`);
    else entries.push({ word: word.trim(), scale: n });
  }
  return { entries, malformed };
}

/** The preset nearest to a strength, so a history entry with a strength typed elsewhere (the CLI) still reads back. */
function nearestStructure(strength: number): Structure {
  let best: Structure = 'off';
  for (const s of STRUCTURES)
    if (Math.abs(STRUCTURE_PRESETS[s] - strength) < Math.abs(STRUCTURE_PRESETS[best] - strength)) best = s;
  return best;
}

type Codec = (typeof CODECS)[number];
const CODEC_TEXT: Record<string, { label: string; title: string }> = {
  h264: { label: 'H.264 (.mp4)', title: 'Small files that play anywhere' },
  prores: { label: 'ProRes (.mov)', title: 'ProRes 422 HQ: larger files that keep more of the picture for grading' },
};
const AUDIO_HINT_ON = "The clip's sound, cut to the range, goes into the result.";
const AUDIO_HINT_NONE = 'The clip has no audio.';
const SEED_HINT = 'Blank: a new one each time.';

/** The form's fields as text and choices, as the browser keeps them across a reload. */
interface FormDraft {
  prompt: string;
  sourcePrompt: string;
  steps: string;
  guidance: string;
  strength: string;
  seed: string;
  emphasis: string;
  method: string;
  mask: string;
  mattePath: string;
  codec: string;
  /** Only when the user chose it; otherwise the clip decides. */
  audio?: 'on' | 'off';
}

export interface EditFormOptions {
  onSubmit(kind: SubmitKind): void;
  stillUrl: (path: string, t: number, maxWidth: number) => string | null;
}

export class EditForm {
  readonly el: HTMLElement;
  private readonly prompt: Field;
  private readonly sourcePrompt: Field;
  private readonly maskChoice;
  private readonly maskField: Field;
  private readonly mattePath: Field;
  private readonly boxDrawer: BoxDrawer;
  private readonly steps: Field;
  private readonly guidance: Field;
  private readonly strength: Field;
  private readonly seed: Field;
  private readonly method;
  private readonly methodField: Field;
  private readonly anchors;
  private readonly anchorsField: Field;
  private readonly anchorMode;
  private readonly anchorModeField: Field;
  private readonly structure;
  private readonly structureField: Field;
  private readonly wordSwap;
  private readonly wordSwapField: Field;
  private readonly tokenFlow;
  private readonly tokenFlowField: Field;
  private readonly emphasis: Field;
  private readonly codec;
  private readonly codecField: Field;
  private readonly audio;
  private readonly audioField: Field;
  private readonly audioHint = h('div', { class: 'field-hint', text: AUDIO_HINT_ON });
  /** The user chose audio on or off themselves: a new clip does not change that choice. */
  private audioChosen = false;
  private readonly seedHint = h('div', { class: 'field-hint' });
  private readonly maskFrom;
  private readonly maskFromField: Field;
  private readonly maskFromHint = h('div', { class: 'field-hint' });
  private readonly advanced = h('div', { class: 'advanced hidden', id: 'advanced' });
  private readonly advancedToggle: HTMLButtonElement;
  private readonly previewButton: HTMLButtonElement;
  private readonly editButton: HTMLButtonElement;
  private readonly hint = h('div', { class: 'action-hint', id: 'action-hint', attrs: { 'aria-live': 'polite' } });
  private readonly problem = h('div', { class: 'problem hidden', id: 'form-problem', attrs: { role: 'alert' } });
  /** The two buttons and the line under them; the app may move them into its sticky action bar. */
  readonly actions: HTMLElement;
  private enabled = false;
  private disabledReason = '';
  private busy: string | null = null;

  constructor(private readonly opts: EditFormOptions) {
    const promptInput = h('textarea', {
      id: 'prompt',
      class: 'input textarea',
      attrs: {
        rows: '3',
        placeholder: 'What the range should become, e.g. "a blue vintage convertible on a gray road"',
      },
    });
    promptInput.addEventListener('keydown', (k) => {
      if (k.key === 'Enter' && (k.ctrlKey || k.metaKey)) this.submit('edit');
    });
    this.prompt = field('Prompt', promptInput);
    this.sourcePrompt = field(
      'What is there now (optional)',
      input('source-prompt', { placeholder: 'e.g. "a red car on a gray road"' }),
      {
        hint: 'Describing the current picture makes the edit more faithful and the automatic mask more precise.',
      },
    );

    this.mattePath = field('Matte file', input('mask-path', { placeholder: '/path/to/matte.png or matte.mov' }), {
      hint: 'White (or opaque) where the picture should change. A still, a matte video or a PNG sequence pattern.',
    });
    this.boxDrawer = new BoxDrawer(opts.stillUrl);
    this.maskChoice = segmented<MaskChoice>(
      'mask-choice',
      [
        { value: 'none', label: 'Whole frame', title: 'Edit the whole picture' },
        {
          value: 'auto',
          label: 'Auto',
          title: 'Automatic: the engine finds the area from the two prompts',
        },
        { value: 'file', label: 'Matte', title: 'A matte file you made: PNG still, matte video or PNG sequence' },
        { value: 'box', label: 'Box', title: 'Drag a rectangle on a still of the clip' },
      ],
      'none',
      () => this.renderMask(),
    );
    this.maskField = {
      row: h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label', text: 'Where to change' }),
        this.maskChoice.el,
      ),
      control: this.maskChoice.el,
      message: h('div', { class: 'field-message' }),
    };
    this.maskField.row.appendChild(this.maskField.message);
    this.maskFrom = segmented<MaskFrom>(
      'mask-from',
      MASK_FROM.map((f) => ({ value: f, label: MASK_FROM_TEXT[f]?.label ?? f, title: MASK_FROM_TEXT[f]?.title })),
      'difference',
      () => this.renderMaskFrom(),
    );
    this.maskFrom.el.classList.add('small');
    this.maskFromField = {
      row: h(
        'div',
        { class: 'field sub' },
        h('div', { class: 'field-label', text: 'Read the mask from' }),
        this.maskFrom.el,
        this.maskFromHint,
      ),
      control: this.maskFrom.el,
      message: h('div', { class: 'field-message' }),
    };
    this.maskFromField.row.appendChild(this.maskFromField.message);

    const defaults = JobRequest.shape;
    this.steps = field(
      'Steps',
      input('steps', {
        type: 'number',
        value: String(defaults.steps.parse(undefined)),
        min: '1',
        max: '200',
        step: '1',
      }),
      {
        hint: 'More is finer and slower.',
      },
    );
    this.guidance = field(
      'Guidance',
      input('guidance', {
        type: 'number',
        value: String(defaults.guidance.parse(undefined)),
        min: '0',
        max: '30',
        step: '0.5',
      }),
      { hint: 'How strongly to follow the prompt.' },
    );
    this.strength = field(
      'Strength',
      input('strength', { type: 'number', placeholder: 'auto', min: '0', max: '1', step: '0.05' }),
      { hint: "Blank: the method's own (1 for inversion, 0.6 for SDEdit)." },
    );
    const seedInput = input('seed', { type: 'number', placeholder: 'random', min: '0', step: '1' });
    const dice = button(
      '',
      () => {
        seedInput.value = String(Math.floor(Math.random() * 2 ** 32));
        setInvalid(this.seed, null);
      },
      { class: 'icon', title: 'Pick a random seed (the same seed repeats an edit exactly)', id: 'seed-dice' },
    );
    dice.appendChild(diceIcon());
    dice.setAttribute('aria-label', 'Random seed');
    this.seed = field('Seed', seedInput, { extra: dice });
    this.seedHint.textContent = SEED_HINT;
    this.seed.row.insertBefore(this.seedHint, this.seed.message);
    seedInput.addEventListener('input', () => (this.seedHint.textContent = SEED_HINT));
    // The choices come from the contract, so a method the engine adds shows up here (under its own name at worst).
    this.method = segmented<Method>(
      'method',
      METHODS.map((m) => ({ value: m, label: METHOD_TEXT[m]?.label ?? m, title: METHOD_TEXT[m]?.title })),
      'inversion',
      () => {},
    );
    this.methodField = {
      row: h('div', { class: 'field' }, h('div', { class: 'field-label', text: 'Method' }), this.method.el),
      control: this.method.el,
      message: h('div', { class: 'field-message' }),
    };
    this.methodField.row.appendChild(this.methodField.message);
    this.anchors = segmented<Anchors>(
      'cross-frame',
      ['off' as const, ...CROSS_FRAME.anchors.unwrap().options].map((a) => ({
        value: a,
        label: ANCHORS_TEXT[a]?.label ?? a,
        title: ANCHORS_TEXT[a]?.title,
      })),
      'off',
      () => this.renderAttention(),
    );
    this.anchorsField = {
      row: h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label', text: 'Frames attend to' }),
        this.anchors.el,
        // The engine refuses it otherwise; said here so the refusal is no surprise.
        h('div', {
          class: 'field-hint',
          text: 'Inversion only, with a model that has self-attention (Stable Diffusion).',
        }),
      ),
      control: this.anchors.el,
      message: h('div', { class: 'field-message' }),
    };
    this.anchorsField.row.appendChild(this.anchorsField.message);
    this.anchorMode = segmented<AnchorMode>(
      'cross-frame-mode',
      CROSS_FRAME.mode.unwrap().options.map((m) => ({
        value: m,
        label: MODE_TEXT[m]?.label ?? m,
        title: MODE_TEXT[m]?.title,
      })),
      CROSS_FRAME.mode.parse(undefined),
      () => this.settle(this.anchorModeField),
    );
    this.anchorMode.el.classList.add('small');
    this.anchorModeField = {
      row: h(
        'div',
        { class: 'field sub' },
        h('div', { class: 'field-label', text: "The anchors' keys and values" }),
        this.anchorMode.el,
      ),
      control: this.anchorMode.el,
      message: h('div', { class: 'field-message' }),
    };
    this.anchorModeField.row.appendChild(this.anchorModeField.message);
    this.structure = segmented<Structure>(
      'structure',
      STRUCTURES.map((s) => ({
        value: s,
        label: s.charAt(0).toUpperCase() + s.slice(1),
        title: STRUCTURE_TITLE[s] ?? `Strength ${STRUCTURE_PRESETS[s]} of 1`,
      })),
      'off',
      () => this.settle(this.structureField),
    );
    this.structure.el.classList.add('small', 'wrap');
    this.structureField = {
      row: h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label', text: 'Structure' }),
        this.structure.el,
        h('div', {
          class: 'field-hint',
          text: "Keeps the footage's layout and motion; inversion with a Stable Diffusion model only.",
        }),
      ),
      control: this.structure.el,
      message: h('div', { class: 'field-message' }),
    };
    this.structureField.row.appendChild(this.structureField.message);
    this.wordSwap = segmented<'off' | 'on'>(
      'word-swap',
      [
        { value: 'off', label: 'Off', title: 'The prompt places its words where it likes' },
        { value: 'on', label: 'On', title: WORD_SWAP_HINT },
      ],
      'off',
      () => this.settle(this.wordSwapField),
    );
    this.wordSwap.el.classList.add('small');
    this.wordSwapField = {
      row: h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label', text: 'Word swap' }),
        this.wordSwap.el,
        h('div', { class: 'field-hint', text: WORD_SWAP_HINT }),
      ),
      control: this.wordSwap.el,
      message: h('div', { class: 'field-message' }),
    };
    this.wordSwapField.row.appendChild(this.wordSwapField.message);
    this.tokenFlow = segmented<TokenFlowChoice>(
      'token-flow',
      TOKEN_FLOW.map((c) => ({
        value: c,
        label: c === 'off' ? 'Off' : `1 in ${c}`,
        title: c === 'off' ? 'Every frame is edited on its own' : `One keyframe in every ${c} frames`,
      })),
      'off',
      () => this.settle(this.tokenFlowField),
    );
    this.tokenFlow.el.classList.add('small');
    this.tokenFlowField = {
      row: h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label', text: 'TokenFlow' }),
        this.tokenFlow.el,
        h('div', { class: 'field-hint', text: TOKEN_FLOW_HINT }),
      ),
      control: this.tokenFlow.el,
      message: h('div', { class: 'field-message' }),
    };
    this.tokenFlowField.row.appendChild(this.tokenFlowField.message);
    this.emphasis = field('Emphasis', input('emphasis', { placeholder: 'blue=2, car=0.5' }), { hint: EMPHASIS_HINT });
    this.codec = segmented<Codec>(
      'codec',
      CODECS.map((c) => ({ value: c, label: CODEC_TEXT[c]?.label ?? c, title: CODEC_TEXT[c]?.title })),
      'h264',
      () => this.settle(this.codecField),
    );
    this.codec.el.classList.add('small');
    this.codecField = {
      row: h('div', { class: 'field' }, h('div', { class: 'field-label', text: 'Format' }), this.codec.el),
      control: this.codec.el,
      message: h('div', { class: 'field-message' }),
    };
    this.codecField.row.appendChild(this.codecField.message);
    this.audio = segmented<'on' | 'off'>(
      'audio',
      [
        { value: 'on', label: 'Include', title: AUDIO_HINT_ON },
        { value: 'off', label: 'Leave out', title: 'The result is picture only' },
      ],
      'on',
      () => {
        this.audioChosen = true;
        this.settle(this.audioField);
      },
    );
    this.audio.el.classList.add('small');
    this.audioField = {
      row: h(
        'div',
        { class: 'field' },
        h('div', { class: 'field-label', text: 'Audio' }),
        this.audio.el,
        this.audioHint,
      ),
      control: this.audio.el,
      message: h('div', { class: 'field-message' }),
    };
    this.audioField.row.appendChild(this.audioField.message);
    fill(
      this.advanced,
      h('div', { class: 'row two' }, this.steps.row, this.guidance.row),
      h('div', { class: 'row two' }, this.strength.row, this.seed.row),
      this.methodField.row,
      this.anchorsField.row,
      this.anchorModeField.row,
      this.structureField.row,
      this.wordSwapField.row,
      this.tokenFlowField.row,
      this.emphasis.row,
    );
    this.advancedToggle = button('Advanced settings', () => this.toggleAdvanced(), {
      class: 'disclosure',
      id: 'advanced-toggle',
    });
    this.advancedToggle.setAttribute('aria-expanded', 'false');
    this.advancedToggle.setAttribute('aria-controls', 'advanced');

    this.previewButton = button('Preview', () => this.submit('preview'), {
      id: 'preview',
      title: `Edit only the first ${PREVIEW.frames} frames at ${PREVIEW.scale * 100}% size, to try a prompt quickly`,
    });
    this.editButton = button('Edit with prompt', () => this.submit('edit'), {
      class: 'primary',
      id: 'edit',
      title: 'Edit the whole range (Ctrl+Enter in the prompt)',
    });

    for (const f of this.fields()) {
      f.control.addEventListener('input', () => {
        setInvalid(f, null);
        this.dropSettledProblem();
      });
    }

    this.el = h(
      'section',
      { class: 'section form' },
      h('h2', { class: 'section-title', text: 'Edit' }),
      this.prompt.row,
      this.sourcePrompt.row,
      this.maskField.row,
      h('div', { class: 'mask-extra' }, this.maskFromField.row, this.mattePath.row, this.boxDrawer.el),
      h('div', { class: 'row two output-choice' }, this.codecField.row, this.audioField.row),
      this.advancedToggle,
      this.advanced,
      this.problem,
    );
    this.actions = h(
      'div',
      { class: 'action-group' },
      h('div', { class: 'actions' }, this.previewButton, this.editButton),
      this.hint,
    );
    this.el.appendChild(this.actions);
    this.renderMask();
    this.renderAttention();
    this.renderButtons();
  }

  setClip(clip: ClipSelection | null): void {
    this.boxDrawer.setClip(clip);
  }

  /**
   * Whether the chosen clip has sound (null: the host cannot tell, as in Premiere, where the engine leaves out audio a
   * clip does not have). Audio is on by default whenever there may be some; the user's own choice holds for the clip
   * it was made for (`clip`, its path), and another clip starts from its default again.
   */
  setSourceAudio(has: boolean | null, clip: string | null): void {
    this.audioHint.textContent = has === false ? AUDIO_HINT_NONE : AUDIO_HINT_ON;
    if (clip === null) return;
    if (this.audioClip !== undefined && clip !== this.audioClip) this.audioChosen = false;
    this.audioClip = clip;
    if (this.audioChosen) return;
    // set() reports a change like a click would; this one is the form's, not the user's.
    this.audio.set(has === false ? 'off' : 'on');
    this.audioChosen = false;
  }
  private audioClip: string | undefined;

  /**
   * Keeps the seed a preview drew, so Edit renders what the preview showed: with the field blank, each job would
   * draw a seed of its own.
   */
  fixSeed(seed: number): void {
    const seedInput = this.seed.control as HTMLInputElement;
    if (seedInput.value.trim() !== '') return;
    seedInput.value = String(seed);
    this.seedHint.textContent = "The preview's seed: Edit renders what it showed. Clear it for a new one each time.";
  }

  /** What a reload should give back: the text fields and the choices that are plain values (not a drawn box). */
  draft(): FormDraft {
    const v = (f: Field) => (f.control as HTMLInputElement).value;
    return {
      prompt: v(this.prompt),
      sourcePrompt: v(this.sourcePrompt),
      steps: v(this.steps),
      guidance: v(this.guidance),
      strength: v(this.strength),
      seed: v(this.seed),
      emphasis: v(this.emphasis),
      method: this.method.value(),
      mask: this.maskChoice.value() === 'box' ? 'none' : this.maskChoice.value(),
      mattePath: v(this.mattePath),
      codec: this.codec.value(),
      ...(this.audioChosen ? { audio: this.audio.value() } : {}),
    };
  }

  /** Puts a draft back; anything that is not what draft() wrote is left at the form's default. */
  restoreDraft(raw: unknown): void {
    if (!raw || typeof raw !== 'object') return;
    const d = raw as Partial<Record<keyof FormDraft, unknown>>;
    const text = (f: Field, value: unknown) => {
      if (typeof value === 'string') (f.control as HTMLInputElement).value = value;
    };
    text(this.prompt, d.prompt);
    text(this.sourcePrompt, d.sourcePrompt);
    text(this.steps, d.steps);
    text(this.guidance, d.guidance);
    text(this.strength, d.strength);
    text(this.seed, d.seed);
    text(this.emphasis, d.emphasis);
    text(this.mattePath, d.mattePath);
    if ((METHODS as readonly unknown[]).includes(d.method)) this.method.set(d.method as Method);
    if (d.mask === 'none' || d.mask === 'auto' || d.mask === 'file') this.maskChoice.set(d.mask);
    if ((CODECS as readonly unknown[]).includes(d.codec)) this.codec.set(d.codec as Codec);
    if (d.audio === 'on' || d.audio === 'off') this.audio.set(d.audio);
    this.clearProblems();
  }

  /** The result's format and sound, as the request's output takes them. */
  output(): { codec: Codec; audio: boolean } {
    return { codec: this.codec.value(), audio: this.audio.value() === 'on' };
  }

  setEnabled(enabled: boolean, reason = ''): void {
    this.enabled = enabled;
    this.disabledReason = reason;
    this.renderButtons();
  }

  setBusy(message: string | null): void {
    this.busy = message;
    this.renderButtons();
  }

  /** The form as a job request (not yet validated). */
  request(source: SourceRef, kind: SubmitKind, outputFolder: string): JobRequestInput {
    const v = (f: Field) => (f.control as HTMLInputElement).value.trim();
    const num = (f: Field) => (v(f) === '' ? undefined : Number(v(f)));
    const req: JobRequestInput = {
      source: { path: source.path, in: source.in, out: source.out },
      prompt: v(this.prompt),
      sourcePrompt: v(this.sourcePrompt),
      mask: this.mask(),
      method: this.method.value(),
    };
    const steps = num(this.steps);
    const guidance = num(this.guidance);
    const strength = num(this.strength);
    const seed = num(this.seed);
    if (steps !== undefined) req.steps = steps;
    if (guidance !== undefined) req.guidance = guidance;
    if (strength !== undefined) req.strength = strength;
    if (seed !== undefined) req.seed = seed;
    // Each method that is off is left out rather than sent as its default, so a request without any is the same as
    // before the options existed.
    const attention: NonNullable<JobRequestInput['attention']> = {};
    const anchors = this.anchors.value();
    // "All in a call" reads the frame's own keys among the others: the mode does not apply (the engine refuses replace).
    if (anchors === 'all') attention.crossFrame = { anchors };
    else if (anchors !== 'off') attention.crossFrame = { anchors, mode: this.anchorMode.value() };
    const structure = STRUCTURE_PRESETS[this.structure.value()];
    if (structure > 0) attention.structure = structure;
    // Empty: the engine's default share of the steps (P2P's 0.8) is the one to use.
    if (this.wordSwap.value() === 'on') attention.wordSwap = {};
    const tokenFlow = this.tokenFlow.value();
    if (tokenFlow !== 'off') attention.tokenFlow = { keyframeEvery: Number(tokenFlow) };
    // What is not word=number stays out; validate() says so at the field before anything is sent.
    const { entries } = parseEmphasis(v(this.emphasis));
    if (entries.length) attention.reweight = entries;
    if (Object.keys(attention).length) req.attention = attention;
    if (kind === 'preview') req.preview = { ...PREVIEW };
    // Previews are throwaway: they go to the engine's own folder, not next to the project.
    else req.output = { ...(outputFolder ? { folder: outputFolder } : {}), ...this.output() };
    return req;
  }

  /** Checks with the engine's schema; throws a FieldError naming the first field at fault. */
  validate(req: JobRequestInput): void {
    const parsed = JobRequest.safeParse(req);
    const issues = [...this.ownIssues(), ...(parsed.success ? [] : parsed.error.issues)];
    if (issues.length) throw FieldError.fromZod(new z.ZodError(issues));
  }

  /** Checks everything but the source, before the host spends time on it (Premiere may render the clip first). */
  validateSettings(kind: SubmitKind): void {
    const req = this.request({ path: '-', in: 0, out: 1 }, kind, '');
    const parsed = JobRequest.safeParse(req);
    const issues = [...this.ownIssues(), ...(parsed.success ? [] : parsed.error.issues)].filter(
      (i) => i.path[0] !== 'source',
    );
    if (issues.length === 0) return;
    throw FieldError.fromZod(new z.ZodError(issues));
  }

  /** What the form's own text fields cannot say in the request (the emphasis list), as the schema's issues would. */
  private ownIssues(): z.core.$ZodIssue[] {
    const text = (this.emphasis.control as HTMLInputElement).value;
    return parseEmphasis(text).malformed.map((message) => ({
      code: 'custom',
      path: ['attention', 'reweight'],
      message,
      input: text,
    }));
  }

  /** Marks the fields a problem names (here or, through extraLookup, in the source section) and sums it up above the buttons. */
  showProblem(p: Problemish, extraLookup: (name: string) => Field | undefined): void {
    this.clearProblems();
    const issues = p.issues?.length ? p.issues : p.field ? [{ field: p.field, message: p.detail }] : [];
    let first: Field | undefined;
    const unplaced: string[] = [];
    for (const issue of issues) {
      const f = this.fieldFor(issue.field) ?? extraLookup(issue.field) ?? extraLookup(issue.field.split('.')[0]);
      if (!f) {
        unplaced.push(issue.message);
        continue;
      }
      if (f.row.classList.contains('invalid')) continue;
      setInvalid(f, issue.message);
      first ??= f;
      if (this.advanced.contains(f.row)) this.toggleAdvanced(true);
    }
    // The summary says what happened even when the field message alone would; it is what a screen reader announces.
    fill(
      this.problem,
      h('div', { class: 'problem-title', text: p.title }),
      h('div', {
        class: 'problem-detail',
        text: issues.length && !unplaced.length ? 'See the highlighted field.' : p.detail,
      }),
    );
    this.problem.setAttribute('data-field', p.field ?? '');
    show(this.problem, true);
    if (first) {
      first.control.focus?.();
      first.row.scrollIntoView?.({ block: 'center' });
    }
  }

  clearProblems(): void {
    for (const f of this.fields()) setInvalid(f, null);
    show(this.problem, false);
    this.problem.setAttribute('data-field', '');
  }

  /** Fills the form from a history entry. */
  reuse(e: HistoryEntry): void {
    (this.prompt.control as HTMLTextAreaElement).value = e.prompt;
    (this.sourcePrompt.control as HTMLInputElement).value = e.sourcePrompt;
    (this.steps.control as HTMLInputElement).value = String(e.settings.steps);
    (this.guidance.control as HTMLInputElement).value = String(e.settings.guidance);
    (this.strength.control as HTMLInputElement).value =
      e.settings.strength === undefined ? '' : String(e.settings.strength);
    (this.seed.control as HTMLInputElement).value = String(e.seed);
    if ((METHODS as readonly string[]).includes(e.settings.method)) this.method.set(e.settings.method as Method);
    // The label maskLabel wrote ("whole frame", "auto mask from attention"); a matte or box is not in it to restore.
    const maskType = e.settings.mask.split(' ')[0];
    if (maskType === 'none' || maskType === 'whole') this.maskChoice.set('none');
    if (maskType === 'auto') {
      const from = / from (\S+)/.exec(e.settings.mask)?.[1] ?? 'difference';
      this.maskFrom.set((MASK_FROM as readonly string[]).includes(from) ? (from as MaskFrom) : 'difference');
      this.maskChoice.set('auto');
    }
    const cf = e.settings.crossFrame;
    const anchors = CROSS_FRAME.anchors.unwrap().options as readonly string[];
    const modes = CROSS_FRAME.mode.unwrap().options as readonly string[];
    this.anchors.set(cf && anchors.includes(cf.anchors) ? (cf.anchors as Anchors) : 'off');
    if (cf && modes.includes(cf.mode)) this.anchorMode.set(cf.mode as AnchorMode);
    this.structure.set(nearestStructure(e.settings.structure ?? 0));
    this.wordSwap.set(e.settings.wordSwap ? 'on' : 'off');
    const every = String(e.settings.tokenFlow ?? 'off');
    this.tokenFlow.set((TOKEN_FLOW as readonly string[]).includes(every) ? (every as TokenFlowChoice) : 'off');
    (this.emphasis.control as HTMLInputElement).value = (e.settings.reweight ?? [])
      .map((r) => `${r.word}=${r.scale}`)
      .join(', ');
    this.renderAttention();
    this.clearProblems();
    (this.prompt.control as HTMLTextAreaElement).focus?.();
  }

  private mask(): JobRequestInput['mask'] {
    switch (this.maskChoice.value()) {
      case 'none':
        return { type: 'none' };
      case 'auto': {
        // Difference is the engine's own: left out, so the request is the one from before the choice existed.
        const from = this.maskFrom.value();
        return from === 'difference' ? { type: 'auto' } : { type: 'auto', from };
      }
      case 'file':
        return { type: 'file', path: (this.mattePath.control as HTMLInputElement).value.trim() };
      case 'box': {
        const b: Box | null = this.boxDrawer.value();
        // An undrawn box is sent as an empty one, so the schema's own message explains what is missing.
        const r = (n: number) => Math.round(n * 1e4) / 1e4;
        return b
          ? { type: 'box', x: r(b.x), y: r(b.y), w: r(b.w), h: r(b.h) }
          : { type: 'box', x: 0, y: 0, w: 0, h: 0 };
      }
    }
  }

  private fieldFor(name: string): Field | undefined {
    const map: Record<string, Field> = {
      prompt: this.prompt,
      sourcePrompt: this.sourcePrompt,
      'mask.path': this.mattePath,
      'mask.from': this.maskFromField,
      mask: this.maskField,
      steps: this.steps,
      guidance: this.guidance,
      strength: this.strength,
      seed: this.seed,
      method: this.methodField,
      'attention.crossFrame.mode': this.anchorModeField,
      'attention.structure': this.structureField,
      'attention.wordSwap': this.wordSwapField,
      'attention.tokenFlow': this.tokenFlowField,
      'output.codec': this.codecField,
      'output.audio': this.audioField,
    };
    if (map[name]) return map[name];
    if (name.startsWith('mask')) return this.maskField;
    if (name.startsWith('attention.wordSwap.')) return this.wordSwapField;
    if (name.startsWith('attention.tokenFlow.')) return this.tokenFlowField;
    if (name === 'attention.reweight' || name.startsWith('attention.reweight.')) return this.emphasis;
    if (name.startsWith('attention')) return this.anchorsField;
    return undefined;
  }

  private fields(): Field[] {
    return [
      this.prompt,
      this.sourcePrompt,
      this.mattePath,
      this.maskField,
      this.maskFromField,
      this.steps,
      this.guidance,
      this.strength,
      this.seed,
      this.methodField,
      this.anchorsField,
      this.anchorModeField,
      this.structureField,
      this.wordSwapField,
      this.tokenFlowField,
      this.emphasis,
    ];
  }

  private toggleAdvanced(open?: boolean): void {
    const isOpen = open ?? this.advanced.classList.contains('hidden');
    show(this.advanced, isOpen);
    this.advancedToggle.setAttribute('aria-expanded', isOpen ? 'true' : 'false');
    this.advancedToggle.classList.toggle('open', isOpen);
  }

  /** Hides the summary of a problem about fields outside the form (the source) once those changed. */
  clearProblemAbout(prefix: string): void {
    const f = this.problem.getAttribute('data-field') ?? '';
    if (f === prefix || f.startsWith(`${prefix}.`)) this.clearProblems();
  }

  /** Once the user has touched every field a problem named, its summary is old news. */
  private dropSettledProblem(): void {
    if (this.problem.getAttribute('data-field') && !this.fields().some((f) => f.row.classList.contains('invalid')))
      this.clearProblems();
  }

  private renderMask(): void {
    const m = this.maskChoice.value();
    show(this.mattePath.row, m === 'file');
    show(this.boxDrawer.el, m === 'box');
    show(this.maskFromField.row, m === 'auto');
    setInvalid(this.maskField, null);
    setInvalid(this.mattePath, null);
    setInvalid(this.maskFromField, null);
    this.renderMaskFrom();
    if (m === 'box') this.boxDrawer.activate();
  }

  /** The chosen source's description under the choice (the buttons' titles are out of reach without a pointer). */
  private renderMaskFrom(): void {
    const from = this.maskFrom.value();
    this.maskFromHint.textContent = MASK_FROM_TEXT[from]?.title ?? '';
    this.settle(this.maskFromField);
  }

  private renderAttention(): void {
    show(this.anchorModeField.row, this.anchors.value() !== 'off' && this.anchors.value() !== 'all');
    setInvalid(this.anchorsField, null);
    setInvalid(this.anchorModeField, null);
    this.dropSettledProblem();
  }

  /** A changed choice answers what a problem said about it. */
  private settle(f: Field): void {
    setInvalid(f, null);
    this.dropSettledProblem();
  }

  private submit(kind: SubmitKind): void {
    if (!this.enabled || this.busy) return;
    this.opts.onSubmit(kind);
  }

  private renderButtons(): void {
    const ok = this.enabled && !this.busy;
    setDisabled(this.previewButton, !ok);
    setDisabled(this.editButton, !ok);
    this.hint.textContent = this.busy ?? (this.enabled ? '' : this.disabledReason);
    this.hint.classList.toggle('busy', !!this.busy);
  }
}
