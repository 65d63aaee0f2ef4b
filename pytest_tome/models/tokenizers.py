"""Tokenizers built offline: no vocabulary file can be downloaded on these machines."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def byte_vocab() -> dict[str, int]:
    """A CLIP-style byte-level vocabulary with no merges: every byte is a token."""
    # GPT-2's printable stand-ins for the 256 byte values, as CLIP's BPE expects.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    extra = (b for b in range(256) if b not in printable)
    chars = [chr(b) for b in printable] + [chr(256 + i) for i, _ in enumerate(extra)]
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab.write_text(json.dumps(byte_vocab()), encoding="utf-8")
        merges.write_text("#version: 0.2\n", encoding="utf-8")
        Path(tmp, "tokenizer_config.json").write_text(
            json.dumps({"model_max_length": 77}), encoding="utf-8"
        )
        return CLIPTokenizer.from_pretrained(tmp)


def t5_tokenizer() -> Any:
    """A T5-style tokenizer (Unigram over single characters, Metaspace, `</s>` appended)."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]  # T5's ids 0, 1, 2
    chars = ["▁", *(c for c in string.printable if not c.isspace())]
    words = ["▁" + c for c in string.ascii_lowercase]
    vocab = [(p, 0.0) for p in specials] + [(p, -float(len(p))) for p in chars + words]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=512,
    )
