// The load suite's second process: talks to the engine over loopback the way a panel, a web UI and a script would
// at once, and prints one JSON summary line on stdout. Plain JavaScript so node runs it without a build step.
//   node load-client.mjs burst '{"url","token","count","job"}'   count concurrent submissions, health and status polls
//   node load-client.mjs soak  '{"url","token","seconds","job"}'  steady submissions, polls, SSE streams, lists
const [mode, json] = process.argv.slice(2);
const o = JSON.parse(json);
const auth = { authorization: `Bearer ${o.token}` };

async function call(method, path, body) {
  const t0 = performance.now();
  const res = await fetch(`${o.url}${path}`, {
    method,
    headers: body === undefined ? auth : { ...auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, json: parsed, ms: performance.now() - t0 };
}

const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : 0;
};
const latency = (xs) => ({ n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: percentile(xs, 100) });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const jobBody = (i) => ({ ...o.job, output: { path: `${o.job.output.path.replace(/\.mp4$/, '')}-${mode}-${i}.mp4` } });

async function burst() {
  let submitting = true;
  const health = [];
  const queuedSeen = [];
  const statusCounts = {};
  // Health asked every 10 ms whatever the previous answer, so a stalled engine shows as latency, not as fewer samples.
  const pending = [];
  const healthLoop = (async () => {
    while (submitting) {
      pending.push(
        call('GET', '/v1/health').then((r) => {
          if (r.status !== 200) statusCounts[`health ${r.status}`] = (statusCounts[`health ${r.status}`] ?? 0) + 1;
          health.push(r.ms);
          queuedSeen.push(r.json?.queue?.queued ?? -1);
        }),
      );
      await sleep(10);
    }
    await Promise.all(pending);
  })();
  const t0 = performance.now();
  const replies = await Promise.all(
    Array.from({ length: o.count }, (_, i) =>
      call('POST', '/v1/jobs', jobBody(i)).catch((e) => ({ status: 0, error: String(e) })),
    ),
  );
  const burstMs = performance.now() - t0;
  const accepted = replies.filter((r) => r.status === 202).map((r) => r.json.id);
  // Every accepted job polled at once, as many panels would.
  const polls = await Promise.all(accepted.map((id) => call('GET', `/v1/jobs/${id}`)));
  submitting = false;
  await healthLoop;
  for (const r of replies) statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
  const list = await call('GET', '/v1/jobs');
  return {
    burstMs,
    statusCounts,
    accepted,
    refusedDetails: [...new Set(replies.filter((r) => r.status !== 202).map((r) => r.json?.title ?? r.error))],
    pollsOk: polls.filter((p) => p.status === 200 && accepted.includes(p.json.id)).length,
    submitLatency: latency(replies.map((r) => r.ms ?? 0)),
    // A refusal at the queue bound must not wait behind the media work of the submissions that were accepted.
    refusedLatency: latency(replies.filter((r) => r.status === 429).map((r) => r.ms ?? 0)),
    health: latency(health),
    maxQueuedSeen: Math.max(...queuedSeen),
    listIds: list.json.jobs.map((j) => j.id),
  };
}

async function soak() {
  const end = Date.now() + o.seconds * 1000;
  const health = [];
  const errors = [];
  const ids = [];
  let requests = 0;
  let events = 0;
  let i = 0;
  const note = (what, r) => {
    requests++;
    if (r.status >= 500 || r.status === 0) errors.push(`${what}: ${r.status}`);
    return r;
  };
  const stream = async (id) => {
    const res = await fetch(`${o.url}/v1/jobs/${id}/events`, { headers: auth });
    requests++;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    events += (text.match(/^event: /gm) ?? []).length;
    if (!/event: done/.test(text)) errors.push(`events of ${id} ended without done`);
  };
  const pollers = [
    (async () => {
      while (Date.now() < end) {
        health.push(note('health', await call('GET', '/v1/health')).ms);
        await sleep(20);
      }
    })(),
    (async () => {
      while (Date.now() < end) {
        note('list', await call('GET', '/v1/jobs'));
        note('probe', await call('GET', `/v1/media/probe?path=${encodeURIComponent(o.job.source.path)}`));
        note(
          'still',
          await call('GET', `/v1/media/still?path=${encodeURIComponent(o.job.source.path)}&t=0.1&maxWidth=32`),
        );
        await sleep(100);
      }
    })(),
  ];
  // Two jobs in flight at a time, each followed over SSE and by polling until it ends.
  const worker = async () => {
    while (Date.now() < end) {
      const r = note('submit', await call('POST', '/v1/jobs', jobBody(i++)));
      if (r.status !== 202) {
        errors.push(`submit: ${r.status} ${r.json?.detail}`);
        await sleep(200);
        continue;
      }
      ids.push(r.json.id);
      const sse = stream(r.json.id);
      for (;;) {
        const s = note('status', await call('GET', `/v1/jobs/${r.json.id}`));
        if (['succeeded', 'failed', 'canceled'].includes(s.json?.state)) {
          if (s.json.state !== 'succeeded')
            errors.push(`job ${r.json.id} ${s.json.state}: ${JSON.stringify(s.json.error)}`);
          break;
        }
        await sleep(50);
      }
      await sse;
    }
  };
  await Promise.all([...pollers, worker(), worker()]);
  return { ids, requests, events, errors, health: latency(health) };
}

const result = mode === 'burst' ? await burst() : await soak();
process.stdout.write(`${JSON.stringify(result)}\n`);
