// The one module that loads ONNX Runtime for the engine: everything else imports `ort` from here (ESLint's
// no-restricted-imports says so), so the Node 24 guard runs in every thread before onnxruntime-common builds a tensor.
// A platform without an onnxruntime-node build fails here on import; cli/main.ts asks `onnxRuntimeStatus()` first so
// that a user sees one sentence instead of a stack trace.
import './float16-guard';
export * from 'onnxruntime-node';
