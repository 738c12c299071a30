// The UNet as one ONNX Runtime session per set of graph passes. The base session carries the decoder-feature tap
// when the graph allows it (its extra output costs nothing unless fetched); a stage that needs more (keys and values
// of self-attention, say) asks for a variant with its passes, which is rewritten once, cached on disk
// (onnx/graph-cache.ts) and opened beside the base. Every variant computes the base UNet's output when its extra
// inputs are at their neutral values, so which session runs a call changes nothing the caller did not ask for.
import type * as ort from './ort';
import type { AttentionSites } from '../onnx/attention-sites';
import { rewriteGraph, type PassRequest } from '../onnx/graph-cache';
import type { Ports } from '../onnx/pass';
import { FEATURE_TAP_OUTPUT, featureTap } from '../onnx/passes/feature-tap';
import { attentionSlicing } from '../onnx/passes/attention-slicing';
import { openSession, type OpenedSession, type SessionSettings } from './providers';

/** What a model's attention looks like to the passes: one entry per site, as `reshoot models check` shows it. */
export interface AttentionInfo {
  pattern: AttentionSites['pattern'];
  /** `layout`: how the site's attention tensors hold the heads (AttentionSite.layout), for stages feeding per-item ports. */
  sites: { module: string; kind: 'self' | 'cross'; resolution: number; heads: number; layout: 'folded' | 'split' }[];
  note?: string;
  /** Parts self-attention is computed in (SessionSettings.attentionSlices); 1 = whole. */
  slices: number;
  /** Why slicing was asked for and not applied. */
  slicingNote?: string;
}

export interface DecoderFeatureInfo {
  /** The graph tensor exposed (for people); the port to fetch is FEATURE_TAP_OUTPUT. */
  tensor: string | null;
  note?: string;
}

/** How many parts self-attention is computed in, and whether the user asked (else it is the model's default). */
export interface Slicing {
  slices: number;
  asked: boolean;
}

export type VariantResult = { ok: true; id: string; ports: Ports } | { ok: false; reason: string };

interface Variant {
  session: ort.InferenceSession;
  ports: Ports;
}

export const BASE_VARIANT = 'base';

export class UnetVariants {
  private readonly variants = new Map<string, Variant>();
  private readonly pending = new Map<string, Promise<VariantResult>>();

  private constructor(
    private readonly file: string,
    private readonly settings: SessionSettings,
    private readonly cacheDir: string | null,
    readonly opened: OpenedSession,
    basePorts: Ports,
    private readonly basePasses: PassRequest[],
    /** Passes every session ends with (attention slicing): after the others, which find sites by node name. */
    private readonly tailPasses: PassRequest[],
    readonly features: DecoderFeatureInfo,
    readonly attention: AttentionInfo,
  ) {
    this.variants.set(BASE_VARIANT, { session: opened.session, ports: basePorts });
  }

  /**
   * Opens the base session: the feature tap when it applies (and is not turned off), else the file as it is. Never
   * fails for a pass that does not apply; it says why in `features.note`.
   */
  static async open(
    file: string,
    settings: SessionSettings,
    cacheDir: string | null,
    slicing: Slicing = { slices: settings.attentionSlices ?? 1, asked: settings.attentionSlices !== undefined },
  ): Promise<UnetVariants> {
    const slices = slicing.slices;
    let tail: PassRequest[] = slices > 1 ? [{ pass: attentionSlicing, options: { slices } }] : [];
    let slicingNote: string | undefined;
    if (tail.length) {
      // Slicing that does not apply to this graph (fused attention, an unknown chain, no attention at all) leaves it
      // whole; when the user asked for it, the note says why.
      const probe = await rewriteGraph(file, tail, { cacheDir });
      if (!probe.ok) {
        if (slicing.asked) slicingNote = probe.reason;
        tail = [];
      }
    }
    const applied = { slices: tail.length ? slices : 1, ...(slicingNote ? { slicingNote } : {}) };
    const wantFeatures = settings.decoderFeatures !== false;
    const tapped = wantFeatures ? await rewriteGraph(file, [{ pass: featureTap }, ...tail], { cacheDir }) : undefined;
    if (tapped?.ok) {
      try {
        const opened = await openSession({ bytes: tapped.bytes, dir: tapped.dir, file }, settings);
        const tensor = tapped.ports.outputs.find((o) => o.name === FEATURE_TAP_OUTPUT)?.tensor ?? FEATURE_TAP_OUTPUT;
        const features = { tensor };
        return new UnetVariants(file, settings, cacheDir, opened, tapped.ports, [{ pass: featureTap }], tail, features, {
          ...attentionInfo(tapped.sites),
          ...applied,
        });
      } catch (err) {
        const note = `the rewritten UNet did not load (${(err as Error).message.split('\n')[0]})`;
        return UnetVariants.plain(file, settings, cacheDir, { tensor: null, note }, tail, applied);
      }
    }
    const note = !wantFeatures ? 'turned off' : tapped && !tapped.ok ? tapped.reason : 'not tried';
    return UnetVariants.plain(file, settings, cacheDir, { tensor: null, note }, tail, applied);
  }

  private static async plain(
    file: string,
    settings: SessionSettings,
    cacheDir: string | null,
    features: DecoderFeatureInfo,
    tail: PassRequest[],
    applied: Pick<AttentionInfo, 'slices' | 'slicingNote'>,
  ): Promise<UnetVariants> {
    // The sites come from the graph alone; a graph that cannot be read for them still runs.
    const graph = await rewriteGraph(file, tail, { cacheDir });
    const opened =
      graph.ok && tail.length
        ? await openSession({ bytes: graph.bytes, dir: graph.dir, file }, settings)
        : await openSession(file, settings);
    const attention: AttentionInfo = graph.ok
      ? { ...attentionInfo(graph.sites), ...applied }
      : { pattern: 'none', sites: [], note: graph.reason, slices: 1 };
    return new UnetVariants(file, settings, cacheDir, opened, { inputs: [], outputs: [] }, [], graph.ok ? tail : [], features, attention);
  }

  session(id: string): Variant {
    const v = this.variants.get(id);
    if (!v) throw new Error(`no UNet variant "${id}" is open; ask for it with model.variant(passes) first`);
    return v;
  }

  /** A session whose graph has the base passes and these, in order; the same passes give the same variant. */
  async variant(passes: PassRequest[]): Promise<VariantResult> {
    if (!passes.length) return { ok: true, id: BASE_VARIANT, ports: this.session(BASE_VARIANT).ports };
    const all = [...this.basePasses, ...passes, ...this.tailPasses];
    const id = all.map((p) => `${p.pass.name}${p.options === undefined ? '' : JSON.stringify(p.options)}`).join('+');
    const open = this.variants.get(id);
    if (open) return { ok: true, id, ports: open.ports };
    let pending = this.pending.get(id);
    if (!pending) {
      pending = this.openVariant(id, all).finally(() => this.pending.delete(id));
      this.pending.set(id, pending);
    }
    return pending;
  }

  private async openVariant(id: string, passes: PassRequest[]): Promise<VariantResult> {
    const rewritten = await rewriteGraph(this.file, passes, { cacheDir: this.cacheDir });
    if (!rewritten.ok) return { ok: false, reason: `${rewritten.pass}: ${rewritten.reason}` };
    try {
      const opened = await openSession({ bytes: rewritten.bytes, dir: rewritten.dir, file: this.file }, this.settings);
      this.variants.set(id, { session: opened.session, ports: rewritten.ports });
      return { ok: true, id, ports: rewritten.ports };
    } catch (err) {
      return { ok: false, reason: `the rewritten UNet did not load (${(err as Error).message.split('\n')[0]})` };
    }
  }

  async release(): Promise<void> {
    await Promise.all([...this.variants.values()].map((v) => v.session.release().catch(() => undefined)));
    this.variants.clear();
  }
}

function attentionInfo(found: AttentionSites): Omit<AttentionInfo, 'slices'> {
  const sites = found.sites.map((s) => ({
    module: s.module,
    kind: s.kind,
    resolution: s.resolution,
    heads: s.heads,
    layout: s.layout ?? ('folded' as const),
  }));
  return { pattern: found.pattern, sites, ...(found.note ? { note: found.note } : {}) };
}
