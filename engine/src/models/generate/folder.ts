// Writes a generated pipeline in the diffusers/optimum ONNX folder layout, so generated models go through exactly
// the loader that real exports use.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SavedModel } from './onnx-builder';

export type ComponentName = 'text_encoder' | 'unet' | 'vae_encoder' | 'vae_decoder';

export interface GeneratedComponent {
  saved: SavedModel;
  config: Record<string, unknown>;
  /** External data file name next to model.onnx (optimum: model.onnx_data; legacy script and Olive: weights.pb). */
  dataFile?: string;
}

export interface GeneratedPipeline {
  modelIndex: Record<string, unknown>;
  schedulerConfig: Record<string, unknown>;
  /** File name -> contents, written into tokenizer/. */
  tokenizerFiles: Record<string, string>;
  components: Record<ComponentName, GeneratedComponent>;
  /** Extra files at the top of the folder (e.g. README.md describing the generated model). */
  extraFiles?: Record<string, string>;
}

export function writePipelineFolder(dir: string, p: GeneratedPipeline): void {
  fs.mkdirSync(dir, { recursive: true });
  writeJson(path.join(dir, 'model_index.json'), p.modelIndex);
  writeJson(path.join(dir, 'scheduler', 'scheduler_config.json'), p.schedulerConfig);
  for (const [name, text] of Object.entries(p.tokenizerFiles)) writeText(path.join(dir, 'tokenizer', name), text);
  for (const [name, c] of Object.entries(p.components)) {
    const sub = path.join(dir, name);
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, 'model.onnx'), c.saved.model);
    if (c.saved.data) {
      if (!c.dataFile) throw new Error(`${name}: model has external data but no dataFile name`);
      fs.writeFileSync(path.join(sub, c.dataFile), c.saved.data);
    }
    writeJson(path.join(sub, 'config.json'), c.config);
  }
  for (const [name, text] of Object.entries(p.extraFiles ?? {})) writeText(path.join(dir, name), text);
}

function writeJson(file: string, value: unknown): void {
  writeText(file, JSON.stringify(value, null, 2) + '\n');
}

function writeText(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}
