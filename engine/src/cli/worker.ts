// `reshoot worker`: a render node. Runs the jobs that engines started with `reshoot serve --queue` put on the queue.
import * as path from 'node:path';
import { dataDir } from '../config/paths';
import { makePrivateDir } from '../config/private-dir';
import { parseMapping } from '../farm/path-map';
import { RenderWorker } from '../farm/render-worker';
import { DEFAULT_MODEL, resolveModel } from '../models/default-model';
import { parseProviders } from '../models/providers';
import { PipelineWorker } from '../worker/pipeline-worker';
import type { SessionSettings } from '../models/providers';
import { CliError, intOption, parse, sizeOption } from './args';
import { QUEUE_OPTIONS, queueModelId, queueOption, reachQueue } from './queue-option';
import { escapeControls } from './serve';

/** Seconds between a node's announcements; it drops off `reshoot workers` after three missed. */
const DEFAULT_HEARTBEAT_MS = 5000;

export async function runWorker(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    ...QUEUE_OPTIONS,
    model: { type: 'string', multiple: true },
    provider: { type: 'string' },
    threads: { type: 'string' },
    concurrency: { type: 'string' },
    map: { type: 'string', multiple: true },
    'max-memory': { type: 'string' },
    cache: { type: 'string' },
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
  const models = await loadModels(
    values.model?.length ? values.model : [process.env.RESHOOT_MODEL ?? DEFAULT_MODEL],
    {
      providers: values.provider ? parseProviders(values.provider) : [],
      threads: values.threads ? intOption(values.threads, 'threads', 1, 1, 256) : undefined,
    },
    log,
  );
  const terminate = () => Promise.all(models.map((m) => m.terminate()));
  // The fault-detection timings, for tests and for farms that want a killed node's job back sooner than BullMQ's
  // 30 s default (a shorter lock costs more Redis traffic per running job).
  const ms = (name: string) => {
    const v = process.env[name];
    return v ? intOption(v, name, 0, 100, 3_600_000) : undefined;
  };
  const node = await reachQueue(() =>
    RenderWorker.start({
      connection: queue,
      models,
      dataDir: dataDir(),
      ...(values.cache ? { cacheDir: path.resolve(values.cache) } : {}),
      maps,
      concurrency,
      lockDurationMs: ms('RESHOOT_QUEUE_LOCK_MS'),
      stalledIntervalMs: ms('RESHOOT_QUEUE_STALLED_MS'),
      heartbeatMs: ms('RESHOOT_QUEUE_HEARTBEAT_MS') ?? DEFAULT_HEARTBEAT_MS,
      memoryLimitBytes,
      log,
    }),
  ).catch(async (err: unknown) => {
    // The compute threads would keep the process alive after the error.
    await terminate();
    throw err;
  });
  log(
    `render node ${node.id}: ${models.map((m) => `model ${m.info.name} on ${m.info.provider}`).join(', ')}; ${concurrency} job(s) of each at once, queue ${queue.display}` +
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
  await terminate();
  return 0;
}

/**
 * Each --model on a compute worker of its own. A model that does not load is left out with the reason, and its jobs
 * go to the nodes that have it; a node with no model to offer does not start.
 */
async function loadModels(
  args: string[],
  settings: SessionSettings,
  log: (line: string) => void,
): Promise<PipelineWorker[]> {
  const loaded: PipelineWorker[] = [];
  for (const arg of args) {
    const dir = resolveModel(arg);
    queueModelId(path.basename(dir), dir);
    try {
      // A render node keeps its models loaded: it exists to run jobs.
      const model = await PipelineWorker.start(dir, settings, {}, { unloadAfterMs: 0 });
      const clash = loaded.find((m) => m.info.name === model.info.name);
      if (clash) {
        await Promise.all([model, ...loaded].map((m) => m.terminate()));
        throw new CliError(
          `two --model folders are named ${model.info.name} (${clash.info.dir}, ${model.info.dir}): the name is the model's id on the queue; rename one`,
        );
      }
      loaded.push(model);
    } catch (err) {
      if (err instanceof CliError) throw err;
      log(
        `cannot load model ${path.basename(dir)} (${dir}): ${(err as Error).message}; its jobs go to other render nodes`,
      );
    }
  }
  if (loaded.length === 0)
    throw new CliError(
      `no model loaded (${args.join(', ')}); a render node needs at least one: check the --model folders (reshoot models lists the installed ones)`,
    );
  return loaded;
}
