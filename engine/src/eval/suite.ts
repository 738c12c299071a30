// The synthetic evaluation suites: layered scenes with exact masks, flow and occlusion (synthetic-scene.ts), edited
// red → blue with the oracle model. Textures are strong (σ 0.08, moving with their layer) and every frame carries
// independent sensor noise (σ 0.03): without that noise the oracle's edit of a rigidly moving texel is the same in
// every frame, the source has zero warp error and there is no flicker for any stage to remove.
import { JobRequest } from '../api/schemas';
import { ORACLE } from '../models/generate/oracle-spec';
import { makeScene, type Rgb, type SceneOptions, type SyntheticScene } from './synthetic-scene';

export type SuiteName = 'tiny' | 'synthetic' | 'large';

export interface SuiteClip {
  name: string;
  description: string;
  scene: SyntheticScene;
  sourcePrompt: string;
  prompt: string;
  /** The colour the edit should give the object, and the one it has. */
  target: Rgb;
  sourceColour: Rgb;
}

export interface Suite {
  name: SuiteName;
  width: number;
  height: number;
  /** DDIM steps of every method. */
  steps: number;
  /** Frames per chunk for the long-clip methods (the job runner uses 16). */
  chunk: number;
  clips: SuiteClip[];
}

const colour = (name: string) => [...(ORACLE.colours[name] as readonly number[])] as Rgb;
const SOURCE = 'a red car on a gray road';
const TARGET = 'a blue car on a gray road';

/** Scene recipes in fractions of the frame, so every suite size draws the same scenes. */
function recipes(
  W: number,
  H: number,
  frames: (kind: string) => number,
): { name: string; description: string; options: SceneOptions }[] {
  const S = Math.min(W, H);
  const common = {
    width: W,
    height: H,
    background: [0, 0, 0] as Rgb,
    pattern: { amplitude: 0.25, period: Math.max(6, Math.round(S / 3)) },
    noise: 0.08,
    frameNoise: 0.03,
  };
  // Whole-pixel speeds and pixel-aligned corners keep the ground-truth warp exact under bilinear sampling.
  const speed = (fraction: number, n: number) => Math.max(1, Math.round((fraction * W) / Math.max(1, n - 1)));
  const side = Math.round(0.3 * S) & ~1;
  const list = [];
  {
    const n = frames('moving');
    list.push({
      name: `moving-${n}`,
      description: 'red square crossing a textured gray background',
      options: {
        ...common,
        frames: n,
        seed: 11,
        object: {
          shape: 'square' as const,
          colour: colour('red'),
          size: side,
          centre: [side / 2 + 2, Math.round(H / 2)] as [number, number],
          velocity: [speed(0.55, n), 0] as [number, number],
        },
      },
    });
  }
  {
    const n = frames('scaling');
    list.push({
      name: `scaling-${n}`,
      description: 'red disc growing 3 % a frame while moving diagonally',
      options: {
        ...common,
        frames: n,
        seed: 12,
        object: {
          shape: 'circle' as const,
          colour: colour('red'),
          size: Math.round(0.22 * S),
          centre: [0.25 * W, 0.35 * H] as [number, number],
          velocity: [speed(0.4, n), Math.max(1, Math.round((0.2 * H) / Math.max(1, n - 1)))] as [number, number],
          growth: 1.03,
        },
      },
    });
  }
  {
    const n = frames('occluded');
    list.push({
      name: `occluded-${n}`,
      description: 'red square passing behind a white bar moving the other way',
      options: {
        ...common,
        frames: n,
        seed: 13,
        object: {
          shape: 'square' as const,
          colour: colour('red'),
          size: side,
          centre: [side / 2 + 2, Math.round(H / 2)] as [number, number],
          velocity: [speed(0.55, n), 0] as [number, number],
        },
        occluders: [
          {
            shape: 'rect' as const,
            colour: colour('white'),
            size: [Math.max(2, Math.round(0.1 * W)), Math.round(0.9 * H)] as [number, number],
            centre: [Math.round(0.62 * W), Math.round(H / 2)] as [number, number],
            velocity: [-1, 0] as [number, number],
          },
        ],
      },
    });
  }
  {
    const n = frames('pan');
    list.push({
      name: `pan-${n}`,
      description: 'camera pan (background moving 1 px a frame) with the red square moving against it',
      options: {
        ...common,
        frames: n,
        seed: 14,
        pan: [-1, 0] as [number, number],
        object: {
          shape: 'square' as const,
          colour: colour('red'),
          size: side,
          centre: [side / 2 + 2, Math.round(H / 2)] as [number, number],
          velocity: [speed(0.5, n), 0] as [number, number],
        },
      },
    });
  }
  {
    const n = frames('long');
    list.push({
      name: `long-${n}`,
      description: 'long clip: red disc drifting slowly across, for chunked processing',
      options: {
        ...common,
        frames: n,
        seed: 15,
        object: {
          shape: 'circle' as const,
          colour: colour('red'),
          size: side,
          centre: [side / 2 + 2, Math.round(0.45 * H)] as [number, number],
          velocity: [Math.max(1, Math.round((0.55 * W) / Math.max(1, n - 1))), 0] as [number, number],
        },
      },
    });
  }
  return list;
}

/**
 * tiny: for the integration test (32×24, a few frames, 10 steps); synthetic: the CI suite (64×48, 8 to 40 frames, the
 * job's default steps, a few minutes on two cores); large: 128×96 and up to 96 frames.
 */
export function makeSuite(name: SuiteName): Suite {
  const defaultSteps = JobRequest.shape.steps.parse(undefined);
  const spec =
    name === 'tiny'
      ? {
          W: 32,
          H: 24,
          steps: 10,
          chunk: 4,
          frames: { moving: 6, scaling: 6, occluded: 6, pan: 6, long: 10 } as Record<string, number>,
          kinds: ['moving', 'occluded', 'long'],
        }
      : name === 'synthetic'
        ? {
            W: 64,
            H: 48,
            steps: defaultSteps,
            chunk: 16,
            frames: { moving: 8, scaling: 16, occluded: 16, pan: 24, long: 40 } as Record<string, number>,
            kinds: ['moving', 'scaling', 'occluded', 'pan', 'long'],
          }
        : {
            W: 128,
            H: 96,
            steps: defaultSteps,
            chunk: 16,
            frames: { moving: 16, scaling: 32, occluded: 32, pan: 48, long: 96 } as Record<string, number>,
            kinds: ['moving', 'scaling', 'occluded', 'pan', 'long'],
          };
  const clips = recipes(spec.W, spec.H, (k) => spec.frames[k])
    .filter((r) => spec.kinds.some((k) => r.name.startsWith(`${k}-`)))
    .map((r) => ({
      name: r.name,
      description: r.description,
      scene: makeScene(r.options),
      sourcePrompt: SOURCE,
      prompt: TARGET,
      target: colour('blue'),
      sourceColour: colour('red'),
    }));
  return { name, width: spec.W, height: spec.H, steps: spec.steps, chunk: spec.chunk, clips };
}
