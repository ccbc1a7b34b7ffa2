"""Section data model (AnnData, squidpy conventions) and the synthetic sample generator."""

from .model import (
    PATIENT_KEY,
    SECTION_KEY,
    SPATIAL_KEY,
    VISION_KEY,
    SectionError,
    concat_sections,
    get_fullres_image,
    get_lowres_image,
    library_id,
    make_section,
    split_sections,
    spot_diameter_px,
    summarize,
    validate_section,
)
from .synthetic import SyntheticSample, make_sample

__all__ = [
    "PATIENT_KEY",
    "SECTION_KEY",
    "SPATIAL_KEY",
    "VISION_KEY",
    "SectionError",
    "SyntheticSample",
    "concat_sections",
    "get_fullres_image",
    "get_lowres_image",
    "library_id",
    "make_sample",
    "make_section",
    "split_sections",
    "spot_diameter_px",
    "summarize",
    "validate_section",
]
