// The panel's engine client against a scripted fetch: what it sends, and how every kind of failure reaches the UI.
import {
  EngineClient,
  EngineError,
  type FetchInitLike,
  type FetchLike,
  type FetchResponseLike,
} from '../../panel/src/engine-client';

const TOKEN = 'tok_1234567890abcdef';

function reply(status: number, body: unknown, contentType = 'application/json'): FetchResponseLike {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (n) => (n.toLowerCase() === 'content-type' ? contentType : null) },
    text: async () => text,
  };
}

function client(
  fetchImpl: FetchLike,
  timeoutMs?: number,
): { c: EngineClient; calls: { url: string; init: FetchInitLike }[] } {
  const calls: { url: string; init: FetchInitLike }[] = [];
  const c = new EngineClient({
    baseUrl: 'http://127.0.0.1:7865/',
    token: TOKEN,
    timeoutMs,
    fetch: (url, init) => {
      calls.push({ url, init });
      return fetchImpl(url, init);
    },
  });
  return { c, calls };
}

/** The EngineError a call rejects with; anything else (a resolve, another error) fails the test. */
async function engineError(call: Promise<unknown>): Promise<EngineError> {
  try {
    await call;
  } catch (e) {
    if (e instanceof EngineError) return e;
    throw e;
  }
  throw new Error('the call resolved; expected an EngineError');
}

const HEALTH = {
  ok: true,
  version: '0.1.0',
  model: 'oracle',
  modelDir: '/m',
  provider: 'cpu',
  providerFallbacks: [],
  queue: { queued: 0, running: 0 },
};

it('sends the token as a bearer header and JSON bodies with their content type', async () => {
  const { c, calls } = client(async () => reply(202, { id: 'j1' }));
  await c.submit({ source: { path: '/a.mp4', in: 0, out: 1 }, prompt: 'p' });
  expect(calls[0].url).toBe('http://127.0.0.1:7865/v1/jobs');
  expect(calls[0].init.method).toBe('POST');
  expect(calls[0].init.headers).toMatchObject({ Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' });
  expect(JSON.parse(calls[0].init.body!)).toEqual({ source: { path: '/a.mp4', in: 0, out: 1 }, prompt: 'p' });

  await c.cancel('j/1');
  expect(calls[1].url).toBe('http://127.0.0.1:7865/v1/jobs/j%2F1/cancel');
  expect(calls[1].init.body).toBeUndefined();
  expect(calls[1].init.headers['Content-Type']).toBeUndefined();
});

it('puts the token in the URL only for what browser elements load', () => {
  const { c } = client(async () => reply(200, {}));
  expect(c.resultUrl('abc')).toBe(`http://127.0.0.1:7865/v1/jobs/abc/result?token=${TOKEN}`);
  expect(c.eventsUrl('abc')).toBe(`http://127.0.0.1:7865/v1/jobs/abc/events?token=${TOKEN}`);
  expect(c.matteUrl('a/b', 7)).toBe(`http://127.0.0.1:7865/v1/jobs/a%2Fb/matte?frame=7&token=${TOKEN}`);
  expect(c.stillUrl('/x y/a&b.mp4', 1.25, 640)).toBe(
    `http://127.0.0.1:7865/v1/media/still?path=%2Fx%20y%2Fa%26b.mp4&t=1.25&maxWidth=640&token=${TOKEN}`,
  );
});

it('turns problem documents into EngineErrors with the field at fault', async () => {
  const problem = {
    type: 'https://reshoot.dev/problems/invalid-request',
    title: 'Invalid request',
    status: 400,
    detail: 'source.out must be later than source.in',
    field: 'source.out',
    issues: [{ field: 'source.out', message: 'source.out must be later than source.in' }],
  };
  const { c } = client(async () => reply(400, problem, 'application/problem+json'));
  const err = await engineError(c.submit({ source: { path: '/a.mp4', in: 2, out: 1 }, prompt: 'p' }));
  expect(err).toMatchObject({
    code: 'http',
    status: 400,
    title: 'Invalid request',
    field: 'source.out',
    issues: problem.issues,
  });
});

it('says how to start the engine when nothing answers', async () => {
  const { c } = client(async () => {
    throw new TypeError('Failed to fetch');
  });
  const err = await engineError(c.health());
  expect(err).toMatchObject({ code: 'unreachable', status: 0, title: 'Engine not running' });
  expect(err.detail).toContain('npx reshoot serve');
});

it('gives up after its timeout and aborts the request', async () => {
  let signal: AbortSignal | undefined;
  const { c } = client(
    (_url, init) =>
      new Promise((_resolve, reject) => {
        signal = init.signal;
        init.signal?.addEventListener('abort', () => reject(new Error('aborted')));
      }),
    50,
  );
  const err = await engineError(c.job('j1'));
  expect(err).toMatchObject({ code: 'timeout', status: 0 });
  expect(signal?.aborted).toBe(true);
});

it('recognises another program on the engine port', async () => {
  const { c } = client(async () => reply(200, '<html>hello</html>', 'text/html'));
  await expect(c.health()).rejects.toMatchObject({ code: 'not-reshoot' });
  const { c: c2 } = client(async () => reply(200, { status: 'fine' }));
  await expect(c2.health()).rejects.toMatchObject({ code: 'not-reshoot' });
  const { c: c3 } = client(async () => reply(200, HEALTH));
  await expect(c3.health()).resolves.toEqual(HEALTH);
});

it('polls a job until it ends, backing off while the engine is away', async () => {
  jest.useFakeTimers();
  try {
    const states = ['queued', 'running', 'error', 'running', 'succeeded'];
    const { c, calls } = client(async () => {
      const s = states.shift()!;
      if (s === 'error') throw new TypeError('fetch failed');
      return reply(200, { id: 'j1', state: s });
    });
    const seen: string[] = [];
    const errors: string[] = [];
    c.watch('j1', (j) => seen.push(j.state), { intervalMs: 100, onError: (e) => errors.push(e.code) });
    for (let i = 0; i < 10; i++) await jest.advanceTimersByTimeAsync(250);
    expect(seen).toEqual(['queued', 'running', 'running', 'succeeded']);
    expect(errors).toEqual(['unreachable']);
    expect(calls).toHaveLength(5);
  } finally {
    jest.useRealTimers();
  }
});
