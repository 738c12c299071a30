// Execution providers. onnxruntime-node does not fall back by itself: a session created with ['cuda', 'cpu'] on a
// machine without the CUDA libraries throws instead of running on CPU. So we try what was asked, then CPU, and
// always say which provider a session really uses.
import * as os from 'node:os';
import * as ort from './ort';

export const PROVIDERS = ['cpu', 'cuda', 'dml', 'coreml', 'webgpu'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

export interface SessionSettings {
  /** In order of preference; CPU is always tried last. */
  providers?: ProviderName[];
  /** ORT intra-op threads; defaults to the machine's cores. */
  threads?: number;
  /** Expose the UNet's last decoder features for correspondences (onnx/passes/feature-tap.ts); default true. */
  decoderFeatures?: boolean;
  /**
   * Self-attention in this many parts of the query axis (onnx/passes/attention-slicing.ts): peak memory of the
   * scores falls by that factor, results are unchanged. 1 = whole; absent = 8 for models whose native latent is
   * 64×64 or larger, else whole (models/sd-model.ts).
   */
  attentionSlices?: number;
  /** Folder for rewritten graphs (onnx/graph-cache.ts); default `<data dir>/graph-cache`, null = no cache. */
  graphCache?: string | null;
}

export interface OpenedSession {
  session: ort.InferenceSession;
  provider: ProviderName;
  /** Why a requested provider was not used, one line per provider that failed. */
  fallbacks: string[];
}

export function parseProviders(value: string): ProviderName[] {
  const names = value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const n of names) {
    if (!(PROVIDERS as readonly string[]).includes(n)) {
      throw new Error(`unknown execution provider "${n}"; choose from ${PROVIDERS.join(', ')}`);
    }
  }
  return names as ProviderName[];
}

/** A graph held in memory (e.g. rewritten), whose external weights, if any, are files in `dir`. */
export interface GraphInMemory {
  bytes: Uint8Array;
  dir: string;
  /** For messages: the file the graph came from. */
  file: string;
}

export async function openSession(source: string | GraphInMemory, settings: SessionSettings = {}): Promise<OpenedSession> {
  const file = typeof source === 'string' ? source : source.file;
  const wanted = [...(settings.providers ?? []), 'cpu' as const].filter((p, i, all) => all.indexOf(p) === i);
  const threads = settings.threads ?? os.availableParallelism();
  const fallbacks: string[] = [];
  for (const provider of wanted) {
    try {
      const options: ort.InferenceSession.SessionOptions = {
        ...providerOptions(provider),
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        // ORT's pool threads spin between parallel sections by default. Beside ffmpeg's decode and encode (which the
        // runner overlaps with compute), Premiere and anything else running, spinning threads burn the cores those
        // need: on a busy 2-core machine, not spinning made UNet calls 25–50 % faster (docs/BENCHMARKS.md).
        extra: {
          session: {
            intra_op: { allow_spinning: '0' },
            inter_op: { allow_spinning: '0' },
            // A graph loaded from memory has no folder of its own to resolve external weight files against.
            ...(typeof source === 'string' ? {} : { model_external_initializers_file_folder_path: source.dir }),
          },
        },
        // A provider that cannot load is reported once through `fallbacks`; ORT's own error log would repeat it per model.
        logSeverityLevel: provider === 'cpu' ? 2 : 4,
      };
      const session = typeof source === 'string' ? await ort.InferenceSession.create(source, options) : await ort.InferenceSession.create(source.bytes, options);
      return { session, provider, fallbacks };
    } catch (err) {
      const message = firstLine(err);
      if (provider === 'cpu') throw new Error(`${file}: ONNX Runtime could not load this model: ${message}`, { cause: err });
      fallbacks.push(`${provider}: ${message}`);
    }
  }
  throw new Error('unreachable: cpu is always tried');
}

/** CoreML's flag for the ML Program model format (coreml_provider_factory.h: COREML_FLAG_CREATE_MLPROGRAM). */
const COREML_FLAG_CREATE_MLPROGRAM = 0x010;

/**
 * Per-provider settings that matter for SD-size graphs, each from ONNX Runtime's execution-provider documentation:
 * - dml: "The DirectML execution provider does not support the use of memory pattern optimizations or parallel
 *   execution in onnxruntime", so both are off (DirectML-ExecutionProvider, Configuration Options).
 * - cpu: no memory pattern, by measurement (below).
 * - coreml: the ML Program format (Core ML 5+, macOS 12+) instead of the older NeuralNetwork format, which lacks ops and
 *   float16 paths a diffusion UNet uses; `coreMlFlags` is how the Node binding takes it (CoreML-ExecutionProvider,
 *   and onnxruntime-common's CoreMLExecutionProviderOption).
 * Not checked on either platform here (no Windows or Mac in CI); `reshoot doctor` shows whether the provider opens.
 */
export function providerOptions(provider: ProviderName): Pick<
  ort.InferenceSession.SessionOptions,
  'executionProviders' | 'enableMemPattern' | 'executionMode'
> {
  switch (provider) {
    case 'dml':
      return { executionProviders: ['dml'], enableMemPattern: false, executionMode: 'sequential' };
    case 'coreml':
      return { executionProviders: [{ name: 'coreml', coreMlFlags: COREML_FLAG_CREATE_MLPROGRAM }] };
    case 'cpu':
      // The memory pattern pre-plans one block per input shape and keeps it beside the arena: on sd-bench at 512² it
      // added 0.9 GB to a 4-frame edit's peak (3.32 → 2.38 GB without it) and saved no time (docs/BENCHMARKS.md).
      return { executionProviders: ['cpu'], enableMemPattern: false };
    default:
      return { executionProviders: [provider] };
  }
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0].trim();
}
