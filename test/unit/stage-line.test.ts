// The panel's one-line state of a job says which render node runs it when the engine hands jobs to a farm.
import type { Job } from '../../engine/src/api/schemas';
import { stageLine } from '../../panel/src/ui/format';

const base = {
  id: 'a1',
  createdAt: '2026-12-07T12:00:00.000Z',
  request: {} as Job['request'],
  seed: 1,
  outputPath: '/out.mp4',
  warnings: [],
  restarts: 0,
} satisfies Partial<Job>;

it('names the render node while the job runs, once it is done or failed, and nothing for a local job', () => {
  const running: Job = {
    ...base,
    state: 'running',
    progress: { stage: 'inverting', fraction: 0.3, step: 3, steps: 10 },
    worker: { id: 'gpu-07-4121', host: 'gpu-07' },
  };
  expect(stageLine(running)).toMatch(/step 3\/10 · on gpu-07$/);
  expect(stageLine({ ...running, worker: undefined })).toMatch(/step 3\/10$/);
  const done: Job = {
    ...running,
    state: 'succeeded',
    progress: { stage: 'done', fraction: 1 },
    result: { seconds: 12.5, frames: 24 } as Job['result'],
  };
  expect(stageLine(done)).toMatch(/24 frames · on gpu-07$/);
  const failed: Job = { ...running, state: 'failed', error: { title: 'Out of GPU memory', detail: '…' } };
  expect(stageLine(failed)).toBe('Out of GPU memory · on gpu-07');
  expect(stageLine({ ...failed, worker: undefined })).toBe('Out of GPU memory');
});
