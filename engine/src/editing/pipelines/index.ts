// The edit methods the worker can run, by task kind. A new method is a pipeline file and a line here; the worker's
// task type and dispatch follow from this table.
import type { ImageBatch } from '../../diffusion/images';
import type { DiffusionModel } from '../../models/sd-model';
import type { MethodOutput, RunHooks, TrajectoryStore } from '../types';
import { fastEdit } from './fast-edit';
import { inversionMethod } from './inversion-edit';
import { sdedit } from './sdedit';

export const EDIT_METHODS = {
  'inversion-edit': inversionMethod,
  sdedit,
  fast: fastEdit,
} satisfies Record<
  string,
  (
    model: DiffusionModel,
    frames: ImageBatch,
    params: never,
    hooks: RunHooks,
    store?: TrajectoryStore,
  ) => Promise<MethodOutput>
>;

export type MethodKind = keyof typeof EDIT_METHODS;
export type MethodParams<K extends MethodKind> = Parameters<(typeof EDIT_METHODS)[K]>[2];

/** A method with its frames and parameters; the table's types tie each kind to its parameters. */
export type MethodCall = { [K in MethodKind]: { kind: K; frames: ImageBatch; params: MethodParams<K> } }[MethodKind];

export function runMethod(
  call: MethodCall,
  model: DiffusionModel,
  hooks: RunHooks,
  store?: TrajectoryStore,
): Promise<MethodOutput> {
  // TypeScript cannot follow the kind–parameters correlation through the union; MethodCall guarantees it.
  const run = EDIT_METHODS[call.kind] as (
    m: DiffusionModel,
    f: ImageBatch,
    p: MethodCall['params'],
    h: RunHooks,
    s?: TrajectoryStore,
  ) => Promise<MethodOutput>;
  return run(model, call.frames, call.params, hooks, store);
}
