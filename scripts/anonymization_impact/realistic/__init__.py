"""Realistic anonymization: generators behind one interface (``generator``), latent sampling
(``latents``), HM / HM-LO (``postprocess``), the per-instance method (``method``), DeepPrivacy2's
generators (``deepprivacy2``) and the stand-in used in tests (``standin``).

Only constants here: the workflow's DAG code imports them without loading torch.
"""

DP2_REPOSITORY = "https://github.com/hukkelas/deep_privacy2"
DP2_COMMIT = "f4d8f09d1eb8f758c89cf1795ae41f20533942d3"  # HEAD of deep_privacy2, 2024-01-28

# Generators of the realistic variants on the synthetic twins (realistic.synthetic_generator):
# what their outputs are labelled with in audits, tables, figures and the report.
SYNTHETIC_GENERATORS = {
    "standin": "test stand-in generator (random weights; not DeepPrivacy2)",
    "twin_renderer": "twin person renderer (synthetic twins only; not DeepPrivacy2)",
}


# the paper's latent sampling when a realistic variant leaves `truncation` null
DEFAULT_TRUNCATION = {"face": "none", "body": "multimodal"}


def effective_truncation(variant: dict) -> str:
    return variant["truncation"] or DEFAULT_TRUNCATION[variant["region"]]
