"""What MLflow's UI shows a person about a tuning run and a registered version: markdown
descriptions (MLflow renders them, links clickable). Pure text."""

from __future__ import annotations

from collections.abc import Mapping

from retrain.links import markdown_link

PROMOTION_WAY = (
    "Promotion happens through retrain (the nightly run, `retrain promote`, `retrain "
    "rollback`), which moves the `champion` alias after comparing AUROCs on the same holdout "
    "rows; MLflow's own *Promote model* button does not serve anything."
)


def flow_run_words(tags: Mapping[str, str]) -> str:
    """The Prefect flow run behind a run or version, a link when its page is known."""
    run_id = tags.get("prefect.flow_run_id")
    if not run_id:
        return "no Prefect flow run (tuned outside Prefect)"
    return "Prefect flow run " + markdown_link(f"`{run_id[:8]}`", tags.get("prefect.flow_run_url"))


def tuning_note(
    tags: Mapping[str, str], best_cv: float, test_auroc: float, family: str, version: str
) -> str:
    """The parent run's description: who ran it, what it found, what it registered."""
    return (
        f"Tuned by {flow_run_words(tags)}.\n\n"
        f"Best trial: {family}, CV AUROC {best_cv:.4f} (`best_cv_auroc`); refit on all "
        f"training rows, holdout AUROC {test_auroc:.4f} (`test_auroc`).\n\n"
        f"Registered as version {version} with the alias `challenger`."
    )


def version_note(
    tags: Mapping[str, str], test_auroc: float | None, decision: str, versus: str = ""
) -> str:
    """A version's description: where it came from, its holdout AUROC, the decision."""
    score = f"{test_auroc:.4f}" if test_auroc is not None else "n/a"
    return (
        f"Trained by {flow_run_words(tags)}; holdout AUROC {score} (`test_auroc`).\n\n"
        f"**Promotion: {decision}**{versus}.\n\n{PROMOTION_WAY}"
    )
