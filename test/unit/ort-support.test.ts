// What the engine says about ONNX Runtime on each platform, and the provider settings it asks for.
import { bundledPlatforms, onnxRuntimeStatus } from '../../engine/src/models/ort-support';
import { providerOptions } from '../../engine/src/models/providers';
import * as path from 'node:path';

const ORT_DIR = path.resolve(require.resolve('onnxruntime-node'), '../..');

describe('onnxRuntimeStatus', () => {
  it('this machine: ONNX Runtime loads, with its version and the CPU backend', async () => {
    const s = await onnxRuntimeStatus();
    if (!s.ok) throw new Error(s.problem);
    expect(s.version).toMatch(/^1\.\d+\.\d+$/);
    expect(s.backends).toContainEqual({ name: 'cpu', bundled: true });
  });

  it('an Intel Mac (no darwin-x64 build since 1.24): one sentence with what to do', async () => {
    expect(bundledPlatforms(ORT_DIR)).not.toContain('darwin-x64');
    const s = await onnxRuntimeStatus('darwin', 'x64');
    expect(s.ok).toBe(false);
    if (s.ok) return;
    expect(s.problem).toMatch(
      /^ONNX Runtime 1\.\d+\.\d+ has no build for macOS on an Intel processor \(darwin-x64\) \(it ships [a-z0-9, -]*darwin-arm64[a-z0-9, -]*\), so the engine cannot run on this machine: run `reshoot serve` on a Mac with Apple silicon or on a Windows or Linux PC instead\.$/,
    );
    expect(s.problem.split('. ').length).toBe(1);
  });

  it('names other platforms it has no build for', async () => {
    const s = await onnxRuntimeStatus('freebsd', 'x64');
    expect(s.ok ? '' : s.problem).toMatch(/^ONNX Runtime \S+ has no build for freebsd on x64 \(freebsd-x64\)/);
  });
});

describe('providerOptions', () => {
  it('DirectML: no memory patterns and sequential execution, which its documentation requires', () => {
    expect(providerOptions('dml')).toEqual({
      executionProviders: ['dml'],
      enableMemPattern: false,
      executionMode: 'sequential',
    });
  });

  it('CoreML: the ML Program format', () => {
    expect(providerOptions('coreml')).toEqual({ executionProviders: [{ name: 'coreml', coreMlFlags: 0x010 }] });
  });

  it('the others: the provider by name only', () => {
    expect(providerOptions('cuda')).toEqual({ executionProviders: ['cuda'] });
    expect(providerOptions('cpu')).toEqual({ executionProviders: ['cpu'], enableMemPattern: false });
  });
});
