"""Rule plot_qualitative: one training image under "original" and every variant (like Fig. 2)."""

from pathlib import Path

from anonymization_impact.figures import qualitative
from anonymization_impact.io import read_json, write_json_atomic
from anonymization_impact.logs import logged

with logged(snakemake.log[0]) as log:  # noqa: F821 (snakemake is injected)
    inputs, params = snakemake.input, snakemake.params  # noqa: F821
    persons = read_json(inputs.persons)
    file_name, panels, _ = qualitative.build_panels(
        persons=persons,
        faces=read_json(inputs.faces),
        trees=inputs.trees,
        raw_root=Path(params.raw_root),
        variants=list(params.variants),
        variant_settings=dict(params.variants),
        image=params.image,
        blur_original_faces=bool(params.blur_faces),
        log=log,
    )
    qualitative.plot(panels, snakemake.output.pdf, snakemake.output.png)  # noqa: F821
    data = {
        "definition": qualitative.__doc__.strip(),
        "dataset": persons.get("info", {}).get("dataset"),
        "image": file_name,
        "chosen": "configured" if params.image else "most persons",
        "blur_original_faces": bool(params.blur_faces),
        "panels": [panel.record() for panel in panels],
    }
    write_json_atomic(snakemake.output.data, data, indent=2)  # noqa: F821
    log.info("qualitative %s: %s", file_name, [(p.variant, p.status) for p in panels])
