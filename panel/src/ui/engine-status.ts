// Is the engine there, and can we talk to it? Checked at start, on Retry, every few seconds while it is not, and
// now and then while it is (so a stopped engine shows up before the next click fails).
import type { Health } from '../../../engine/src/api/schemas';
import { EngineClient, EngineError, SERVICE_COMMAND, START_COMMAND } from '../engine-client';
import type { Host } from '../host/host';
import { button, fill, h, richText, setDisabled } from './dom';
import { describeError } from './errors';

export type EngineState =
  | { kind: 'checking' }
  | { kind: 'connected'; health: Health }
  | { kind: 'no-token' }
  | { kind: 'unauthorized'; detail: string }
  | { kind: 'not-running'; detail: string }
  | { kind: 'error'; title: string; detail: string };

export interface EngineStatusOptions {
  retryMs?: number;
  healthyMs?: number;
}

export class EngineStatus {
  readonly el: HTMLElement;
  state: EngineState = { kind: 'checking' };
  client: EngineClient | null = null;
  private readonly dot = h('span', { class: 'dot' });
  private readonly text = h('div', { class: 'status-text' });
  private readonly retryButton: HTMLButtonElement;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private countdown: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  /** Asked again while a check was on its way: its answer may predate what prompted the ask (a job ending). */
  private again = false;
  private stopped = false;
  private listeners: ((s: EngineState, client: EngineClient | null) => void)[] = [];
  private readonly retryMs: number;
  private readonly healthyMs: number;

  constructor(
    private readonly host: Host,
    opts: EngineStatusOptions = {},
  ) {
    this.retryMs = opts.retryMs ?? 3000;
    this.healthyMs = opts.healthyMs ?? 5000;
    this.retryButton = button('Retry', () => void this.check(), { class: 'small', id: 'engine-retry' });
    this.el = h(
      'div',
      { class: 'engine-status', id: 'engine-status', attrs: { 'aria-live': 'polite' } },
      this.dot,
      this.text,
      this.retryButton,
    );
    this.render();
  }

  onChange(cb: (s: EngineState, client: EngineClient | null) => void): void {
    this.listeners.push(cb);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.countdown) clearInterval(this.countdown);
  }

  async check(): Promise<void> {
    if (this.stopped) return;
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    this.again = false;
    if (this.timer) clearTimeout(this.timer);
    if (this.countdown) clearInterval(this.countdown);
    if (this.state.kind !== 'connected') {
      setDisabled(this.retryButton, true);
      this.retryButton.textContent = 'Checking…';
    }
    let next: EngineState;
    let client: EngineClient | null = null;
    try {
      const token = await this.host.readToken();
      if (!token) {
        next = { kind: 'no-token' };
      } else {
        client =
          this.client && this.client.token === token
            ? this.client
            : new EngineClient({ baseUrl: this.host.engineUrl(), token });
        next = { kind: 'connected', health: await client.health() };
      }
    } catch (e) {
      if (e instanceof EngineError && (e.code === 'unreachable' || e.code === 'timeout'))
        next = { kind: 'not-running', detail: e.detail };
      else if (e instanceof EngineError && e.status === 401) next = { kind: 'unauthorized', detail: e.detail };
      else {
        const p = describeError(e);
        next = { kind: 'error', title: p.title, detail: p.detail };
      }
    }
    this.checking = false;
    if (this.stopped) return;
    const changed =
      next.kind !== this.state.kind ||
      (next.kind === 'connected' && this.state.kind === 'connected' && next.health.model !== this.state.health.model);
    this.state = next;
    this.client = next.kind === 'connected' ? client : null;
    this.render();
    if (changed || next.kind === 'connected') for (const cb of this.listeners) cb(this.state, this.client);
    if (this.again) void this.check();
    else this.schedule();
  }

  private schedule(): void {
    const wait = this.state.kind === 'connected' ? this.healthyMs : this.retryMs;
    this.timer = setTimeout(() => void this.check(), wait);
    if (this.state.kind !== 'connected') {
      let left = Math.round(wait / 1000);
      this.retryButton.textContent = 'Retry';
      setDisabled(this.retryButton, false);
      this.retryButton.title = `Checking again in ${left} s`;
      this.countdown = setInterval(() => {
        left = Math.max(0, left - 1);
        this.retryButton.title = `Checking again in ${left} s`;
      }, 1000);
    }
  }

  private render(): void {
    const s = this.state;
    this.el.setAttribute('data-state', s.kind);
    this.retryButton.classList.toggle('hidden', s.kind === 'connected' || s.kind === 'checking');
    const browser = this.host.kind === 'browser';
    switch (s.kind) {
      case 'checking':
        fill(this.text, h('div', { class: 'status-title', text: 'Looking for the engine…' }));
        break;
      case 'connected': {
        const hl = s.health;
        const queue = hl.queue.running + hl.queue.queued;
        fill(
          this.text,
          h(
            'div',
            { class: 'status-title' },
            'Engine connected ',
            h('span', { class: 'muted', text: `v${hl.version}` }),
          ),
          h(
            'div',
            { class: 'status-facts' },
            h('span', { class: 'fact', title: hl.modelDir }, 'model ', h('span', { class: 'strong', text: hl.model })),
            h(
              'span',
              { class: 'fact', title: hl.providerFallbacks.join('\n') || 'no fallbacks' },
              'on ',
              h('span', { class: 'strong', text: hl.provider }),
              hl.providerFallbacks.length ? ' (fell back)' : '',
            ),
            queue ? h('span', { class: 'fact queue', text: queueLine(hl.queue.running, hl.queue.queued) }) : null,
          ),
        );
        break;
      }
      case 'no-token':
        fill(
          this.text,
          h('div', { class: 'status-title', text: 'Access token missing' }),
          h(
            'div',
            { class: 'status-detail' },
            richText(
              browser
                ? 'Open the address that `' +
                    START_COMMAND +
                    "` printed in its terminal; it ends in `/?token=…`. The token is also in the engine's token file (`~/.config/reshoot/token` on Linux)."
                : 'The engine writes its token file the first time it starts. Start it in a terminal: `' +
                    START_COMMAND +
                    '`',
            ),
          ),
        );
        break;
      case 'unauthorized':
        fill(
          this.text,
          h('div', { class: 'status-title', text: 'Token not accepted' }),
          h(
            'div',
            { class: 'status-detail' },
            richText(
              browser
                ? 'This page has an old token. Open the address the engine printed when it last started (`' +
                    START_COMMAND +
                    '`).'
                : s.detail,
            ),
          ),
        );
        break;
      case 'not-running':
        fill(
          this.text,
          h('div', { class: 'status-title', text: 'Engine not running' }),
          h(
            'div',
            { class: 'status-detail' },
            // A terminal left open is what editors forget; the service starts the engine at every login instead.
            richText(
              `Start it in a terminal: \`${START_COMMAND}\`, or have it start at every login: \`${SERVICE_COMMAND}\``,
            ),
          ),
        );
        break;
      case 'error':
        fill(
          this.text,
          h('div', { class: 'status-title', text: s.title }),
          h('div', { class: 'status-detail', text: s.detail }),
        );
        break;
    }
  }
}

/** "1 running, 2 waiting", leaving out a part that is zero. */
function queueLine(running: number, queued: number): string {
  return [running ? `${running} running` : '', queued ? `${queued} waiting` : ''].filter(Boolean).join(', ');
}
