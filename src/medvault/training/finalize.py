"""Write the refusal (out-of-domain) figures into the model cards and regenerate the Markdown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medvault.training.export import card_markdown

RECIPE_NOTE = (
    "The recipe (input size, epochs, learning rate) was picked with a small sweep of about 25 "
    "short runs scored on this same validation split, so the validation figures are somewhat "
    "optimistic; nothing here is a test set.")


def refusal_markdown(ref: dict[str, Any]) -> str:
    lines = ["", "## Refusing out-of-domain input", "",
             "Measured through the whole `analyse()` path on held-out images:", "",
             "| set | refused | n |", "|---|---|---|"]
    for group in ("in_domain_wrongly_refused", "out_of_domain_refused"):
        for k, v in ref[group].items():
            lines.append(f"| {k} ({'wrongly refused' if group.startswith('in') else 'refused'}) "
                         f"| {v['rate']:.4f} | {v['n']} |")
    lines += ["", f"Overall: out-of-domain refused {ref['out_of_domain_refused_overall']:.4f} "
              f"(target >= 0.99); in-domain wrongly refused "
              f"{ref['in_domain_wrongly_refused_overall']:.4f} (target <= 0.02).", ""]
    return "\n".join(lines)


def card_document(card: dict[str, Any]) -> str:
    """A classifier card's Markdown above the evaluation sections: the card itself, the gate's
    refusal figures and the training and recipe notes, where the card holds them."""
    md = card_markdown(card)
    if "held_out_evaluation" in card.get("refusal", {}):
        md += refusal_markdown(card["refusal"]["held_out_evaluation"])
    note = card.get("training", {}).get("note")
    if note:
        md += f"\n## Training note\n\n{note}\n"
    if "recipe_selection" in card["validation"]:
        md += f"\n_{card['validation']['recipe_selection']}_\n"
    return md


def finalize_cards(models_dir: Path, refusal: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> None:
    models_dir = Path(models_dir)
    for name in ("lung-ct", "brain-mri"):
        p = models_dir / f"{name}.json"
        if not p.exists():
            continue
        card = json.loads(p.read_text())
        card.setdefault("refusal", {})
        card["refusal"].update({
            "energy_threshold": None,
            "gate": "domain.onnx (see domain.json) + DICOM Modality/BodyPartExamined + blank "
                    "check; the energy score is reported in extra['energy'] but not used to "
                    "refuse",
            "held_out_evaluation": refusal,
        })
        card["validation"]["recipe_selection"] = RECIPE_NOTE
        (models_dir / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
        (models_dir / f"{name}.md").write_text(card_document(card))
    p = models_dir / "domain.json"
    if p.exists():
        card = json.loads(p.read_text())
        card["held_out_evaluation"] = refusal
        p.write_text(json.dumps(card, indent=1) + "\n")
        lines = [f"# Model card: domain gate v{card['version']}", "",
              f"**Intended use:** {card['intended_use']}", "",
              f"- File: `{card['file']}` ({card['size_bytes'] / 1024:.0f} KiB), SHA-256 "
              f"`{card['sha256']}`",
              f"- Labels: {', '.join(card['labels'])}; input {card['input']['shape']}",
              f"- Refusal rule: {card['refusal']['rule']} (min_domain_probability "
              f"{card['refusal']['min_domain_probability']}, blank_std_threshold "
              f"{card['refusal']['blank_std_threshold']})",
              f"- Training: `{card['training']['command']}`, {card['training']['epochs']} epochs, "
              f"{card['training']['train_seconds'] / 60:.1f} min, "
              f"{card['training']['threads']} thread(s), CPU; per class "
              f"{card['training']['train_per_class']}",
              f"- Negatives: {card['training']['negatives']}",
              f"- Positives: {card['training']['positives']}"]
        if card.get("history"):
            lines += ["", f"History: {card['history']}"]
        (models_dir / "domain.md").write_text("\n".join(lines) + "\n" + refusal_markdown(refusal))
    progress({"event": "refusal-evaluated", **{k: v for k, v in refusal.items()
                                                 if not isinstance(v, dict) or k == "targets"}})
