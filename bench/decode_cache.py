"""Decode once: a folder of 25,000 JPEGs (the size of the tutorials' PetImages), loaded twice.

Generates the folder if needed (photo-sized JPEGs of two classes, with a few corrupt files as in the
real PetImages), then times `load_data` on it with an empty cache (decoding) and again (cache hit), and
optionally one training epoch of a small CNN on the data in memory and streamed from the cache.

    python bench/decode_cache.py --images 25000 --image-size 128 --epoch
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _write_images(args: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    folder, start, stop, label = args
    rng = np.random.default_rng(start)
    for index in range(start, stop):
        h, w = int(rng.integers(280, 500)), int(rng.integers(300, 500))
        coarse = rng.integers(0, 255, (h // 40 + 2, w // 40 + 2, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        pixels = np.asarray(image).astype(np.int16) + rng.integers(-12, 12, (h, w, 3))
        pixels[h // 4 : h // 2, w // 4 : w // 2, label] = 250  # a class-dependent patch
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{index}.jpg", quality=85)


def make_folder(root: Path, count: int) -> None:
    """`root/cat` and `root/dog`, `count` JPEGs in all, plus corrupt files; kept between runs."""
    marker = root / f".complete-{count}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    jobs = []
    for label, name in enumerate(("cat", "dog")):
        folder = root / name
        folder.mkdir(parents=True)
        first, last = label * count // 2, (label + 1) * count // 2
        jobs += [(folder, s, min(s + 500, last), label) for s in range(first, last, 500)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_images, jobs))
    (root / "cat" / "666.jpg").write_bytes(b"")  # PetImages ships a zero-byte Cat/666.jpg
    (root / "dog" / "11702.jpg").write_bytes((root / "dog" / f"{count // 2}.jpg").read_bytes()[:3000])  # truncated
    (root / "dog" / "notes.jpg").write_text("not an image")
    marker.touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=25_000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "tuning-bench-pets")
    parser.add_argument("--epoch", action="store_true", help="also time one epoch in memory and streamed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode_cache.json")
    args = parser.parse_args()

    start = time.perf_counter()
    make_folder(args.root, args.images)
    generated = time.perf_counter() - start
    cache = Path(tempfile.mkdtemp(prefix="tuning-cache-"))
    os.environ["TUNING_CACHE"] = str(cache)
    from tuning.data import load_data
    from tuning.spec import load_spec

    def spec(in_memory: object) -> Any:
        return load_spec({"version": 1, "data": {"directory": str(args.root), "image_size": [args.image_size] * 2, "in_memory": in_memory}})

    timings = {}
    for attempt in ("first (decode)", "second (cache)"):
        start = time.perf_counter()
        dataset = load_data(spec(True).data, Path.cwd(), seed=0)
        timings[attempt] = time.perf_counter() - start
    start = time.perf_counter()
    streamed = load_data(spec(False).data, Path.cwd(), seed=0)
    timings["streamed open"] = time.perf_counter() - start
    result = {
        "images": args.images,
        "image_size": args.image_size,
        "kept": len(dataset.y_train) + len(dataset.y_val) + len(dataset.y_test),
        "skipped": len(dataset.skipped),
        "generate_s": round(generated, 1),
        "first_load_s": round(timings["first (decode)"], 2),
        "second_load_s": round(timings["second (cache)"], 2),
        "streamed_open_s": round(timings["streamed open"], 2),
        "images_per_s_decode": round(args.images / timings["first (decode)"], 1),
        "cache_mb": round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20, 1),
        "cpus": os.cpu_count(),
    }
    if args.epoch:
        result.update(epoch_times(dataset, streamed))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    shutil.rmtree(cache, ignore_errors=True)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


def epoch_times(in_memory: Any, streamed: Any) -> dict[str, float]:
    """One epoch of the same small CNN on the data in memory and streamed from the cache (second epoch timed)."""
    import keras

    from tuning.batches import fit_data
    from tuning.hypermodel import build_model, compile_model
    from tuning.space import resolve
    from tuning.spec import load_spec

    config = resolve(load_spec({"version": 1, "model": {"blocks": 3, "filters": 16, "dense_units": 64}, "training": {"batch_size": 64}}), {})
    out = {}
    for label, data in (("memory", in_memory), ("streamed", streamed)):
        keras.utils.set_random_seed(0)
        model = compile_model(build_model(config, data.input_shape, data.num_classes), config)
        y = np.eye(data.num_classes, dtype="float32")[data.y_train]
        model.fit(**fit_data(data.x_train, y, 64), epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(**fit_data(data.x_train, y, 64), epochs=1, verbose=0)
        out[f"epoch_{label}_s"] = round(time.perf_counter() - start, 2)
    out["streamed_over_memory"] = round(out["epoch_streamed_s"] / out["epoch_memory_s"], 3)
    return out


if __name__ == "__main__":
    main()
