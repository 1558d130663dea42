"""A study's comparison (docs/study.md): study.json and the self-contained study.html, from the variants' runs.

`rows` reads one finished run folder into a run's row, `ranking` folds a variant's repetitions (`surge study
--repeat N`, each with its own seed) into the variant's row — the median run's figure and the range over the
runs — and ranks the variants per question, and `page` writes both files.
"""
