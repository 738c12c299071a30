#!/usr/bin/env node
// The `reshoot` command. Each subcommand lives in its own module; this file only dispatches.
import { runBenchCommand } from './bench';
import { runDemo } from './demo';
import { runDoctor } from './doctor';
import { runModels } from './models';
import { runEdit } from './edit';
import { runEval } from './eval';
import { runServe } from './serve';
import { VERSION } from '../version';
import { CliError } from './args';

const USAGE = `reshoot — prompt-based video editing on a local diffusion engine

Usage:
  reshoot serve [--port N] [--model DIR] [--provider LIST] [--threads N]
  reshoot edit INPUT --prompt "…" [--source-prompt "…"] [--in S --out S] [--mask auto|FILE|x,y,w,h]
               [--method inversion|sdedit|fast] [--steps N] [--fast-steps 1-4] [--guidance G] [--strength S]
               [--seed N] [--batch N] [--codec h264|prores] [--audio] [-o OUTPUT] [--overwrite] [--model DIR] [--json]
  reshoot demo [--out DIR] [--frames N] [--provider LIST]
  reshoot eval [--suite synthetic|large] [--clip FILE --prompt "…"] [--out DIR] [--json] [--no-rss]
  reshoot models check DIR [--provider LIST] [--json]
  reshoot models pull REPO_ID [--revision REV] [--dest DIR]
  reshoot bench [--json] [--out FILE] [--sections LIST] [--unet-calls] [--unet-only]
  reshoot doctor [--json]        which ffmpeg/ffprobe are used, their versions, why, and warnings
  reshoot help

Models: "oracle" is the embedded default (generated, no download). A real model is a Stable Diffusion pipeline
exported to ONNX in the diffusers/optimum layout (optimum-cli export onnx --model ... DIR).`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'demo':
      return runDemo(rest);
    case 'models':
      return runModels(rest);
    case 'edit':
      return runEdit(rest);
    case 'serve':
      return runServe(rest);
    case 'eval':
      return runEval(rest);
    case 'bench':
      return runBenchCommand(rest);
    case 'doctor':
      return runDoctor(rest);
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
    default:
      throw new CliError(`unknown command "${command}"\n\n${USAGE}`);
  }
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
