// The "box" mask: a still of the clip from the engine, on which the user drags a rectangle. The engine wants the
// box normalised to the frame (x, y, w, h in 0..1), which is also what survives the clip being shown at any size.
import type { ClipSelection } from '../host/host';
import { append, button, h, isShown, show } from './dom';
import { moveBox, resizeBox, type Box } from './box-geometry';
import { timecode } from './format';

export type { Box } from './box-geometry';

export class BoxDrawer {
  readonly el: HTMLElement;
  private readonly stage = h('div', { class: 'box-stage', id: 'mask-stage' });
  private readonly img = h('img', { class: 'box-still', attrs: { alt: 'A frame of the clip', draggable: 'false' } });
  private readonly rect = h('div', { class: 'box-rect hidden' }, h('div', { class: 'box-handle' }));
  private readonly status = h('div', { class: 'box-status', id: 'mask-box-value' });
  private readonly slider = h('input', { class: 'box-time', id: 'mask-still-time' });
  private readonly timeLabel = h('span', { class: 'mono small' });
  private box: Box | null = null;
  private clip: ClipSelection | null = null;
  /** draw: a new box from a corner; move: the box by its middle; resize: its bottom-right corner. */
  private drag: { kind: 'draw' | 'move' | 'resize'; x0: number; y0: number; from: Box } | null = null;

  constructor(private readonly stillUrl: (path: string, t: number, maxWidth: number) => string | null) {
    this.slider.setAttribute('type', 'range');
    this.slider.setAttribute('min', '0');
    this.slider.setAttribute('max', '1000');
    this.slider.value = '500';
    this.slider.setAttribute('aria-label', 'Which frame to draw on');
    this.slider.addEventListener('change', () => this.loadStill());
    this.slider.addEventListener('input', () => this.updateTimeLabel());
    this.img.addEventListener('load', () => this.stage.classList.remove('loading', 'failed'));
    this.img.addEventListener('error', () => {
      this.stage.classList.remove('loading');
      if (this.img.getAttribute('src')) this.stage.classList.add('failed');
    });
    append(this.stage, [
      this.img,
      this.rect,
      h('div', { class: 'box-fail', text: 'No frame could be read from this clip.' }),
    ]);
    this.bindPointer();
    this.bindKeys();
    this.el = h(
      'div',
      { class: 'box-drawer' },
      this.stage,
      h('div', { class: 'box-tools' }, this.slider, this.timeLabel),
      h('div', {
        class: 'box-keys',
        id: 'mask-box-keys',
        text: 'Keys: Enter adds a box, arrows move it, Shift+arrows resize it, Delete clears it.',
      }),
      h(
        'div',
        { class: 'box-footer' },
        this.status,
        button('Clear', () => this.set(null), { class: 'small quiet', id: 'mask-box-clear' }),
      ),
    );
    this.renderStatus();
  }

  value(): Box | null {
    return this.box;
  }

  set(box: Box | null): void {
    this.box = box;
    this.renderRect();
    this.renderStatus();
    // Bubbles, so the viewer can show the box over the clip without the form passing it along.
    try {
      this.el?.dispatchEvent(new Event('boxchange', { bubbles: true }));
    } catch {
      // A host without the Event constructor (older UXP) only misses the box in the viewer.
    }
  }

  setClip(clip: ClipSelection | null): void {
    const same =
      clip &&
      this.clip &&
      clip.mediaPath === this.clip.mediaPath &&
      clip.sourceIn === this.clip.sourceIn &&
      clip.sourceOut === this.clip.sourceOut;
    this.clip = clip;
    if (!same) this.loadStill();
  }

  /** Loads the still only while the drawer is visible: each one costs the engine an ffmpeg run. */
  activate(): void {
    this.loadStill();
  }

  private time(): number | null {
    if (!this.clip) return null;
    const { sourceIn, sourceOut } = this.clip;
    const frame = 1 / (this.clip.fps || 25);
    const t = sourceIn + (Number(this.slider.value) / 1000) * (sourceOut - sourceIn);
    return Math.max(sourceIn, Math.min(t, sourceOut - frame / 2));
  }

  private updateTimeLabel(): void {
    const t = this.time();
    this.timeLabel.textContent = t === null || !this.clip ? '' : timecode(t, this.clip.fps);
  }

  private loadStill(): void {
    this.updateTimeLabel();
    const t = this.time();
    const url =
      this.clip && t !== null && this.clip.mediaPath && isShown(this.el)
        ? this.stillUrl(this.clip.mediaPath, t, 640)
        : null;
    show(this.stage, !!this.clip);
    if (!url) {
      if (!this.clip) this.img.removeAttribute('src');
      return;
    }
    if (this.img.getAttribute('src') === url) return;
    this.stage.classList.add('loading');
    this.stage.classList.remove('failed');
    this.img.src = url;
  }

  private bindPointer(): void {
    const point = (ev: MouseEvent) => {
      const r = this.img.getBoundingClientRect();
      return {
        x: clamp01((ev.clientX - r.left) / Math.max(1, r.width)),
        y: clamp01((ev.clientY - r.top) / Math.max(1, r.height)),
      };
    };
    const down = (ev: MouseEvent) => {
      if (ev.button !== 0 || this.stage.classList.contains('failed')) return;
      ev.preventDefault();
      this.stage.focus?.();
      const p = point(ev);
      const b = this.box;
      // Grabbing the corner resizes, grabbing inside moves; anywhere else starts a new box.
      const onHandle = !!b && Math.abs(p.x - (b.x + b.w)) < 0.04 && Math.abs(p.y - (b.y + b.h)) < 0.06;
      const inside = !!b && p.x > b.x && p.x < b.x + b.w && p.y > b.y && p.y < b.y + b.h;
      const kind = onHandle ? 'resize' : inside ? 'move' : 'draw';
      this.drag = { kind, x0: p.x, y0: p.y, from: b ?? { x: p.x, y: p.y, w: 0, h: 0 } };
      const pe = ev as PointerEvent;
      if (pe.pointerId !== undefined && this.stage.setPointerCapture) this.stage.setPointerCapture(pe.pointerId);
      if (kind === 'draw') this.set({ x: p.x, y: p.y, w: 0, h: 0 });
    };
    const move = (ev: MouseEvent) => {
      if (!this.drag) return;
      const p = point(ev);
      const { kind, x0, y0, from } = this.drag;
      if (kind === 'draw')
        this.set({ x: Math.min(x0, p.x), y: Math.min(y0, p.y), w: Math.abs(p.x - x0), h: Math.abs(p.y - y0) });
      else if (kind === 'move') this.set(moveBox(from, p.x - x0, p.y - y0));
      else this.set(resizeBox(from, p.x - x0, p.y - y0));
    };
    const up = (ev: MouseEvent) => {
      if (!this.drag) return;
      move(ev);
      this.drag = null;
      // A click without a drag clears the box instead of leaving an invisible one.
      if (this.box && (this.box.w < 0.01 || this.box.h < 0.01)) this.set(null);
    };
    // UXP's pointer-event support varies by version; mouse events are the fallback it always has.
    const pointer = typeof PointerEvent === 'function';
    this.stage.addEventListener(pointer ? 'pointerdown' : 'mousedown', down as EventListener);
    this.stage.addEventListener(pointer ? 'pointermove' : 'mousemove', move as EventListener);
    this.stage.addEventListener(pointer ? 'pointerup' : 'mouseup', up as EventListener);
    if (pointer) this.stage.addEventListener('pointercancel', up as EventListener);
  }

  /**
   * The same box without a pointer: Enter puts one in the middle, arrows move it, Shift+arrows resize it (Alt for
   * one pixel-sized step instead of a hundredth), Delete clears it.
   */
  private bindKeys(): void {
    this.stage.setAttribute('tabindex', '0');
    this.stage.setAttribute('role', 'application');
    this.stage.setAttribute('aria-label', 'Box mask');
    this.stage.setAttribute('aria-roledescription', 'box drawing area');
    this.stage.setAttribute('aria-describedby', 'mask-box-keys mask-box-value');
    this.stage.addEventListener('keydown', (ev) => {
      const k = ev;
      const b = this.box;
      const step = k.altKey ? 0.002 : 0.01;
      const d: Record<string, [number, number]> = {
        ArrowLeft: [-step, 0],
        ArrowRight: [step, 0],
        ArrowUp: [0, -step],
        ArrowDown: [0, step],
      };
      if (k.key === 'Enter' || k.key === ' ') {
        if (!b) this.set({ x: 0.25, y: 0.25, w: 0.5, h: 0.5 });
      } else if (k.key === 'Delete' || k.key === 'Backspace') {
        this.set(null);
      } else if (d[k.key] && b) {
        const [dx, dy] = d[k.key];
        this.set(k.shiftKey ? resizeBox(b, dx, dy) : moveBox(b, dx, dy));
      } else return;
      k.preventDefault();
    });
  }

  private renderRect(): void {
    const b = this.box;
    show(this.rect, !!b);
    if (!b) return;
    this.rect.style.left = `${b.x * 100}%`;
    this.rect.style.top = `${b.y * 100}%`;
    this.rect.style.width = `${b.w * 100}%`;
    this.rect.style.height = `${b.h * 100}%`;
  }

  private renderStatus(): void {
    const b = this.box;
    this.status.textContent =
      b && b.w > 0 && b.h > 0
        ? `x ${fmt(b.x)} · y ${fmt(b.y)} · w ${fmt(b.w)} · h ${fmt(b.h)}`
        : 'Drag a rectangle over what should change, or press Enter here.';
  }
}

function clamp01(v: number): number {
  return Math.max(0, Math.min(1, v));
}

function fmt(v: number): string {
  return v.toFixed(2);
}
