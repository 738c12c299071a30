// TokenFlow's keyframe choice (editing/stages/token-flow.ts): one pivot inside each group of frames, drawn anew each
// step but the same for the same step (a job is reproducible), and each frame's two keyframes and weights.
import { bracket, pivots } from '../../engine/src/editing/stages/token-flow';

describe('TokenFlow keyframes', () => {
  it('draws one pivot inside each group, the same for the same step, and moves them between steps', () => {
    const steps = Array.from({ length: 10 }, (_, s) => pivots(20, 8, s + 1));
    for (const keys of steps) {
      expect(keys).toHaveLength(3);
      keys.forEach((k, g) => {
        expect(k).toBeGreaterThanOrEqual(8 * g);
        expect(k).toBeLessThan(Math.min(8 * (g + 1), 20));
      });
    }
    expect(pivots(20, 8, 3)).toEqual(steps[2]);
    expect(new Set(steps.map((k) => k.join())).size).toBeGreaterThan(5);
    expect(pivots(5, 1, 1)).toEqual([0, 1, 2, 3, 4]);
  });

  it('blends the two keyframes around a frame linearly in time, and holds the nearest one at the ends', () => {
    const keys = [2, 10, 14];
    expect(bracket(keys, 0)).toEqual({ at: [0, 0], weight: [1, 0] });
    expect(bracket(keys, 2)).toEqual({ at: [0, 0], weight: [1, 0] });
    expect(bracket(keys, 4)).toEqual({ at: [0, 1], weight: [0.75, 0.25] });
    expect(bracket(keys, 10)).toEqual({ at: [1, 2], weight: [1, 0] });
    expect(bracket(keys, 13)).toEqual({ at: [1, 2], weight: [0.25, 0.75] });
    expect(bracket(keys, 19)).toEqual({ at: [2, 2], weight: [1, 0] });
  });
});
