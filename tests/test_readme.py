"""The README's "From Python" blocks run as written (only the training length is cut, and they run in a
scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"### {section}")
    end = text.find("\n## ", start)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


def test_from_python_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks("From Python")
    assert len(blocks) == 3 and all("steps=3000" in blocks[i] for i in (0, 2))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace("steps=3000", "steps=20"), str(README), "exec"), namespace)
    assert (tmp_path / "runs" / "bvae4" / "model.safetensors").is_file()
    assert namespace["z"].shape == (8, 10) and namespace["recon"].shape == (8, 1, 64, 64)
    assert namespace["sweep"].shape == (10, 7, 1, 64, 64)
    assert namespace["mlp"].config["architecture"].endswith("MyVAE") and namespace["mlp"].latent_dim == 6
    assert namespace["mine"].num_images == 5000 and namespace["mine"].factor_names[3] == "x"
    images, classes = next(iter(namespace["loader"]))
    assert images.shape == (64, 1, 64, 64) and classes.shape == (64, 5)
    def floats(line: str) -> list[float] | None:
        try:
            return [float(v) for v in line.split()] or None
        except ValueError:
            return None

    printed = [f for f in map(floats, capsys.readouterr().out.splitlines()) if f]  # the scores, not fit's summaries
    assert [len(f) for f in printed] == [1, 2, 1] and all(0 <= v <= 1 for f in printed for v in f)
