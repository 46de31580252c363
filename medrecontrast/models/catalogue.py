"""The methods' catalogue as ``medrecontrast methods`` lists it: each registered method's card, options and per-task
settings, apart from the algorithms (each in its own module) and from the names table the command line checks
before torch loads (:mod:`medrecontrast.catalog`)."""

from __future__ import annotations

from medrecontrast.catalog import NEEDS_DOWNLOAD, NOT_OFFERED
from medrecontrast.models.base import DETECTORS, registered_methods


def method_catalogue() -> dict:
    """Every registered method as ``medrecontrast methods`` shows it: its card (display name, reference, what it
    needs), whether it trains, its input-size multiple, every option with its default, what differs from the
    authors' networks with a timm backbone and its own per-task settings (for the tasks ``tasks`` lists); under
    ``"not_offered"`` each anomalib model the suite refuses, with why."""
    import dataclasses

    from medrecontrast.tasks.registry import families

    examples = [(label, task) for family in families().values() for label, task in family.examples()]
    methods = {}
    for name in registered_methods():
        cls = DETECTORS[name]
        options = {
            f.name: (
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()
                if f.default_factory is not dataclasses.MISSING
                else None
            )
            for f in dataclasses.fields(cls.Config)
        }
        settings = {label: cls.task_options(task) for label, task in examples}
        methods[name] = {
            "display_name": cls.card.display_name,
            "trains": cls.trains,
            "size_multiple": cls.size_multiple,
            "reference": cls.card.citation,
            "requires": cls.card.requires,
            "options": options,
            # what differs from the authors' networks with a timm backbone (ReContrast, RD4AD: a generic decoder)
            "backbone_notes": cls.notes({"backbone": "timm:<name>"}),
            # the method's own per-task settings (e.g. ReContrast's TASK_SETTINGS)
            "task_settings": {label: options for label, options in settings.items() if options},
        }
    refused = {f"anomalib:{name}": f"needs {what} (downloaded at run time)" for name, what in NEEDS_DOWNLOAD.items()}
    refused.update({f"anomalib:{name}": why for name, why in NOT_OFFERED.items()})
    return {**methods, "not_offered": refused}
