// The box mask's geometry, normalised to the frame (x, y, w, h in 0..1), apart from the DOM so it can be tested on
// its own.

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** The box moved by (dx, dy), kept whole inside the frame. */
export function moveBox(b: Box, dx: number, dy: number): Box {
  return { ...b, x: clamp01(Math.min(b.x + dx, 1 - b.w)), y: clamp01(Math.min(b.y + dy, 1 - b.h)) };
}

/** The box with its bottom-right corner moved by (dx, dy): at least 1% of the frame, never past its edge. */
export function resizeBox(b: Box, dx: number, dy: number): Box {
  return { ...b, w: Math.max(0.01, Math.min(b.w + dx, 1 - b.x)), h: Math.max(0.01, Math.min(b.h + dy, 1 - b.y)) };
}

function clamp01(v: number): number {
  return Math.max(0, Math.min(1, v));
}
