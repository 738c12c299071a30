// The box mask's keyboard and drag geometry: a moved box keeps its size and stays whole inside the frame; a resized
// one keeps its corner inside the frame and never shrinks below 1 % (an invisible box would still be sent).
import { moveBox, resizeBox, type Box } from '../../panel/src/ui/box-geometry';

/** To four places, as the form sends it, so float noise (0.1 + 0.2) does not matter. */
const r = (b: Box) => ({ x: +b.x.toFixed(4), y: +b.y.toFixed(4), w: +b.w.toFixed(4), h: +b.h.toFixed(4) });

it('moves a box without changing its size, stopping at the frame edges', () => {
  const b = { x: 0.3, y: 0.4, w: 0.5, h: 0.5 };
  expect(r(moveBox(b, 0.1, -0.1))).toEqual({ x: 0.4, y: 0.3, w: 0.5, h: 0.5 });
  expect(r(moveBox(b, 1, 1))).toEqual({ x: 0.5, y: 0.5, w: 0.5, h: 0.5 });
  expect(r(moveBox(b, -1, -1))).toEqual({ x: 0, y: 0, w: 0.5, h: 0.5 });
});

it('resizes from the bottom-right corner, between 1 % and the frame edge', () => {
  const b = { x: 0.6, y: 0.2, w: 0.2, h: 0.2 };
  expect(r(resizeBox(b, 0.1, 0.3))).toEqual({ x: 0.6, y: 0.2, w: 0.3, h: 0.5 });
  expect(r(resizeBox(b, 1, 1))).toEqual({ x: 0.6, y: 0.2, w: 0.4, h: 0.8 });
  expect(r(resizeBox(b, -1, -1))).toEqual({ x: 0.6, y: 0.2, w: 0.01, h: 0.01 });
});
