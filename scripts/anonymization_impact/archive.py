"""A results archive a reviewer can rerun a table from, years later.

The archive holds the workflow as it ran (every file under version control, from the
working tree) and the results that tables, figures and the report are made from: metric
JSONs, training summaries, privacy audits, tables, figures, the reproduction report and the
provenance manifest (md5 of every raw file and weight). Model weights, predictions and
anonymized images are left out (they are large; their md5 are in the manifest). Extracted,
it is a working directory in which ``snakemake table1 --configfile archived-config.yaml
--allowed-rules make_table table1 --forcerun make_table`` rebuilds Table 1 from the
archived metric files alone (README, "Archival reproduction").
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import yaml

from .errors import WorkflowInputError
from .provenance import git_state, own_version

# What is archived from results/, as glob patterns relative to the working directory.
RESULT_PATTERNS = (
    "results/metrics/**/*.json",
    "results/models/**/training.json",
    "results/anonymized/*/*/audit.json",
    "results/anonymized/*/*/audit.md",
    "results/tables/*",
    "results/figures/*",
    "results/report/*",
    "results/provenance/manifest.json",
)
ARCHIVED_CONFIG = "archived-config.yaml"
ARCHIVE_RECORD = "archive.json"  # which release and commit of the workflow the archive holds


def tracked_files(source_root: Path) -> list[str]:
    """Files under version control in ``source_root`` (relative paths, sorted)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=source_root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise WorkflowInputError(f"cannot list the workflow's files with git in {source_root}: {error}; the archive needs a git checkout") from None
    return sorted(name for name in listed.stdout.decode().split("\0") if name and (source_root / name).is_file())


def result_files(workdir: Path) -> list[str]:
    found = {str(path.relative_to(workdir)) for pattern in RESULT_PATTERNS for path in workdir.glob(pattern) if path.is_file()}
    return sorted(found)


def write_archive(path: Path, *, source_root: Path, workdir: Path, prefix: str, config: dict) -> dict:
    """Write the tar.gz at ``path``; returns what went in. ``config`` (the validated config
    the results were made with, overlays included) is archived as archived-config.yaml."""
    source_root, workdir = Path(source_root).resolve(), Path(workdir).resolve()
    members = {name: source_root / name for name in tracked_files(source_root)}
    results = result_files(workdir)
    members.update({name: workdir / name for name in results})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    commit, dirty = git_state()
    record = {"workflow": prefix, "version": own_version(), "git_commit": commit, "dirty": dirty}
    generated = {ARCHIVED_CONFIG: yaml.safe_dump(config, sort_keys=False), ARCHIVE_RECORD: json.dumps(record, indent=1) + "\n"}
    with tarfile.open(partial, "w:gz") as archive:
        for name in sorted(members):
            archive.add(members[name], arcname=f"{prefix}/{name}", recursive=False)
        for name, text in generated.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            data = text.encode()
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(data))
    partial.replace(path)
    return {"files": len(members), "results": len(results), "prefix": prefix, **record}
