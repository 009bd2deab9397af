"""A small ByteLevel BPE tokenizer for the toy world, loadable with ``AutoTokenizer`` offline.

The pipeline (NFC normaliser, Qwen2's pre-tokenisation regex with single-digit pieces, ByteLevel
bytes-to-unicode, ByteLevel decoder) is exactly the one ``transformers.Qwen2Tokenizer`` builds
from a vocab and merges, so the tokenizer encodes identically whether ``AutoTokenizer`` loads
it from the tokenizer directory or, through ``model_type: qwen2``, from a checkpoint directory.

The merges are learnt here by a tiny pure-python BPE with a total order on ties (count, then
the pair itself), so the same corpus always gives the same vocabulary.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

PAD_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)

# ChatML, short: no default system turn.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _pipeline(tok):
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def learn_bpe(texts: Iterable[str], vocab_size: int = 384, min_frequency: int = 2) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Deterministic BPE over the pre-tokenised corpus: (vocab without specials, merges)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    pre = _pipeline(Tokenizer(models.BPE()))
    words: collections.Counter[str] = collections.Counter()
    for text in texts:
        for piece, _ in pre.pre_tokenizer.pre_tokenize_str(pre.normalizer.normalize_str(text)):
            words[piece] += 1

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    n_merges = vocab_size - len(SPECIAL_TOKENS) - len(vocab)
    seqs = {w: tuple(w) for w in sorted(words)}
    merges: list[tuple[str, str]] = []
    for _ in range(max(0, n_merges)):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for w, syms in seqs.items():
            for pair in zip(syms, syms[1:]):
                pairs[pair] += words[w]
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < min_frequency:
            break
        merges.append(best)
        joined = best[0] + best[1]
        vocab[joined] = len(vocab)
        for w, syms in seqs.items():
            if len(syms) < 2:
                continue
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == best[0] and syms[i + 1] == best[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            seqs[w] = tuple(out)
    return vocab, merges


def build_tokenizer(texts: Iterable[str], vocab_size: int = 384, min_frequency: int = 2):
    """A ``PreTrainedTokenizerFast`` trained on ``texts`` (pad ``<|endoftext|>``, eos ``<|im_end|>``)."""
    return assemble(*learn_bpe(texts, vocab_size, min_frequency))


def assemble(vocab: dict[str, int], merges: list[tuple[str, str]], model_max_length: int = 256):
    """The ``PreTrainedTokenizerFast`` of a byte-level BPE vocabulary and its merges, with the
    special tokens after the vocabulary and the short ChatML template."""
    from tokenizers import AddedToken, Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    model = models.BPE(
        vocab=vocab,
        merges=merges,
        dropout=None,
        unk_token=None,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
        byte_fallback=False,
    )
    tok = _pipeline(Tokenizer(model))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=None,
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def corpus_texts(rows: Iterable[dict], hint_template: str | None = None,
                 hint_fields: Iterable[str] = ("hint_answer", "hint_soft")) -> Iterable[str]:
    """Texts the tokenizer is trained on: user turns (plain and hinted), solutions, role names."""
    from gopd.prompts import DEFAULT_HINT_TEMPLATE, user_content

    template = hint_template or DEFAULT_HINT_TEMPLATE
    fields = tuple(hint_fields)
    for r in rows:
        yield "user\n"
        yield "assistant\n"
        yield user_content(r["problem"])
        for field in fields:
            yield user_content(r["problem"], r[field], template)
        yield r["solution"]
