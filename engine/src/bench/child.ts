// One benchmark case in a process of its own: peak RSS (process.resourceUsage().maxRSS) is a high-water mark for the
// life of a process, so only a fresh process per case gives each case its own figure. Runs whole jobs through the
// same planJob/runJob/PipelineWorker path as the server. Spec as JSON in argv[2]; result as JSON on the last line.
import * as path from 'node:path';
import { JobRequest, type JobRequestInput, type JobResult } from '../api/schemas';
import { InversionCache } from '../store/inversion-cache';
import { planJob, runJob } from '../jobs/runner';
import type { SessionSettings } from '../models/providers';
import { probeGpuProviders } from '../models/provider-probe';
import { PipelineWorker } from '../worker/pipeline-worker';

export interface ChildSpec {
  /**
   * Only try each GPU execution provider this build lists on this model's UNet (in a child, so ORT's and Dawn's own
   * stderr lines about missing drivers stay out of the report).
   */
  probeProviders?: boolean;
  modelDir: string;
  settings: SessionSettings;
  /** Run in order on one worker; with cacheDir, a later job over the same range reuses the inversion. */
  jobs: JobRequestInput[];
  cacheDir?: string;
}

export interface ChildJob {
  frames: number;
  workingSize: { width: number; height: number };
  unetEvaluations: number;
  inversionCacheHit: boolean;
  timings: NonNullable<JobResult['timings']>;
}

export interface ChildResult {
  provider: string;
  providerFallbacks: string[];
  loadMs: number;
  jobs: ChildJob[];
  /** Peak resident set of this process (main thread, compute worker, ORT arenas), in MiB. */
  maxRssMb: number;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as ChildSpec;
  if (spec.probeProviders) {
    console.log(JSON.stringify(await probeGpuProviders(path.join(spec.modelDir, 'unet', 'model.onnx'))));
    return;
  }
  const t0 = performance.now();
  const worker = await PipelineWorker.start(spec.modelDir, spec.settings);
  const loadMs = performance.now() - t0;
  const info = worker.info;
  const cache = spec.cacheDir ? new InversionCache(spec.cacheDir, 8 * 1024 ** 3) : undefined;
  const jobs: ChildJob[] = [];
  try {
    for (const input of spec.jobs) {
      const req = JobRequest.parse(input);
      const plan = await planJob(req, worker.info, req.output!.path!);
      const r = await runJob(req, plan, { worker, cache, seed: req.seed ?? 1, onProgress: () => undefined });
      jobs.push({
        frames: r.frames,
        workingSize: r.workingSize,
        unetEvaluations: r.unetEvaluations,
        inversionCacheHit: r.inversionCacheHit,
        timings: r.timings!,
      });
    }
  } finally {
    await worker.terminate();
  }
  const result: ChildResult = {
    provider: info.provider,
    providerFallbacks: info.providerFallbacks,
    loadMs,
    jobs,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  };
  console.log(JSON.stringify(result));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
