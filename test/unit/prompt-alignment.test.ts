// The word diff that tells prompt-to-prompt which source token's map each target token takes.
import { alignPrompts, editedTokens, tokenSpans } from '../../engine/src/editing/prompt-alignment';
import { buildClipVocab } from '../../engine/src/models/generate/clip-vocab';
import { ClipTokenizer } from '../../engine/src/models/tokenizer';

const g = buildClipVocab();
const tok = ClipTokenizer.fromVocab(g.vocab, g.merges, {});

describe('tokenSpans', () => {
  it('gives every word its token positions after BOS, a word outside the vocabulary several', () => {
    const spans = tokenSpans(tok, 'A red  ZEBRA, on a gray road');
    expect(spans.map((s) => s.word)).toEqual(['a', 'red', 'zebra', ',', 'on', 'a', 'gray', 'road']);
    expect(spans[0]).toEqual({ word: 'a', start: 1, end: 2 });
    const zebra = spans[2];
    expect(zebra.end - zebra.start).toBeGreaterThan(1);
    // Contiguous, and the same ids the encoder gets.
    for (let k = 1; k < spans.length; k++) expect(spans[k].start).toBe(spans[k - 1].end);
    const ids = tok.encode('A red  ZEBRA, on a gray road').ids;
    expect(ids.slice(1, spans.at(-1)!.end)).toEqual(tok.tokenize('A red  ZEBRA, on a gray road'));
    expect(ids[spans.at(-1)!.end]).toBe(tok.eosId);
  });

  it('leaves out words past the length limit', () => {
    const short = ClipTokenizer.fromVocab(g.vocab, g.merges, { maxLength: 5 });
    expect(tokenSpans(short, 'a red car on a gray road').map((s) => s.word)).toEqual(['a', 'red', 'car']);
  });
});

describe('alignPrompts', () => {
  it('word swap: the swapped word takes the map of the word it replaces, every other token its own', () => {
    const a = alignPrompts(tok, 'a red car on a gray road', 'a blue car on a gray road');
    expect(a.swapped).toEqual([['red', 'blue']]);
    expect(a.added).toEqual([]);
    expect(Array.from(a.sourceOf)).toEqual(Array.from({ length: 77 }, (_, p) => p));
  });

  it('refine: added words are new (−1) and the words after them shift to their source positions', () => {
    const a = alignPrompts(tok, 'a car on a road', 'a vintage red car on a road');
    expect(a.added).toEqual(['vintage', 'red']);
    expect(a.swapped).toEqual([]);
    const s = Array.from(a.sourceOf.slice(0, 10));
    // BOS a vintage red car on a road EOS …  ←  BOS a car on a road EOS …
    expect(s).toEqual([0, 1, -1, -1, 2, 3, 4, 5, 6, 7]);
    // EOS to EOS, then the k-th padding to the source's k-th: two positions later in the target.
    expect(a.sourceOf[8]).toBe(6);
    expect(a.sourceOf[76]).toBe(74);
  });

  it('a swapped word of another token length reads the source word proportionally', () => {
    const a = alignPrompts(tok, 'a zebra on a road', 'a dog on a road');
    const src = tokenSpans(tok, 'a zebra on a road');
    expect(a.swapped).toEqual([['zebra', 'dog']]);
    expect(a.sourceOf[2]).toBe(src[1].start);
    // "on" follows each word: the target's position 3 reads the source's "on".
    expect(a.sourceOf[3]).toBe(src[2].start);
  });

  it('a removed source word is skipped and nothing maps to it', () => {
    const a = alignPrompts(tok, 'a red car on a gray road', 'a car on a road');
    expect(a.added).toEqual([]);
    expect(a.swapped).toEqual([]);
    expect(Array.from(a.sourceOf.slice(0, 7))).toEqual([0, 1, 3, 4, 5, 7, 8]);
  });
});

describe('editedTokens', () => {
  it('gives the tokens of the words the edit swaps, adds and drops, and none of the shared ones', () => {
    const swap = editedTokens(tok, 'a red car on a gray road', 'a blue car on a gray road');
    expect(swap).toEqual({ source: [2], target: [2] });
    const refine = editedTokens(tok, 'a car on a road', 'a red car on a road');
    expect(refine).toEqual({ source: [], target: [2] });
    const drop = editedTokens(tok, 'a big red car', 'a red car');
    expect(drop).toEqual({ source: [2], target: [] });
    expect(editedTokens(tok, 'a red car', 'a red car')).toEqual({ source: [], target: [] });
    // A word the vocabulary spells in several tokens is edited whole.
    const zebra = tokenSpans(tok, 'a zebra on a road')[1];
    expect(editedTokens(tok, 'a car on a road', 'a zebra on a road').target).toEqual(
      Array.from({ length: zebra.end - zebra.start }, (_, k) => zebra.start + k),
    );
  });
});
