#!/usr/bin/env node
// The `reshoot` command. Each subcommand lives in its own module; this file only dispatches.
import { VERSION } from '../version';
import { onnxRuntimeStatus } from '../models/ort-support';
import { CliError } from './args';

type Command = (argv: string[]) => Promise<number>;

// Loaded on demand: a command module pulls in ONNX Runtime, whose import throws on a platform it has no build for.
// Checking first lets `reshoot` say so in one sentence, and keeps doctor, service and help working there.
const ENGINE_COMMANDS: Record<string, () => Promise<Command>> = {
  demo: async () => (await import('./demo')).runDemo,
  models: async () => (await import('./models')).runModels,
  edit: async () => (await import('./edit')).runEdit,
  serve: async () => (await import('./serve')).runServe,
  worker: async () => (await import('./worker')).runWorker,
  eval: async () => (await import('./eval')).runEval,
  bench: async () => (await import('./bench')).runBenchCommand,
};

/** Exit status when this machine cannot run the engine at all (distinct from usage errors, 2). */
const UNSUPPORTED_PLATFORM = 3;

const USAGE = `reshoot — prompt-based video editing on a local diffusion engine

Usage:
  reshoot serve [--port N] [--model DIR] [--provider LIST] [--threads N] [--attention-slices N]
                [--max-memory SIZE] [--unload-after SECONDS]
                [--queue redis://HOST:PORT [--queue-password-env NAME]] [--renders DIR]
                                      --queue: jobs run on render nodes (reshoot worker) instead of here;
                                      --renders: where jobs without an output folder write (shared storage)
  reshoot worker --queue redis://HOST:PORT [--queue-password-env NAME] [--model DIR …] [--provider LIST]
                 [--threads N] [--concurrency N] [--map FROM=TO …] [--cache DIR]
                                      a render node: runs the jobs of its models from every engine on that
                                      queue; --cache: an inversion cache on shared storage, for all nodes
  reshoot workers --queue redis://HOST:PORT [--json]
                                      the render nodes on that queue: host, provider, models, current jobs
  reshoot edit INPUT --prompt "…" [--source-prompt "…"] [--in T --out T] [--mask auto|FILE|x,y,w,h]
               [--method inversion|sdedit|fast] [--steps N] [--fast-steps 1-4] [--guidance G] [--strength S]
               [--seed N] [--batch N] [--codec h264|prores] [--audio] [-o OUTPUT] [--overwrite] [--model DIR]
               [--attention-slices N] [--max-memory SIZE] [--json]
  reshoot demo [--out DIR] [--frames N] [--provider LIST]
  reshoot eval [--suite synthetic|large] [--clip FILE --prompt "…"] [--out DIR] [--json] [--no-rss]
  reshoot models check DIR [--provider LIST] [--json]
  reshoot models pull REPO_ID [--revision REV] [--dest DIR]
  reshoot bench [--json] [--out FILE] [--sections LIST] [--unet-calls] [--unet-only]
  reshoot service install [--port N] [--model DIR] [--provider LIST] [--threads N]
                                      start the engine at every login of this user (no admin rights)
  reshoot service uninstall           stop it and remove what install wrote
  reshoot service status [--json]
  reshoot doctor [--json] [--no-gpu]  what this machine can run: Node, ONNX Runtime and the GPU providers that open,
                                      the ffmpeg/ffprobe used and why, and where the token, data and models are
  reshoot help

Models: "oracle" is the embedded default (generated, no download). A real model is a Stable Diffusion pipeline
exported to ONNX in the diffusers/optimum layout (optimum-cli export onnx --model ... DIR).`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'doctor':
      return (await import('./doctor')).runDoctor(rest);
    case 'service':
      return (await import('./service')).runService(rest);
    // Reads the render queue only: it needs no ONNX Runtime.
    case 'workers':
      return (await import('./workers')).runWorkers(rest);
    case '--version':
    case 'version':
      console.log(VERSION);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return 0;
  }
  const load = Object.hasOwn(ENGINE_COMMANDS, command) ? ENGINE_COMMANDS[command] : undefined;
  if (!load) throw new CliError(`unknown command "${command}"\n\n${USAGE}`);
  const runtime = await onnxRuntimeStatus();
  if (!runtime.ok) {
    console.error(`reshoot: ${runtime.problem}`);
    return UNSUPPORTED_PLATFORM;
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`reshoot: ${message}`);
    process.exitCode = err instanceof CliError ? err.exitCode : 1;
  },
);
