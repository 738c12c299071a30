// The submitting side of the burst benchmark (bench/burst.ts), in a process of its own as a script or render manager
// would be: `count` job submissions sent at once, each timed from send to the end of its answer. Spec as JSON in
// argv[2]; one JSON line on stdout: [{ status, ms }] in submission order.
import type { JobRequestInput } from '../api/schemas';

export interface BurstClientSpec {
  base: string;
  token: string;
  count: number;
  /** Submission i writes `${outputPrefix}-${i}.mp4`. */
  job: JobRequestInput;
  outputPrefix: string;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as BurstClientSpec;
  const headers = { Authorization: `Bearer ${spec.token}`, 'Content-Type': 'application/json' };
  const answers = await Promise.all(
    Array.from({ length: spec.count }, async (_, i) => {
      const body = JSON.stringify({ ...spec.job, output: { path: `${spec.outputPrefix}-${i}.mp4` } });
      const t0 = performance.now();
      try {
        const r = await fetch(`${spec.base}/v1/jobs`, { method: 'POST', headers, body });
        await r.arrayBuffer();
        return { status: r.status, ms: performance.now() - t0 };
      } catch {
        return { status: 0, ms: performance.now() - t0 };
      }
    }),
  );
  console.log(JSON.stringify(answers));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
