"""Developer tools that are not rules of the workflow: checks and helpers run by hand (``python -m tools.<name>``
from the repository root), never by snakemake."""
