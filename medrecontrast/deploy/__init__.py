"""Deploying what a benchmark found: exported files (:mod:`.formats`), scoring images with them (:mod:`.predict`)
and what a prediction writes (:mod:`.outputs`). Nothing here imports the suite's training code."""
