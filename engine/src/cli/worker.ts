// `reshoot worker`: a render node. Runs the jobs that engines started with `reshoot serve --queue` put on the queue.
import { dataDir } from '../config/paths';
import { makePrivateDir } from '../config/private-dir';
import { parseMapping } from '../farm/path-map';
import { RenderWorker } from '../farm/render-worker';
import { resolveModel } from '../models/default-model';
import { parseProviders } from '../models/providers';
import { PipelineWorker } from '../worker/pipeline-worker';
import { CliError, intOption, parse, sizeOption } from './args';
import { QUEUE_OPTIONS, queueOption, reachQueue } from './queue-option';
import { escapeControls } from './serve';

/** Seconds between a node's announcements; it drops off `reshoot workers` after three missed. */
const DEFAULT_HEARTBEAT_MS = 5000;

export async function runWorker(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    ...QUEUE_OPTIONS,
    model: { type: 'string' },
    provider: { type: 'string' },
    threads: { type: 'string' },
    concurrency: { type: 'string' },
    map: { type: 'string', multiple: true },
    'max-memory': { type: 'string' },
  });
  const queue = queueOption(values);
  if (!queue)
    throw new CliError(
      "reshoot worker needs --queue redis://HOST:PORT: the Redis that the editors' engines (reshoot serve --queue) use",
    );
  const maps = (values.map ?? []).map((spec) => {
    try {
      return parseMapping(spec);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  });
  const concurrency = intOption(values.concurrency, 'concurrency', 1, 1, 64);
  const memoryLimitBytes = sizeOption(values['max-memory'], 'max-memory');
  const log = (line: string) => console.error(`${new Date().toISOString()} ${escapeControls(line)}`);
  const privacy = makePrivateDir(dataDir());
  if (privacy) log(`warning: ${privacy}`);
  const worker = await PipelineWorker.start(
    resolveModel(values.model ?? process.env.RESHOOT_MODEL),
    {
      providers: values.provider ? parseProviders(values.provider) : [],
      threads: values.threads ? intOption(values.threads, 'threads', 1, 1, 256) : undefined,
    },
    {},
    // A render node keeps its model loaded: it exists to run jobs.
    { unloadAfterMs: 0 },
  );
  // The fault-detection timings, for tests and for farms that want a killed node's job back sooner than BullMQ's
  // 30 s default (a shorter lock costs more Redis traffic per running job).
  const ms = (name: string) => {
    const v = process.env[name];
    return v ? intOption(v, name, 0, 100, 3_600_000) : undefined;
  };
  const node = await reachQueue(() =>
    RenderWorker.start({
      connection: queue,
      worker,
      dataDir: dataDir(),
      maps,
      concurrency,
      lockDurationMs: ms('RESHOOT_QUEUE_LOCK_MS'),
      stalledIntervalMs: ms('RESHOOT_QUEUE_STALLED_MS'),
      heartbeatMs: ms('RESHOOT_QUEUE_HEARTBEAT_MS') ?? DEFAULT_HEARTBEAT_MS,
      memoryLimitBytes,
      log,
    }),
  ).catch(async (err: unknown) => {
    // The compute thread would keep the process alive after the error.
    await worker.terminate();
    throw err;
  });
  const info = worker.info;
  log(
    `render node ${node.id}: model ${info.name} on ${info.provider}, ${concurrency} job(s) at once, queue ${queue.display}` +
      (maps.length ? `; paths ${maps.map((m) => `${m.from} → ${m.to}`).join(', ')}` : ''),
  );
  // On stdout, one line, for scripts (and tests) that wait for the node to be ready.
  console.log(`worker ${node.id} ready`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: finishing the running job(s), taking no new ones`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await node.close();
  await worker.terminate();
  return 0;
}
