"""A tiny random-weight OpenVLA-OFT checkpoint in the real file layout, built with the
upstream classes, for tests and the GPU check (nothing can be downloaded here).

What is real: the directory layout of moojink/openvla-7b-oft-finetuned-libero-10 (config.json
with auto_map, sharded model safetensors + index, preprocessor_config.json, tokenizer files,
the three ``*_prismatic.py`` files, dataset_statistics.json, ``action_head--150000_checkpoint.pt``
and ``proprio_projector--150000_checkpoint.pt`` with DDP ``module.`` prefixes), the config
ids (``dinosiglip-vit-so-224px`` + ``llama2-7b-pure``), the classes (OpenVLAForActionPrediction,
PrismaticVisionBackbone on timm ViTs, L1RegressionActionHead, ProprioProjector,
PrismaticProcessor), and every shape the node relies on: 256 patches per image, 2 images,
LLM hidden 4096 (so the action tokens' hidden states are (1, 56, 4096)), vocabulary 32064,
chunk 8 x 7, proprio 8.

What is tiny: the two ViTs (width 32 / 48, 2 blocks instead of 24 / 27), the Llama (2 layers,
4 key/value heads, MLP width 256) and the tokenizer (a 400-token BPE). The ViTs keep their
timm ids; ``tiny_vision_towers()`` swaps timm's constructors for those ids, so it must be
active wherever such a checkpoint is LOADED too (the loader itself is unchanged).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from aura_mem_ros.backbones import oft_runtime_check as rc

DINO_ID = "vit_large_patch14_reg4_dinov2"
SIGLIP_ID = "vit_so400m_patch14_siglip_224"
TINY_VIT_ARGS = {
    DINO_ID: dict(
        patch_size=14,
        embed_dim=32,
        depth=2,
        num_heads=2,
        init_values=1e-5,
        reg_tokens=4,
        no_embed_class=True,
    ),
    SIGLIP_ID: dict(
        patch_size=14,
        embed_dim=48,
        depth=2,
        num_heads=2,
        mlp_ratio=3.7362,
        class_token=False,
        global_pool="map",
    ),
}
HIDDEN = 4096
VOCAB = 32064  # Llama-2's 32000 + <PAD>, padded to a multiple of 64, as OpenVLA's
UNNORM_KEY = "libero_10_no_noops"
INSTRUCTIONS = (
    "put both the alphabet soup and the tomato sauce in the basket",
    "turn on the stove and put the moka pot on it",
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "pick up the book and place it in the back compartment of the caddy",
    "open the top drawer and put the bowl inside",
)


@contextlib.contextmanager
def tiny_vision_towers() -> Iterator[None]:
    """timm's constructors for the two OFT vision ids build tiny ViTs while active."""
    rc.import_torchvision()  # timm imports torchvision
    from timm.models import _registry
    from timm.models.vision_transformer import _create_vision_transformer

    saved = {name: _registry._model_entrypoints[name] for name in TINY_VIT_ARGS}

    def tiny(name: str):
        def create(pretrained: bool = False, **kwargs):
            return _create_vision_transformer(
                name, pretrained=False, **{**TINY_VIT_ARGS[name], **kwargs}
            )

        return create

    for name in TINY_VIT_ARGS:
        _registry._model_entrypoints[name] = tiny(name)
    try:
        yield
    finally:
        _registry._model_entrypoints.update(saved)


def dataset_statistics() -> dict:
    """LIBERO-shaped statistics (values invented; shapes, keys and masks as upstream's)."""

    def block(low: list[float], high: list[float], mask: list[bool]) -> dict:
        lo, hi = np.asarray(low), np.asarray(high)
        return {
            "mean": ((lo + hi) / 2).tolist(),
            "std": ((hi - lo) / 4).tolist(),
            "max": (hi * 1.1).tolist(),
            "min": (lo * 1.1).tolist(),
            "q01": lo.tolist(),
            "q99": hi.tolist(),
            "mask": mask,
        }

    return {
        UNNORM_KEY: {
            "action": block([-0.9] * 6 + [0.0], [0.9] * 6 + [1.0], [True] * 6 + [False]),
            "proprio": block(
                [-0.3, -0.3, 0.8, -3.1, -3.1, -3.1, 0.0, -0.04],
                [0.3, 0.3, 1.3, 3.1, 3.1, 3.1, 0.04, 0.0],
                [True] * 8,
            ),
            "num_transitions": 101469,
            "num_trajectories": 379,
        }
    }


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>"],  # ids 0, 1, 2 as in Llama-2
        initial_alphabet=[chr(c) for c in range(32, 127)],
        show_progress=False,
    )
    corpus = [f"In: What action should the robot take to {t}?\nOut:" for t in INSTRUCTIONS]
    tok.train_from_iterator(corpus, trainer)
    return LlamaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", legacy=False
    )


def build(out_dir: Path, seed: int = 0, layers: int = 2, upstream_dir: str = "") -> Path:
    """Write the tiny checkpoint into ``out_dir`` (created) and return it."""
    rc.add_upstream_to_path(upstream_dir)
    up = rc.import_upstream(rc.PLATFORMS[0])  # LIBERO
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = up.configuration.OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-so-224px",
        llm_backbone_id="llama2-7b-pure",
        arch_specifier="no-align+fused-gelu-mlp",
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        text_config={
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "intermediate_size": 256,
            "num_hidden_layers": layers,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "vocab_size": VOCAB,
            "max_position_embeddings": 2048,
            "pad_token_id": 32000,
            "torch_dtype": "bfloat16",
        },
        llm_max_length=2048,
        pad_token_id=32000,
        pad_to_multiple_of=64,
        norm_stats=dataset_statistics(),
        n_action_bins=256,
        torch_dtype="bfloat16",
        auto_map={
            "AutoConfig": "configuration_prismatic.OpenVLAConfig",
            "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
        },
    )
    with tiny_vision_towers():
        model = up.modeling.OpenVLAForActionPrediction(config)
    model = model.to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="400MB")
    del model

    head = up.action_heads.L1RegressionActionHead(input_dim=HIDDEN, hidden_dim=HIDDEN, action_dim=7)
    projector = up.projectors.ProprioProjector(llm_dim=HIDDEN, proprio_dim=8)
    for module, name in ((head, "action_head"), (projector, "proprio_projector")):
        state = {f"module.{k}": v.to(torch.bfloat16) for k, v in module.state_dict().items()}
        torch.save(state, out_dir / f"{name}--150000_checkpoint.pt")

    image_processor = up.processing.PrismaticImageProcessor(
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        input_sizes=[[3, 224, 224], [3, 224, 224]],
        interpolations=["bicubic", "bicubic"],
        means=[[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]],
        stds=[[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]],
        auto_map={
            "AutoImageProcessor": "processing_prismatic.PrismaticImageProcessor",
            "AutoProcessor": "processing_prismatic.PrismaticProcessor",
        },
    )
    processor = up.processing.PrismaticProcessor(image_processor, _tokenizer())
    processor.save_pretrained(out_dir)
    (out_dir / "dataset_statistics.json").write_text(json.dumps(dataset_statistics(), indent=2))
    for module in (up.configuration, up.modeling, up.processing):
        shutil.copyfile(module.__file__, out_dir / Path(module.__file__).name)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--upstream-dir", default="", help="openvla-oft checkout (prismatic/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build(args.out_dir, seed=args.seed, upstream_dir=args.upstream_dir))


if __name__ == "__main__":
    main()
