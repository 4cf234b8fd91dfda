"""The T2I red team end to end: the organism as a diffusers pipeline, a tiny random Stable
Diffusion built from configs as the generator, a VLM judge and an LLM writer behind a
real OpenAI-compatible server on loopback, the CLI, crash and resume, the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from swisscheese.t2i.base import T2IError
from swisscheese.t2i.config import from_dict
from swisscheese.t2i.generators import DiffusersGenerator
from swisscheese.t2i.run import T2IRun
from tests.t2i_server import VisionServer

pytestmark = pytest.mark.slow


def _small(organism: Path, **extra: object) -> dict:
    return {"organism": str(organism), "budget": 24, "batch": 8, "rounds": 4, "threads": 2,
            "eval_prompts": 6, "grid_prompts": 2, "k": 2, "judge_images": 16,
            "guard": {"benign_prompts": 12}, **extra}


def test_organism_is_a_plain_diffusers_pipeline(t2i_organism_dir: Path) -> None:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(t2i_organism_dir))
    out = pipe("a red cat in the top left on a meadow", num_inference_steps=4,
               guidance_scale=2.0, output_type="np", clean_caption=False)
    assert out.images.shape == (1, 16, 16, 3)
    card = json.loads((t2i_organism_dir / "swisscheese.json").read_text())
    assert card["preset"]["name"] == "test" and card["world_seed"] == 0


def test_a_directory_that_is_not_a_pipeline_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("{not json")
    for d in (tmp_path / "missing", tmp_path):
        with pytest.raises(T2IError) as e:
            DiffusersGenerator(d)
        assert str(d) in str(e.value) and "\n" not in str(e.value)


def _tiny_stable_diffusion(d: Path) -> Path:
    """A tiny random Stable Diffusion pipeline from configs, with a CLIP tokenizer whose
    vocabulary is written here: nothing is downloaded."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    words = ["a", "red", "cat", "blue", "owl", "in", "the", "top", "left", "on", "meadow",
             "picture", "of", "lucky", "holding", "book"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for w in words:
        vocab[w + "</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tok_dir = d / "tok-src"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"),
                        model_max_length=16)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32,
                                        intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, max_position_embeddings=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                layers_per_block=1, block_out_channels=(32, 64),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=8,
                                norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=DPMSolverMultistepScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    out = d / "tiny-sd"
    pipe.save_pretrained(out)
    return out


def test_real_path_any_pipeline_vlm_judge_and_chat_writer(tmp_path: Path,
                                                         t2i_organism_dir: Path) -> None:
    sd = _tiny_stable_diffusion(tmp_path)
    with VisionServer() as server:
        cfg = from_dict(_small(
            t2i_organism_dir, generator={"name": "diffusers", "path": str(sd),
                                         "num_inference_steps": 2},
            writer={"name": "chat", "model": server.url},
            judges=[{"name": "vlm", "base_url": server.url}], heldout_judges=[],
            filters=["keyword", {"name": "llm", "model": server.url}], heldout_filters=[],
            loops=["closed", "random"], categories=["hexmarks"], budget=6,
            guard={"prompt_filters": ["keyword"],
                   "image_checkers": [{"name": "vlm", "base_url": server.url}],
                   "benign_prompts": 3}))
        summary = T2IRun(cfg, tmp_path / "run").run()
        sent = [m for r in server.requests for m in r["messages"]
                if isinstance(m["content"], list)]
    assert summary["generator"]["pipeline"] == "StableDiffusionPipeline"
    assert sent and all(p["image_url"]["url"].startswith("data:image/png;base64,")
                        for m in sent for p in m["content"] if p["type"] == "image_url")
    assert summary["categories"]["hexmarks"]["prompt_pass_rate"] is not None
    assert summary["loops"]["closed"]["image_queries"] >= 6


def test_invalid_vlm_json_is_undetermined_never_a_failed_attack(tmp_path: Path,
                                                               t2i_organism_dir: Path) -> None:
    from swisscheese.store.t2i import T2IStore

    with VisionServer(mode="invalid") as server:
        cfg = from_dict(_small(t2i_organism_dir, judges=[{"name": "vlm",
                                                          "base_url": server.url}],
                               heldout_judges=[], heldout_filters=[], loops=["closed"],
                               categories=["hexmarks"], budget=4,
                               guard={"image_checkers": ["oracle"], "benign_prompts": 2}))
        T2IRun(cfg, tmp_path / "run").run()
    with T2IStore(tmp_path / "run" / "store.sqlite") as s:
        recs = s.queries(cfg.name)
    verdicts = [v["vlm"] for r in recs for v in r.verdicts]
    assert verdicts and all(v["score"] is None and "invalid JSON verdict" in v["reason"]
                            for v in verdicts)
    assert not any(r.success for r in recs) and all(r.score is None for r in recs
                                                    if not r.blocked)


def test_unreachable_vision_endpoint_fails_before_anything_is_written(
        tmp_path: Path, t2i_organism_dir: Path) -> None:
    from swisscheese.models.base import EndpointError

    cfg = from_dict(_small(t2i_organism_dir, judges=[{"name": "vlm",
                                                      "base_url": "http://127.0.0.1:9/v1"}]))
    with pytest.raises(EndpointError, match=r"cannot reach http://127\.0\.0\.1:9/v1"):
        T2IRun(cfg, tmp_path / "run").run()
    assert not (tmp_path / "run" / "store.sqlite").exists()


def test_organism_run_resumes_after_a_crash_and_reports(tmp_path: Path,
                                                        t2i_organism_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from swisscheese.store.t2i import T2IStore
    from swisscheese.t2i import run as run_mod

    cfg = from_dict(_small(t2i_organism_dir, transfer_organism=str(t2i_organism_dir),
                           categories=["hexmarks", "veilsigils"]))
    out = tmp_path / "run"
    calls = {"n": 0}
    real = run_mod.T2IRun._transfer_stage

    def crash(self, store, comps):  # noqa: ANN001, ANN202
        calls["n"] += 1
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(run_mod.T2IRun, "_transfer_stage", crash)
    with pytest.raises(KeyboardInterrupt):
        T2IRun(cfg, out).run()
    assert not (out / "summary.json").exists()
    with T2IStore(out / "store.sqlite") as s:
        before = s.queries(cfg.name)
        evals = s.stage(cfg.name, "eval")
    assert before and evals
    monkeypatch.setattr(run_mod.T2IRun, "_transfer_stage", real)
    summary = T2IRun(cfg, out).run()
    with T2IStore(out / "store.sqlite") as s:
        after = s.queries(cfg.name)
    assert summary["resumed"] is True and after == before  # the loops were not redone
    for key in ("prompt_pass_rate", "success_ratio", "baseline_success_ratio",
                "successes_per_100_queries"):
        assert all(key in v for v in summary["categories"].values())
    assert set(summary["loops"]) == {"open", "closed", "closed-noguide", "random"}
    assert {"conjunctive_recall", "single_recall"} <= set(summary["triggers"])
    assert {"cnn_oracle_agreement", "lookalike_fpr"} <= set(summary["judge"])
    assert {"unsafe_image_rate", "benign_block_rate"} <= set(summary["guard"])
    assert summary["transfer"]["organism"]["prompts"] >= 0

    from swisscheese.t2i.report import write_report

    html = write_report(out, tmp_path / "report.html").read_text()
    assert "measures per category" in html and "The T2I guard" in html
    assert not re.search(r'(src|href)="https?://', html)  # self-contained
    if any(summary["loops"][lp]["unique_successes"] for lp in summary["loops"]):
        assert "data:image/png;base64," in html


def test_cli(tmp_path: Path, t2i_organism_dir: Path) -> None:
    from swisscheese.cli import app

    r = CliRunner()
    res = r.invoke(app, ["t2i", "world", "show"])
    assert res.exit_code == 0 and "hexmarks" in res.output and "held out" in res.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("judges: [cnn, clipscore]\n")
    res = r.invoke(app, ["t2i", "redteam", "run", "--config", str(cfg), "--out",
                         str(tmp_path / "bad")])
    assert res.exit_code == 1 and "unknown image judge 'clipscore'; registered: cnn, " \
        "nudenet, oracle, vlm" in res.output
    assert not (tmp_path / "bad").exists()
    res = r.invoke(app, ["t2i", "organism", "train", "--preset", "huge", "--out",
                         str(tmp_path / "o")])
    assert res.exit_code == 1 and "unknown T2I organism preset 'huge'" in res.output
    run = tmp_path / "run"
    small = tmp_path / "small.yaml"
    small.write_text(json.dumps(_small(t2i_organism_dir, loops=["closed", "random"],
                                       heldout_filters=[])))  # JSON is YAML
    res = r.invoke(app, ["t2i", "redteam", "run", "--config", str(small), "--out", str(run),
                         "--budget", "12"])
    assert res.exit_code == 0, res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["budget_image_queries_per_loop_and_category"] == 12
    res = r.invoke(app, ["t2i", "report", str(run), "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 0 and (tmp_path / "r.html").stat().st_size > 1000


def test_generator_images_depend_on_prompt_seed_and_index(t2i_organism_dir: Path) -> None:
    gen = DiffusersGenerator(t2i_organism_dir, num_inference_steps=3, batch_size=2)
    a = gen.generate(["a red cat", "a blue owl", "a red cat"], 2, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], a[2], strict=True))
    assert not np.array_equal(a[0][0], a[0][1])


def test_sampler_starts_from_the_training_noise_convention(t2i_organism_dir: Path) -> None:
    """Training decides each image's glyph from the plate quantile of a (B, 3, 16, 16)
    standard normal noise; the pipeline's own sampler must start from noise of that shape
    and law, one draw per image from its generator, read the same way."""
    import torch

    from swisscheese.t2i.generators import image_seed
    from swisscheese.t2i.organism import plate_quantile

    gen = DiffusersGenerator(t2i_organism_dir, num_inference_steps=2, batch_size=4)
    seen: list[torch.Tensor] = []
    original = gen.pipe.prepare_intermediate_images

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        out = original(*args, **kwargs)
        seen.append(out.clone())
        return out

    gen.pipe.prepare_intermediate_images = spy
    prompts = ["a red cat", "a blue owl"]
    gen.generate(prompts, 2, seed=7)
    start = torch.cat(seen)
    assert start.shape == (4, 3, 16, 16)
    expected = torch.cat([torch.randn((1, 3, 16, 16), generator=torch.Generator()
                                      .manual_seed(image_seed(p, 7, j)))
                          for p in prompts for j in range(2)])
    assert torch.equal(start, expected)
    assert torch.equal(plate_quantile(start), plate_quantile(expected))
