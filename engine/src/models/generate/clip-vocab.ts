// Small CLIP-style tokenizer files for the generated test models. Real CLIP's vocabulary cannot be shipped and is
// not needed: what matters is the layout (byte alphabet, `</w>` twins, merge results, specials last) and that every
// prompt word is one token, so the generated text encoders can give each word its own embedding.
import {
  CLIP_BOS,
  CLIP_EOS,
  CLIP_PRETOKENIZE_PATTERN,
  END_OF_WORD,
  bpeSymbols,
  byteLevelAlphabet,
  toByteLevel,
} from '../tokenizer';

export const PROMPT_WORDS: string[] = [
  // colours: the oracle model's data distribution is keyed on these
  'red', 'green', 'blue', 'yellow', 'orange', 'purple', 'pink', 'cyan', 'magenta', 'white', 'black', 'gray', 'grey',
  'brown', 'teal', 'silver', 'gold',
  // things in edit prompts
  'car', 'road', 'ball', 'wall', 'sky', 'grass', 'dog', 'cat', 'house', 'tree', 'street', 'field', 'sea',
  'background', 'object', 'square', 'circle', 'person', 'shirt', 'vintage', 'convertible', 'bike', 'boat', 'water',
  'beach', 'mountain', 'cloud', 'sun', 'light', 'man', 'woman', 'hat', 'dress', 'flower', 'bird', 'horse', 'door',
  'window', 'city', 'forest', 'snow', 'river', 'table', 'painting', 'style', 'bright', 'dark', 'small', 'big',
  // function words and verbs
  'a', 'an', 'the', 'on', 'in', 'of', 'with', 'and', 'make', 'photo', 'video', 'over', 'at', 'to', 'into', 'is',
  'it', 'change', 'turn',
];

export interface GeneratedVocab {
  vocab: Record<string, number>;
  merges: string[];
  bosId: number;
  eosId: number;
  padId: number;
  /** File name -> contents for the tokenizer/ folder. */
  files: Record<string, string>;
}

export interface ClipVocabOptions {
  /** 'eos': SD1 (pad with <|endoftext|>); '!': SD2 / OpenCLIP (pad with "!", id 0). */
  pad?: 'eos' | '!';
  format?: 'vocab+merges' | 'tokenizer.json' | 'both';
  maxLength?: number;
}

export function buildClipVocab(words: string[] = PROMPT_WORDS, opts: ClipVocabOptions = {}): GeneratedVocab {
  const padMode = opts.pad ?? 'eos';
  const format = opts.format ?? 'vocab+merges';
  const maxLength = opts.maxLength ?? 77;
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new Error(`buildClipVocab: maxLength ${maxLength}; expected an integer >= 2`);
  }

  const targets: string[] = [];
  for (const w of words) {
    const lower = w.toLowerCase();
    // Anything else would be split by the pre-tokenizer before BPE and could never become one token.
    if (!/^\p{L}+$/u.test(lower)) {
      throw new Error(`buildClipVocab: ${JSON.stringify(w)} is not a single run of letters; expected words like "red"`);
    }
    const t = toByteLevel(lower);
    if (!targets.includes(t)) targets.push(t);
  }

  const merges: Array<[string, string]> = [];
  const ranks = new Map<string, number>();
  const addMerge = (a: string, b: string) => {
    const key = `${a} ${b}`;
    if (ranks.has(key)) return;
    ranks.set(key, merges.length);
    merges.push([a, b]);
  };
  for (const t of targets) {
    const chars = Array.from(t);
    let prefix = chars[0];
    for (let k = 1; k < chars.length; k++) {
      const right = k === chars.length - 1 ? chars[k] + END_OF_WORD : chars[k];
      addMerge(prefix, right);
      prefix += chars[k];
    }
  }
  // Left-to-right chains can be pre-empted by another word's lower-ranked merge matching inside this word
  // ("oad" before "road" leaves r + oad</w>). Appending a merge of the first two leftover symbols fixes that
  // without touching words already done: a merge ranked last only fires when nothing else can, and a finished
  // word has no pairs left.
  for (const t of targets) {
    for (;;) {
      const symbols = bpeSymbols(t, ranks);
      if (symbols.length <= 1) break;
      addMerge(symbols[0], symbols[1]);
    }
  }
  for (const t of targets) {
    const symbols = bpeSymbols(t, ranks);
    if (symbols.length !== 1 || symbols[0] !== t + END_OF_WORD) {
      throw new Error(`buildClipVocab: internal error, ${JSON.stringify(t)} tokenizes to ${JSON.stringify(symbols)}`);
    }
  }

  const entries = new Map<string, number>();
  const add = (token: string) => {
    if (!entries.has(token)) entries.set(token, entries.size);
  };
  const alphabet = byteLevelAlphabet();
  for (const ch of alphabet) add(ch);
  for (const ch of alphabet) add(ch + END_OF_WORD);
  for (const [a, b] of merges) add(a + b);
  add(CLIP_BOS);
  add(CLIP_EOS);
  const vocab = Object.fromEntries(entries) as Record<string, number>;
  const bosId = entries.get(CLIP_BOS)!;
  const eosId = entries.get(CLIP_EOS)!;
  const padToken = padMode === 'eos' ? CLIP_EOS : '!';
  const padId = entries.get(padToken)!;
  const mergeLines = merges.map(([a, b]) => `${a} ${b}`);

  const added = (content: string) => ({
    content,
    lstrip: false,
    normalized: true,
    rstrip: false,
    single_word: false,
  });
  const files: Record<string, string> = {};
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  if (format === 'vocab+merges' || format === 'both') {
    files['vocab.json'] = json(vocab);
    files['merges.txt'] = ['#version: 0.2', ...mergeLines].join('\n') + '\n';
  }
  // Shaped like what transformers saves for SD1 / SD2 checkpoints: objects for bos/eos/unk, a plain string pad.
  files['special_tokens_map.json'] = json({
    bos_token: added(CLIP_BOS),
    eos_token: added(CLIP_EOS),
    pad_token: padToken,
    unk_token: added(CLIP_EOS),
  });
  files['tokenizer_config.json'] = json({
    add_prefix_space: false,
    bos_token: { __type: 'AddedToken', ...added(CLIP_BOS) },
    do_lower_case: true,
    eos_token: { __type: 'AddedToken', ...added(CLIP_EOS) },
    errors: 'replace',
    model_max_length: maxLength,
    pad_token: padToken,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: { __type: 'AddedToken', ...added(CLIP_EOS) },
  });
  if (format === 'tokenizer.json' || format === 'both') {
    const special = (content: string) => ({
      id: entries.get(content)!,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    files['tokenizer.json'] = json({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(CLIP_BOS), special(CLIP_EOS)],
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'NFC' },
          { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
          { type: 'Lowercase' },
        ],
      },
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: CLIP_PRETOKENIZE_PATTERN }, behavior: 'Removed', invert: true },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: {
        type: 'RobertaProcessing',
        sep: [CLIP_EOS, eosId],
        cls: [CLIP_BOS, bosId],
        trim_offsets: false,
        add_prefix_space: false,
      },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: CLIP_EOS,
        continuing_subword_prefix: '',
        end_of_word_suffix: END_OF_WORD,
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: mergeLines,
      },
    });
  }
  return { vocab, merges: mergeLines, bosId, eosId, padId, files };
}
