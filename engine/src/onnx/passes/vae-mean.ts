// A deterministic VAE encoder. optimum < 1.24 (and diffusers' old ONNX script) exported the encoder as
// `latent_dist.sample()`: the output `latent_sample` is mean + exp(0.5·logvar)·RandomNormalLike(…) computed inside
// the graph, so encoding the same frame twice gives two latents, and inversion-based editing drifts from frame to
// frame for no reason in the video. This pass REPLACES that output's value by the mean: the graph output keeps its
// name, dtype and shape, the Add that mixed in the noise becomes Identity(mean), and the draw and everything that
// only fed it are removed. Graphs with no draw (optimum ≥ 1.24's `latent_parameters` = mean ‖ logvar) are refused:
// there is nothing to do, the loader takes the first half of those channels.
import { onnx } from 'onnx-proto';
import { GraphIndex, isRandomOp, type Node } from '../graph-index';
import { editableCopy, makeNode, portType, pruneDead } from '../graph-edit';
import type { GraphPass, PassResult } from '../pass';

/** How far back from the output the draw may sit (the sampling is the encoder's last few ops). */
const DRAW_DEPTH = 16;
const MIX_DEPTH = 8;

interface Mix {
  output: string;
  /** The Add of mean and scaled noise. */
  add: Node;
  mean: string;
}

export const vaeMean: GraphPass = {
  name: 'vae-mean',
  apply(model: onnx.ModelProto): PassResult {
    const graph = model.graph;
    if (!graph) return { ok: false, reason: 'the VAE encoder file has no graph' };
    const g = new GraphIndex(graph);
    const outputs = (graph.output ?? []).map((o) => o.name ?? '').filter(Boolean);
    const sampled = outputs.find((o) => drawOf(g, o));
    if (!sampled) {
      const reason = `no random draw (RandomNormal/RandomNormalLike) behind the outputs ${outputs.join(', ')}`;
      return { ok: false, reason: `${reason}: the encoder is already deterministic` };
    }
    const mix = findMix(g, sampled, drawOf(g, sampled)!);
    if (typeof mix === 'string') return { ok: false, reason: mix };
    return replaceByMean(model, g, mix);
  },
};

function drawOf(g: GraphIndex, tensor: string): Node | undefined {
  return g.reaches(tensor, (n) => isRandomOp(n.opType), DRAW_DEPTH);
}

/**
 * From the output back to the Add whose one operand depends on the draw (σ·ε) and whose other does not (μ); casts
 * and scalings after it are followed along the operand that leads to the draw.
 */
function findMix(g: GraphIndex, output: string, draw: Node): Mix | string {
  const fromDraw = (t: string) => !!g.reaches(t, (n) => n === draw, Number.POSITIVE_INFINITY);
  let tensor = output;
  for (let hops = 0; hops < MIX_DEPTH; hops++) {
    const node = g.producer(tensor);
    if (!node) break;
    const inputs = (node.input ?? []).filter(Boolean);
    const noisy = inputs.filter(fromDraw);
    if (node.opType === 'Add' && inputs.length === 2 && noisy.length === 1) {
      return { output, add: node, mean: inputs.find((i) => i !== noisy[0])! };
    }
    if (noisy.length !== 1) break;
    tensor = noisy[0];
  }
  return (
    `the random draw behind ${output} is not added to a mean (expected mean + σ·ε): ` +
    'refusing to guess which tensor is the mean'
  );
}

function replaceByMean(model: onnx.ModelProto, g: GraphIndex, mix: Mix): PassResult {
  const type = portType(g.elemType(mix.output));
  if (!type) return { ok: false, reason: `${mix.output} has an element type no port carries` };
  const { model: out, graph } = editableCopy(model);
  const written = mix.add.output![0];
  graph.node = graph.node.map((n) => (n === mix.add ? makeNode('Identity', [mix.mean], written) : n));
  pruneDead(graph);
  const role = `posterior mean of the latent distribution (${mix.mean}), in place of the random draw the output held`;
  return { ok: true, model: out, ports: { inputs: [], outputs: [{ name: mix.output, type, role }] } };
}
