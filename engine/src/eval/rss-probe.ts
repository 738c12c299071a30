// Child-process entry of the peak-memory measurement (rss.ts): runs one whole job through the job runner — decode
// in chunks, edit in the compute worker, encode — and prints the process's peak resident set size. A process of its
// own per clip, so the figure is that job's alone (the worker thread's ONNX Runtime memory included; ffmpeg's
// processes are not part of it).
import { JobRequest, type JobProgress } from '../api/schemas';
import { CHUNK_FRAMES, planJob, runJob } from '../jobs/runner';
import { PipelineWorker } from '../worker/pipeline-worker';

export interface ProbeArgs {
  input: string;
  output: string;
  modelDir: string;
  prompt: string;
  sourcePrompt: string;
  steps: number;
  durationSec: number;
  threads?: number;
}

export interface ProbeResult {
  maxRssKiB: number;
  /** Largest resident set size (MiB) seen while editing each 16-frame stretch of the clip: whether memory levels off. */
  rssPerChunkMiB: number[];
  frames: number;
  seconds: number;
  unetEvaluations: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as ProbeArgs;
  const worker = await PipelineWorker.start(args.modelDir, { threads: args.threads });
  try {
    const req = JobRequest.parse({
      source: { path: args.input, in: 0, out: args.durationSec },
      prompt: args.prompt,
      sourcePrompt: args.sourcePrompt,
      mask: { type: 'auto' },
      steps: args.steps,
      guidance: 1,
      output: { path: args.output, overwrite: true },
    });
    const plan = await planJob(req, worker.info, args.output);
    const rssPerChunkMiB: number[] = [];
    const onProgress = (p: JobProgress) => {
      if (p.frame === undefined) return;
      const i = Math.floor(p.frame / CHUNK_FRAMES);
      rssPerChunkMiB[i] = Math.max(rssPerChunkMiB[i] ?? 0, Math.round(process.memoryUsage().rss / 2 ** 20));
    };
    const result = await runJob(req, plan, { worker, seed: 1, onProgress });
    // maxRSS is in kibibytes on Linux and macOS (getrusage); Node reports it as is.
    const out: ProbeResult = {
      maxRssKiB: process.resourceUsage().maxRSS,
      rssPerChunkMiB,
      frames: result.frames,
      seconds: result.seconds,
      unetEvaluations: result.unetEvaluations,
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await worker.terminate();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`rss-probe: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
