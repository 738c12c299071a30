// Cost of full-resolution compositing (media/composite.ts) per frame, on the main thread, in ms.
// Usage: npx tsc -p tsconfig.json && node dist/scripts/composite-cost.js [--frames N]
// Each case: upscale the working-size delta (and a matte) to the display size and add it to a raw source frame.
import { compositeFrame } from '../engine/src/media/composite';
import { workingSize } from '../engine/src/media/working-size';

const frames = Number(process.argv[process.argv.indexOf('--frames') + 1]) || 10;

function run(
  W: number,
  H: number,
  native: number,
  multiple: number,
  bitDepth: 8 | 16,
  matte: 'none' | 'all' | 'box',
): number {
  const { width: w, height: h } = workingSize(W, H, native, multiple);
  const delta = {
    n: 1,
    height: h,
    width: w,
    data: Float32Array.from({ length: 3 * h * w }, (_, i) => Math.sin(i) * 0.1),
  };
  const m =
    matte === 'none'
      ? undefined
      : {
          height: h / 8,
          width: w / 8,
          data: Float32Array.from({ length: (h / 8) * (w / 8) }, (_, i) =>
            matte === 'all'
              ? 0.5 + 0.5 * Math.cos(i)
              : Math.floor(i / (w / 8)) > h / 32 && Math.floor(i / (w / 8)) < h / 16
                ? 1
                : 0,
          ),
        };
  const frame = bitDepth === 16 ? new Uint16Array(W * H * 3).fill(30000) : new Uint8Array(W * H * 3).fill(120);
  compositeFrame(frame, delta, 0, m, { width: W, height: H, bitDepth }); // warm-up
  const t = performance.now();
  for (let k = 0; k < frames; k++) compositeFrame(frame, delta, 0, m, { width: W, height: H, bitDepth });
  return (performance.now() - t) / frames;
}

const rows: string[] = [];
for (const [W, H] of [
  [1920, 1080],
  [3840, 2160],
] as const) {
  for (const [model, native, multiple] of [
    ['oracle', 128, 8],
    ['SD 1.5', 512, 64],
  ] as const) {
    for (const bitDepth of [8, 16] as const) {
      for (const matte of ['none', 'all', 'box'] as const) {
        const ms = run(W, H, native, multiple, bitDepth, matte);
        rows.push(
          `${W}x${H}\t${model} (${workingSize(W, H, native, multiple).width}x${workingSize(W, H, native, multiple).height})\t${bitDepth === 16 ? 'rgb48' : 'rgb24'}\tmatte ${matte}\t${ms.toFixed(1)} ms/frame`,
        );
        console.log(rows[rows.length - 1]);
      }
    }
  }
}
