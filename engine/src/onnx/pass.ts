// What a graph pass is: a pure function from a decoded graph (weights left where they are, see graph-file.ts) and
// the UNet's attention sites to a rewritten graph plus the ports it added: extra inputs, each with the neutral value
// that makes the rewritten graph compute exactly what the original did, and extra outputs. A method (a stage in the
// editing loop) feeds and reads those ports by name; nothing else about the rewrite leaks out of onnx/.
import type { onnx } from 'onnx-proto';
import type { AttentionSite } from './attention-sites';

export type PortType = 'float32' | 'float16' | 'int64';

export interface InputPort {
  /** Graph input name (unique; passes prefix theirs with `reshoot/<pass>/`). */
  name: string;
  type: PortType;
  /** Shape of the neutral value; any shape that broadcasts against the tensor it modifies is accepted. */
  neutralShape: number[];
  /** Every element of the neutral value. */
  neutralValue: number;
  /** The attention site this port belongs to, when it belongs to one (diffusers module path). */
  site?: string;
  /** What the stage feeding it must know: e.g. "weight of the injected keys, 0 = off". */
  role: string;
}

export interface OutputPort {
  name: string;
  type: PortType;
  /** The graph tensor the port exposes, when it exposes one that exists in the original graph. */
  tensor?: string;
  site?: string;
  role: string;
}

export interface Ports {
  inputs: InputPort[];
  outputs: OutputPort[];
}

export type PassResult = { ok: true; model: onnx.ModelProto; ports: Ports } | { ok: false; reason: string };

export interface GraphPass<Options = Record<string, never>> {
  /** Stable name: part of the rewritten-graph cache key and of port names. */
  readonly name: string;
  /**
   * Must not mutate `model` (passes compose: the next pass gets this one's result); returns a new ModelProto that may
   * share unchanged sub-messages (initializers in particular) with the input.
   */
  apply(model: onnx.ModelProto, sites: readonly AttentionSite[], options: Options): PassResult;
}
