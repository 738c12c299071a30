// CLIP metrics, only when the user supplies a CLIP model as ONNX: nothing is downloaded, and without a model the
// report says so instead of printing a number. The expected layout is what `optimum-cli export onnx --model
// openai/clip-vit-base-patch32 DIR` writes: DIR/model.onnx with inputs input_ids, attention_mask, pixel_values and
// outputs text_embeds, image_embeds, plus the tokenizer files (vocab.json + merges.txt, or tokenizer.json) and
// preprocessor_config.json beside it.
//
// Figures (plain cosine similarities, not ×100 logits: backbones and scalings differ between papers anyway):
//   frameConsistency = mean over consecutive pairs of cos(E(frame t), E(frame t+1))   (FlowVid / Rerender style)
//   textAlignment    = mean over frames of cos(E(frame t), T(prompt))
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from '../models/ort';
import type { ImageBatch } from '../diffusion/images';
import { ClipTokenizer, idsTensorData } from '../models/tokenizer';

export const NO_CLIP_MODEL = 'skipped: no CLIP model given (pass --clip-model DIR with an ONNX CLIP export)';

export interface ClipScores {
  frameConsistency: number;
  textAlignment: number;
}

interface Preprocess {
  size: number;
  mean: [number, number, number];
  std: [number, number, number];
}

function readPreprocess(dir: string): Preprocess {
  const file = path.join(dir, 'preprocessor_config.json');
  const fallback: Preprocess = {
    size: 224,
    mean: [0.48145466, 0.4578275, 0.40821073],
    std: [0.26862954, 0.26130258, 0.27577711],
  };
  if (!fs.existsSync(file)) return fallback;
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    crop_size?: number | { height?: number };
    image_mean?: number[];
    image_std?: number[];
  };
  const crop = typeof j.crop_size === 'number' ? j.crop_size : j.crop_size?.height;
  return {
    size: crop ?? fallback.size,
    mean: (j.image_mean as Preprocess['mean']) ?? fallback.mean,
    std: (j.image_std as Preprocess['std']) ?? fallback.std,
  };
}

/** Shorter side to `size` (bilinear), centre crop to size², CLIP normalisation; [n, 3, size, size]. */
export function clipPixels(frames: ImageBatch, p: Preprocess): Float32Array {
  const { n, height: H, width: W } = frames;
  const S = p.size;
  const scale = Math.min(H, W) / S;
  const offX = (W / scale - S) / 2;
  const offY = (H / scale - S) / 2;
  const out = new Float32Array(n * 3 * S * S);
  const hw = H * W;
  for (let f = 0; f < n; f++) {
    for (let c = 0; c < 3; c++) {
      const plane = (f * 3 + c) * hw;
      for (let y = 0; y < S; y++) {
        const sy = Math.min(H - 1, Math.max(0, (y + offY + 0.5) * scale - 0.5));
        const y0 = Math.floor(sy);
        const y1 = Math.min(H - 1, y0 + 1);
        const fy = sy - y0;
        for (let x = 0; x < S; x++) {
          const sx = Math.min(W - 1, Math.max(0, (x + offX + 0.5) * scale - 0.5));
          const x0 = Math.floor(sx);
          const x1 = Math.min(W - 1, x0 + 1);
          const fx = sx - x0;
          const d = frames.data;
          const v =
            (1 - fy) * ((1 - fx) * d[plane + y0 * W + x0] + fx * d[plane + y0 * W + x1]) +
            fy * ((1 - fx) * d[plane + y1 * W + x0] + fx * d[plane + y1 * W + x1]);
          out[((f * 3 + c) * S + y) * S + x] = ((v + 1) / 2 - p.mean[c]) / p.std[c];
        }
      }
    }
  }
  return out;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb + 1e-20);
}

export class ClipScorer {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: ClipTokenizer,
    private readonly pre: Preprocess,
  ) {}

  static async open(dir: string): Promise<ClipScorer> {
    const file = path.join(dir, 'model.onnx');
    if (!fs.existsSync(file))
      throw new Error(
        `${file}: missing; --clip-model takes a folder with a CLIP model.onnx (optimum-cli export onnx --model openai/clip-vit-base-patch32 DIR)`,
      );
    const session = await ort.InferenceSession.create(file);
    for (const name of ['input_ids', 'pixel_values'])
      if (!session.inputNames.includes(name))
        throw new Error(`${file}: no input "${name}"; expected a CLIP export with input_ids and pixel_values`);
    for (const name of ['text_embeds', 'image_embeds'])
      if (!session.outputNames.includes(name))
        throw new Error(`${file}: no output "${name}"; expected a CLIP export with text_embeds and image_embeds`);
    return new ClipScorer(session, ClipTokenizer.fromFolder(dir), readPreprocess(dir));
  }

  async score(frames: ImageBatch, prompt: string): Promise<ClipScores> {
    const enc = this.tokenizer.encode(prompt);
    const L = enc.ids.length;
    const S = this.pre.size;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', idsTensorData([enc.ids], 'int64'), [1, L]),
      pixel_values: new ort.Tensor('float32', clipPixels(frames, this.pre), [frames.n, 3, S, S]),
    };
    if (this.session.inputNames.includes('attention_mask'))
      feeds.attention_mask = new ort.Tensor('int64', idsTensorData([enc.attentionMask], 'int64'), [1, L]);
    const out = await this.session.run(feeds);
    const img = out.image_embeds.data as Float32Array;
    const txt = out.text_embeds.data as Float32Array;
    const D = img.length / frames.n;
    const emb = (i: number) => img.subarray(i * D, (i + 1) * D);
    let cons = 0;
    for (let t = 0; t + 1 < frames.n; t++) cons += cosine(emb(t), emb(t + 1));
    let align = 0;
    for (let t = 0; t < frames.n; t++) align += cosine(emb(t), txt);
    return { frameConsistency: frames.n > 1 ? cons / (frames.n - 1) : NaN, textAlignment: align / frames.n };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
