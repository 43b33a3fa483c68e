"""Text encoder through `transformers.AutoModel` (CLS of `last_hidden_state`) and its tokenizer.

`model: scratch` builds a small, randomly initialised DistilBERT-style model and trains a
WordPiece tokenizer on the corpus's transcripts with `tokenizers`: nothing is downloaded.
Any other value is a hub name or a local folder (the paper: `distilbert-base-uncased`).
Either way the checkpoint stores the model config and the tokenizer as JSON strings
(`TextSpec`), so a checkpoint rebuilds its text side without the original folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn

from tvts.models.config import TextConfig

SCRATCH = "scratch"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class TextSpec:
    """What rebuilds the text side exactly: the transformers config and the tokenizer, as JSON."""

    config_json: str
    tokenizer_json: str

    def as_dict(self) -> dict[str, str]:
        return {"config_json": self.config_json, "tokenizer_json": self.tokenizer_json}


def train_wordpiece(texts: Iterable[str], vocab_size: int):
    """A lower-casing BERT-style WordPiece tokenizer whose vocabulary comes from `texts`.

    The vocabulary is the special tokens, every character seen (alone and as a `##`
    continuation, so any word can be spelled), then whole words by falling count (ties by
    spelling) up to `vocab_size`. Built by hand rather than by the `tokenizers` trainer,
    whose merges break frequency ties differently in every process: two runs of one config
    would get different token ids.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = SPECIAL + chars + [f"##{c}" for c in chars]
    room = max(0, vocab_size - len(vocab))
    vocab += [w for w, _ in sorted(words.items(), key=lambda wc: (-wc[1], wc[0])) if len(w) > 1][:room]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    return tok


def build_spec(cfg: TextConfig, texts: Iterable[str] | None = None) -> TextSpec:
    """The text spec for a new run: train the scratch tokenizer, or read a pretrained one's files."""
    from transformers import AutoConfig, AutoTokenizer, DistilBertConfig

    if cfg.model == SCRATCH:
        if texts is None:
            raise ValueError("text.model=scratch needs the corpus transcripts to train its tokenizer")
        tok = train_wordpiece(texts, cfg.vocab_size)
        conf = DistilBertConfig(vocab_size=tok.get_vocab_size(), dim=cfg.dim, n_layers=cfg.depth,
                                n_heads=cfg.heads, hidden_dim=cfg.hidden_dim, dropout=cfg.dropout,
                                attention_dropout=cfg.dropout, max_position_embeddings=max(64, cfg.max_length),
                                pad_token_id=tok.token_to_id("[PAD]"))
        return TextSpec(conf.to_json_string(), tok.to_str())
    conf = AutoConfig.from_pretrained(cfg.model)
    tok = AutoTokenizer.from_pretrained(cfg.model, use_fast=True).backend_tokenizer
    return TextSpec(conf.to_json_string(), tok.to_str())


def load_tokenizer(spec: TextSpec, max_length: int):
    """A `tokenizers.Tokenizer` that truncates and pads to `max_length` (used in the data workers)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(spec.tokenizer_json)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]", length=max_length)
    return tok


def tokenize(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (len(texts), max_length) int64."""
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
    return ids, mask


class TextEncoder(nn.Module):
    """`AutoModel` -> the CLS vector of `last_hidden_state` (or the masked mean of its tokens).

    A randomly initialised encoder's CLS output is almost the same for every input (its
    attention is near uniform and the CLS embedding dominates), so sorting cannot start
    until the contrastive loss has shaped it; mean pooling is informative from step one.
    The paper (pretrained DistilBERT) uses CLS; the CPU demo config uses mean.
    """

    def __init__(self, spec: TextSpec, pretrained: str | None = None, pool: str = "cls"):
        super().__init__()
        self.pool = pool
        from transformers import AutoConfig, AutoModel

        conf_dict = json.loads(spec.config_json)
        if pretrained is not None:
            self.model = AutoModel.from_pretrained(pretrained)
        else:
            conf = AutoConfig.for_model(conf_dict.pop("model_type"), **conf_dict)
            self.model = AutoModel.from_config(conf)
        self.dim = int(getattr(self.model.config, "dim", None) or self.model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids -> (N, Ct) CLS (or masked-mean) vectors."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pool == "cls":
            return hidden[:, 0]
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
