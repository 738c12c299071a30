// onnxruntime-common checks `data instanceof Float32Array`; Jest runs tests in a separate vm realm whose typed
// array constructors differ from the ones the native addon sees, so tensors would be rejected. Sharing the outer
// realm's constructors makes the instanceof checks agree.
const NodeEnvironment = require('jest-environment-node').TestEnvironment;

const SHARED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
  'DataView',
];

class OrtEnvironment extends NodeEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}
module.exports = OrtEnvironment;
