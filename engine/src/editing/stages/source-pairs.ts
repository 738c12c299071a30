// Structure lock and word swap hand the target branch what the source branch computes in the same UNet call: the
// source video's latent rides in the batch beside the target's (loop/inversion-loop.ts runs it for any stage that
// reads it), and the graph gathers the source items' tensors into the target items (onnx/passes/structure-lock.ts,
// the swap ports of cross-attention-maps.ts). This file says which item reads which.
//
// A target item reads the source item of the same frame whose prompt plays the same part: the conditional target
// (target prompt) the conditional source (source prompt), the unconditional target the unconditional source. That
// pairing keeps a same-prompt edit the identity: both members of each pair then see the same latent and prompt,
// so what is injected is what the target computed anyway. (PnP injects from a null-prompt source into both target
// halves; with guidance that would change a same-prompt edit.)
import type { PortTensor } from '../../models/sd-model';
import type { UnetCallInfo } from '../loop/stage';

export interface SourcePairs {
  /** Per batch item, the item whose tensors it reads (itself where it reads none). */
  source: number[];
  /** Per batch item, whether it reads the paired source item. */
  reads: boolean[];
}

/**
 * The pairs of one call. `which` "conditional": only the target prompt's item reads (prompt-to-prompt edits the
 * conditional half only); "both": the unconditional target item too.
 */
export function sourcePairs(
  call: UnetCallInfo,
  prompts: { prompt: string; sourcePrompt: string },
  which: 'conditional' | 'both',
): SourcePairs {
  const items = call.branches.length * call.count;
  const source = Array.from({ length: items }, (_, i) => i);
  const reads = new Array<boolean>(items).fill(false);
  const branchOf = (latent: 'source' | 'target', prompt: string) =>
    call.branches.findIndex((b) => b.latent === latent && b.prompt === prompt);
  const pair = (target: number, from: number) => {
    if (target < 0 || from < 0) return;
    for (let j = 0; j < call.count; j++) {
      source[target * call.count + j] = from * call.count + j;
      reads[target * call.count + j] = true;
    }
  };
  pair(branchOf('target', prompts.prompt), branchOf('source', prompts.sourcePrompt));
  if (which === 'both') pair(branchOf('target', ''), branchOf('source', ''));
  return { source, reads };
}

/** The pairs per row of a tensor whose first axis is items × `perItem` (folded heads: row = item·heads + head). */
export function sourceRows(pairs: SourcePairs, perItem: number): PortTensor {
  const rows = pairs.source.length * perItem;
  const data = new Float32Array(rows);
  pairs.source.forEach((s, i) => {
    for (let h = 0; h < perItem; h++) data[i * perItem + h] = s * perItem + h;
  });
  return { data, dims: [rows] };
}

/**
 * Per-row weights [rows, 1, …, 1, width] (`rank` axes): `row` (length `width`) for the rows of reading items, 0 for
 * the others.
 */
export function readerWeights(pairs: SourcePairs, perItem: number, rank: number, row: Float32Array): PortTensor {
  const rows = pairs.source.length * perItem;
  const width = row.length;
  const data = new Float32Array(rows * width);
  pairs.reads.forEach((reads, i) => {
    if (reads) for (let h = 0; h < perItem; h++) data.set(row, (i * perItem + h) * width);
  });
  return { data, dims: [rows, ...new Array<number>(rank - 2).fill(1), width] };
}
