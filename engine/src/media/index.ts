// Everything that touches media files. The rest of the engine imports from here and never spawns ffmpeg.

export { MediaError, isMediaError } from './errors';
export type { MediaErrorCode } from './errors';
export { ffmpegPath, ffprobePath } from './binaries';
export { rational, parseRational, rationalEquals, rationalValue, frameTime, formatFps } from './rational';
export type { Rational } from './rational';
export { probeMedia } from './probe';
export type { MediaInfo, VideoInfo, AudioInfo, ColorMatrix } from './probe';
export { resolveRange } from './range';
export type { FrameRange } from './range';
export { workingSize } from './working-size';
export { decodeFrames } from './decode';
export type { DecodeOptions } from './decode';
export { createEncoder } from './encode';
export type { Encoder, EncoderOptions, EncodeResult, OutputCodec } from './encode';
export { extractStill } from './still';
export { loadMask, checkMask } from './mask-input';
export { checkOutputTarget, systemFolderOf, VIDEO_EXTENSIONS } from './output-target';
export type { OutputTargetOptions } from './output-target';
export type { MaskSpec, MaskTarget } from './mask-input';
export { makeTestClip, rampIndex, rampLevel, sampleRgb, RAMP_PERIOD } from './test-clips';
export type { TestClipOptions, TestClipContent } from './test-clips';
