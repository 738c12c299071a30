// What the cross-frame correspondences (mask smoothing, latent correction) are computed from. GenVideo matches frames
// by the UNet's decoder features; where the loader could tap them (onnx/passes/feature-tap.ts) the source clip's
// features are taken once per chunk, otherwise the source's clean latents serve.
import { seededNoise } from '../../diffusion/random';
import { FEATURE_TAP_OUTPUT } from '../../onnx/passes/feature-tap';
import type { DiffusionModel } from '../../models/sd-model';
import type { EditContext, EditStage, SourceFeatures } from '../loop/stage';
import type { InvertedTrajectory } from '../types';

/**
 * DIFT (Tang et al. 2023) found SD's up-block features at t ≈ 261 the best for correspondence: late enough to keep
 * the layout, early enough to be semantic. The inverted trajectory already holds the clip at every level, so the
 * level nearest that timestep is used as is, with no fresh noise.
 */
const FEATURE_TIMESTEP = 261;
/** Decoder features have hundreds of channels; a fixed random projection keeps cosine similarities (Johnson–Lindenstrauss) at a bounded search cost. */
const PROJECTED_CHANNELS = 32;
const PROJECTION_SEED = 0x5eed;

/**
 * The stage: where the model's decoder features can be tapped, they replace the clean latents as what the
 * correspondences are searched in (computed only if a later stage asks).
 */
export const decoderFeatureStage = (): EditStage => ({
  name: 'decoder features',
  plan({ model, traj, params, state, checkStop }: EditContext) {
    if (model.info.decoderFeatures && traj.latents.length >= 2)
      state.provideFeatures(() => sourceFeatures(model, traj, params.batchSize, checkStop));
    return false;
  },
});

/** The source's decoder features, projected to a few channels. */
export async function sourceFeatures(
  model: DiffusionModel,
  traj: InvertedTrajectory,
  batchSize: number,
  checkStop: () => void,
): Promise<SourceFeatures> {
  const { n, channels: C, height: h, width: w } = traj;
  let level = 1;
  for (let k = 2; k < traj.timesteps.length; k++) {
    if (Math.abs(traj.timesteps[k] - FEATURE_TIMESTEP) < Math.abs(traj.timesteps[level] - FEATURE_TIMESTEP)) level = k;
  }
  const empty = (await model.encodePrompts([''])).data;
  const hw = h * w;
  let out: Float32Array | undefined;
  let projection: Float32Array | undefined;
  let dims = 0;
  for (let start = 0; start < n; start += batchSize) {
    checkStop();
    const count = Math.min(batchSize, n - start);
    const emb = new Float32Array(count * empty.length);
    for (let i = 0; i < count; i++) emb.set(empty, i * empty.length);
    const sample = traj.latents[level].subarray(start * C * hw, (start + count) * C * hw);
    const { outputs } = await model.predict(sample, count, h, w, traj.timesteps[level], emb, {
      outputs: [FEATURE_TAP_OUTPUT],
    });
    const f = { data: outputs[FEATURE_TAP_OUTPUT].data, channels: outputs[FEATURE_TAP_OUTPUT].dims[1] };
    if (f.data.length !== count * f.channels * hw) {
      throw new Error(
        `the UNet's decoder features [${outputs[FEATURE_TAP_OUTPUT].dims.join(', ')}] are not at the latent resolution ${w}x${h}`,
      );
    }
    if (!projection) {
      dims = Math.min(PROJECTED_CHANNELS, f.channels);
      projection = dims === f.channels ? undefined : seededNoise(PROJECTION_SEED, dims * f.channels);
      out = new Float32Array(n * dims * hw);
    }
    for (let i = 0; i < count; i++) {
      const src = f.data.subarray(i * f.channels * hw, (i + 1) * f.channels * hw);
      const dst = out!.subarray((start + i) * dims * hw, (start + i + 1) * dims * hw);
      if (!projection) dst.set(src);
      else project(src, f.channels, projection, dims, hw, dst);
    }
  }
  return { data: out!, channels: dims, kind: 'decoder features' };
}

/** dst[d, p] = Σ_c P[d, c] · src[c, p]. */
function project(
  src: Float32Array,
  channels: number,
  P: Float32Array,
  dims: number,
  hw: number,
  dst: Float32Array,
): void {
  const acc = new Float64Array(hw);
  for (let d = 0; d < dims; d++) {
    acc.fill(0);
    for (let c = 0; c < channels; c++) {
      const weight = P[d * channels + c];
      const plane = src.subarray(c * hw, (c + 1) * hw);
      for (let p = 0; p < hw; p++) acc[p] += weight * plane[p];
    }
    const row = dst.subarray(d * hw, (d + 1) * hw);
    for (let p = 0; p < hw; p++) row[p] = acc[p];
  }
}
