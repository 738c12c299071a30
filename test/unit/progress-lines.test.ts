// How a job's progress reads in the panel's card and on the CLI's line: the frames being worked on before the step
// (which starts over with every chunk), and a waiting job's place in the queue.
import type { Job, JobProgress } from '../../engine/src/api/schemas';
import { ProgressLine } from '../../engine/src/cli/progress-line';
import { eta, ordinal, stageLine } from '../../panel/src/ui/format';

const job = (state: Job['state'], progress: JobProgress): Job => ({
  id: 'a1',
  state,
  createdAt: '2026-12-07T12:00:00.000Z',
  request: {} as Job['request'],
  seed: 1,
  outputPath: '/out.mp4',
  progress,
  warnings: [],
  restarts: 0,
});

it('names the frames of the chunk and the step within it', () => {
  const p: JobProgress = {
    stage: 'inverting',
    fraction: 0.55,
    step: 2,
    steps: 4,
    frame: 16,
    frames: 40,
    frameRange: { first: 13, last: 32 },
  };
  expect(stageLine(job('running', p))).toBe('Inverting · frames 13–32 of 40 · step 2/4');
  // An engine from before frameRange: the frame counter as before.
  expect(stageLine(job('running', { stage: 'decoding latents', fraction: 0.5, frame: 8, frames: 40 }))).toBe(
    'Rendering frames · frame 8/40',
  );
});

it("says a waiting job's place in the queue", () => {
  const queued = (queuePosition?: number) => stageLine(job('queued', { stage: 'queued', fraction: 0, queuePosition }));
  expect(queued(1)).toBe('Waiting in the queue · next');
  expect(queued(2)).toBe('Waiting in the queue · 2nd in line');
  expect(queued(13)).toBe('Waiting in the queue · 13th in line');
  expect(queued(undefined)).toBe('Waiting in the queue');
  expect([1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].map(ordinal)).toEqual([
    '1st',
    '2nd',
    '3rd',
    '4th',
    '11th',
    '12th',
    '13th',
    '21st',
    '22nd',
    '101st',
    '111th',
  ]);
});

it("writes the CLI's line with the frames, the step and the queue place", () => {
  const lines: string[] = [];
  const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  const tty = process.stderr.isTTY;
  try {
    // A pipe or a file: one plain line per tenth.
    process.stderr.isTTY = false;
    const line = new ProgressLine();
    line.updateJob({ stage: 'queued', fraction: 0, queuePosition: 3 });
    line.updateJob({
      stage: 'inverting',
      fraction: 0.55,
      step: 2,
      steps: 4,
      frame: 16,
      frames: 40,
      frameRange: { first: 13, last: 32 },
      etaSec: 12,
    });
  } finally {
    process.stderr.isTTY = tty;
    write.mockRestore();
  }
  expect(lines).toEqual([
    '  0% queued, 3rd in the queue\n',
    ' 55% inverting, frames 13–32 of 40, step 2/4, ETA 12 s\n',
  ]);
});

it('counts the ETA down in ten-second steps under ten minutes, so it moves while the job does', () => {
  expect([45, 61, 95, 100, 134, 299, 599, 600, 1500].map(eta)).toEqual([
    'about 45 s left',
    'about 1 min left',
    'about 1 min 40 s left',
    'about 1 min 40 s left',
    'about 2 min 10 s left',
    'about 5 min left',
    'about 10 min left',
    'about 10 min left',
    'about 25 min left',
  ]);
});
