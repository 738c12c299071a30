import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ClipTokenizer, idsTensorData, byteLevelAlphabet, toByteLevel } from '../../engine/src/models/tokenizer';
import { buildClipVocab, PROMPT_WORDS, GeneratedVocab } from '../../engine/src/models/generate/clip-vocab';

const tmpDirs: string[] = [];
function writeFolder(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-tok-'));
  tmpDirs.push(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

function tok(g: GeneratedVocab, maxLength?: number): ClipTokenizer {
  return ClipTokenizer.fromVocab(g.vocab, g.merges, { pad: g.padId === 0 ? '!' : undefined, maxLength });
}

/** Ids of the given tokens, failing loudly if a token is absent (so expectations cannot silently be undefined). */
function idsOf(g: GeneratedVocab, tokens: string[]): number[] {
  return tokens.map((t) => {
    const id = g.vocab[t];
    if (id === undefined) throw new Error(`test vocab lacks ${JSON.stringify(t)}`);
    return id;
  });
}

/** The parts of a Hugging Face tokenizer.json these tests read or rewrite. */
interface FastTokenizerJson {
  model: { merges: string[] | string[][] };
  added_tokens: { id: number; content: string }[];
  post_processor: unknown;
}

describe('buildClipVocab', () => {
  it('lays out the vocabulary like CLIP: byte alphabet, </w> twins, merge results, specials last', () => {
    const g = buildClipVocab(['red', 'car']);
    expect(g.vocab['!']).toBe(0);
    expect(g.vocab['"']).toBe(1);
    expect(g.vocab['!</w>']).toBe(256);
    // byte 0x00 is the first remapped byte: U+0100 right after the 188 printable bytes
    expect(g.vocab['\u0100']).toBe(188);
    expect(g.vocab['Ġ']).toBe(188 + 32); // space
    expect(g.merges).toEqual(['r e', 're d</w>', 'c a', 'ca r</w>']);
    expect(g.vocab['re']).toBe(512);
    expect(g.vocab['red</w>']).toBe(513);
    expect(g.vocab['ca']).toBe(514);
    expect(g.vocab['car</w>']).toBe(515);
    expect([g.bosId, g.eosId, g.padId]).toEqual([516, 517, 517]);
    expect(g.vocab['<|startoftext|>']).toBe(516);
    expect(g.vocab['<|endoftext|>']).toBe(517);
    expect(Object.keys(g.vocab)).toHaveLength(518);
    expect(g.files['merges.txt']).toBe('#version: 0.2\nr e\nre d</w>\nc a\nca r</w>\n');
    expect(Object.keys(g.files).sort()).toEqual([
      'merges.txt',
      'special_tokens_map.json',
      'tokenizer_config.json',
      'vocab.json',
    ]);
    expect(byteLevelAlphabet()).toHaveLength(256);
    expect(new Set(byteLevelAlphabet()).size).toBe(256);
  });

  it('makes every prompt word exactly one token, also when one word sits inside another', () => {
    const g = buildClipVocab();
    const t = tok(g);
    for (const w of PROMPT_WORDS) expect(t.tokenize(w)).toEqual(idsOf(g, [`${w}</w>`]));
    expect(PROMPT_WORDS.length).toBeGreaterThanOrEqual(75);

    // "oad" ranks its o-a merge first, which pre-empts road's left-to-right chain; the fix-up merge repairs it.
    const h = buildClipVocab(['oad', 'road', 'Café']);
    const th = tok(h);
    expect(h.merges).toContain('r oad</w>');
    expect(th.tokenize('road')).toEqual(idsOf(h, ['road</w>']));
    expect(th.tokenize('oad')).toEqual(idsOf(h, ['oad</w>']));
    expect(th.tokenize('CAFÉ')).toEqual(idsOf(h, ['cafÃ©</w>']));
  });

  it('is deterministic and rejects words the pre-tokenizer would split', () => {
    expect(buildClipVocab()).toEqual(buildClipVocab());
    expect(() => buildClipVocab(['red car'])).toThrow(/"red car" is not a single run of letters/);
    expect(() => buildClipVocab(['r2d2'])).toThrow(/not a single run of letters/);
  });

  it('writes SD1 / SD2 pad settings and the chosen formats', () => {
    const sd1 = buildClipVocab(['red'], { format: 'both', maxLength: 16 });
    expect(Object.keys(sd1.files).sort()).toEqual([
      'merges.txt',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'vocab.json',
    ]);
    const cfg: unknown = JSON.parse(sd1.files['tokenizer_config.json']);
    expect(cfg).toMatchObject({
      model_max_length: 16,
      do_lower_case: true,
      tokenizer_class: 'CLIPTokenizer',
      pad_token: '<|endoftext|>',
    });
    const fast = JSON.parse(sd1.files['tokenizer.json']) as FastTokenizerJson;
    expect(fast.model).toMatchObject({
      type: 'BPE',
      end_of_word_suffix: '</w>',
      continuing_subword_prefix: '',
      unk_token: '<|endoftext|>',
    });
    expect(fast.model.merges).toEqual(['r e', 're d</w>']);
    expect(fast.added_tokens.map((a) => [a.id, a.content])).toEqual([
      [514, '<|startoftext|>'],
      [515, '<|endoftext|>'],
    ]);
    expect(fast.post_processor).toMatchObject({ sep: ['<|endoftext|>', 515], cls: ['<|startoftext|>', 514] });

    const sd2 = buildClipVocab(['red'], { pad: '!', format: 'tokenizer.json' });
    expect(sd2.padId).toBe(0);
    expect(Object.keys(sd2.files).sort()).toEqual([
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect(JSON.parse(sd2.files['special_tokens_map.json'])).toMatchObject({ pad_token: '!' });
  });
});

describe('ClipTokenizer.tokenize / encode', () => {
  const g = buildClipVocab();
  const t = tok(g);
  const [bos, eos] = [g.bosId, g.eosId];

  it('encodes a prompt to BOS, one id per word, EOS, then eos padding to 77', () => {
    const e = t.encode('A RED  car on a gray road');
    const content = idsOf(g, ['a</w>', 'red</w>', 'car</w>', 'on</w>', 'a</w>', 'gray</w>', 'road</w>']);
    expect(e.ids).toEqual([bos, ...content, eos, ...new Array<number>(77 - 9).fill(eos)]);
    expect(e.ids).toHaveLength(77);
    expect(e.attentionMask).toEqual([...new Array<number>(9).fill(1), ...new Array<number>(68).fill(0)]);
    expect(e).toMatchObject({ truncated: false, droppedTokens: 0, unknownTokens: 0 });
    expect(t.tokenize('  \t a\nRED car ')).toEqual(idsOf(g, ['a</w>', 'red</w>', 'car</w>']));
    expect([t.bosId, t.eosId, t.padId, t.maxLength, t.vocabSize]).toEqual([bos, eos, eos, 77, eos + 1]);
  });

  it('splits unknown words into byte-level BPE pieces', () => {
    expect(t.tokenize('zq')).toEqual(idsOf(g, ['z', 'q</w>']));
    // "ca" is a shared merge of car/cat; "cars" has no (ca, r) merge because car's chain ends in r</w>
    expect(t.tokenize('cars')).toEqual(idsOf(g, ['ca', 'r', 's</w>']));
    expect(t.tokenize('reds')).toEqual(idsOf(g, ['re', 'd', 's</w>']));
  });

  it('splits punctuation, digits and contractions with the CLIP regex', () => {
    expect(t.tokenize('car, red!')).toEqual(idsOf(g, ['car</w>', ',</w>', 'red</w>', '!</w>']));
    expect(t.tokenize('red!!')).toEqual([...idsOf(g, ['red</w>']), 0, 256]);
    expect(t.tokenize('3 cars')).toEqual(idsOf(g, ['3</w>', 'ca', 'r', 's</w>']));
    expect(t.tokenize('42')).toEqual(idsOf(g, ['4</w>', '2</w>']));
    expect(t.tokenize("it's")).toEqual(idsOf(g, ['it</w>', "'", 's</w>']));
    expect(t.tokenize('red<|endoftext|>')).toEqual([g.vocab['red</w>'], eos]);
  });

  it('sends non-ASCII text through UTF-8 bytes', () => {
    // é = C3 A9: both bytes are printable Latin-1, so they stand for themselves (Ã, ©)
    expect(toByteLevel('café')).toBe('cafÃ©');
    expect(t.tokenize('café')).toEqual(idsOf(g, ['ca', 'f', 'Ã', '©</w>']));
    // decomposed e + U+0301 is NFC-normalised first
    expect(t.tokenize('cafe\u0301')).toEqual(t.tokenize('café'));
    // U+00A0 is whitespace; byte 0xAD is remapped (soft hyphen -> U+0143)
    expect(t.tokenize('red\u00a0car')).toEqual(idsOf(g, ['red</w>', 'car</w>']));
    expect(t.tokenize('\u00ad')).toEqual(idsOf(g, ['Â', 'Ń</w>']));
  });

  it('cleans a prompt as CLIP does (ftfy, double HTML unescape, Python whitespace) before splitting', () => {
    const redCar = idsOf(g, ['red</w>', 'car</w>']);
    const messyRedCars = ['ＲＥＤ ｃａｒ', '\ufeffred car', 'red&nbsp;car', 'red&amp;nbsp;car', 'RED\u3000CAR'];
    messyRedCars.push(' red\u2003car\r\n');
    for (const messy of messyRedCars) {
      expect([messy, t.tokenize(messy)]).toEqual([messy, redCar]);
    }
    expect(t.tokenize('“red” car')).toEqual(idsOf(g, ['"</w>', 'red</w>', '"</w>', 'car</w>']));
    expect(t.tokenize('it’s')).toEqual(t.tokenize("it's"));
    expect(t.tokenize('ﬁeld')).toEqual(idsOf(g, ['field</w>']));
    expect(t.tokenize('cafÃ©')).toEqual(idsOf(g, ['ca', 'f', 'Ã', '©</w>']));
    expect(t.tokenize('&amp;amp;')).toEqual(idsOf(g, ['&</w>']));
    // U+FEFF is whitespace to JavaScript's \s but a removed control character to ftfy: the words join
    expect(t.tokenize('red\ufeffcar')).toEqual(t.tokenize('redcar'));
    expect(t.decode(t.tokenize('ＲＥＤ&amp;ｃａｒ'))).toBe('red & car');
  });

  it('maps symbols missing from a small vocabulary to the unk (eos) id and counts them', () => {
    const small = { ...g.vocab };
    delete small['q</w>'];
    const ts = ClipTokenizer.fromVocab(small, g.merges);
    expect(ts.tokenize('zq red')).toEqual([g.vocab['z'], eos, g.vocab['red</w>']]);
    const e = ts.encode('zq q red');
    expect(e.unknownTokens).toBe(2);
    expect(e.ids.slice(0, 6)).toEqual([bos, g.vocab['z'], eos, eos, g.vocab['red</w>'], eos]);
  });

  it('truncates to 75 content tokens and keeps EOS last', () => {
    const long = new Array<string>(100).fill('red').join(' ');
    const e = t.encode(long);
    expect(e.ids).toHaveLength(77);
    expect(e.ids[0]).toBe(bos);
    expect(e.ids.slice(1, 76)).toEqual(new Array<number>(75).fill(g.vocab['red</w>']));
    expect(e.ids[76]).toBe(eos);
    expect(e).toMatchObject({ truncated: true, droppedTokens: 25 });
    expect(e.attentionMask).toEqual(new Array<number>(77).fill(1));

    const exact = t.encode(new Array<string>(75).fill('car').join(' '));
    expect(exact).toMatchObject({ truncated: false, droppedTokens: 0 });
    expect(exact.ids[75]).toBe(g.vocab['car</w>']);
    expect(exact.ids[76]).toBe(eos);

    // a word of several BPE pieces counts each piece
    const pieces = t.encode(new Array<string>(74).fill('car').join(' ') + ' zq');
    expect(pieces).toMatchObject({ truncated: true, droppedTokens: 1 });
    expect(pieces.ids.slice(74, 77)).toEqual([g.vocab['car</w>'], g.vocab['z'], eos]);
  });

  it('honours a custom maxLength', () => {
    const t8 = tok(g, 8);
    const e = t8.encode('red green blue yellow orange purple pink');
    expect(e.ids).toEqual([
      bos,
      ...idsOf(g, ['red</w>', 'green</w>', 'blue</w>', 'yellow</w>', 'orange</w>', 'purple</w>']),
      eos,
    ]);
    expect(e).toMatchObject({ truncated: true, droppedTokens: 1 });
    expect(() => tok(g, 1)).toThrow(/model_max_length 1; expected an integer >= 2/);
  });
});

describe('ClipTokenizer.fromFolder', () => {
  const prompts = ['A RED  car on a gray road', 'zq, café 3 cars!!', 'make the dog a blue cat'];

  it('reads SD1 vocab+merges and pads with eos', () => {
    const g = buildClipVocab(PROMPT_WORDS, { pad: 'eos' });
    const t = ClipTokenizer.fromFolder(writeFolder(g.files));
    expect([t.bosId, t.eosId, t.padId, t.maxLength]).toEqual([g.bosId, g.eosId, g.eosId, 77]);
    const e = t.encode('red car');
    expect(e.ids).toEqual([
      g.bosId,
      ...idsOf(g, ['red</w>', 'car</w>']),
      g.eosId,
      ...new Array<number>(73).fill(g.eosId),
    ]);
    for (const p of prompts) expect(t.encode(p)).toEqual(tok(g).encode(p));
  });

  it('reads SD2 files (pad "!") in both formats, merges as strings or [a, b] pairs, with identical ids', () => {
    const g = buildClipVocab(PROMPT_WORDS, { pad: '!', format: 'both' });
    const slow = { ...g.files };
    delete slow['tokenizer.json'];
    const fastStrings = { ...g.files };
    delete fastStrings['vocab.json'];
    delete fastStrings['merges.txt'];
    const fj = JSON.parse(g.files['tokenizer.json']) as FastTokenizerJson;
    fj.model.merges = (fj.model.merges as string[]).map((m) => m.split(' '));
    const fastPairs = { ...fastStrings, 'tokenizer.json': JSON.stringify(fj) };

    const tokenizers = [slow, fastStrings, fastPairs].map((f) => ClipTokenizer.fromFolder(writeFolder(f)));
    for (const t of tokenizers) {
      expect(t.padId).toBe(0);
      expect(t.encode('red car').ids).toEqual([
        g.bosId,
        ...idsOf(g, ['red</w>', 'car</w>']),
        g.eosId,
        ...new Array<number>(73).fill(0),
      ]);
      for (const p of prompts) expect(t.encode(p)).toEqual(tokenizers[0].encode(p));
    }
  });

  it('resolves pad from special_tokens_map.json before tokenizer_config.json, objects with content too', () => {
    const g = buildClipVocab(['red'], { pad: 'eos' });
    const cfg = JSON.parse(g.files['tokenizer_config.json']) as Record<string, unknown>;
    const onlyConfig: Record<string, string> = {
      ...g.files,
      'tokenizer_config.json': JSON.stringify({ ...cfg, pad_token: { content: '!' } }),
    };
    delete onlyConfig['special_tokens_map.json'];
    expect(ClipTokenizer.fromFolder(writeFolder(onlyConfig)).padId).toBe(0);

    const mapWins = {
      ...g.files,
      'special_tokens_map.json': JSON.stringify({ pad_token: { content: '<|endoftext|>', lstrip: false } }),
      'tokenizer_config.json': JSON.stringify({ ...cfg, pad_token: '!' }),
    };
    expect(ClipTokenizer.fromFolder(writeFolder(mapWins)).padId).toBe(g.eosId);

    const bare = { 'vocab.json': g.files['vocab.json'], 'merges.txt': g.files['merges.txt'] };
    const t = ClipTokenizer.fromFolder(writeFolder(bare));
    expect([t.padId, t.maxLength]).toEqual([g.eosId, 77]);
  });

  it('reads model_max_length and treats the "no limit" sentinel as 77', () => {
    const g = buildClipVocab(['red'], { maxLength: 12 });
    expect(ClipTokenizer.fromFolder(writeFolder(g.files)).encode('red').ids).toHaveLength(12);
    const cfg = JSON.parse(g.files['tokenizer_config.json']) as Record<string, unknown>;
    const huge = {
      ...g.files,
      'tokenizer_config.json': JSON.stringify(cfg).replace(
        '"model_max_length":12',
        '"model_max_length":1000000000000000019884624838656',
      ),
    };
    expect(huge['tokenizer_config.json']).toContain('1000000000000000019884624838656');
    expect(ClipTokenizer.fromFolder(writeFolder(huge)).maxLength).toBe(77);
  });

  it('names the file and what was expected in every error', () => {
    const g = buildClipVocab(['red'], { format: 'both' });
    const missing = path.join(os.tmpdir(), 'no-such-clip-tokenizer-dir');
    expect(() => ClipTokenizer.fromFolder(missing)).toThrow(`${missing}: missing; expected a tokenizer folder`);

    const empty = writeFolder({});
    expect(() => ClipTokenizer.fromFolder(empty)).toThrow(
      `${path.join(empty, 'vocab.json')}: missing; a CLIP tokenizer folder needs vocab.json + merges.txt or tokenizer.json`,
    );
    const vocabOnly = writeFolder({ 'vocab.json': g.files['vocab.json'] });
    expect(() => ClipTokenizer.fromFolder(vocabOnly)).toThrow(`${path.join(vocabOnly, 'merges.txt')}: missing`);

    const badVocab = writeFolder({ ...g.files, 'vocab.json': '{"!": 0,' });
    expect(() => ClipTokenizer.fromFolder(badVocab)).toThrow(`${path.join(badVocab, 'vocab.json')}: invalid JSON`);
    const badFast = writeFolder({ 'tokenizer.json': 'not json' });
    expect(() => ClipTokenizer.fromFolder(badFast)).toThrow(`${path.join(badFast, 'tokenizer.json')}: invalid JSON`);
    const badMap = writeFolder({ ...g.files, 'special_tokens_map.json': '' });
    expect(() => ClipTokenizer.fromFolder(badMap)).toThrow(
      `${path.join(badMap, 'special_tokens_map.json')}: invalid JSON`,
    );

    const badPad = writeFolder({ ...g.files, 'special_tokens_map.json': JSON.stringify({ pad_token: '<pad>' }) });
    expect(() => ClipTokenizer.fromFolder(badPad)).toThrow(
      `${path.join(badPad, 'special_tokens_map.json')}: pad_token "<pad>" is not in the vocabulary`,
    );
    const badEos = writeFolder({
      'vocab.json': g.files['vocab.json'],
      'merges.txt': g.files['merges.txt'],
      'tokenizer_config.json': JSON.stringify({ eos_token: '</s>' }),
    });
    expect(() => ClipTokenizer.fromFolder(badEos)).toThrow(
      `${path.join(badEos, 'tokenizer_config.json')}: eos_token "</s>"`,
    );
    const badMerge = writeFolder({ ...g.files, 'merges.txt': '#version: 0.2\nr e\nred\n' });
    expect(() => ClipTokenizer.fromFolder(badMerge)).toThrow(
      `${path.join(badMerge, 'merges.txt')}:3: merge "red"; expected two symbols`,
    );
    const vocabArray = writeFolder({ ...g.files, 'vocab.json': '[]' });
    expect(() => ClipTokenizer.fromFolder(vocabArray)).toThrow(
      `${path.join(vocabArray, 'vocab.json')}: the file is an array; expected a JSON object`,
    );
  });
});

describe('decode', () => {
  const g = buildClipVocab();

  it('round-trips prompts, dropping specials and padding', () => {
    const t = tok(g);
    expect(t.decode(t.encode('A RED  car on a gray road').ids)).toBe('a red car on a gray road');
    expect(t.decode(t.tokenize('zq café'))).toBe('zq café');
    expect(t.decode(t.encode('car, red!').ids)).toBe('car , red !');
    const cut = t.encode(new Array<string>(80).fill('dog').join(' '));
    expect(t.decode(cut.ids)).toBe(new Array<string>(75).fill('dog').join(' '));
    expect(() => t.decode([g.eosId + 1])).toThrow(RangeError);
  });

  it('keeps "!" content but drops "!" padding with an SD2 pad', () => {
    const sd2 = buildClipVocab(PROMPT_WORDS, { pad: '!' });
    const t = tok(sd2);
    const e = t.encode('red!!');
    expect(e.ids.slice(0, 6)).toEqual([sd2.bosId, sd2.vocab['red</w>'], 0, 256, sd2.eosId, 0]);
    expect(t.decode(e.ids)).toBe('red !!');
  });
});

describe('idsTensorData', () => {
  it('flattens a batch into int32 or int64 data', () => {
    const rows = [
      [49406, 320, 49407],
      [49406, 0, 49407],
    ];
    const i32 = idsTensorData(rows, 'int32');
    expect(i32).toBeInstanceOf(Int32Array);
    expect(Array.from(i32)).toEqual([49406, 320, 49407, 49406, 0, 49407]);
    const i64 = idsTensorData(rows, 'int64');
    expect(i64).toBeInstanceOf(BigInt64Array);
    expect(Array.from(i64)).toEqual([49406n, 320n, 49407n, 49406n, 0n, 49407n]);
    expect(idsTensorData([], 'int32')).toHaveLength(0);
    expect(() => idsTensorData([[1, 2], [3]], 'int32')).toThrow(/row 1 has 1 ids, row 0 has 2/);
    expect(() => idsTensorData([[1.5]], 'int64')).toThrow(RangeError);
  });
});
