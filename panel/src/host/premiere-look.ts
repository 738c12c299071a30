// The original clip's look, read from its component chain and given to the placed result, so that a 4K clip scaled
// to 50 % in an HD sequence comes back at 50 %, cropped and faded as it was.
//
// Carried: the parameters of the intrinsic Motion and Opacity components (position, scale, rotation, anchor,
// opacity, blend mode) and of every filter the editor applied (Crop, blurs, colour effects…), each filter made anew
// through VideoFilterFactory and appended in the original's order. Two undo steps after the placement: the filters
// appended, then every value set. Not carried, and named on the job card instead:
// parameters that vary over time (keyframes), values Premiere cannot hand back through a keyframe (createKeyframe
// "throws if the passed in value is not compatible", e.g. a Lumetri look), filters it cannot create. Everything is
// read back after the transaction, and a value that did not take is reported, not assumed.
//
// The match names of the intrinsic components are not in Adobe's UXP documentation; these are the ones Premiere's
// ExtendScript DOM reports (Opacity, Motion, Time Remapping at the head of every video clip's chain). A clip that went
// through the render path already has its look baked into the render, so nothing is carried there.

import type {
  ComponentParam,
  Keyframe,
  premierepro,
  Project,
  VideoClipTrackItem,
  VideoFilterComponent,
} from '@adobe/premierepro';
import { add, messageOf, transact } from './premiere-edit';

export const MOTION = 'AE.ADBE Motion';
export const OPACITY = 'AE.ADBE Opacity';
export const TIME_REMAPPING = 'AE.ADBE Time Remapping';
const INTRINSIC = [OPACITY, MOTION, TIME_REMAPPING];

export const UNDO_EFFECTS = "Reshoot: add the original's effects to the result";
export const UNDO_LOOK = "Reshoot: give the result the original's look";

type Value = Awaited<ReturnType<ComponentParam['getValueAtTime']>>;

interface LookParam {
  index: number;
  name: string;
  value: Value;
  timeVarying: boolean;
}

export interface LookComponent {
  matchName: string;
  name: string;
  params: LookParam[];
}

/**
 * The component chain of a video track item, with each parameter's value (its start value where it is keyed);
 * only the components named in `only` where it is given (a Lumetri effect alone has about a hundred parameters).
 */
export async function readLook(
  project: Project,
  item: VideoClipTrackItem,
  only?: readonly string[],
): Promise<LookComponent[]> {
  const chain = await item.getComponentChain();
  // Adobe's keyframe sample looks components and parameters up inside lockedAccess; the values are read after it.
  const found: Array<{ component: ReturnType<typeof chain.getComponentAtIndex>; params: ComponentParam[] }> = [];
  project.lockedAccess(() => {
    for (let i = 0; i < chain.getComponentCount(); i++) {
      const component = chain.getComponentAtIndex(i);
      const params: ComponentParam[] = [];
      for (let j = 0; j < component.getParamCount(); j++) params.push(component.getParam(j));
      found.push({ component, params });
    }
  });
  const look: LookComponent[] = [];
  for (const { component, params } of found) {
    const [matchName, name] = await Promise.all([component.getMatchName(), component.getDisplayName()]);
    if (only && !only.includes(matchName)) {
      look.push({ matchName, name, params: [] });
      continue;
    }
    const read: LookParam[] = [];
    for (const [index, param] of params.entries()) {
      read.push({
        index,
        name: param.displayName,
        value: (await param.getStartValue()).value.value,
        timeVarying: param.isTimeVarying(),
      });
    }
    look.push({ matchName, name, params: read });
  }
  return look;
}

/** Time remapping that changes what plays: speed keyframes, or a speed other than 100 %. */
export function remapsTime(look: LookComponent[]): boolean {
  const remap = look.find((c) => c.matchName === TIME_REMAPPING);
  return !!remap && remap.params.some((p) => p.timeVarying || (typeof p.value === 'number' && p.value !== 100));
}

/**
 * Gives `target` the look of the original; returns what could not be carried, each as a line for the job card, and
 * how many undo steps it took (0–2).
 * Filters are appended in one step (Adobe types a new filter as a VideoFilterComponent with no parameters, so its
 * values can be set only once it is in the chain), then every value is set in a second. Time remapping is never
 * carried: a clip with it went through the render path.
 */
export async function applyLook(
  ppro: premierepro,
  project: Project,
  target: VideoClipTrackItem,
  original: LookComponent[],
): Promise<{ notCarried: string[]; undoSteps: number }> {
  const notCarried: string[] = [];
  let undoSteps = 0;
  const chain = await target.getComponentChain();

  const wanted = original.filter((c) => !INTRINSIC.includes(c.matchName));
  const made: Array<{ look: LookComponent; filter: VideoFilterComponent }> = [];
  for (const component of wanted) {
    try {
      made.push({ look: component, filter: await ppro.VideoFilterFactory.createComponent(component.matchName) });
    } catch (err) {
      notCarried.push(`${component.name}: Premiere could not create it here (${messageOf(err)}); re-apply it`);
    }
  }
  let appended: LookComponent[] = made.map((m) => m.look);
  if (made.length > 0) {
    const added = transact(project, UNDO_EFFECTS, (ca) => {
      for (const { filter, look } of made) add(ca, chain.createAppendComponentAction(filter), `add ${look.name}`);
    });
    if (!added.ok) {
      notCarried.push(`${made.map((m) => m.look.name).join(', ')} (${added.reason}): re-apply by hand`);
      appended = [];
    } else undoSteps++;
  }

  // The target as it is now, each original component paired with its counterpart by match name and order.
  const current = await readLook(project, target);
  const params: ComponentParam[][] = [];
  project.lockedAccess(() => {
    for (let i = 0; i < chain.getComponentCount(); i++) {
      const component = chain.getComponentAtIndex(i);
      const list: ComponentParam[] = [];
      for (let j = 0; j < component.getParamCount(); j++) list.push(component.getParam(j));
      params.push(list);
    }
  });
  const used = new Set<number>();
  const counterpart = (matchName: string): number => {
    const index = current.findIndex((c, i) => !used.has(i) && c.matchName === matchName);
    if (index >= 0) used.add(index);
    return index;
  };

  const sets: Array<{ name: string; param: ComponentParam; value: Value; keyframe: Keyframe }> = [];
  const carry = (component: LookComponent): void => {
    const at = counterpart(component.matchName);
    if (at < 0) {
      notCarried.push(`${component.name}: the result has no ${component.name} to set`);
      return;
    }
    const keyed = component.params.filter((p) => p.timeVarying).map((p) => p.name);
    if (keyed.length > 0) notCarried.push(`${component.name} keyframes (${keyed.join(', ')}): set them again by hand`);
    const opaque: string[] = [];
    for (const p of component.params) {
      const param = params[at]?.[p.index];
      const now = current[at].params.find((q) => q.index === p.index);
      if (p.timeVarying || !param || (now && sameValue(now.value, p.value))) continue;
      try {
        // Made outside the lock, so that one value Premiere cannot take back does not sink the others.
        sets.push({
          name: `${component.name} ${p.name}`,
          param,
          value: p.value,
          keyframe: param.createKeyframe(p.value),
        });
      } catch {
        opaque.push(p.name);
      }
    }
    if (opaque.length > 0) notCarried.push(`${component.name} (${opaque.join(', ')}): re-apply it`);
  };
  for (const component of original)
    if (component.matchName === OPACITY || component.matchName === MOTION) carry(component);
  for (const component of appended) carry(component);

  if (sets.length === 0) return { notCarried, undoSteps };
  const done = transact(project, UNDO_LOOK, (ca) => {
    for (const { param, keyframe, name } of sets) add(ca, param.createSetValueAction(keyframe, true), `set ${name}`);
  });
  if (!done.ok) {
    notCarried.unshift(`the original's look (${done.reason}): set Motion, Opacity and effects by hand`);
    return { notCarried, undoSteps };
  }
  undoSteps++;
  for (const w of sets) {
    if (!sameValue((await w.param.getStartValue()).value.value, w.value))
      notCarried.push(`${w.name}: Premiere did not take the value; set it by hand`);
  }
  return { notCarried, undoSteps };
}

/** Points and colours are host objects: compared by their fields. */
function sameValue(a: Value, b: Value): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return a === b;
  const fields = ['x', 'y', 'red', 'green', 'blue', 'alpha'] as const;
  const field = (v: object, k: string): unknown => (v as Record<string, unknown>)[k];
  return fields.every((k) => field(a, k) === field(b, k));
}
