// Anchor-frame statistics: inside the mask, each frame's latent is given the anchor frame's per-channel mean and
// standard deviation (AdaIN-style), so the edited region cannot drift in colour or contrast from frame to frame.
// The inversion edit needs no shared noise (it starts from each frame's own inverted latent, deterministically);
// SDEdit already shares one seeded noise tensor across all frames (sdedit.ts).

export interface ChannelStats {
  mean: Float64Array;
  std: Float64Array;
  /** Total mask weight the statistics were taken over. */
  weight: number;
}

/** Per-channel mask-weighted mean and standard deviation of one frame [C, hw] under mask [hw]. */
export function maskedChannelStats(z: Float32Array, m: Float32Array, C: number, hw: number): ChannelStats {
  const mean = new Float64Array(C);
  const std = new Float64Array(C);
  let weight = 0;
  for (let p = 0; p < hw; p++) weight += m[p];
  if (weight <= 0) return { mean, std, weight };
  for (let c = 0; c < C; c++) {
    let s = 0;
    let s2 = 0;
    for (let p = 0; p < hw; p++) {
      const v = z[c * hw + p];
      s += m[p] * v;
      s2 += m[p] * v * v;
    }
    mean[c] = s / weight;
    std[c] = Math.sqrt(Math.max(0, s2 / weight - mean[c] * mean[c]));
  }
  return { mean, std, weight };
}

export interface AnchorOptions {
  /** Frame whose statistics the others take; default 0 (the chunk's first frame). */
  anchor?: number;
  /** Frames whose mask covers less than this many (weighted) pixels are left alone: too few for statistics. */
  minWeight?: number;
  /** Largest factor by which a frame's spread is scaled, either way; a guard against near-empty regions. */
  maxScale?: number;
}

/**
 * In place, for every frame t ≠ anchor and channel c:
 *   z ← z + m · (μ_a + (z − μ_t) · σ_a / σ_t − z)
 * with μ, σ the mask-weighted statistics of frame t and of the anchor under their own masks.
 */
export function alignToAnchor(z: Float32Array, mask: Float32Array, n: number, C: number, hw: number, o: AnchorOptions = {}): void {
  const a = o.anchor ?? 0;
  const minWeight = o.minWeight ?? 4;
  const maxScale = o.maxScale ?? 2;
  const per = C * hw;
  const ref = maskedChannelStats(z.subarray(a * per, (a + 1) * per), mask.subarray(a * hw, (a + 1) * hw), C, hw);
  if (ref.weight < minWeight) return;
  for (let t = 0; t < n; t++) {
    if (t === a) continue;
    const m = mask.subarray(t * hw, (t + 1) * hw);
    const zt = z.subarray(t * per, (t + 1) * per);
    const st = maskedChannelStats(zt, m, C, hw);
    if (st.weight < minWeight) continue;
    for (let c = 0; c < C; c++) {
      const scale = st.std[c] > 1e-8 ? Math.min(maxScale, Math.max(1 / maxScale, ref.std[c] / st.std[c])) : 1;
      for (let p = 0; p < hw; p++) {
        if (m[p] <= 0) continue;
        const v = zt[c * hw + p];
        const aligned = ref.mean[c] + (v - st.mean[c]) * scale;
        zt[c * hw + p] = v + m[p] * (aligned - v);
      }
    }
  }
}
