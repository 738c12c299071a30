// `reshoot serve`: the engine the panel and the web UI talk to, on 127.0.0.1 only unless told otherwise.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dataDir } from '../config/paths';
import { JobManager } from '../jobs/manager';
import { ffmpegInspection } from '../media/binaries';
import { resolveModel } from '../models/default-model';
import { parseProviders } from '../models/providers';
import { createApp } from '../server/app';
import { isLoopbackHost, startServer } from '../server/listen';
import { loadOrCreateToken, tokenDir, tokenPath } from '../server/token';
import { makePrivateDir } from '../config/private-dir';
import { PipelineWorker } from '../worker/pipeline-worker';
import { VERSION } from '../version';
import { CliError, intOption, parse, sizeOption } from './args';
import { QUEUE_OPTIONS, queueModelId, queueOption, reachQueue } from './queue-option';
import { QueueExecutor } from '../farm/queue-executor';

export const DEFAULT_PORT = 7865;
/**
 * Seconds without a task after which the engine stops its compute worker, so that a job's peak memory (ONNX Runtime's
 * arena keeps it for a session's life) goes back to the system; the next job reloads the model. Like Ollama's
 * keep_alive. 0 keeps the model loaded.
 */
export const DEFAULT_UNLOAD_AFTER_S = 300;
/** setTimeout's limit (2^31 − 1 ms) in whole seconds: about 24 days. */
const MAX_UNLOAD_AFTER_S = 2_147_483;

export async function runServe(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    port: { type: 'string' },
    host: { type: 'string' },
    'allow-non-loopback': { type: 'boolean' },
    model: { type: 'string' },
    provider: { type: 'string' },
    threads: { type: 'string' },
    'attention-slices': { type: 'string' },
    'unload-after': { type: 'string' },
    'max-memory': { type: 'string' },
    renders: { type: 'string' },
    ...QUEUE_OPTIONS,
  });
  const queue = queueOption(values);
  const rendersDir = values.renders === undefined ? undefined : rendersOption(values.renders);
  const memoryLimitBytes = sizeOption(values['max-memory'], 'max-memory');
  const unloadAfterS = intOption(values['unload-after'], 'unload-after', DEFAULT_UNLOAD_AFTER_S, 0, MAX_UNLOAD_AFTER_S);
  const port = intOption(values.port ?? process.env.RESHOOT_PORT, 'port', DEFAULT_PORT, 0, 65535);
  const host = values.host ?? '127.0.0.1';
  const allowNonLoopback = values['allow-non-loopback'] ?? false;
  // Before the model loads and recovered jobs resume: an engine that will not listen must not start working either.
  if (!isLoopbackHost(host) && !allowNonLoopback) {
    throw new CliError(
      `refusing to listen on ${host}: that makes the engine reachable from other machines, where anyone who obtains the token can read and write your files and use your GPU. ` +
        `Leave --host out (127.0.0.1 is the default); to serve other machines on purpose (a render node behind a firewall), add --allow-non-loopback.`,
    );
  }
  // Control characters escaped: a path or prompt with a newline in it must not forge a line of its own.
  const log = (line: string) => console.error(`${new Date().toISOString()} ${escapeControls(line)}`);
  // On Windows the token's protection is its folder's ACL: private when that folder is outside the profile too.
  const configPrivacy = makePrivateDir(tokenDir());
  if (configPrivacy) log(`warning: ${configPrivacy}`);
  const token = loadOrCreateToken(tokenDir());
  const worker = await PipelineWorker.start(
    resolveModel(values.model ?? process.env.RESHOOT_MODEL),
    {
      providers: values.provider ? parseProviders(values.provider) : [],
      threads: values.threads ? intOption(values.threads, 'threads', 1, 1, 256) : undefined,
      // Absent: the model decides (models/sd-model.ts slices large-latent models by default).
      attentionSlices:
        values['attention-slices'] === undefined
          ? undefined
          : intOption(values['attention-slices'], 'attention-slices', 1, 1, 64),
    },
    {},
    {
      unloadAfterMs: unloadAfterS * 1000,
      onUnload: () => log(`no task for ${unloadAfterS} s: model unloaded; the next job reloads it`),
    },
  );
  // With --queue the engine validates and plans each job as always, and render nodes (`reshoot worker`) run it.
  const executor = queue
    ? await reachQueue(() => QueueExecutor.open(queue, log, queueModelId(worker.info.name, worker.info.dir))).catch(
        async (err: unknown) => {
          // The compute thread would keep the process alive after the error.
          await worker.terminate();
          throw err;
        },
      )
    : undefined;
  if (queue) log(`jobs go to the render queue at ${queue.display}; start render nodes with reshoot worker --queue`);
  if (rendersDir) log(`jobs without an output folder write into ${rendersDir} (--renders)`);
  else if (queue)
    log(
      "no --renders: jobs without an output folder are refused (render nodes cannot write into this machine's private renders folder)",
    );
  const manager = await JobManager.open({
    worker,
    executor,
    dataDir: dataDir(),
    version: VERSION,
    log,
    memoryLimitBytes,
    rendersDir,
  });
  // The web UI is built next to the engine (dist/panel-web, by `npm run build`); without it the API still runs.
  const webDir = path.resolve(__dirname, '../../../panel-web');
  const staticDir = fs.existsSync(path.join(webDir, 'index.html')) ? webDir : undefined;
  if (!staticDir) log(`no web UI at ${webDir} (run npm run build); serving the API only`);
  // Choosing ffmpeg runs each candidate's -version synchronously (~0.2 s); done here, not in the first health call or
  // submission, where it would stall every request in flight.
  ffmpegInspection();
  const app = createApp(manager, { token, port, version: VERSION, log, staticDir });
  const server = await startServer(app, { host, port, allowNonLoopback });
  const info = worker.info;
  log(
    `model ${info.name} (${info.dir}) on ${info.provider}${info.providerFallbacks.length ? `; fell back: ${info.providerFallbacks.join('; ')}` : ''}`,
  );
  log(`token file ${tokenPath(tokenDir())}; data ${dataDir()}`);
  log(
    unloadAfterS
      ? `the model is unloaded after ${unloadAfterS} s without a task (--unload-after)`
      : 'the model stays loaded (--unload-after 0)',
  );
  // Like Jupyter: the one URL that carries the token, for the browser UI. Printed on stdout so scripts can read it.
  console.log(`${server.url}/?token=${token}`);

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: stopping; a running job is re-queued for the next start`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await manager.close();
  await server.close();
  await worker.terminate();
  return 0;
}

/**
 * `--renders DIR`: where jobs without an output folder write. It must exist already: on a farm it is a folder on
 * shared storage, and creating it would create a local folder of the same name when the share is not mounted.
 */
function rendersOption(dir: string): string {
  const full = path.resolve(dir);
  if (!fs.statSync(full, { throwIfNoEntry: false })?.isDirectory())
    throw new CliError(
      `--renders ${full} is not a folder: create it (on shared storage that the render nodes reach, for a farm) or mount its share, then start again`,
    );
  return full;
}

/** Control characters (and the Unicode line separators) written as \uXXXX. */
export function escapeControls(line: string): string {
  return line.replace(
    /[\u0000-\u001f\u007f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
