"""The offline CLIP tokenizer of the tiny DMDiff base, and the check every tokenizer passes.

The tokenizer is built from a ``vocab.json`` + ``merges.txt`` this module writes: offline,
``CLIPTokenizer()`` or a hub id silently gives a placeholder mapping every word to one id, so
every tokenizer is checked with :func:`check_tokenizer` after loading.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from thincam.errors import BadInputError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Prompts whose ids must differ under any real CLIP vocabulary: a placeholder tokenizer fails this.
PROBE_PROMPTS = ("a sharp photo", "a blurry photo")
# Words of the tiny vocabulary besides those of the configured prompts; anything else still
# tokenizes, letter by letter, through the byte-level alphabet.
BASE_WORDS = (
    "a an the of with and in on photo photograph image picture capture metalens lens camera "
    "sharp clean clear crisp detailed high quality resolution smooth soft low pass filtered "
    "blurry blurred blur noisy noise haze hazy degraded aberration chromatic dim dark bright "
    "natural scene face object texture"
).split()


def prompt_words(prompts: dict[str, str]) -> list[str]:
    """The lower-case words of every prompt, in order: each becomes a vocabulary entry."""
    return [w for text in prompts.values() for w in re.findall(r"[a-z]+", text.lower())]


def write_bpe_vocab(words: list[str], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write a CLIP-format byte-level BPE ``vocab.json`` and ``merges.txt`` covering ``words``.

    Each word gets the left-to-right chain of merges that builds it, so listed words become one
    token (or a few, where merges of other words take precedence) and nothing ever maps to unk.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)}
    for char in alphabet:
        vocab[char + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in dict.fromkeys(w.lower() for w in words if w.isascii() and w.isalpha()):
        parts = list(word)
        parts[-1] += "</w>"
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False, indent=0))
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab_path, merges_path


def build_tokenizer(tokenizer_dir: str | os.PathLike, max_length: int):
    """A CLIPTokenizer from the vocab.json + merges.txt in ``tokenizer_dir`` (never the hub)."""
    from transformers import CLIPTokenizer

    tokenizer_dir = Path(tokenizer_dir)
    return CLIPTokenizer(
        vocab=str(tokenizer_dir / "vocab.json"),
        merges=str(tokenizer_dir / "merges.txt"),
        model_max_length=int(max_length),
    )


def check_tokenizer(
    tokenizer, prompts, vocab_size: int | None = None, where: str = "tokenizer"
) -> None:
    """Reject a placeholder tokenizer: every prompt word known, distinct prompts distinct ids."""
    if vocab_size is not None and len(tokenizer) != vocab_size:
        raise BadInputError(
            f"{where}: tokenizer has {len(tokenizer)} tokens, the text encoder expects {vocab_size}"
        )
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    ids = {}
    for prompt in dict.fromkeys(prompts):
        content = [i for i in tokenizer(prompt).input_ids if i not in special]
        if prompt.strip() and not content:
            raise BadInputError(f"{where}: prompt {prompt!r} maps to unknown/special tokens only")
        ids.setdefault(tuple(content), []).append(prompt)
    clashes = [group for group in ids.values() if len(group) > 1]
    if clashes:
        raise BadInputError(
            f"{where}: distinct prompts {clashes[0]} get the same token ids "
            "(an offline placeholder tokenizer?)"
        )


def build_tiny_tokenizer(
    prompts: dict[str, str], max_length: int, tokenizer_dir: str | os.PathLike | None = None
):
    """The checked tokenizer of :data:`BASE_WORDS` plus the prompt words.

    Its files go to ``tokenizer_dir``, or to a temporary folder when None.
    """
    words = BASE_WORDS + prompt_words(prompts)
    if tokenizer_dir is None:
        with tempfile.TemporaryDirectory(prefix="thincam-tokenizer-") as scratch:
            write_bpe_vocab(words, scratch)
            tokenizer = build_tokenizer(scratch, max_length)
    else:
        write_bpe_vocab(words, tokenizer_dir)
        tokenizer = build_tokenizer(tokenizer_dir, max_length)
    check_tokenizer(tokenizer, [*prompts.values(), *PROBE_PROMPTS])
    return tokenizer
