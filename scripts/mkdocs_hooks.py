"""MkDocs hook: the site's navigation, built from the docs/ folder.

Every page in docs/ is on the site without editing mkdocs.yml: the pages below in their order,
then each other top-level ``docs/*.md`` (the method pages) under "Methods in depth", the
executed notebooks (``docs/notebooks/``, written by scripts/execute_notebooks.py) and the API
reference (``api/*.md``, generated here from each package's ``__all__``).
"""

from __future__ import annotations

from typing import Any

from mkdocs.plugins import event_priority

FRONT = ["index.md", "getting-started.md"]
GUIDE = [
    "guide/probe.md",
    "guide/layer-explorer.md",
    "guide/feature-visualisation.md",
    "guide/attribution.md",
    "guide/training-replay.md",
    "guide/dataset.md",
    "guide/concepts.md",
    "guide/real-architectures.md",
    "guide/beyond-jupyterlab.md",
]
BACK = ["design.md", "benchmarks.md"]


def _title(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return stem.replace("_", " ").replace("-", " ").strip().capitalize()


@event_priority(-100)  # after the plugins' on_files (mkdocs-jupyter registers notebooks)
def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for package in ["jaxvis", *PACKAGES]:
        files.append(File.generated(config, f"api/{package}.md", content=api_page(package)))
    files.append(File.generated(config, "api/index.md", content=api_index()))
    pages = sorted(f.src_uri for f in files if f.src_uri.endswith((".md", ".ipynb")))
    have = set(pages)

    def ordered(wanted: list[str], prefix: str, suffix: str = ".md") -> list[str]:
        extra = [p for p in pages if p.startswith(prefix) and p.endswith(suffix)]
        extra = [p for p in extra if p not in wanted and (prefix or "/" not in p)]
        return [p for p in wanted if p in have] + extra

    known = set(FRONT + BACK)
    methods = [p for p in ordered([], "") if p not in known]
    nav: list[Any] = [p for p in FRONT if p in have]
    for title, section in (
        ("Guide", ordered(GUIDE, "guide/")),
        ("Methods in depth", methods),
        ("Notebooks", ordered([], "notebooks/", ".ipynb")),
        ("API reference", ordered(["api/index.md"], "api/")),
    ):
        if section:
            nav.append({title: section})
    nav += [p for p in BACK if p in have]
    config["nav"] = nav
    return files


# ------------------------------------------------------------------------- API reference

PACKAGES = {
    "attribution": "Attribution methods, their result type, baselines, quadrature, the method "
    "registry, sanity checks and metrics.",
    "optvis": "Feature visualisation: objectives, image parameterisations, transforms, "
    "regularizers, presets and the optimisation loop.",
    "render": "Arrays to pictures: normalisation, colormaps, tiling, overlays, PNG and GIF.",
    "dataset": "Dataset views: top-k images per unit (streamed, sharded), receptive fields, "
    "patches.",
    "training": "Training replay: the recorder and the recording.",
    "concepts": "Concepts: activation datasets, factorisations and sparse autoencoders, concept "
    "views and reports.",
    "widgets": "The notebook widgets (ipywidgets, bqplot, anywidget) and the static HTML export.",
    "zoo": "Demo models and data, architectures (ResNet, ViT), checkpoint loading.",
}


def _entry(module: Any, name: str) -> str:
    """The ``:::`` identifier of ``module.name``: its defining path for classes, functions and
    modules (a lazily imported or module-shadowed name resolves there), else the export."""
    import inspect

    obj = getattr(module, name)
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"{module.__name__}.{name}"


def api_page(package: str) -> str:
    """Markdown of the API page of ``jaxvis`` or ``jaxvis.<package>``: one entry per name in
    its ``__all__``."""
    import importlib
    import inspect

    full = "jaxvis" if package == "jaxvis" else f"jaxvis.{package}"
    module = importlib.import_module(full)
    lines = [f"# `{full}`", "", PACKAGES.get(package, ""), ""]
    lines += [
        f"::: {full}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
    ]
    lines += ["      show_root_toc_entry: false", ""]
    for name in sorted(module.__all__, key=str.lower):
        obj = getattr(module, name)
        if package == "jaxvis" and inspect.ismodule(obj):
            lines += [f"## `{name}`", "", f"See [`{obj.__name__}`]({name}.md).", ""]
            continue
        lines += [f"::: {_entry(module, name)}", "    options:", "      show_root_full_path: false"]
        lines += ["      heading_level: 2", ""]
    return "\n".join(lines)


def api_index() -> str:
    rows = ["| module | what is in it |", "|---|---|"]
    rows.append(
        "| [`jaxvis`](jaxvis.md) | `Probe`, `Layer`, `tap`, `Recorder`, `Recording`, the "
        "compilation store |"
    )
    rows += [f"| [`jaxvis.{p}`]({p}.md) | {d} |" for p, d in PACKAGES.items()]
    head = (
        "# API reference\n\nGenerated from the docstrings at build time: every name in "
        "`jaxvis.__all__` and in each subpackage's `__all__` has an entry here "
        "(tests/test_docs.py checks it).\n\n"
    )
    return head + "\n".join(rows) + "\n"
