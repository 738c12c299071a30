// A few lines of DOM building instead of a framework: the same code has to run in UXP, whose DOM is a subset of a
// browser's (no custom elements we rely on, no innerHTML templates needed, no CSS grid), and in Chromium.
//
// In UXP the buttons are its built-in Spectrum widgets (sp-button, sp-action-button), drawn by Premiere like its own
// controls in every theme; a browser has no such elements, so the browser build keeps native buttons. Everything
// else builds the same elements in both.

type Child = Node | string | number | null | undefined | false;
type Handler = (ev: Event) => void;

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  id?: string;
  /** Attributes set verbatim (aria-*, data-*, for, type, ...). */
  attrs?: Record<string, string>;
  /** Event listeners: { click: fn }. */
  on?: Record<string, Handler>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    if (props.class) el.className = props.class;
    if (props.id) el.id = props.id;
    if (props.title) el.title = props.title;
    if (props.text !== undefined) el.textContent = props.text;
    for (const [k, v] of Object.entries(props.attrs ?? {})) el.setAttribute(k, v);
    for (const [k, fn] of Object.entries(props.on ?? {})) el.addEventListener(k, fn);
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces an element's children. */
export function fill(el: Node, ...children: (Child | Child[])[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
}

export function show(el: HTMLElement, visible: boolean): void {
  el.classList.toggle('hidden', !visible);
}

/** In the document and not inside anything hidden; walked by hand because UXP's DOM is not known to have closest() or isConnected. */
export function isShown(el: HTMLElement): boolean {
  for (let n: Node | null = el; n; n = n.parentNode) {
    if (n === document) return true;
    if ((n as HTMLElement).classList?.contains('hidden')) return false;
  }
  return false;
}

/** `<code>` spans inside a sentence: "Start it with `npx reshoot serve`" → text + code element. */
export function richText(s: string): Node[] {
  return s
    .split(/(`[^`]+`)/)
    .filter(Boolean)
    .map((part) =>
      part.startsWith('`') && part.endsWith('`')
        ? h('span', { class: 'code', text: part.slice(1, -1) })
        : document.createTextNode(part),
    );
}

/** A labelled form row whose wrapper can be marked invalid with a message under the control. */
export interface Field {
  row: HTMLElement;
  control: HTMLElement;
  message: HTMLElement;
}

export function field(
  label: string,
  control: HTMLElement,
  opts: { hint?: string; id?: string; extra?: HTMLElement } = {},
): Field {
  const id = opts.id ?? control.id;
  if (id) control.id = id;
  const message = h('div', { class: 'field-message', attrs: { role: 'alert' } });
  const row = h(
    'div',
    { class: 'field' },
    h('label', { class: 'field-label', text: label, attrs: id ? { for: id } : {} }),
    opts.extra ? h('div', { class: 'field-inline' }, control, opts.extra) : control,
    opts.hint ? h('div', { class: 'field-hint', text: opts.hint }) : null,
    message,
  );
  return { row, control, message };
}

export function setInvalid(f: Field, message: string | null): void {
  f.row.classList.toggle('invalid', message !== null);
  f.control.setAttribute('aria-invalid', message !== null ? 'true' : 'false');
  f.message.textContent = message ?? '';
}

export function input(
  id: string,
  opts: {
    type?: string;
    placeholder?: string;
    value?: string;
    step?: string;
    min?: string;
    max?: string;
    autocomplete?: string;
  } = {},
): HTMLInputElement {
  // Attributes rather than properties: UXP's inputs are not known to reflect every property back.
  const el = h('input', { id, class: 'input', attrs: { type: opts.type ?? 'text' } });
  if (opts.placeholder) el.setAttribute('placeholder', opts.placeholder);
  if (opts.step) el.setAttribute('step', opts.step);
  if (opts.min) el.setAttribute('min', opts.min);
  if (opts.max) el.setAttribute('max', opts.max);
  if (opts.value !== undefined) el.value = opts.value;
  el.setAttribute('autocomplete', opts.autocomplete ?? 'off');
  el.setAttribute('spellcheck', 'false');
  return el;
}

let spectrumWidgets = false;

/** UXP only, once, before anything is built (main-uxp.ts). */
export function useSpectrumWidgets(on: boolean): void {
  spectrumWidgets = on;
}

export interface SpectrumButton {
  tag: 'sp-button' | 'sp-action-button';
  attrs: Record<string, string>;
}

/**
 * The Spectrum widget for a button of these classes, or null where it stays native: the segmented toggles and
 * inline links are drawn by the panel's own CSS, which UXP's widgets would not take. Spectrum's own roles: the one
 * call to action, a warning for what stops work, action buttons for the small tools, secondary for the rest.
 */
export function spectrumButton(classes: readonly string[]): SpectrumButton | null {
  const has = (c: string) => classes.includes(c);
  if (has('seg') || has('link')) return null;
  const size: Record<string, string> = has('small') || has('icon') ? { size: 's' } : {};
  if (has('primary')) return { tag: 'sp-button', attrs: { variant: 'cta', ...size } };
  if (has('danger')) return { tag: 'sp-button', attrs: { variant: 'warning', ...size } };
  if (has('small') || has('icon') || has('quiet'))
    return { tag: 'sp-action-button', attrs: { ...(has('quiet') ? { quiet: '' } : {}), ...size } };
  return { tag: 'sp-button', attrs: { variant: 'secondary' } };
}

export function button(
  text: string,
  onClick: (ev: Event) => void,
  opts: { class?: string; title?: string; id?: string } = {},
): HTMLButtonElement {
  const classes = `btn ${opts.class ?? ''}`.trim();
  const widget = spectrumWidgets ? spectrumButton(classes.split(/\s+/)) : null;
  if (!widget) {
    const b = h('button', { class: classes, text, title: opts.title, id: opts.id, on: { click: onClick } });
    b.setAttribute('type', 'button');
    return b;
  }
  const el = document.createElement(widget.tag);
  // Not .btn: the panel's button look would fight the widget's own; .widget gets only the layout rules.
  el.className = classes.replace(/^btn\b/, 'widget');
  if (opts.id) el.id = opts.id;
  if (opts.title) el.title = opts.title;
  el.textContent = text;
  for (const [k, v] of Object.entries(widget.attrs)) el.setAttribute(k, v);
  // A disabled native button fires no click; a widget is not known to hold back every kind of activation.
  el.addEventListener('click', (ev) => {
    if (!el.hasAttribute('disabled')) onClick(ev);
  });
  // Callers use what both kinds share: text, title, attributes, focus() and setDisabled().
  return el as unknown as HTMLButtonElement;
}

/** The attribute, which native controls reflect and Spectrum widgets read; their `disabled` property is not documented. */
export function setDisabled(el: HTMLElement, disabled: boolean): void {
  if (disabled) el.setAttribute('disabled', '');
  else el.removeAttribute('disabled');
}

/** A die showing five: the seed button. Drawn as SVG because emoji fonts are not everywhere (Linux, UXP). */
export function diceIcon(): Node {
  const NS = 'http://www.w3.org/2000/svg';
  if (typeof document.createElementNS !== 'function') return document.createTextNode('Random');
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '14');
  svg.setAttribute('height', '14');
  svg.setAttribute('aria-hidden', 'true');
  // Where a Spectrum action button holds it, its icon slot; a native button ignores the attribute.
  svg.setAttribute('slot', 'icon');
  const rect = document.createElementNS(NS, 'rect');
  for (const [k, v] of Object.entries({
    x: '1.5',
    y: '1.5',
    width: '13',
    height: '13',
    rx: '3',
    fill: 'none',
    stroke: 'currentColor',
    'stroke-width': '1.4',
  }))
    rect.setAttribute(k, v);
  svg.appendChild(rect);
  for (const [cx, cy] of [
    [5, 5],
    [11, 5],
    [8, 8],
    [5, 11],
    [11, 11],
  ]) {
    const c = document.createElementNS(NS, 'circle');
    c.setAttribute('cx', String(cx));
    c.setAttribute('cy', String(cy));
    c.setAttribute('r', '1.3');
    c.setAttribute('fill', 'currentColor');
    svg.appendChild(c);
  }
  return svg;
}

/**
 * A row of toggle buttons acting as one choice (UXP's radio inputs are unreliable to style). It behaves as a radio
 * group to the keyboard: one Tab stop (the chosen option), arrow keys, Home and End move the choice.
 */
export function segmented<T extends string>(
  id: string,
  options: { value: T; label: string; title?: string }[],
  initial: T,
  onChange: (v: T) => void,
): { el: HTMLElement; value: () => T; set: (v: T) => void } {
  let current = initial;
  const buttons = options.map((o) => {
    const b = button(o.label, () => set(o.value, true), { class: 'seg', title: o.title });
    b.setAttribute('data-value', o.value);
    b.setAttribute('role', 'radio');
    return b;
  });
  const el = h('div', { class: 'segmented', id, attrs: { role: 'radiogroup' } }, buttons);
  el.addEventListener('keydown', (ev) => {
    const k = ev.key;
    const at = buttons.findIndex((b) => b.getAttribute('data-value') === current);
    const next =
      k === 'ArrowRight' || k === 'ArrowDown'
        ? (at + 1) % buttons.length
        : k === 'ArrowLeft' || k === 'ArrowUp'
          ? (at - 1 + buttons.length) % buttons.length
          : k === 'Home'
            ? 0
            : k === 'End'
              ? buttons.length - 1
              : -1;
    if (next < 0) return;
    ev.preventDefault();
    set(options[next].value, true);
    buttons[next].focus?.();
  });
  function set(v: T, notify = false): void {
    current = v;
    for (const b of buttons) {
      const on = b.getAttribute('data-value') === v;
      b.classList.toggle('selected', on);
      b.setAttribute('aria-checked', on ? 'true' : 'false');
      b.setAttribute('tabindex', on ? '0' : '-1');
    }
    if (notify) onChange(v);
  }
  set(initial);
  return { el, value: () => current, set: (v: T) => set(v, true) };
}

/**
 * Lets a section fold to its title: the title becomes a button with aria-expanded, and everything after it hides.
 * For a docked panel, where the form and the results cannot all be on screen at once.
 */
export function collapsible(section: HTMLElement, title: HTMLElement, open = true): { set(open: boolean): void } {
  const label = title.textContent ?? '';
  const toggle = h('button', { class: 'section-toggle', text: label, attrs: { type: 'button' } });
  fill(title, toggle);
  const set = (o: boolean) => {
    section.classList.toggle('collapsed', !o);
    toggle.setAttribute('aria-expanded', o ? 'true' : 'false');
  };
  toggle.addEventListener('click', () => set(section.classList.contains('collapsed')));
  set(open);
  return { set };
}
