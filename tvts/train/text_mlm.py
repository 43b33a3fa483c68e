"""The DistilBERT stand-in: a masked-LM text encoder on the narration of the pretraining shards.

The paper's text encoder starts from a pretrained DistilBERT. This trains its miniature on the
train split's transcripts: `DistilBertForMaskedLM` at the sizes of `pretrain.model.text`, with
the WordPiece tokenizer that `text.model: scratch` trains on those transcripts (the same
vocabulary and ids), and BERT's masking: 15 % of the tokens are predicted, of which 80 % are
replaced by [MASK], 10 % by a random token and 10 % left as they are. The folder it writes is
a Hugging Face model folder (`save_pretrained`: config, weights, tokenizer), which
`pretrain.model.text.model: <folder>` loads like any pretrained model.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tvts import io
from tvts.models.config import TextConfig, VideoConfig
from tvts.models.text import SCRATCH, SPECIAL, TextSpec, build_spec, load_tokenizer, tokenize
from tvts.train import distributed as dist
from tvts.train.data import ViewConfig, WindowDataset
from tvts.train.image_mae import open_train_split, run_key, train_steps
from tvts.train.init_config import TextMLMConfig

IGNORE = -100  # labels of the tokens not predicted (what transformers' loss skips)


def train_texts(shards: str | Path) -> list[str]:
    """Every clip transcript of the train split, in shard order, repeats included (what the
    scratch tokenizer is trained on)."""
    view = ViewConfig(VideoConfig(), k=1, mask_ratio=0.0, max_length=4, frames=False)
    return list(WindowDataset(shards, "train", view, TextSpec("", ""), 0).texts())


def mask_tokens(ids: torch.Tensor, attention: torch.Tensor, special: torch.Tensor, mask_id: int, vocab: int,
                prob: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of (B, L) token ids: (inputs, labels), labels IGNORE where nothing is predicted.

    Only real tokens are candidates (not padding, [CLS], [SEP]); at least one is always picked,
    so a batch of short texts still has a loss.
    """
    candidate = (attention.bool() & ~special).numpy()
    picked = (rng.random(ids.shape) < prob) & candidate
    if not picked.any() and candidate.any():
        picked[np.unravel_index(np.flatnonzero(candidate)[0], ids.shape)] = True
    roll = rng.random(ids.shape)
    inputs = ids.clone()
    to_mask = torch.from_numpy(picked & (roll < 0.8))
    to_random = torch.from_numpy(picked & (roll >= 0.8) & (roll < 0.9))
    inputs[to_mask] = mask_id
    inputs[to_random] = torch.from_numpy(rng.integers(len(SPECIAL), vocab, ids.shape))[to_random]
    labels = torch.where(torch.from_numpy(picked), ids, torch.full_like(ids, IGNORE))
    return inputs, labels


class MLMBatches:
    """The tokenised narration and step -> batch, a pure function of (seed, step)."""

    def __init__(self, texts: list[str], spec: TextSpec, text: TextConfig, cfg: TextMLMConfig):
        tok = load_tokenizer(spec, text.max_length)
        self.ids, self.attention = tokenize(tok, texts)                  # (N, L) each
        specials = [tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]")]
        self.special = torch.isin(self.ids, torch.tensor(specials))
        self.mask_id, self.vocab, self.cfg = tok.token_to_id("[MASK]"), tok.get_vocab_size(), cfg

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, step])
        rows = torch.from_numpy(rng.integers(0, len(self.ids), self.cfg.batch_size))
        ids, attention = self.ids[rows], self.attention[rows]
        inputs, labels = mask_tokens(ids, attention, self.special[rows], self.mask_id, self.vocab,
                                     self.cfg.mask_prob, rng)
        return {"input_ids": inputs, "attention_mask": attention, "labels": labels}


def build_mlm(spec: TextSpec, seed: int):
    """A fresh `DistilBertForMaskedLM` of the spec's config (the scratch encoder's, plus the MLM head)."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    torch.manual_seed(seed)
    return DistilBertForMaskedLM(DistilBertConfig.from_dict(json.loads(spec.config_json)))


def save_folder(model, spec: TextSpec, text: TextConfig, folder: Path) -> None:
    """`save_pretrained` of the model and of the tokenizer (a fast tokenizer that AutoTokenizer reads)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(spec.tokenizer_json), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                  model_max_length=text.max_length)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def train_text_mlm(shards: str | Path, text: TextConfig, cfg: TextMLMConfig, out: Path, env: dist.DistEnv) -> dict:
    """Train the masked-LM encoder on the train transcripts and write the model folder `out`
    (atomically: the folder appears whole). Step checkpoints go to `<out>-ckpt/`.

    Returns:
        The manifest's body: counts, losses and history.
    Raises:
        ValueError: when the train split has no transcript.
    """
    texts = train_texts(shards)
    if not texts:
        raise ValueError(f"init_text_mlm: no train transcript in {shards}")
    spec = build_spec(replace(text, model=SCRATCH), texts)
    unique = list(dict.fromkeys(texts))   # overlapping windows repeat clips; each sentence once
    batches = MLMBatches(unique, spec, text, cfg)
    model = build_mlm(spec, cfg.seed)
    model.distilbert.embeddings.word_embeddings.weight.requires_grad_(not cfg.freeze_word_embeddings)
    model.train()
    key = run_key({"init_text_mlm": cfg, "text": text}, open_train_split(shards)[1])

    def loss_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v.to(env.device) for k, v in batch.items()}).loss

    history = train_steps(model, loss_of, batches, cfg, out.parent / f"{out.name}-ckpt", key, env)
    model.to("cpu")
    with io.atomic_dir(out) as tmp:
        save_folder(model, spec, text, tmp)
    tokens = int(batches.attention.sum())
    return {"counts": {"transcripts": len(texts), "unique_transcripts": len(unique), "tokens": tokens,
                       "vocab": batches.vocab, "steps": cfg.steps},
            "losses": {"first": history[0]["loss"], "final": history[-1]["loss"]}, "history": history}
