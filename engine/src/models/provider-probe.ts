// Which GPU execution providers this onnxruntime-node build lists, and which of them really open a session here.
// Listed is not usable: webgpu is bundled on Linux but needs a Vulkan adapter, CUDA needs libraries that npm does not
// install, DirectML needs a DirectX 12 GPU.
import * as ort from './ort';
import { openSession, type GraphInMemory, type ProviderName } from './providers';
import { GraphBuilder } from './generate/onnx-builder';

export interface ProviderProbe {
  /** Every backend this build lists, "(not bundled)" where its libraries are not in the package. */
  backends: string[];
  gpu: { name: string; usable: boolean; note: string }[];
}

const GPU_PROVIDERS: readonly string[] = ['cuda', 'dml', 'coreml', 'webgpu'];

export async function probeGpuProviders(model: string | GraphInMemory): Promise<ProviderProbe> {
  const listed = ort.listSupportedBackends();
  const gpu: ProviderProbe['gpu'] = [];
  for (const b of listed) {
    if (!GPU_PROVIDERS.includes(b.name)) continue;
    if (!b.bundled) {
      gpu.push({ name: b.name, usable: false, note: 'not bundled with this onnxruntime-node build' });
      continue;
    }
    const opened = await openSession(model, { providers: [b.name as ProviderName], threads: 1, graphCache: null });
    await opened.session.release();
    const usable = opened.provider === b.name;
    gpu.push({
      name: b.name,
      usable,
      note: usable ? 'session created' : opened.fallbacks.join('; ').replace(/^[a-z]+: /, ''),
    });
  }
  return { backends: listed.map((b) => `${b.name}${b.bundled ? '' : ' (not bundled)'}`), gpu };
}

/** A graph of one Add node: enough for a provider to initialise its device and claim a node. */
export function oneNodeGraph(): GraphInMemory {
  const g = new GraphBuilder('provider-probe');
  g.input('x', 'float32', [1, 4]);
  g.o('Add', ['x', g.scalar(1)], {}, 'y');
  g.output('y', 'float32', [1, 4]);
  return { bytes: g.save().model, dir: process.cwd(), file: 'provider probe graph' };
}
