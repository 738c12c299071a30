// Node 24 ships a native Float16Array. onnxruntime-common 1.30 then maps the 'float16' tensor type to it, and
// onnxruntime-node 1.30's binding does not read such arrays: every fp16 model fails with "not enough space: expected N,
// got 0" (microsoft/onnxruntime#26791). Without the global, onnxruntime-common falls back to Uint16Array holding raw
// half-precision bits, which the binding reads correctly and which models/tensors.ts already produces and consumes.
// onnxruntime-common looks the global up once, when its first tensor is built, so removing it here (before any
// tensor) is enough. Nothing else in the engine uses Float16Array.
const scope = globalThis as { Float16Array?: unknown };
if (scope.Float16Array !== undefined) delete scope.Float16Array;
