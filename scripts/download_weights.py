"""Rule weights_download: fetch initial weights named in the config and check their sha256."""

import urllib.request
from pathlib import Path

from anonymization_impact.errors import WorkflowInputError
from anonymization_impact.logs import logged
from anonymization_impact.training.weights import verify_weights

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    entry = snakemake.params.entry  # noqa: F821
    target = Path(snakemake.output[0])  # noqa: F821
    partial = target.with_name(target.name + ".part")
    log.info("downloading %s to %s", entry["url"], target)
    try:
        urllib.request.urlretrieve(entry["url"], partial)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise WorkflowInputError(
            f"could not download weights '{entry['name']}' from {entry['url']} ({error}); "
            f"fetch the file by other means to {target} (sha256 starting {entry['sha256']})"
        ) from None
    partial.replace(target)
    try:
        verify_weights(entry["name"], entry)
    except WorkflowInputError:
        target.unlink()
        raise
