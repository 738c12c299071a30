// The effect side of the fake `premierepro` module: a video track item's component chain (its intrinsic Opacity,
// Motion and Time Remapping, then the filters the editor applied), component parameters and keyframes, and
// VideoFilterFactory. Checked against @adobe/premierepro's declarations like the rest of the fake.
//
// What the documentation says and the fake keeps: createSetValueAction sets "a non-time varying component" (the
// fake refuses it on a parameter with keyframes); createKeyframe "throws if the passed in value is not compatible
// with the component param type" (the fake's opaque parameters, such as Lumetri's look data, take no value back).
// What it does not say and the fake assumes (from ExtendScript, where components[0] is Opacity and [1] Motion):
// the match names "AE.ADBE Opacity", "AE.ADBE Motion", "AE.ADBE Time Remapping", and that order.

import type { Component, ComponentParam, Keyframe, TickTime, VideoComponentChain } from '@adobe/premierepro';
import type { Shape } from './premiere-shape';

export type ParamValue = number | string | boolean | { x: number; y: number };

/** How the fake makes actions: inside a lock, applied at commit (the Rules of fake-premierepro.ts). */
export interface ActionMaker {
  createAction(description: string, prepare: () => () => void): object;
}

export interface ParamSpec {
  name: string;
  value: ParamValue;
  /** A value no keyframe can carry back (Lumetri's look data, for one). */
  opaque?: boolean;
}

export class FakeKeyframe implements Partial<Shape<Keyframe>> {
  constructor(
    public value: { value: ParamValue },
    public position: TickTime | null = null,
  ) {}
}

export class FakeComponentParam implements Partial<Shape<ComponentParam>> {
  /** Keyframe times (ticks) and values; empty when the parameter does not vary over time. */
  keyframes: Array<{ at: bigint; value: ParamValue }> = [];

  constructor(
    private readonly rules: ActionMaker,
    readonly displayName: string,
    public value: ParamValue,
    readonly opaque = false,
  ) {}

  isTimeVarying(): boolean {
    return this.keyframes.length > 0;
  }
  async areKeyframesSupported(): Promise<boolean> {
    return !this.opaque;
  }
  async getStartValue(): Promise<FakeKeyframe> {
    return new FakeKeyframe({ value: copyValue(this.keyframes[0]?.value ?? this.value) });
  }
  async getValueAtTime(_time: TickTime): Promise<ParamValue> {
    return copyValue(this.value);
  }
  createKeyframe(inValue: unknown): FakeKeyframe {
    if (this.opaque) throw new Error(`${this.displayName}: the value is not compatible with the component param type`);
    if (typeof inValue !== typeof this.value || inValue === null) throw new Error('Illegal Parameter type');
    return new FakeKeyframe({ value: copyValue(inValue as ParamValue) });
  }
  createSetValueAction(inKeyFrame: unknown, _inSafeForPlayback?: boolean): object {
    if (!(inKeyFrame instanceof FakeKeyframe)) throw new Error('Illegal Parameter type');
    const value = copyValue(inKeyFrame.value.value);
    return this.rules.createAction(`set ${this.displayName}`, () => {
      if (this.isTimeVarying()) throw new Error(`${this.displayName} varies over time: set its keyframes instead`);
      return () => {
        this.value = value;
      };
    });
  }
  copy(rules: ActionMaker): FakeComponentParam {
    const param = new FakeComponentParam(rules, this.displayName, copyValue(this.value), this.opaque);
    param.keyframes = this.keyframes.map((k) => ({ ...k, value: copyValue(k.value) }));
    return param;
  }
}

export class FakeComponent implements Partial<Shape<Component>> {
  constructor(
    readonly matchName: string,
    readonly displayName: string,
    readonly params: FakeComponentParam[],
  ) {}
  async getMatchName(): Promise<string> {
    return this.matchName;
  }
  async getDisplayName(): Promise<string> {
    return this.displayName;
  }
  getParamCount(): number {
    return this.params.length;
  }
  getParam(paramIndex?: number): FakeComponentParam {
    const param = this.params[paramIndex ?? 0];
    if (!param) throw new Error(`Parameter index ${String(paramIndex)} out of range`);
    return param;
  }
  /** Param by display name, for tests. */
  param(name: string): FakeComponentParam {
    const param = this.params.find((p) => p.displayName === name);
    if (!param) throw new Error(`${this.displayName} has no parameter "${name}"`);
    return param;
  }
  copy(rules: ActionMaker): FakeComponent {
    return new FakeComponent(
      this.matchName,
      this.displayName,
      this.params.map((p) => p.copy(rules)),
    );
  }
}

export class FakeVideoComponentChain implements Partial<Shape<VideoComponentChain>> {
  constructor(
    private readonly rules: ActionMaker,
    readonly components: FakeComponent[],
    /** Edits refused like any edit on a locked track. */
    private readonly refuse: (what: string) => void = () => undefined,
  ) {}
  getComponentCount(): number {
    return this.components.length;
  }
  getComponentAtIndex(componentIndex: number): FakeComponent {
    const component = this.components[componentIndex];
    if (!component) throw new Error(`Component index ${componentIndex} out of range`);
    return component;
  }
  createAppendComponentAction(component: unknown): object {
    if (!(component instanceof FakeComponent)) throw new Error('Illegal Parameter type');
    return this.rules.createAction(`append ${component.displayName}`, () => {
      this.refuse(`append ${component.displayName}`);
      if (this.components.includes(component)) throw new Error(`${component.displayName} is already in a chain`);
      return () => {
        this.components.push(component);
      };
    });
  }
  createRemoveComponentAction(component: unknown): object {
    if (!(component instanceof FakeComponent)) throw new Error('Illegal Parameter type');
    return this.rules.createAction(`remove ${component.displayName}`, () => {
      if (!this.components.includes(component)) throw new Error(`${component.displayName} is not in this chain`);
      return () => {
        this.components.splice(this.components.indexOf(component), 1);
      };
    });
  }
  find(matchName: string): FakeComponent | undefined {
    return this.components.find((c) => c.matchName === matchName);
  }
  copy(rules: ActionMaker, refuse: (what: string) => void): FakeVideoComponentChain {
    return new FakeVideoComponentChain(
      rules,
      this.components.map((c) => c.copy(rules)),
      refuse,
    );
  }
}

export const MATCH = {
  opacity: 'AE.ADBE Opacity',
  motion: 'AE.ADBE Motion',
  timeRemapping: 'AE.ADBE Time Remapping',
  crop: 'AE.ADBE Crop',
  lumetri: 'AE.ADBE Lumetri',
} as const;

/** The filters the fake's VideoFilterFactory can make, with their parameters' defaults. */
const FILTERS: Record<string, { name: string; params: ParamSpec[] }> = {
  [MATCH.crop]: {
    name: 'Crop',
    params: [
      { name: 'Left', value: 0 },
      { name: 'Top', value: 0 },
      { name: 'Right', value: 0 },
      { name: 'Bottom', value: 0 },
      { name: 'Zoom', value: false },
      { name: 'Edge Feather', value: 0 },
    ],
  },
  [MATCH.lumetri]: {
    name: 'Lumetri Color',
    params: [
      { name: 'Look', value: '', opaque: true },
      { name: 'Exposure', value: 0 },
    ],
  },
};

function component(rules: ActionMaker, matchName: string, name: string, params: ParamSpec[]): FakeComponent {
  return new FakeComponent(
    matchName,
    name,
    params.map((p) => new FakeComponentParam(rules, p.name, copyValue(p.value), p.opaque ?? false)),
  );
}

/** What every video clip starts with: Opacity, Motion and Time Remapping at their defaults. */
export function intrinsicChain(
  rules: ActionMaker,
  frame: { width: number; height: number },
  refuse: (what: string) => void,
): FakeVideoComponentChain {
  const centre = { x: frame.width / 2, y: frame.height / 2 };
  return new FakeVideoComponentChain(
    rules,
    [
      component(rules, MATCH.opacity, 'Opacity', [
        { name: 'Opacity', value: 100 },
        { name: 'Blend Mode', value: 0 },
      ]),
      component(rules, MATCH.motion, 'Motion', [
        { name: 'Position', value: centre },
        { name: 'Scale', value: 100 },
        { name: 'Scale Width', value: 100 },
        { name: 'Uniform Scale', value: true },
        { name: 'Rotation', value: 0 },
        { name: 'Anchor Point', value: centre },
        { name: 'Anti-flicker Filter', value: 0 },
      ]),
      component(rules, MATCH.timeRemapping, 'Time Remapping', [{ name: 'Speed', value: 100 }]),
    ],
    refuse,
  );
}

/** VideoFilterFactory.createComponent: a filter not yet in any chain. */
export async function createFilter(rules: ActionMaker, matchName: unknown): Promise<FakeComponent> {
  if (typeof matchName !== 'string') throw new Error('Illegal Parameter type');
  const filter = FILTERS[matchName];
  if (!filter) throw new Error(`No video filter with match name ${matchName}`);
  return component(rules, matchName, filter.name, filter.params);
}

function copyValue(value: ParamValue): ParamValue {
  return typeof value === 'object' ? { ...value } : value;
}
